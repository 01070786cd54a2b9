"""Diagnostics: each check fires on a defense masked on purpose, and stays quiet on a clean model.

One small DemoCNN is trained here (seeded, 200 steps on real Fashion-MNIST) so the statuses asserted below do not
depend on checkpoints built elsewhere. Budgets are cut down with a small DiagnosticsConfig; the whole file runs
in well under two minutes on two busy cores.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attacks.autoattack import APGD
from attacks.single_step import FGSM
from attacks.threat_model import ThreatModel
from audit.checks import comparisons, verdict
from audit.checks.finding import Finding, plain, skipped
from audit.checks.ioaf import UNSTABLE_WARN
from audit.checks.registry import checks
from audit.checks.verdict import meanings
from audit.data import load_dataset
from audit.outcomes import Outcomes
from audit.plan import Plan
from audit.probes import diagnose
from audit.probes.config import DiagnosticsConfig
from audit.runner import run_plan
from audit.store import ResultStore
from defenses.adapters import InputQuantization, MeanSparseDefense, RandomNoise
from defenses.calibrate import calibrate
from defenses.models.demo_cnn import DemoCNN
from defenses.protocol import Undefended
from defenses.sparsify import sparsify
from defenses.toys import GradientInForward, KillGradients, ScaledLogits, Softmaxed
from tests.conftest import require_fashion_mnist

THREAT = ThreatModel("Linf", 0.1)
N = 64
SEED = 0
FAST = DiagnosticsConfig(
    fd_directions=3,
    landscape_samples=4,
    landscape_points=11,
    landscape_random_directions=1,
    surface_points=5,
    apgd_iterations=10,
    eps_multipliers=(0.5, 1.0, 4.0),
    more_steps=(5, 25),
    more_steps_samples=32,
    unstable_samples=32,
    unstable_draws=50,
    pgd_steps=20,
    unconstrained_steps=20,
)
COMPARISON_IDS = ["blackbox-beats-whitebox", "transfer-beats-whitebox", "single-step-beats-iterative", "adaptive-gap"]
ALL_IDS = [check.id for check in checks() if check.id != "alpha-selection"]


def probe(name, defense, x, y, config=FAST, seed=SEED):  # noqa: ANN001, ANN201 - untyped by design in this script/test
    """One probe measured and judged, as the audit does it (through the real registries)."""
    return diagnose(defense, x, y, THREAT, seed=seed, config=config, only=(name,))


def run_diagnostics(
    defense,
    x,
    y,
    threat,
    outcomes=None,
    seed=0,
    n=100,
    config=None,
    progress=False,  # noqa: ANN001, ANN201 - untyped by design in this script/test
    only=None,
):
    """Every probe on the first n samples, judged, then the comparisons over `outcomes`."""
    return diagnose(defense, x[:n], y[:n], threat, outcomes, seed=seed, config=config, only=only)


def suite_outcomes(defense, x, y, attacks, directory, mode="full"):  # noqa: ANN001, ANN201 - untyped by design in this script/test
    """The real suite over a real store, as `audit run` does it."""
    return run_plan(
        defense,
        x,
        y,
        THREAT,
        Plan.of(attacks),
        seed=SEED,
        store=ResultStore(directory, {"test": 1}),
        mode=mode,
        progress=False,
    )


# --------------------------------------------------------------------------------------------------------------
# Models masked on purpose


class _ExplodingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        raise RuntimeError("this backward is not implemented")


class ExplodingBackward(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_ExplodingBackward.apply(x))


class HiddenNoise(RandomNoise):
    """Random, but does not say so."""

    randomized = False


# --------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def fmnist():
    require_fashion_mnist()
    return load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")


@pytest.fixture(scope="module")
def model(fmnist):
    train, _ = fmnist
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    net = DemoCNN(width=8)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    net.train()
    for _ in range(200):
        index = torch.randint(0, len(train), (64,), generator=generator)
        loss = F.cross_entropy(net(train.images[index]), train.labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def data(fmnist):
    _, test = fmnist
    return test.images[:N], test.labels[:N]


def meansparse(model: nn.Module, train, alpha: float) -> MeanSparseDefense:
    sparse = sparsify(model, alpha)
    calibrate(sparse, [train.images[i : i + 250] for i in range(0, 1000, 250)], progress=False)
    return MeanSparseDefense(sparse)


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    ids = [f.id for f in findings]
    assert len(ids) == len(set(ids)), f"duplicate finding ids: {ids}"
    return {f.id: f for f in findings}


def statuses(findings: list[Finding]) -> dict[str, str]:
    return {f.id: f.status for f in findings}


# --------------------------------------------------------------------------------------------------------------
# Finding


def test_finding_is_plain_json_and_round_trips():
    finding = Finding(
        "zero-gradients",
        "fail",
        "one line",
        {"count": torch.tensor(3), "values": torch.tensor([1.0, float("nan")]), "nested": {"x": (1, 2)}},
        data={"hist": torch.arange(3)},
    )
    row = json.loads(json.dumps(finding.to_json()))
    assert row["anchor"] == "docs/findings.md#zero-gradients"
    assert row["evidence"] == {"count": 3, "values": [1.0, None], "nested": {"x": [1, 2]}}
    assert row["data"] == {"hist": [0, 1, 2]}
    assert Finding.from_json(row).to_json() == row
    with pytest.raises(ValueError):
        Finding("x", "maybe", "bad status")
    with pytest.raises(ValueError):
        Finding("x", "pass", "two\nlines")
    with pytest.raises(TypeError):
        plain(object())
    assert skipped("eps-sweep", "why").status == "skipped"


# --------------------------------------------------------------------------------------------------------------
# The clean model: no masking finding fails


def test_clean_model_raises_no_masking_failure(model, data, tmp_path):
    x, y = data
    defense = Undefended(model)
    suite = suite_outcomes(defense, x, y, [FGSM(), APGD(n_iter=20)], tmp_path)
    assert sum(suite.worst_case_robust()) <= 0.05 * N  # an undefended model falls to ~0%
    findings = run_diagnostics(defense, x, y, THREAT, suite, seed=SEED, n=N, config=FAST, progress=False)
    assert [f.id for f in findings] == ALL_IDS
    got = statuses(findings)
    unstable = by_id(findings)["ioaf-unstable-predictions"].evidence["metric"]
    assert got == {
        "no-gradient-path": "pass",
        "zero-gradients": "pass",
        "nonfinite-gradients": "pass",
        "dead-zone-occupancy": "skipped",
        "surrogate-disagreement": "skipped",
        "finite-difference-mismatch": "pass",
        "loss-landscape": "pass",
        "blackbox-beats-whitebox": "skipped",
        "transfer-beats-whitebox": "skipped",
        "single-step-beats-iterative": "pass",
        "adaptive-gap": "skipped",
        "randomized": "pass",
        "probabilities-not-logits": "pass",
        "gradient-in-forward": "pass",
        "train-mode": "pass",
        "unbounded-attack": "pass",
        "eps-sweep": "pass",
        "more-steps-help": "pass",
        "ioaf-unavailable-gradients": "pass",
        "ioaf-unstable-predictions": "warn" if unstable >= UNSTABLE_WARN else "pass",
        "ioaf-silent-success": "pass",
        "ioaf-incomplete-optimization": "pass",
        "ioaf-transfer-failure": "skipped",
        "ioaf-unconstrained-failure": "pass",
        "binarization-test": "pass",
        "attack-convergence": "skipped",
        "static-model-gain": "skipped",
        "layer-attribution": "skipped",
        "gradient-repeatability": "pass",
    }
    # A non-robust model's margins do move under noise: the metric is a warning-only reading, asserted as a
    # number well inside (0, 1) rather than as a status on one side of its threshold.
    assert 0.05 < by_id(findings)["ioaf-unstable-predictions"].evidence["metric"] < 0.8
    result = verdict(findings, suite, {"randomized": False})
    assert result["gradient_masking"] == "not_detected"
    assert result["drivers"] == [] and result["other_failures"] == []
    assert result["randomized"] is False
    assert result["trustworthy_robust_accuracy"] == sum(suite.worst_case_robust()) / N
    assert result["claim_at_risk"] == "no"
    assert json.loads(json.dumps([f.to_json() for f in findings]))  # everything is JSON
    found = by_id(findings)
    assert len(found["zero-gradients"].data["l2_norms"]) == N
    profile = found["loss-landscape"].data["profiles"]["gradient"]
    assert len(profile) == FAST.landscape_samples and len(profile[0]) == FAST.landscape_points
    assert len(found["loss-landscape"].data["surface"]["loss"]) == FAST.surface_points
    sweep = found["eps-sweep"].data
    assert sweep["eps"] == pytest.approx([0.0, 0.05, 0.1, 0.4])
    assert sweep["accuracy_exact"][-1] <= 0.1


def test_without_samples_only_the_comparisons_run(model, data):
    x, y = data
    suite = _outcomes([True] * 40, {"apgd-ce": [False] * 40, "square": [i < 8 for i in range(40)]})
    findings = run_diagnostics(Undefended(model), x, y, THREAT, suite, n=0, progress=False)
    assert [f.id for f in findings] == ALL_IDS
    assert {f.id: f.status for f in findings if f.status != "skipped"} == {"blackbox-beats-whitebox": "fail"}
    assert "--diagnostics-n 0" in by_id(findings)["zero-gradients"].message
    assert verdict(findings, suite)["gradient_masking"] == "suspected"


def test_diagnostics_are_reproducible(model, data):
    x, y = data
    defense = Undefended(model)
    only = ("gradients", "finite-differences", "landscape", "ioaf-unstable")
    first = run_diagnostics(defense, x, y, THREAT, seed=3, n=16, config=FAST, progress=False, only=only)
    second = run_diagnostics(defense, x, y, THREAT, seed=3, n=16, config=FAST, progress=False, only=only)
    assert [f.to_json() for f in first] == [f.to_json() for f in second]
    assert all("seed" in f.evidence for f in first)


# --------------------------------------------------------------------------------------------------------------
# Defenses masked on purpose


def test_input_quantization_has_zero_and_unavailable_gradients(model, data, tmp_path):
    x, y = data
    defense = InputQuantization(model, bits=3)
    found = by_id(
        probe("gradients", defense, x, y, config=FAST)
        + probe("ioaf-gradients", defense, x, y, config=FAST)
        + probe("surrogates", defense, x, y, config=FAST)
        + probe("finite-differences", defense, x, y, config=FAST)
        + probe("landscape", defense, x, y, config=FAST)
        + probe("ioaf-unconstrained", defense, x, y, config=FAST)
    )
    assert statuses(found.values()) == {
        "zero-gradients": "fail",
        "nonfinite-gradients": "pass",
        "ioaf-unavailable-gradients": "fail",
        "surrogate-disagreement": "fail",
        "finite-difference-mismatch": "fail",
        "loss-landscape": "warn",
        "ioaf-unconstrained-failure": "fail",
    }
    assert found["zero-gradients"].evidence["zero_sample_count"] == N
    assert found["surrogate-disagreement"].evidence["median_cosine"] == 0.0
    assert found["ioaf-unconstrained-failure"].evidence["failure_fraction"] == 1.0
    # The straight-through attack breaks what exact APGD cannot: the adaptive gap.
    suite = suite_outcomes(defense, x, y, [APGD(n_iter=10), APGD(n_iter=10, surrogate="identity")], tmp_path)
    (gap,) = comparisons.check_adaptive_gap(suite)
    assert gap.status == "fail"
    assert gap.evidence["count"] >= 0.2 * N and gap.evidence["p_value"] < 1e-6
    assert set(gap.evidence["per_attack"]) == {"apgd-ce+bpda-identity@iters=10"}
    result = verdict(list(found.values()) + [gap], suite, {"randomized": False})
    assert result["gradient_masking"] == "suspected"
    assert {d["id"] for d in result["drivers"]} >= {"zero-gradients", "adaptive-gap", "ioaf-unavailable-gradients"}


def test_gradient_killing_layer(model, data):
    x, y = data
    defense = Undefended(KillGradients(model))
    found = by_id(
        probe("gradients", defense, x, y, config=FAST)
        + probe("ioaf-gradients", defense, x, y, config=FAST)
        + probe("finite-differences", defense, x, y, config=FAST)
        + probe("unbounded", defense, x, y, config=FAST)
    )
    assert statuses(found.values()) == {
        "zero-gradients": "fail",
        "nonfinite-gradients": "pass",
        "ioaf-unavailable-gradients": "fail",
        "finite-difference-mismatch": "fail",
        "unbounded-attack": "fail",
    }
    assert found["finite-difference-mismatch"].evidence["median_relative_error"] == pytest.approx(1.0)
    # Symptoms alone decide nothing: without attack outcomes to back them the verdict cannot be reached.
    alone = verdict(list(found.values()))
    assert alone["gradient_masking"] == "inconclusive" and alone["drivers"] == []
    assert "no attack outcomes" in alone["undecided"][-1]


def test_saturated_softmax_underflows_to_zero_gradients(model, data):
    x, y = data
    defense = Undefended(ScaledLogits(model))
    found = by_id(probe("gradients", defense, x, y, config=FAST) + probe("probabilities", defense, x, y, config=FAST))
    assert statuses(found.values()) == {
        "zero-gradients": "fail",
        "nonfinite-gradients": "pass",
        "probabilities-not-logits": "pass",
    }
    # A float32 softmax underflows once the scaled margin passes ~87-104 (with or without denormals): samples far
    # beyond that lose their whole gradient, samples far below it (misclassified ones included) keep it. Samples
    # near the edge may go either way on another CPU, so they are not asserted.
    with torch.no_grad():
        logits = model(x)
    top2 = logits.topk(2, 1).values
    scaled_margin = torch.where(
        logits.argmax(1) == y, (top2[:, 0] - top2[:, 1]) * 1e4, torch.full_like(top2[:, 0], -1.0)
    )
    zero = torch.tensor(found["zero-gradients"].data["l2_norms"]) == 0
    assert zero[scaled_margin > 300].all() and (scaled_margin > 300).sum() >= N // 2
    assert not zero[scaled_margin < 30].any() and (scaled_margin < 30).sum() >= 1


def test_meansparse_at_large_alpha(model, data, fmnist):
    x, y = data
    train, _ = fmnist
    defense = meansparse(model, train, alpha=1.0)
    found = by_id(
        probe("dead-zone", defense, x, y, config=FAST)
        + probe("surrogates", defense, x, y, config=FAST)
        + probe("finite-differences", defense, x, y, config=FAST)
        + probe("gradients", defense, x, y, config=FAST)
    )
    assert statuses(found.values()) == {
        "dead-zone-occupancy": "fail",
        "surrogate-disagreement": "fail",
        "finite-difference-mismatch": "fail",
        "zero-gradients": "pass",
        "nonfinite-gradients": "pass",
    }
    occupancy = found["dead-zone-occupancy"]
    assert occupancy.evidence["mean_occupancy"] > 0.5
    assert occupancy.data["layers"] == [name for name, _ in defense.layers]
    assert set(found["surrogate-disagreement"].evidence["surrogates"]) == {"identity", "smooth"}
    assert verdict(list(found.values()))["gradient_masking"] == "inconclusive"  # symptoms, no attacks to back them
    # Transfer from the base model (alpha = 0) is judged on the defense, through run_diagnostics.
    (transfer,) = run_diagnostics(
        defense, x, y, THREAT, seed=SEED, n=N, config=FAST, progress=False, only=("ioaf-transfer",)
    )
    assert transfer.status in ("pass", "warn")
    assert transfer.evidence["surrogate"] == "base model (MeanSparse alpha = 0)"
    assert transfer.evidence["adversarial_on_surrogate"] > 0


def test_meansparse_at_alpha_zero_is_clean(model, data, fmnist):
    """The same operator switched off: no dead zone, surrogates agree with the exact gradient exactly."""
    x, y = data
    train, _ = fmnist
    defense = meansparse(model, train, alpha=0.0)
    found = by_id(
        probe("dead-zone", defense, x, y, config=FAST)
        + probe("surrogates", defense, x, y, config=FAST)
        + probe("finite-differences", defense, x, y, config=FAST)
    )
    assert statuses(found.values()) == {
        "dead-zone-occupancy": "pass",
        "surrogate-disagreement": "pass",
        "finite-difference-mismatch": "pass",
    }
    assert found["dead-zone-occupancy"].evidence["mean_occupancy"] == 0.0
    assert found["surrogate-disagreement"].evidence["median_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_random_noise(model, data):
    x, y = data
    declared = RandomNoise(model, sigma=0.2, seed=1)
    # The unstable-predictions metric of this weakly trained model sits at 0.2-0.3 without noise and near the 0.4
    # warning line with sigma 0.2, on either side depending on the CPU and thread count; sigma 1.0 puts it at
    # 0.7, far above.
    loud = RandomNoise(model, sigma=1.0, seed=1)
    found = by_id(probe("randomized", declared, x, y, config=FAST) + probe("ioaf-unstable", loud, x, y, config=FAST))
    assert statuses(found.values()) == {"randomized": "warn", "ioaf-unstable-predictions": "warn"}
    assert found["randomized"].evidence["observed"] is True
    assert found["randomized"].evidence["prediction_flip_count"] > 0
    # Reseeded before each forward, the noise is common to both sides of a finite difference: no false alarm.
    (fd,) = probe("finite-differences", declared, x, y, config=FAST)
    assert fd.status == "pass"
    (steady,) = probe("ioaf-unstable", Undefended(model), x, y, config=FAST)
    assert steady.status == "pass"
    assert found["ioaf-unstable-predictions"].evidence["metric"] > steady.evidence["metric"] + 0.25
    # Declared randomness is handled by EOT: randomized, but not by itself masking.
    result = verdict(list(found.values()), facts={"randomized": declared.randomized})
    assert result["randomized"] is True and result["gradient_masking"] == "not_detected"
    # Randomness the defense does not declare means the attacks ran without EOT: a failure.
    hidden = HiddenNoise(model, sigma=0.2, seed=1)
    (undeclared,) = probe("randomized", hidden, x, y, config=FAST)
    assert undeclared.status == "fail"
    result = verdict([undeclared], facts={"randomized": hidden.randomized})
    assert result["randomized"] is True and result["gradient_masking"] == "inconclusive"  # no attacks to back it


def test_probabilities_gradient_in_forward_and_train_mode(model, data):
    x, y = data
    (probabilities,) = probe("probabilities", Undefended(Softmaxed(model)), x, y)
    assert probabilities.status == "fail"
    (dynamic,) = probe("gradient-in-forward", Undefended(GradientInForward(model)), x, y)
    assert dynamic.status == "fail"
    assert dynamic.evidence["autograd_calls"] == ["torch.autograd.grad"]
    assert torch.autograd.grad.__module__ == "torch.autograd"  # the recording wrapper is gone again

    defense = Undefended(model)
    bn = defense.model.stem[1]
    bn.train()  # a BatchNorm left in training mode: batch statistics, and a batch-dependent output
    try:
        (train_mode,) = probe("train-mode", defense, x, y, config=None)
    finally:
        bn.eval()
    assert train_mode.status == "fail"
    assert train_mode.evidence["training_modules"] == ["model.stem.1"]
    assert train_mode.evidence["batch_dependence"] > 1e-3
    (clean,) = probe("train-mode", defense, x, y, config=None)
    assert clean.status == "pass"


def test_a_check_that_raises_becomes_skipped_and_the_others_survive(model, data):
    x, y = data
    defense = Undefended(ExplodingBackward(model))
    findings = run_diagnostics(
        defense,
        x,
        y,
        THREAT,
        seed=SEED,
        n=8,
        config=FAST,
        progress=False,
        only=("gradients", "probabilities", "ioaf-gradients"),
    )
    got = by_id(findings)
    assert statuses(findings) == {
        "zero-gradients": "skipped",
        "nonfinite-gradients": "skipped",
        "probabilities-not-logits": "pass",
        "ioaf-unavailable-gradients": "fail",
    }
    assert "RuntimeError" in got["zero-gradients"].evidence["reason"]
    assert got["ioaf-unavailable-gradients"].evidence["exception"] == "RuntimeError"


# --------------------------------------------------------------------------------------------------------------
# Comparisons over stored results (pure; hand-made store rows through the real Outcomes)

ATTRIBUTES = {
    "apgd-ce": {"gradient": "exact"},
    "fgsm": {"gradient": "exact", "single_step": True},
    "square": {"gradient": "none"},
    "transfer-base:apgd-ce": {"gradient": "transfer:base"},
    "apgd-ce+bpda-identity": {"gradient": "bpda-identity"},
    "apgd-ce+bpda-smooth-T0.1": {"gradient": "bpda-smooth-T0.1"},
    "autoattack-standard": {
        "gradient": "exact",
        "parts": {"apgd-ce": {"gradient": "exact"}, "apgd-t": {"gradient": "exact"}, "square": {"gradient": "none"}},
    },
}


def _outcomes(
    clean_correct: list[bool], attacks: dict[str, list[bool | None]], broken_by: dict | None = None, mode: str = "full"
) -> Outcomes:
    """Outcomes from hand-made store rows: `attacks` maps a label to per-sample success, None = not attacked."""
    n = len(clean_correct)
    clean = {
        "attack": "clean",
        "batch": 0,
        "labels": [0] * n,
        "prediction": [0] * n,
        "draws_correct": [int(c) for c in clean_correct],
        "draws": 1,
    }
    rows = []
    for label, success in attacks.items():
        index = [i for i in range(n) if clean_correct[i] and success[i] is not None]
        autoattack = broken_by and label.startswith("autoattack")
        extra = {"broken_by": [broken_by.get(i, "") for i in index]} if autoattack else {}
        rows.append(
            {
                "attack": label,
                "batch": 0,
                "indices": index,
                "attributes": ATTRIBUTES[label],
                "status": ["broken" if success[i] else "held" for i in index],
                "distance": [0.0] * len(index),
                "margin": [0.0] * len(index),
                "draws_correct": [0 if success[i] else 1 for i in index],
                "draws": 1,
                "n_forward": 0.0,
                "n_backward": 0.0,
                "seconds": 0.0,
                "violations": 0,
                "extra": extra,
            }
        )
    return Outcomes.from_rows(clean, rows, list(attacks), mode)


def test_blackbox_beats_whitebox_is_a_paired_test():
    n = 200
    correct = [True] * 180 + [False] * 20
    none = [False] * n

    def broke(indices):  # noqa: ANN001, ANN202 - untyped by design in this script/test
        return [i in indices for i in range(n)]

    quiet = _outcomes(correct, {"apgd-ce": none, "square": none})
    assert comparisons.check_blackbox_beats_whitebox(quiet)[0].status == "pass"
    # two samples at the boundary are chance (p = 0.25): a warning, not a failure
    (two,) = comparisons.check_blackbox_beats_whitebox(_outcomes(correct, {"apgd-ce": none, "square": broke({3, 4})}))
    assert two.status == "warn" and two.evidence["p_value"] == pytest.approx(0.25)
    many = _outcomes(correct, {"apgd-ce": none, "square": broke(set(range(3, 13)))})
    (finding,) = comparisons.check_blackbox_beats_whitebox(many)
    assert finding.status == "fail" and finding.evidence["p_value"] < 0.001
    assert finding.evidence["count"] == 10 and finding.evidence["indices"] == list(range(3, 13))
    assert finding.evidence["paired"] == 180  # misclassified samples are not paired
    # ten one way and ten the other: no evidence that either is stronger
    balanced = _outcomes(correct, {"apgd-ce": broke(set(range(20, 30))), "square": broke(set(range(3, 13)))})
    assert comparisons.check_blackbox_beats_whitebox(balanced)[0].status == "warn"
    # misclassified-on-clean samples never count
    assert (
        comparisons.check_blackbox_beats_whitebox(
            _outcomes(correct, {"apgd-ce": none, "square": broke(set(range(185, 200)))})
        )[0].status
        == "pass"
    )
    assert comparisons.check_blackbox_beats_whitebox(_outcomes(correct, {"apgd-ce": none}))[0].status == "skipped"


def test_autoattack_square_part_counts_as_black_box():
    """AutoAttack's own Square check: samples AutoAttack broke with Square are black-box successes; its later
    parts never ran on the samples an earlier part broke, and those are not counted as Square failures."""
    n = 100
    success = [i < 20 for i in range(n)]
    broken_by = {i: ("apgd-ce" if i < 10 else "square") for i in range(20)}
    suite = _outcomes([True] * n, {"autoattack-standard": success}, broken_by)
    assert suite.status["autoattack-standard/square"][0] == "not_run:cascade"
    assert suite.status["autoattack-standard/apgd-t"][15] == "held"
    (finding,) = comparisons.check_blackbox_beats_whitebox(suite)
    assert finding.status == "fail"
    assert finding.evidence["indices"] == list(range(10, 20))
    assert finding.evidence["paired"] == 90


def test_transfer_and_single_step_comparisons():
    n = 100
    correct = [True] * n
    apgd = [i < 20 for i in range(n)]
    fgsm = [i < 20 or 50 <= i < 58 for i in range(n)]
    transfer = [i < 20 or i == 60 for i in range(n)]
    suite = _outcomes(correct, {"fgsm": fgsm, "apgd-ce": apgd, "transfer-base:apgd-ce": transfer})
    (single,) = comparisons.check_single_step_beats_iterative(suite)
    assert single.status == "fail" and single.evidence["indices"] == list(range(50, 58))
    (moved,) = comparisons.check_transfer_beats_whitebox(suite)
    # FGSM is white-box too: sample 60 is the only one transfer found alone
    assert moved.status == "warn" and moved.evidence["indices"] == [60]
    assert comparisons.check_transfer_beats_whitebox(_outcomes(correct, {"apgd-ce": apgd}))[0].status == "skipped"
    assert comparisons.check_single_step_beats_iterative(_outcomes(correct, {"apgd-ce": apgd}))[0].status == "skipped"


def test_cascade_never_counts_not_run_as_missed():
    """FGSM first in cascade mode: APGD never sees what FGSM broke, so FGSM cannot 'beat' it there."""
    n = 200
    fgsm = [i < 150 for i in range(n)]
    apgd = [None if i < 150 else i < 190 for i in range(n)]
    suite = _outcomes([True] * n, {"fgsm": fgsm, "apgd-ce": apgd}, mode="cascade")
    assert suite.status["apgd-ce"][0] == "not_run:cascade"
    (single,) = comparisons.check_single_step_beats_iterative(suite)
    assert single.status == "pass" and single.evidence["paired"] == 50
    assert suite.robust_alone("apgd-ce") is None  # ran on survivors only: no accuracy "alone"
    assert suite.robust_alone("fgsm") == 50


def test_adaptive_gap():
    n = 200
    correct = [i < 160 for i in range(n)]
    exact = [i < 60 for i in range(n)]
    bpda = [i < 60 or 80 <= i < 88 for i in range(n)]
    suite = _outcomes(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": bpda, "apgd-ce+bpda-smooth-T0.1": exact})
    (gap,) = comparisons.check_adaptive_gap(suite)
    assert gap.status == "fail" and gap.evidence["count"] == 8
    assert gap.evidence["strongest_adaptive"] == "apgd-ce+bpda-identity"
    one = _outcomes(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": [i < 60 or i == 80 for i in range(n)]})
    assert comparisons.check_adaptive_gap(one)[0].status == "warn"
    same = _outcomes(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": exact})
    assert comparisons.check_adaptive_gap(same)[0].status == "pass"
    assert comparisons.check_adaptive_gap(_outcomes(correct, {"apgd-ce": exact}))[0].status == "skipped"
    # a sample the adaptive attack broke but that was misclassified on clean inputs is no gap
    wrong_only = _outcomes(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": [i < 60 or i >= 170 for i in range(n)]})
    assert comparisons.check_adaptive_gap(wrong_only)[0].status == "pass"


# --------------------------------------------------------------------------------------------------------------
# Verdict and documentation


def test_verdict_rules():
    n = 100
    suite = _outcomes(
        [True] * n,
        {"autoattack-standard": [i < 30 for i in range(n)], "apgd-ce+bpda-identity": [i < 50 for i in range(n)]},
        {i: "apgd-ce" for i in range(30)},
    )
    warn_only = [
        Finding("adaptive-gap", "warn", "one sample"),
        Finding("train-mode", "fail", "BN in train mode"),
        skipped("eps-sweep", "not run"),
    ]
    result = verdict(warn_only, suite)
    # No masking symptom, but 20 samples only the other attack broke (p ~ 1e-6): the claim is at risk.
    assert result["gradient_masking"] == "not_detected" and result["claim_at_risk"] == "yes"
    assert result["drivers"] == []
    assert [d["id"] for d in result["other_failures"]] == ["train-mode"]
    assert result["skipped"] == ["eps-sweep"]
    assert result["trustworthy_robust_accuracy"] == pytest.approx(0.5)
    assert result["beyond_autoattack"]["only_others_broke"] == 20
    assert "50.0%" in result["summary"]
    # A symptom alone is a warning; backed by an attack gap it makes masking suspected.
    symptom = Finding("zero-gradients", "fail", "3 samples")
    alone = verdict(warn_only + [symptom], suite)
    assert alone["gradient_masking"] == "not_detected" and alone["unbacked_symptoms"] == ["zero-gradients"]
    suspected = verdict(warn_only + [symptom, Finding("blackbox-beats-whitebox", "fail", "9 samples")], suite)
    assert suspected["gradient_masking"] == "suspected" and suspected["claim_at_risk"] == "yes"
    assert [d["id"] for d in suspected["drivers"]] == ["blackbox-beats-whitebox", "zero-gradients"]  # gaps first
    assert suspected["backed_by"] == ["blackbox-beats-whitebox"] and suspected["unbacked_symptoms"] == []
    assert "upper bound" in suspected["summary"]
    # An attack gap, but nothing left robust: not a claim at risk.
    broken_all = _outcomes([True] * n, {"autoattack-standard": [True] * n}, {i: "apgd-ce" for i in range(n)})
    zero = verdict([Finding("adaptive-gap", "fail", "9 samples")], broken_all)
    assert zero["gradient_masking"] == "suspected" and zero["claim_at_risk"] == "no"
    # A masking check that raised, or an attack that had not converged: inconclusive, never a clean bill.
    errored = verdict([skipped("zero-gradients", "the gradients probe raised RuntimeError", error=True)], broken_all)
    assert errored["gradient_masking"] == "inconclusive" and errored["claim_at_risk"] == "unknown"
    unconverged = verdict([Finding("attack-convergence", "fail", "still falling")], broken_all)
    assert unconverged["gradient_masking"] == "inconclusive"
    assert verdict([Finding("more-steps-help", "warn", "10 < 100")], broken_all)["gradient_masking"] == "not_detected"
    few = _outcomes([True] * 10, {"autoattack-standard": [False] * 10})
    assert verdict([], few)["gradient_masking"] == "inconclusive"
    quiet = verdict([], _outcomes([True] * n, {"autoattack-standard": [False] * n}))
    assert quiet["gradient_masking"] == "not_detected" and quiet["claim_at_risk"] == "no"
    assert verdict([])["trustworthy_robust_accuracy"] is None


def test_every_finding_is_documented():
    import pathlib

    from audit.checks.registry import markdown_table

    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "findings.md").read_text()
    headings = {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}
    missing = {check.id for check in checks()} - headings
    assert not missing, f"docs/findings.md lacks sections for {sorted(missing)}"
    assert markdown_table() in text, "docs/findings.md's table of checks differs from audit/checks/registry.py"
    assert set(meanings("masking")) | set(meanings("other")) <= {check.id for check in checks()}
    assert {check.decides for check in checks()} == {"masking", "symptom", "other", "none"}
