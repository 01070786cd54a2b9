"""The few lines `audit run` prints at the end (stdout is for results; progress and logs go to stderr)."""
from __future__ import annotations

from audit.report.text import aa_vs_adaptive, claim_sentence, headline, pct


def summary_lines(results: dict) -> list[str]:
    lines = [f"{results['model']}: clean {pct(results['clean_accuracy'])}, worst-case robust "
             f"{pct(results['worst_case_robust_accuracy'])} ({results['threat_model']['norm']} eps="
             f"{results['threat_model']['eps']:g}, n={results['n_samples']})"]
    verdict = results.get("verdict", {})
    lines.append(f"  gradient masking: {verdict.get('gradient_masking', 'n/a')}")
    for sentence in (aa_vs_adaptive(results), claim_sentence(results)):
        if sentence:
            lines.append("  " + sentence)
    for driver in verdict.get("drivers", [])[:5]:
        lines.append(f"  - {driver.get('id')}: {driver.get('why')}")
    lines.append("  " + headline(results))
    return lines
