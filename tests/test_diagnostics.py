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
from audit.data import FASHION_MNIST_DIR, load_dataset
from audit.diagnostics import CHECKS, MASKING, OTHER, DiagnosticsConfig, Finding, run_diagnostics, verdict
from audit.diagnostics import comparisons, gradients, ioaf, landscape, sanity
from audit.diagnostics.finding import plain, skipped
from audit.runner import AttackSummary, SuiteResult, run_suite
from defenses.calibrate import calibrate
from defenses.models.demo_cnn import DemoCNN
from defenses.protocol import InputQuantization, MeanSparseDefense, RandomNoise, Undefended
from defenses.sparsify import sparsify

THREAT = ThreatModel("Linf", 0.1)
N = 64
SEED = 0
FAST = DiagnosticsConfig(
    fd_directions=3, landscape_samples=4, landscape_points=11, landscape_random_directions=1, surface_points=5,
    apgd_iterations=10, eps_multipliers=(0.5, 1.0, 4.0), more_steps=(5, 25), more_steps_samples=32,
    unstable_samples=32, unstable_draws=50, pgd_steps=20, unconstrained_steps=20,
)
ALL_IDS = [finding_id for check in CHECKS for finding_id in check.ids]


# --------------------------------------------------------------------------------------------------------------
# Models masked on purpose


class _ZeroBackward(torch.autograd.Function):
    """Identity forward, zero backward: the classic gradient-killing layer."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return torch.zeros_like(grad)


class KillGradients(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_ZeroBackward.apply(x))


class ScaledLogits(nn.Module):
    """Logits times 1e4: softmax saturates and CE gradients underflow to exactly zero."""

    def __init__(self, model: nn.Module, scale: float = 1e4) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


class Softmaxed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(1)


class GradientInForward(nn.Module):
    """A 'dynamic' defense: one gradient step of purification inside forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            energy = self.model(z).logsumexp(1).sum()
            (grad,) = torch.autograd.grad(energy, z)
        return self.model((x + 0.01 * grad.sign()).clamp(0, 1))


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
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_MNIST_DIR}")
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
    finding = Finding("zero-gradients", "fail", "one line",
                      {"count": torch.tensor(3), "values": torch.tensor([1.0, float("nan")]), "nested": {"x": (1, 2)}},
                      data={"hist": torch.arange(3)})
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


def test_clean_model_raises_no_masking_failure(model, data):
    x, y = data
    defense = Undefended(model)
    suite = run_suite(defense, x, y, THREAT, [FGSM(), APGD(n_iter=20)], seed=SEED, progress=False)
    assert suite.worst_case_robust_accuracy <= 0.05  # an undefended model falls to ~0%
    findings = run_diagnostics(defense, x, y, THREAT, suite, seed=SEED, n=N, config=FAST, progress=False)
    assert [f.id for f in findings] == ALL_IDS
    got = statuses(findings)
    assert got == {
        "zero-gradients": "pass", "nonfinite-gradients": "pass", "dead-zone-occupancy": "skipped",
        "surrogate-disagreement": "skipped", "finite-difference-mismatch": "pass", "loss-landscape": "pass",
        "blackbox-beats-whitebox": "skipped", "transfer-beats-whitebox": "skipped",
        "single-step-beats-iterative": "pass", "adaptive-gap": "skipped", "randomized": "pass",
        "probabilities-not-logits": "pass", "gradient-in-forward": "pass", "train-mode": "pass",
        "unbounded-attack": "pass", "eps-sweep": "pass", "more-steps-help": "pass",
        "ioaf-unavailable-gradients": "pass", "ioaf-unstable-predictions": got["ioaf-unstable-predictions"],
        "ioaf-silent-success": "pass", "ioaf-incomplete-optimization": "pass", "ioaf-transfer-failure": "skipped",
        "ioaf-unconstrained-failure": "pass",
    }
    assert got["ioaf-unstable-predictions"] in ("pass", "warn")  # a non-robust model's margins do move
    result = verdict(findings, suite, defense)
    assert result["gradient_masking"] == "not_detected"
    assert result["drivers"] == [] and result["other_failures"] == []
    assert result["randomized"] is False
    assert result["trustworthy_robust_accuracy"] == suite.worst_case_robust_accuracy
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
    suite = _suite([True] * 4, {"apgd-ce": [False] * 4, "square": [True, True, False, False]})
    findings = run_diagnostics(Undefended(model), x, y, THREAT, suite, n=0, progress=False)
    assert [f.id for f in findings] == ALL_IDS
    assert {f.id: f.status for f in findings if f.status != "skipped"} == {"blackbox-beats-whitebox": "fail"}
    assert "n = 0" in by_id(findings)["zero-gradients"].message
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


