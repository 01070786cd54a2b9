"""`audit run --suite full` on a model with no gradient path to its input (a thermometer encoding built from
comparisons, as published): it never crashes, gradient attacks get automatic BPDA or are not applicable with the
reason, Square runs harder, and the verdict is `suspected` with the finding that says no gradient reaches the input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.cli import main
from audit.data import load_dataset
from audit.plan.suites import GRADIENT_FREE_SQUARE
from defenses.checkpoints import save_checkpoint
from defenses.toys import Thermometer, train_toy

FIXTURE = Path(__file__).parent / "fixtures" / "thermometer_model.py"
TINY = Path(__file__).parent / "fixtures" / "tiny_models.py"


def audit_thermometer(tmp_path: Path, spec: str, model, n: int, diagnostics_n: int) -> dict:
    """Train the thermometer model, then `audit run --suite full` on it; returns results.json."""
    train = load_dataset("fashion-mnist", "train")
    checkpoint = tmp_path / "thermometer.safetensors"
    save_checkpoint(train_toy(model, train.images, train.labels, steps=200, seed=0), checkpoint)
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--model",
                spec,
                "--checkpoint",
                str(checkpoint),
                "--n",
                str(n),
                "--suite",
                "full",
                "--diagnostics-n",
                str(diagnostics_n),
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return json.loads((out / "results.json").read_text())


def check_no_gradient_path_audit(results: dict) -> None:
    assert "automatic BPDA for gt x1" in results["defense"]
    skipped = {s["name"]: s["reason"] for s in results["skipped_attacks"]}
    for name in ("fgsm", "apgd-ce", "apgd-malt+survivors"):  # the default budget's cascade, issue 29
        assert "no gradient reaches the input through the exact backward" in skipped[name]
    ran = {a["name"]: a["robust_accuracy"] for a in results["attacks"]}
    assert {"apgd-ce+bpda-identity", "apgd-ce+bpda-smooth-T0.1", GRADIENT_FREE_SQUARE} <= set(ran)
    assert results["clean_accuracy"] >= 0.6
    # A standard-trained model: automatic BPDA breaks it where exact gradients could not even be taken.
    assert ran["apgd-ce+bpda-identity"] <= 0.15
    assert results["verdict"]["gradient_masking"] == "suspected"
    finding = next(f for f in results["findings"] if f["id"] == "no-gradient-path")
    assert finding["status"] == "fail" and "no gradient reaches the input" in finding["message"]
    assert finding["evidence"]["reaches_input"] == {"exact": False, "identity": True, "smooth": True, "ensemble": True}
    assert "no-gradient-path" in [d["id"] for d in results["verdict"]["drivers"]]


def test_audit_of_a_tiny_model_without_gradient_path(tmp_path, fmnist_test):
    """The same audit in the default run: a 4-channel network behind the thermometer, 12 images, 8 for the
    diagnostics."""
    check_no_gradient_path_audit(
        audit_thermometer(tmp_path, f"{TINY}:thermometer", Thermometer(levels=16, width=4), n=12, diagnostics_n=8)
    )


@pytest.mark.slow  # ~30 s: training, then the full suite and every diagnostic
def test_audit_of_a_model_without_gradient_path(tmp_path, fmnist_test):
    check_no_gradient_path_audit(
        audit_thermometer(tmp_path, f"{FIXTURE}:build", Thermometer(levels=16), n=20, diagnostics_n=20)
    )
