"""The report says how a MeanSparse model's alpha was chosen, and flags tuning on the test set."""

from audit.checks.alpha import judge_alpha
from audit.probes.alpha import measure_alpha
from defenses import as_defense
from defenses.models.registry import load_shipped


def alpha_finding(defense, spec):  # noqa: ANN001, ANN201 - probe, then check, as the audit runs them
    found = judge_alpha(measure_alpha(defense, spec))
    return found[0] if found else None


def test_demo_alpha_was_chosen_on_validation_and_passes():
    finding = alpha_finding(as_defense(load_shipped("demo-meansparse")), "demo-meansparse")
    assert finding.status == "pass" and finding.evidence["split"] == "validation"
    best = max(range(len(finding.evidence["alphas"])), key=lambda i: finding.evidence["apgd_ce_accuracy"][i])
    assert finding.evidence["alphas"][best] == finding.evidence["alpha"] == 0.3


def test_robustbench_meansparse_entries_are_flagged_as_tuned_on_the_test_set():
    finding = alpha_finding(as_defense(load_shipped("demo-meansparse")), "Amini2024MeanSparse_S-WRN-94-16")
    assert finding.status == "warn" and finding.evidence["split"] == "test"


def test_unknown_provenance_is_skipped_and_plain_models_have_no_finding():
    assert alpha_finding(as_defense(load_shipped("demo-meansparse")), "my_model.py:build").status == "skipped"
    assert alpha_finding(as_defense(load_shipped("demo-adversarial")), "demo-adversarial") is None