def test_input_quantization_has_zero_and_unavailable_gradients(model, data):
    x, y = data
    defense = InputQuantization(model, bits=3)
    found = by_id(gradients.check_gradients(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + ioaf.check_unavailable_gradients(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_surrogate_agreement(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_finite_differences(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + landscape.check_landscape(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + ioaf.check_unconstrained_failure(defense, x, y, THREAT, seed=SEED, config=FAST))
    assert statuses(found.values()) == {
        "zero-gradients": "fail", "nonfinite-gradients": "pass", "ioaf-unavailable-gradients": "fail",
        "surrogate-disagreement": "fail", "finite-difference-mismatch": "fail", "loss-landscape": "warn",
        "ioaf-unconstrained-failure": "fail",
    }
    assert found["zero-gradients"].evidence["zero_sample_count"] == N
    assert found["surrogate-disagreement"].evidence["median_cosine"] == 0.0
    assert found["ioaf-unconstrained-failure"].evidence["failure_fraction"] == 1.0
    # The straight-through attack breaks what exact APGD cannot: the adaptive gap.
    suite = run_suite(defense, x, y, THREAT, [APGD(n_iter=10), APGD(n_iter=10, surrogate="identity")], seed=SEED,
                      progress=False)
    (gap,) = comparisons.check_adaptive_gap(suite)
    assert gap.status == "fail"
    assert gap.evidence["gap_points"] >= 20
    assert set(gap.evidence["per_attack_accuracy"]) == {"apgd-ce", "apgd-ce+bpda-identity"}
    result = verdict(list(found.values()) + [gap], suite, defense)
    assert result["gradient_masking"] == "suspected"
    assert {d["id"] for d in result["drivers"]} >= {"zero-gradients", "adaptive-gap", "ioaf-unavailable-gradients"}


def test_gradient_killing_layer(model, data):
    x, y = data
    defense = Undefended(KillGradients(model))
    found = by_id(gradients.check_gradients(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + ioaf.check_unavailable_gradients(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_finite_differences(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + sanity.check_unbounded_attack(defense, x, y, THREAT, seed=SEED, config=FAST))
    assert statuses(found.values()) == {
        "zero-gradients": "fail", "nonfinite-gradients": "pass", "ioaf-unavailable-gradients": "fail",
        "finite-difference-mismatch": "fail", "unbounded-attack": "fail",
    }
    assert found["finite-difference-mismatch"].evidence["median_relative_error"] == pytest.approx(1.0)
    assert verdict(list(found.values()))["gradient_masking"] == "suspected"


def test_saturated_softmax_underflows_to_zero_gradients(model, data):
    x, y = data
    defense = Undefended(ScaledLogits(model))
    found = by_id(gradients.check_gradients(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + sanity.check_probabilities(defense, x, y, THREAT, seed=SEED, config=FAST))
    assert statuses(found.values()) == {"zero-gradients": "fail", "nonfinite-gradients": "pass",
                                        "probabilities-not-logits": "pass"}
    # A float32 softmax underflows once the scaled margin passes ~87-104 (with or without denormals): samples far
    # beyond that lose their whole gradient, samples far below it (misclassified ones included) keep it. Samples
    # near the edge may go either way on another CPU, so they are not asserted.
    with torch.no_grad():
        logits = model(x)
    top2 = logits.topk(2, 1).values
    scaled_margin = torch.where(logits.argmax(1) == y, (top2[:, 0] - top2[:, 1]) * 1e4, torch.full_like(top2[:, 0], -1.0))
    zero = torch.tensor(found["zero-gradients"].data["l2_norms"]) == 0
    assert zero[scaled_margin > 300].all() and (scaled_margin > 300).sum() >= N // 2
    assert not zero[scaled_margin < 30].any() and (scaled_margin < 30).sum() >= 1


def test_meansparse_at_large_alpha(model, data, fmnist):
    x, y = data
    train, _ = fmnist
    defense = meansparse(model, train, alpha=1.0)
    found = by_id(gradients.check_dead_zone(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_surrogate_agreement(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_finite_differences(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_gradients(defense, x, y, THREAT, seed=SEED, config=FAST))
    assert statuses(found.values()) == {
        "dead-zone-occupancy": "fail", "surrogate-disagreement": "fail", "finite-difference-mismatch": "fail",
        "zero-gradients": "pass", "nonfinite-gradients": "pass",
    }
    occupancy = found["dead-zone-occupancy"]
    assert occupancy.evidence["mean_occupancy"] > 0.5
    assert occupancy.data["layers"] == [name for name, _ in defense.layers]
    assert set(found["surrogate-disagreement"].evidence["surrogates"]) == {"identity", "smooth"}
    assert verdict(list(found.values()))["gradient_masking"] == "suspected"
    # Transfer from the base model (alpha = 0) is judged on the defense, through run_diagnostics.
    (transfer,) = run_diagnostics(defense, x, y, THREAT, seed=SEED, n=N, config=FAST, progress=False,
                                  only=("ioaf-transfer",))
    assert transfer.status in ("pass", "warn")
    assert transfer.evidence["surrogate"] == "base model (MeanSparse alpha = 0)"
    assert transfer.evidence["adversarial_on_surrogate"] > 0


def test_meansparse_at_alpha_zero_is_clean(model, data, fmnist):
    """The same operator switched off: no dead zone, surrogates agree with the exact gradient exactly."""
    x, y = data
    train, _ = fmnist
    defense = meansparse(model, train, alpha=0.0)
    found = by_id(gradients.check_dead_zone(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_surrogate_agreement(defense, x, y, THREAT, seed=SEED, config=FAST)
                  + gradients.check_finite_differences(defense, x, y, THREAT, seed=SEED, config=FAST))
    assert statuses(found.values()) == {"dead-zone-occupancy": "pass", "surrogate-disagreement": "pass",
                                        "finite-difference-mismatch": "pass"}
    assert found["dead-zone-occupancy"].evidence["mean_occupancy"] == 0.0
    assert found["surrogate-disagreement"].evidence["median_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_random_noise(model, data):
    x, y = data
    declared = RandomNoise(model, sigma=0.2, seed=1)
    # The unstable-predictions metric of this weakly trained model sits at 0.2-0.3 without noise and near the 0.4
    # warning line with sigma 0.2, on either side depending on the CPU and thread count; sigma 1.0 puts it at
    # 0.7, far above.
    loud = RandomNoise(model, sigma=1.0, seed=1)
    found = by_id(sanity.check_randomized(declared, x, y, THREAT, seed=SEED, config=FAST)
                  + ioaf.check_unstable_predictions(loud, x, y, THREAT, seed=SEED, config=FAST))
    assert statuses(found.values()) == {"randomized": "warn", "ioaf-unstable-predictions": "warn"}
    assert found["randomized"].evidence["observed"] is True
    assert found["randomized"].evidence["prediction_flip_count"] > 0
    # Reseeded before each forward, the noise is common to both sides of a finite difference: no false alarm.
    (fd,) = gradients.check_finite_differences(declared, x, y, THREAT, seed=SEED, config=FAST)
    assert fd.status == "pass"
    (steady,) = ioaf.check_unstable_predictions(Undefended(model), x, y, THREAT, seed=SEED, config=FAST)
    assert steady.status == "pass"
    assert found["ioaf-unstable-predictions"].evidence["metric"] > steady.evidence["metric"] + 0.25
    # Declared randomness is handled by EOT: randomized, but not by itself masking.
    result = verdict(list(found.values()), defense=declared)
    assert result["randomized"] is True and result["gradient_masking"] == "not_detected"
    # Randomness the defense does not declare means the attacks ran without EOT: a failure.
    hidden = HiddenNoise(model, sigma=0.2, seed=1)
    (undeclared,) = sanity.check_randomized(hidden, x, y, THREAT, seed=SEED, config=FAST)
    assert undeclared.status == "fail"
    result = verdict([undeclared], defense=hidden)
    assert result["randomized"] is True and result["gradient_masking"] == "suspected"


def test_probabilities_gradient_in_forward_and_train_mode(model, data):
    x, y = data
    (probabilities,) = sanity.check_probabilities(Undefended(Softmaxed(model)), x, y, THREAT, seed=SEED)
    assert probabilities.status == "fail"
    (dynamic,) = sanity.check_gradient_in_forward(Undefended(GradientInForward(model)), x, y, THREAT, seed=SEED)
    assert dynamic.status == "fail"
    assert dynamic.evidence["autograd_calls"] == ["torch.autograd.grad"]
    assert torch.autograd.grad.__module__ == "torch.autograd"  # the recording wrapper is gone again

    defense = Undefended(model)
    bn = defense.model.stem[1]
    bn.train()  # a BatchNorm left in training mode: batch statistics, and a batch-dependent output
    try:
        (train_mode,) = sanity.check_train_mode(defense, x, y, THREAT, seed=SEED)
    finally:
        bn.eval()
    assert train_mode.status == "fail"
    assert train_mode.evidence["training_modules"] == ["model.stem.1"]
    assert train_mode.evidence["batch_dependence"] > 1e-3
    (clean,) = sanity.check_train_mode(defense, x, y, THREAT, seed=SEED)
    assert clean.status == "pass"


def test_a_check_that_raises_becomes_skipped_and_the_others_survive(model, data):
    x, y = data
    defense = Undefended(ExplodingBackward(model))
    findings = run_diagnostics(defense, x, y, THREAT, seed=SEED, n=8, config=FAST, progress=False,
                               only=("gradients", "probabilities", "ioaf-gradients"))
    got = by_id(findings)
    assert statuses(findings) == {"zero-gradients": "skipped", "nonfinite-gradients": "skipped",
                                  "probabilities-not-logits": "pass", "ioaf-unavailable-gradients": "fail"}
    assert "RuntimeError" in got["zero-gradients"].evidence["reason"]
    assert got["ioaf-unavailable-gradients"].evidence["exception"] == "RuntimeError"


# --------------------------------------------------------------------------------------------------------------
# Comparisons over stored results (pure; hand-made SuiteResults)


def _suite(clean_correct: list[bool], attacks: dict[str, list[bool | None]], extra: dict | None = None) -> SuiteResult:
    n = len(clean_correct)
    summaries = {}
    for label, success in attacks.items():
        summaries[label] = AttackSummary(label, list(success), [0.0] * n, [0.0] * n,
                                         extra=(extra or {}).get(label, {}))
    return SuiteResult([0] * n, [0] * n, list(clean_correct), summaries)


def test_blackbox_beats_whitebox_thresholds():
    n = 100
    correct = [True] * 90 + [False] * 10
    none = [False] * n

    def square_on(indices):
        return [i in indices for i in range(n)]

    quiet = _suite(correct, {"apgd-ce": none, "square": none})
    one = _suite(correct, {"apgd-ce": none, "square": square_on({3})})
    many = _suite(correct, {"apgd-ce": none, "square": square_on({3, 4, 5})})
    also_white = _suite(correct, {"apgd-ce": square_on({3, 4, 5}), "square": square_on({3, 4, 5})})
    assert comparisons.check_blackbox_beats_whitebox(quiet)[0].status == "pass"
    assert comparisons.check_blackbox_beats_whitebox(one)[0].status == "warn"
    (finding,) = comparisons.check_blackbox_beats_whitebox(many)
    assert finding.status == "fail"
    assert finding.evidence["count"] == 3 and finding.evidence["indices"] == [3, 4, 5]
    assert finding.evidence["points"] == pytest.approx(3.0)
    assert comparisons.check_blackbox_beats_whitebox(also_white)[0].status == "pass"
    # misclassified-on-clean samples never count
    assert comparisons.check_blackbox_beats_whitebox(
        _suite(correct, {"apgd-ce": none, "square": square_on({95, 96, 97})}))[0].status == "pass"
    assert comparisons.check_blackbox_beats_whitebox(_suite(correct, {"apgd-ce": none}))[0].status == "skipped"


def test_autoattack_square_part_counts_as_black_box():
    """AutoAttack's own Square check: samples AutoAttack broke with Square are black-box successes."""
    n = 50
    success = [i < 10 for i in range(n)]
    broken_by = {i: ("apgd-ce" if i < 7 else "square") for i in range(10)}
    suite = _suite([True] * n, {"autoattack-standard": success}, {"autoattack-standard": {"broken_by": broken_by}})
    (finding,) = comparisons.check_blackbox_beats_whitebox(suite)
    assert finding.status == "fail"
    assert finding.evidence["indices"] == [7, 8, 9]


def test_transfer_and_single_step_comparisons():
    n = 100
    correct = [True] * n
    apgd = [i < 20 for i in range(n)]
    fgsm = [i < 20 or i in (50, 51) for i in range(n)]
    transfer = [i < 20 or i == 60 for i in range(n)]
    suite = _suite(correct, {"fgsm": fgsm, "apgd-ce": apgd, "transfer-base:apgd-ce": transfer})
    (single,) = comparisons.check_single_step_beats_iterative(suite)
    assert single.status == "fail" and single.evidence["indices"] == [50, 51]
    (moved,) = comparisons.check_transfer_beats_whitebox(suite)
    # FGSM is white-box too: sample 60 is the only one transfer found alone
    assert moved.status == "warn" and moved.evidence["indices"] == [60]
    assert comparisons.check_transfer_beats_whitebox(_suite(correct, {"apgd-ce": apgd}))[0].status == "skipped"
    assert comparisons.check_single_step_beats_iterative(_suite(correct, {"apgd-ce": apgd}))[0].status == "skipped"


def test_adaptive_gap_in_points():
    n = 100
    correct = [i < 80 for i in range(n)]
    exact = [i < 30 for i in range(n)]
    bpda = [i < 30 or i in (40, 41, 42) for i in range(n)]
    suite = _suite(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": bpda, "apgd-ce+bpda-smooth-T0.1": exact})
    (gap,) = comparisons.check_adaptive_gap(suite)
    assert gap.status == "fail"
    assert gap.evidence["gap_points"] == pytest.approx(3.0)
    assert gap.evidence["exact_robust_accuracy"] == pytest.approx(0.5)
    assert gap.evidence["combined_robust_accuracy"] == pytest.approx(0.47)
    assert gap.evidence["per_attack_accuracy"]["apgd-ce+bpda-identity"] == pytest.approx(0.47)
    one = _suite(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": [i < 30 or i == 40 for i in range(n)]})
    assert comparisons.check_adaptive_gap(one)[0].status == "warn"
    same = _suite(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": exact})
    assert comparisons.check_adaptive_gap(same)[0].status == "pass"
    assert comparisons.check_adaptive_gap(_suite(correct, {"apgd-ce": exact}))[0].status == "skipped"
    # a sample the adaptive attack broke but that was misclassified on clean inputs is no gap
    wrong_only = _suite(correct, {"apgd-ce": exact, "apgd-ce+bpda-identity": [i < 30 or i >= 90 for i in range(n)]})
    assert comparisons.check_adaptive_gap(wrong_only)[0].status == "pass"


def test_attack_kinds():
    kinds = {label: comparisons.attack_kind(label) for label in (
        "apgd-ce", "apgd-ce+eot10", "autoattack-standard", "fgsm", "apgd-ce+bpda-identity",
        "apgd-t+bpda-smooth-T0.03", "transfer-base:apgd-ce", "square", "spatial-grid", "stadv")}
    assert kinds == {"apgd-ce": "exact", "apgd-ce+eot10": "exact", "autoattack-standard": "exact", "fgsm": "exact",
                     "apgd-ce+bpda-identity": "adaptive", "apgd-t+bpda-smooth-T0.03": "adaptive",
                     "transfer-base:apgd-ce": "transfer", "square": "blackbox", "spatial-grid": "other",
                     "stadv": "other"}


# --------------------------------------------------------------------------------------------------------------
# Verdict and documentation


def test_verdict_rules():
    suite = _suite([True] * 10, {"autoattack-standard": [i < 3 for i in range(10)],
                                 "apgd-ce+bpda-identity": [i < 5 for i in range(10)]})
    warn_only = [Finding("adaptive-gap", "warn", "one sample"), Finding("more-steps-help", "warn", "budget"),
                 Finding("train-mode", "fail", "BN in train mode"), skipped("eps-sweep", "not run")]
    result = verdict(warn_only, suite)
    assert result["gradient_masking"] == "not_detected"
    assert result["drivers"] == []
    assert [d["id"] for d in result["other_failures"]] == ["train-mode"]
    assert result["skipped"] == ["eps-sweep"]
    assert result["trustworthy_robust_accuracy"] == pytest.approx(0.5)
    assert result["claimed_robust_accuracy"] == {"attack": "autoattack-standard", "accuracy": pytest.approx(0.7)}
    assert "50.0%" in result["summary"] and "70.0%" in result["summary"]
    suspected = verdict(warn_only + [Finding("zero-gradients", "fail", "3 samples")], suite)
    assert suspected["gradient_masking"] == "suspected"
    assert [d["id"] for d in suspected["drivers"]] == ["zero-gradients"]
    assert "upper bound" in suspected["summary"]
    assert verdict([])["trustworthy_robust_accuracy"] is None


def test_every_finding_is_documented():
    import pathlib

    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "findings.md").read_text()
    headings = {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}
    ids = set(ALL_IDS)
    assert ids == set(MASKING) | set(OTHER)
    missing = ids - headings
    assert not missing, f"docs/findings.md lacks sections for {sorted(missing)}"
