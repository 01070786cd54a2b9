"""Family-wise error control over the tests that decide the verdict (Holm's step-down procedure, audit/stats.py).

Several exact McNemar tests can each decide the verdict; tested one by one at 1%, a sound model fairly attacked
trips at least one of them more often than 1%, and more often the more of them apply. So they are corrected as
families, each at its own level:
- `masking` at 1% (`comparisons.P_FAIL`, equal to `verdict.P_AT_RISK`): the paired comparisons that make
  gradient masking `suspected` (gradient-free, transfer, single-step and BPDA against exact-gradient attacks; a
  test-time defense against its static model) and the beyond-AutoAttack test that puts the claim at risk. A
  comparison that fails alone but not once corrected is a warning (a claim above the static model's accuracy is
  a comparison of numbers, not a test, and stays a failure).
- `convergence` at 5% (`convergence.P_FAIL`): one test per strength curve, corrected inside
  `check_convergence`; a failure there makes the verdict inconclusive, so this family bounds false
  "not converged" calls.
Every test's raw and corrected p-value is in the verdict's `tests` (results.json). Pure over findings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from audit.checks import comparisons, convergence
from audit.checks.finding import Finding
from audit.stats import holm

MASKING_FAMILY = (
    "blackbox-beats-whitebox",
    "transfer-beats-whitebox",
    "single-step-beats-iterative",
    "adaptive-gap",
    "static-model-gain",
)
BEYOND_AUTOATTACK = "beyond-autoattack"
LEVEL = comparisons.P_FAIL


def masking_tests(findings: list[Finding], beyond_p: float | None) -> dict[str, float]:
    """The raw p-values of the masking family's tests that ran (a skipped comparison tested nothing)."""
    tests = {
        f.id: float(f.evidence["p_value"])
        for f in findings
        if f.id in MASKING_FAMILY and f.status != "skipped" and "p_value" in f.evidence
    }
    if beyond_p is not None:
        tests[BEYOND_AUTOATTACK] = beyond_p
    return tests


def correct(findings: list[Finding], beyond_p: float | None) -> list[Finding]:
    """The findings with the masking family's comparisons corrected: `p_holm` and `family_size` in their
    evidence, and a failure whose corrected p is not below the level turned into a warning that says why."""
    adjusted = holm(masking_tests(findings, beyond_p))
    corrected = []
    for finding in findings:
        if finding.id in adjusted and finding.id != BEYOND_AUTOATTACK:
            evidence = {**finding.evidence, "p_holm": adjusted[finding.id], "family_size": len(adjusted)}
            finding = replace(finding, evidence=evidence)
            if finding.status == "fail" and adjusted[finding.id] >= LEVEL and evidence.get("decided_by") != "claim":
                finding = replace(
                    finding,
                    status="warn",
                    message=(
                        f"{finding.message}; not significant once corrected for the {len(adjusted)} tests that can "
                        f"decide the verdict (Holm: p = {adjusted[finding.id]:.2g})"
                    ),
                )
        corrected.append(finding)
    return corrected


def deciding_tests(findings: list[Finding], beyond_p: float | None) -> list[dict[str, Any]]:
    """Every verdict-deciding test with its raw and corrected p-value, its family and level, for results.json."""
    masking = masking_tests(findings, beyond_p)
    adjusted = holm(masking)
    rows = [
        {
            "id": key,
            "family": "masking",
            "p_value": p,
            "p_holm": adjusted[key],
            "level": LEVEL,
            "significant": adjusted[key] < LEVEL,
        }
        for key, p in masking.items()
    ]
    for finding in findings:
        if finding.id == "attack-convergence" and finding.status != "skipped":
            level = finding.evidence.get("p_fail", convergence.P_FAIL)
            for curve, e in finding.evidence.get("families", {}).items():
                rows.append(
                    {
                        "id": f"attack-convergence:{curve}",
                        "family": "convergence",
                        "p_value": e["p_value"],
                        "p_holm": e["p_holm"],
                        "level": level,
                        "significant": e["p_holm"] < level,
                    }
                )
    return rows
