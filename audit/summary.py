"""The few lines `audit run` prints at the end (stdout is for results; progress and logs go to stderr)."""

from __future__ import annotations

from typing import Any

from audit.report.text import (
    aa_vs_adaptive,
    claim_sentence,
    failure_text,
    gain_sentence,
    headline,
    interval,
    pct,
)


def summary_lines(results: dict[str, Any]) -> list[str]:
    clean = results.get("clean", {}).get("ci95")
    clean_ci = f" ({pct(clean[0])} - {pct(clean[1])})" if clean else ""
    lines = [
        f"{results['model']}: clean {pct(results['clean_accuracy'])}{clean_ci}, worst-case robust "
        f"{pct(results['worst_case_robust_accuracy'])}{interval(results)} ({results['threat_model']['norm']} eps="
        f"{results['threat_model']['eps']:g}, n={results['n_samples']})"
    ]
    verdict = results.get("verdict", {})
    lines.append(
        f"  gradient masking: {verdict.get('gradient_masking', 'n/a')}; claim at risk: "
        f"{verdict.get('claim_at_risk', 'n/a')}"
    )
    for sentence in (gain_sentence(results), aa_vs_adaptive(results), claim_sentence(results)):
        if sentence:
            lines.append("  " + sentence)
    for driver in verdict.get("drivers", [])[:5]:
        lines.append(f"  - {driver.get('id')}: {driver.get('why')}")
    lines.append("  " + headline(results))
    lines += [f"  not run: {failure_text(failed)}" for failed in results.get("failed_batches", [])]
    return lines
