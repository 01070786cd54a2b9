"""report.html: self-contained (plots embedded as base64 PNG, inline CSS, no scripts, no external requests).

The page is the Jinja2 template `templates/report.html.j2` (its CSS: `templates/report.css`), with autoescaping on,
so every string that comes from results.json is escaped. This module only prepares the values the template shows.
Order: the verdict in plain words, the key numbers, then the attack table, the findings, the plots, the setting
and the environment.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2

from audit.report.plots import CAPTIONS
from audit.report.text import (
    ATTRIBUTION_HEADER,
    aa_vs_adaptive,
    attack_kind,
    attribution_rows,
    claim_sentence,
    failure_text,
    fingerprint_rows,
    gain_rows,
    gain_sentence,
    headline,
    pct,
    suite_text,
)

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("audit.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
STATUS_ORDER = {"fail": 0, "warn": 1, "skipped": 2, "pass": 3}
KIND_NAMES = {
    "exact": "exact gradient",
    "adaptive": "adaptive (BPDA)",
    "transfer": "transfer",
    "blackbox": "black-box",
    "other": "other threat model",
}


def _numbers(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The key-number cards: (label, value, whether it is the number to report)."""
    cards = [("clean accuracy", pct(results.get("clean_accuracy")), False)]
    attacks = {a["name"]: a["robust_accuracy"] for a in results.get("attacks", [])}
    aa = next((v for k, v in attacks.items() if k.startswith("autoattack")), None)
    if aa is not None:
        cards.append(("AutoAttack alone", pct(aa), False))
    if results.get("claim"):
        cards.append(("claimed robust accuracy", pct(results["claim"].get("claimed_robust_accuracy")), False))
    cards.append(("worst case over all attacks (report this)", pct(results.get("worst_case_robust_accuracy")), True))
    return cards


def _context(results: dict[str, Any], figures: list[tuple[str, Path]]) -> dict[str, Any]:
    verdict = results.get("verdict", {})
    kind = (
        "suspected"
        if verdict.get("claim_at_risk") == "yes" or verdict.get("gradient_masking") == "suspected"
        else "not_detected"
    )
    tm = results.get("threat_model", {})
    threat = f"{tm.get('norm')}, eps = {tm.get('eps', float('nan')):g}"
    findings = sorted(results.get("findings", []), key=lambda f: STATUS_ORDER.get(f.get("status"), 9))
    counts = {s: sum(1 for f in findings if f.get("status") == s) for s in STATUS_ORDER}
    attribution = attribution_rows(results)
    setting = [
        ("model", results.get("model")),
        ("defense", results.get("defense")),
        ("dataset", results.get("dataset")),
        ("threat model", threat),
        ("samples", results.get("n_samples")),
        ("seed", results.get("seed")),
        ("suite", suite_text(results)),
        ("wall time", f"{results['seconds']:.0f} s" if isinstance(results.get("seconds"), (int, float)) else None),
        *fingerprint_rows(results),
    ]
    return {
        "r": {key: results.get(key, "?") for key in ("model", "n_samples")}
        | {key: results.get(key, "") for key in ("defense", "dataset")}
        | {"gain": results.get("gain") or {}},
        "threat": threat,
        "kind": kind,
        "headline": headline(results),
        "sentences": [
            s
            for s in (gain_sentence(results), claim_sentence(results), aa_vs_adaptive(results), verdict.get("summary"))
            if s
        ],
        "drivers": [{"id": d.get("id"), "why": d.get("why")} for d in verdict.get("drivers") or []],
        "numbers": _numbers(results),
        "gain_rows": gain_rows(results),
        "warnings": results.get("warnings", []),
        "failed_batches": [failure_text(f) for f in results.get("failed_batches", [])],
        "attacks": [
            {
                "name": a["name"],
                "kind": KIND_NAMES.get(attack_kind(a), ""),
                "robust": pct(a["robust_accuracy"]),
                "forward": f"{a['n_forward']:.0f}",
                "backward": f"{a['n_backward']:.0f}",
                "seconds": f"{a['seconds']:.1f}",
                "why": a.get("why") or "",
            }
            for a in results.get("attacks", [])
        ],
        "worst": pct(results.get("worst_case_robust_accuracy")),
        "skipped": [{"name": s.get("name"), "reason": s.get("reason")} for s in results.get("skipped_attacks", [])],
        "black_box": list(((results.get("test_time") or {}).get("black_box") or {}).items()),
        "finding_counts": ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        "findings": [
            {"status": str(f.get("status")), "id": f.get("id"), "message": f.get("message")} for f in findings
        ],
        "attribution": attribution
        and {"caption": attribution[0], "header": ATTRIBUTION_HEADER, "rows": attribution[1]},
        "figures": [
            {
                "title": title,
                "caption": CAPTIONS.get(title, ""),
                "data": base64.b64encode(path.read_bytes()).decode("ascii"),
            }
            for title, path in figures
        ],
        "setting": [(k, v) for k, v in setting if v is not None],
        "environment": [(k, v) for k, v in results.get("environment", {}).items() if v],
    }


def render_html(results: dict[str, Any], figures: list[tuple[str, Path]]) -> str:
    return TEMPLATES.get_template("report.html.j2").render(_context(results, figures))
