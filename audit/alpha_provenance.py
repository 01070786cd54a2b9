"""Where a MeanSparse model's alpha came from. The paper picked alpha by APGD-CE robust accuracy on the *test*
set, against the attack whose gradients the operator masks; an audit should say so (docs/findings.md)."""
from __future__ import annotations

from audit.diagnostics.finding import Finding, anchor_for
from defenses.meansparse import meansparse_layers
from defenses.protocol import Defense

FINDING_ID = "alpha-selection"
# RobustBench's MeanSparse entries use the alpha the authors chose by sweeping APGD-CE on the test set.
TEST_SET_TUNED_PREFIX = "Amini2024MeanSparse"


def alpha_finding(defense: Defense, model_spec: str) -> Finding | None:
    """None for a model without MeanSparse; otherwise what is known about how its alpha was chosen."""
    layers = meansparse_layers(defense.model)
    if not layers:
        return None
    alpha = layers[0][1].alpha
    evidence = {"alpha": alpha, "layers": len(layers)}
    if model_spec.startswith(TEST_SET_TUNED_PREFIX):
        return Finding(FINDING_ID, "warn", f"alpha={alpha:g} was chosen by the paper's APGD-CE sweep on the test "
                       "set, tuned against the attack whose gradients MeanSparse masks",
                       {**evidence, "split": "test"}, anchor_for(FINDING_ID))
    sweep = _shipped_sweep(model_spec)
    if sweep is None:
        return Finding(FINDING_ID, "skipped", "how alpha was chosen is not recorded; if it was tuned with APGD on "
                       "the test set, the AutoAttack number is optimistic by construction", evidence,
                       anchor_for(FINDING_ID))
    tuned_on_test = sweep.get("split") == "test"
    return Finding(FINDING_ID, "warn" if tuned_on_test else "pass",
                   f"alpha={alpha:g} was chosen by an APGD-CE sweep on the {sweep.get('split')} split",
                   {**evidence, "split": sweep.get("split"), "alphas": sweep.get("alphas"),
                    "apgd_ce_accuracy": sweep.get("apgd_ce_accuracy")}, anchor_for(FINDING_ID))


def _shipped_sweep(model_spec: str) -> dict | None:
    from defenses.checkpoints import read_metadata
    from defenses.models.registry import CHECKPOINT_DIR, SHIPPED

    if model_spec not in SHIPPED:
        return None
    return read_metadata(CHECKPOINT_DIR / SHIPPED[model_spec]).get("alpha_sweep")
