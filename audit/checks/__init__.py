"""Checks: pure functions over the store (attack outcomes, probe measurements, facts about the run) that return
findings; `verdict` turns them into the answer. Nothing here needs the model.

    findings = run_checks(outcomes, probes, facts)
    answer = verdict(findings, outcomes, facts)["summary"]
"""
from __future__ import annotations

from audit.checks.comparisons import COMPARISONS
from audit.checks.verdict import MASKING, OTHER, verdict
from audit.diagnostics.finding import Finding
from audit.outcomes import Outcomes

__all__ = ["COMPARISONS", "MASKING", "OTHER", "run_checks", "verdict"]


def run_checks(outcomes: Outcomes, probes: dict[str, dict], facts: dict) -> list[Finding]:
    """The stored probe findings, in probe order, then the comparisons over the outcomes."""
    findings = [Finding.from_json(row) for probe in probes.values() for row in probe.get("findings", [])]
    for comparison in COMPARISONS:
        findings.extend(comparison(outcomes))
    return findings
