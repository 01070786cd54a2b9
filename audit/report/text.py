"""Plain-words pieces shared by the Markdown and HTML reports (read-only over results.json)."""
from __future__ import annotations


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def headline(results: dict) -> str:
    verdict = results.get("verdict", {})
    worst = results["worst_case_robust_accuracy"]
    if verdict.get("gradient_masking") == "suspected":
        text = (f"Gradient masking is SUSPECTED. Report {pct(worst)} (the per-sample worst case over all attacks) "
                f"as an upper bound on the true robust accuracy, not the AutoAttack number.")
    else:
        text = (f"No gradient masking detected. The per-sample worst case over all attacks is {pct(worst)}; "
                f"report that number.")
    if results.get("verdict", {}).get("randomized"):
        text += " The model is randomized: results use EOT, and a sample counts as robust only if it is correct on every draw."
    return text


def claim_sentence(results: dict) -> str | None:
    claim = results.get("claim")
    if not claim:
        return None
    if claim["survives"]:
        return f"The claimed robust accuracy {pct(claim['claimed_robust_accuracy'])} survives the worst case ({pct(claim['worst_case_robust_accuracy'])})."
    return (f"The claimed robust accuracy {pct(claim['claimed_robust_accuracy'])} does NOT survive: the worst case is "
            f"{pct(claim['worst_case_robust_accuracy'])}, {claim['shortfall_points']:.2f} points short.")


def aa_vs_adaptive(results: dict) -> str | None:
    attacks = {a["name"]: a["robust_accuracy"] for a in results.get("attacks", [])}
    aa = next((v for k, v in attacks.items() if k.startswith("autoattack")), None)
    if aa is None:
        return None
    worst = results["worst_case_robust_accuracy"]
    return (f"AutoAttack alone gives {pct(aa)}; adding adaptive attacks gives {pct(worst)} "
            f"({100 * (aa - worst):.2f} points lower).")


STATUS_MARK = {"fail": "FAIL", "warn": "warn", "pass": "pass", "skipped": "skipped"}
