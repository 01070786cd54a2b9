"""The binarization test (Zimmermann et al. 2022): the pure check on stored data, and the probe on the demo
models - APGD-CE passes on the undefended (and, slow, the adversarially trained) model and fails on a
gradient-killing one.
"""

from __future__ import annotations

import json

import pytest
from torch import nn

from attacks.threat_model import ThreatModel
from audit.checks.binarization import check_binarization, judge_binarization
from audit.probes.binarization import BinarizationError, last_linear, run_binarization_probe
from audit.report.plots import binarization as plot_binarization
from defenses.adapters import as_defense
from defenses.toys import KillGradients
from tests.conftest import require_shipped

THREAT = ThreatModel("Linf", 0.1)


def rows(successes: list[bool], valid: bool = True) -> dict:
    return {
        "attack": "apgd-ce",
        "samples": [
            {
                "index": i,
                "label": 0,
                "valid": valid,
                "attack_success": s,
                "clean_logit_gap": -0.5,
                "adversarial_logit_gap": 0.2 if s else -0.3,
                "train_accuracy": 1.0,
                "validation_accuracy_inner": 0.9,
                "validation_accuracy_boundary": 0.4,
                "random_success": False,
            }
            for i, s in enumerate(successes)
        ],
    }


def test_check_is_pure_and_has_margins_on_both_sides():
    assert check_binarization(rows([True] * 20)).status == "pass"
    assert check_binarization(rows([True] * 19 + [False])).status == "pass"  # 95%
    assert check_binarization(rows([True] * 17 + [False] * 3)).status == "warn"  # 85%
    failed = check_binarization(rows([True] * 10 + [False] * 10))
    assert failed.status == "fail" and "too weak" in failed.message
    assert failed.evidence["success_rate"] == 0.5 and failed.evidence["missed_indices"] == list(range(10, 20))
    assert check_binarization(rows([False] * 5, valid=False)).status == "skipped"
    assert json.loads(json.dumps(failed.to_json()))["id"] == "binarization-test"


def test_probe_on_a_tiny_model_gives_plain_json_and_a_plot(fmnist_test, tiny_checkpoints, tmp_path):
    """A trained tiny model (an untrained one classifies none of 6 images correctly, so the probe had no sample
    and the plot was never drawn: the test passed on an empty list)."""
    from audit.model_spec import load_factory

    defense = as_defense(load_factory(tiny_checkpoints["small_cnn"], tiny_checkpoints["small_cnn_checkpoint"]))
    data = run_binarization_probe(
        defense,
        fmnist_test.images[:6],
        fmnist_test.labels[:6],
        THREAT,
        "fgsm",
        n_samples=2,
        n_inner=16,
        n_boundary=16,
        n_validation=16,
        progress=False,
    )
    assert json.loads(json.dumps(data)) == data
    assert data["feature_layer"] == "classifier" and [row["valid"] for row in data["samples"]] == [True, True]
    (finding,) = judge_binarization(data)
    assert finding.evidence["n_valid"] == 2
    drawn = plot_binarization({"findings": [finding.to_json()]}, [], tmp_path / "b.png")
    assert drawn is not None and (tmp_path / "b.png").stat().st_size > 1000
    with pytest.raises(BinarizationError):
        last_linear(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_small_probe_passes_on_an_undefended_model_and_fails_on_a_gradient_killing_one(fmnist_test):
    """The probe's real pass and fail in the default run (8 points each, about 6 s each; 20 points below, slow):
    APGD-CE finds every guaranteed example on the undefended model (the pass bar is 95%) and none through a
    backward that returns zeros (the fail bar is 50%)."""
    images, labels = fmnist_test.images[:16], fmnist_test.labels[:16]
    sound = check_binarization(
        run_binarization_probe(
            as_defense(require_shipped("demo-standard")), images, labels, THREAT, "apgd-ce", n_samples=8, progress=False
        )
    )
    assert sound.evidence["n_valid"] >= 6 and sound.status == "pass" and sound.evidence["success_rate"] == 1.0
    killed = as_defense(KillGradients(require_shipped("demo-adversarial")), opaque=True)
    masked = check_binarization(
        run_binarization_probe(killed, images, labels, THREAT, "apgd-ce", n_samples=8, progress=False)
    )
    assert masked.evidence["n_valid"] >= 6 and masked.status == "fail" and masked.evidence["success_rate"] <= 0.25


@pytest.mark.slow  # 15-45 s each, depending on the machine's load
@pytest.mark.parametrize("name", ["demo-standard", "demo-adversarial"])
def test_apgd_passes_on_the_demo_models(name, fmnist_test):
    defense = as_defense(require_shipped(name))
    data = run_binarization_probe(
        defense, fmnist_test.images[:40], fmnist_test.labels[:40], THREAT, "apgd-ce", n_samples=20, progress=False
    )
    finding = check_binarization(data)
    assert finding.evidence["n_valid"] >= 15
    assert finding.status == "pass" and finding.evidence["success_rate"] >= 0.95


@pytest.mark.slow
def test_apgd_fails_on_a_gradient_killing_defense(fmnist_test):
    defense = as_defense(KillGradients(require_shipped("demo-adversarial")), opaque=True)
    data = run_binarization_probe(
        defense, fmnist_test.images[:40], fmnist_test.labels[:40], THREAT, "apgd-ce", n_samples=20, progress=False
    )
    finding = check_binarization(data)
    assert finding.evidence["n_valid"] >= 15
    assert finding.status == "fail" and finding.evidence["success_rate"] <= 0.5
    assert "fails the binarization test" in finding.message
