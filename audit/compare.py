"""`audit compare A B`: two audits side by side; for MeanSparse, the AutoAttack gain next to the adaptive result."""
from __future__ import annotations

from pathlib import Path

from audit.report import load_results
from audit.report.text import pct


def _aa(results: dict) -> float | None:
    return next((a["robust_accuracy"] for a in results.get("attacks", []) if a["name"].startswith("autoattack")), None)


def compare(dir_a: str | Path, dir_b: str | Path, out: str | Path | None = None) -> str:
    a, b = load_results(dir_a), load_results(dir_b)
    if a["threat_model"] != b["threat_model"] or a["dataset"] != b["dataset"]:
        note = "\n> warning: the two audits use different datasets or threat models; the comparison is not like for like.\n"
    else:
        note = ""
    rows = [("clean accuracy", a["clean_accuracy"], b["clean_accuracy"]),
            ("AutoAttack", _aa(a), _aa(b)),
            ("worst case over the zoo", a["worst_case_robust_accuracy"], b["worst_case_robust_accuracy"])]
    names = {x["name"] for x in a.get("attacks", [])} & {x["name"] for x in b.get("attacks", [])}
    for name in sorted(names):
        va = next(x["robust_accuracy"] for x in a["attacks"] if x["name"] == name)
        vb = next(x["robust_accuracy"] for x in b["attacks"] if x["name"] == name)
        rows.append((name, va, vb))
    lines = [f"# {a['model']} vs {b['model']}", note,
             f"| | {a['model']} | {b['model']} | difference (points) |", "|---|---:|---:|---:|"]
    for label, va, vb in rows:
        diff = "" if va is None or vb is None else f"{100 * (vb - va):+.2f}"
        lines.append(f"| {label} | {pct(va)} | {pct(vb)} | {diff} |")
    lines.append(f"| gradient masking | {a.get('verdict', {}).get('gradient_masking')} | "
                 f"{b.get('verdict', {}).get('gradient_masking')} | |")
    aa_a, aa_b = _aa(a), _aa(b)
    if aa_a is not None and aa_b is not None:
        gain = 100 * (aa_b - aa_a)
        real = 100 * (b["worst_case_robust_accuracy"] - a["worst_case_robust_accuracy"])
        lines += ["", f"Under AutoAttack, {b['model']} gains {gain:+.2f} points over {a['model']}; under the worst case "
                      f"over all attacks, the difference is {real:+.2f} points."]
        if gain > 0 and real <= 0:
            lines.append("The AutoAttack gain does not survive adaptive attacks.")
    text = "\n".join(lines) + "\n"
    if out is not None:
        Path(out).write_text(text, encoding="utf-8")
    return text
