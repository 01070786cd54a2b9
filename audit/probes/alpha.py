"""Where a MeanSparse model's alpha came from: the measurement behind `alpha-selection` (judged in
`audit/checks/alpha.py`). The paper picked alpha by APGD-CE robust accuracy on the *test* set, against the attack
whose gradients the operator masks; an audit should say so."""

from __future__ import annotations

from typing import Any

from defenses.meansparse import meansparse_layers
from defenses.protocol import Defense

# RobustBench's MeanSparse entries use the alpha the authors chose by sweeping APGD-CE on the test set.
TEST_SET_TUNED_PREFIX = "Amini2024MeanSparse"


def measure_alpha(defense: Defense, model_spec: str) -> dict[str, Any]:
    layers = meansparse_layers(defense.model)
    if not layers:
        return {"skipped": "no MeanSparse layers"}
    measurement = {"alpha": layers[0][1].alpha, "layers": len(layers), "split": None}
    if model_spec.startswith(TEST_SET_TUNED_PREFIX):
        return {**measurement, "split": "test", "source": "published (RobustBench Amini2024MeanSparse entry)"}
    sweep = _shipped_sweep(model_spec)
    if sweep is not None:
        return {
            **measurement,
            "split": sweep.get("split"),
            "alphas": sweep.get("alphas"),
            "apgd_ce_accuracy": sweep.get("apgd_ce_accuracy"),
            "source": "checkpoint metadata",
        }
    return measurement


def _shipped_sweep(model_spec: str) -> dict[str, Any] | None:
    from defenses.checkpoints import read_metadata
    from defenses.models.registry import CHECKPOINT_DIR, SHIPPED

    if model_spec not in SHIPPED:
        return None
    return read_metadata(CHECKPOINT_DIR / SHIPPED[model_spec]).get("alpha_sweep")
