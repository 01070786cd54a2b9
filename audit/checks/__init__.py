"""Checks: pure functions over the store (attack outcomes, probe measurements, facts about the run) that return
findings; `verdict` turns them into the answer. Nothing here needs the model. The table of every check is
`registry.checks()`.

    findings = run_checks(outcomes, measurements, facts)
    answer = verdict(findings, outcomes, facts)["summary"]
"""

from __future__ import annotations

from typing import Any

from audit.checks import multiplicity
from audit.checks.comparisons import COMPARISONS, beyond_autoattack
from audit.checks.convergence import check_convergence
from audit.checks.finding import Finding, skipped
from audit.checks.registry import OUTCOMES, checks, judges
from audit.checks.test_time import check_static_model_gain
from audit.checks.verdict import verdict
from audit.outcomes import Outcomes

__all__ = ["Finding", "checks", "judge_measurements", "run_checks", "verdict"]


def judge_measurements(measurements: dict[str, dict[str, Any]]) -> list[Finding]:
    """Findings from probe measurements ({probe name: measurement}), in the order of the check table."""
    findings: list[Finding] = []
    table, judge = checks(), judges()
    for source in dict.fromkeys(check.source for check in table if check.source != OUTCOMES):
        if source not in measurements:
            continue
        measurement = measurements[source]
        ids = [check.id for check in table if check.source == source]
        if "error" in measurement:
            findings += [skipped(i, measurement["error"], error=True) for i in ids]
        elif measurement.get("no_samples"):
            findings += [skipped(i, measurement["skipped"], not_run=True) for i in ids]
        else:
            findings += judge[source](measurement)
    return findings


def run_checks(
    outcomes: Outcomes | None, measurements: dict[str, dict[str, Any]], facts: dict[str, Any] | None = None
) -> list[Finding]:
    """Every check: the probe measurements judged, then the comparisons over the outcomes (when given)."""
    findings = judge_measurements(measurements)
    if outcomes is not None:
        for check in (*COMPARISONS, check_convergence):
            findings.extend(check(outcomes))
        findings.extend(check_static_model_gain(outcomes, facts))
        beyond = beyond_autoattack(outcomes)
        findings = multiplicity.correct(findings, beyond["p_value"] if beyond else None)
    return findings
