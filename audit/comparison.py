"""`audit compare A B`: two audits side by side, with 95% intervals; on the same images, the difference of their
worst cases as a paired test. For MeanSparse against its base: does the AutoAttack gain survive the worst case?"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from audit.report import load_results, reading
from audit.report.text import pct
from audit.stats import clopper_pearson, paired


def _aa(results: dict[str, Any]) -> dict[str, Any] | None:
    return next((a for a in results.get("attacks", []) if a["name"].startswith("autoattack")), None)


def _cell(value: float | None, n: int) -> str:
    if value is None:
        return "n/a"
    low, high = clopper_pearson(round(value * n), n)
    return f"{pct(value)} ({pct(low)} - {pct(high)})"


def _worst_per_sample(directory: Path) -> list[bool] | None:
    path = directory / "samples.csv"
    if not path.exists():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "worst_case_robust:lp" not in rows[0]:
        return None
    return [row.get("worst_case_robust:lp") == "1" for row in rows]


def paired_difference(a: list[bool], b: list[bool]) -> dict[str, Any]:
    """Robust in B but not A (gain) and in A but not B (loss), and the exact two-sided McNemar p-value."""
    counts = paired(b, a)
    return {"only_b_robust": counts.b, "only_a_robust": counts.c, "p_value": counts.p_two_sided()}


def compare(dir_a: str | Path, dir_b: str | Path, out: str | Path | None = None) -> str:
    with reading(Path(dir_a) / "results.json", Path(dir_b) / "results.json"):
        return _compare(dir_a, dir_b, out)


def _compare(dir_a: str | Path, dir_b: str | Path, out: str | Path | None) -> str:
    a, b = load_results(dir_a), load_results(dir_b)
    same_images = (
        a["threat_model"] == b["threat_model"]
        and a["dataset"] == b["dataset"]
        and a["n_samples"] == b["n_samples"]
        and a["seed"] == b["seed"]
    )
    note = (
        ""
        if same_images
        else (
            "\n> warning: the two audits do not use the same images or threat model; the "
            "comparison is not like for like and no paired test is made.\n"
        )
    )
    n_a, n_b = a["n_samples"], b["n_samples"]
    aa_a, aa_b = _aa(a), _aa(b)
    rows = [
        ("clean accuracy", a["clean_accuracy"], b["clean_accuracy"]),
        ("AutoAttack", aa_a and aa_a["robust_accuracy"], aa_b and aa_b["robust_accuracy"]),
        ("worst case over the zoo", a["worst_case_robust_accuracy"], b["worst_case_robust_accuracy"]),
    ]
    names = {x["name"] for x in a.get("attacks", [])} & {x["name"] for x in b.get("attacks", [])}
    for name in sorted(names):
        va = next(x["robust_accuracy"] for x in a["attacks"] if x["name"] == name)
        vb = next(x["robust_accuracy"] for x in b["attacks"] if x["name"] == name)
        rows.append((name, va, vb))
    lines = [
        f"# {a['model']} vs {b['model']}",
        note,
        f"| | {a['model']} (95% interval) | {b['model']} (95% interval) | difference (points) |",
        "|---|---:|---:|---:|",
    ]
    for label, va, vb in rows:
        diff = "" if va is None or vb is None else f"{100 * (vb - va):+.2f}"
        lines.append(f"| {label} | {_cell(va, n_a)} | {_cell(vb, n_b)} | {diff} |")
    lines.append(
        f"| gradient masking | {a.get('verdict', {}).get('gradient_masking')} | "
        f"{b.get('verdict', {}).get('gradient_masking')} | |"
    )
    worst_a, worst_b = _worst_per_sample(Path(dir_a)), _worst_per_sample(Path(dir_b))
    paired = None
    if same_images and worst_a is not None and worst_b is not None and len(worst_a) == len(worst_b):
        paired = paired_difference(worst_a, worst_b)
        lines += [
            "",
            f"Paired over the same {len(worst_a)} images: {paired['only_b_robust']} are robust only for "
            f"{b['model']}, {paired['only_a_robust']} only for {a['model']} (exact McNemar, two-sided "
            f"p = {paired['p_value']:.2g}).",
        ]
    if (
        aa_a is not None
        and aa_b is not None
        and aa_a["robust_accuracy"] is not None
        and aa_b["robust_accuracy"] is not None
    ):
        gain = 100 * (aa_b["robust_accuracy"] - aa_a["robust_accuracy"])
        real = 100 * (b["worst_case_robust_accuracy"] - a["worst_case_robust_accuracy"])
        lines += [
            "",
            f"Under AutoAttack, {b['model']} gains {gain:+.2f} points over {a['model']}; "
            f"under the worst case over all attacks, the difference is {real:+.2f} points.",
        ]
        if gain > 0 and real <= 0:
            lines.append("The AutoAttack gain does not survive adaptive attacks.")
        elif gain > 0 and paired is not None and paired["p_value"] >= 0.05:
            lines.append("The remaining difference is within noise on these images (p >= 0.05): not shown to be real.")
    text = "\n".join(lines) + "\n"
    if out is not None:
        Path(out).write_text(text, encoding="utf-8")
    return text
