"""Holm's correction over the tests that decide the verdict (audit/checks/multiplicity.py, audit/stats.py)."""

from __future__ import annotations

import random

import pytest

from audit.checks.finding import Finding
from audit.checks.multiplicity import BEYOND_AUTOATTACK, correct, deciding_tests
from audit.stats import holm


def test_holm_matches_the_step_down_by_hand():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, then 0.04 x 1 = 0.04 raised to the running 0.06.
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert holm({"only": 0.2}) == {"only": 0.2} and holm({}) == {}
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}  # capped at 1


def test_holm_keeps_the_family_wise_rate_that_testing_one_by_one_exceeds():
    """Five true null hypotheses, uniform p-values, seeded: any one below 1% happens about 4.9% of the time
    uncorrected; after Holm, at most 1%."""
    rng = random.Random(7)
    trials, raw, corrected = 20000, 0, 0
    for _ in range(trials):
        p = {str(k): rng.random() for k in range(5)}
        raw += min(p.values()) < 0.01
        corrected += min(holm(p).values()) < 0.01
    assert 0.04 < raw / trials < 0.06
    assert corrected / trials < 0.0125


def _comparison(finding_id: str, status: str, p: float) -> Finding:
    return Finding(finding_id, status, f"{finding_id} message", {"p_value": p})


def test_a_failure_that_does_not_survive_the_correction_is_a_warning_that_says_so():
    findings = [
        _comparison("blackbox-beats-whitebox", "fail", 0.004),  # 2nd smallest: x 4 = 0.016, not below 1%
        _comparison("adaptive-gap", "fail", 1e-6),  # survives any correction
        _comparison("transfer-beats-whitebox", "pass", 0.5),
        _comparison("single-step-beats-iterative", "pass", 1.0),
        Finding("transfer-beats-whitebox-not-in-family", "pass", "other", {"p_value": 1e-9}),
        Finding("zero-gradients", "fail", "not a p-value test"),
    ]
    corrected = {f.id: f for f in correct(findings, beyond_p=0.3)}
    blackbox = corrected["blackbox-beats-whitebox"]
    assert blackbox.status == "warn" and "corrected for the 5 tests" in blackbox.message
    assert blackbox.evidence["p_holm"] == pytest.approx(0.016) and blackbox.evidence["family_size"] == 5
    assert corrected["adaptive-gap"].status == "fail" and corrected["adaptive-gap"].evidence["p_holm"] < 1e-5
    assert corrected["zero-gradients"].status == "fail"  # not a test of the family: untouched
    table = {row["id"]: row for row in deciding_tests(findings, beyond_p=0.3)}
    assert set(table) == {
        "blackbox-beats-whitebox",
        "adaptive-gap",
        "transfer-beats-whitebox",
        "single-step-beats-iterative",
        BEYOND_AUTOATTACK,
    }
    assert table[BEYOND_AUTOATTACK]["p_value"] == 0.3 and not table[BEYOND_AUTOATTACK]["significant"]
    assert table["adaptive-gap"]["significant"] and not table["blackbox-beats-whitebox"]["significant"]


def test_skipped_comparisons_do_not_count_in_the_family():
    findings = [_comparison("blackbox-beats-whitebox", "fail", 0.004), Finding("adaptive-gap", "skipped", "none")]
    (alone, _) = correct(findings, beyond_p=None)
    assert alone.status == "fail" and alone.evidence["family_size"] == 1  # a family of one: nothing to correct
