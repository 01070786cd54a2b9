"""The held-out calibration's parts that need no model: the split by family, the threshold rule on synthetic
rows, and the verdict's rule that a symptom alone does not make masking suspected (fast, offline)."""

from __future__ import annotations

import pytest

from audit.checks import verdict
from audit.checks.finding import Finding
from audit.checks.registry import checks
from audit.outcomes import Outcomes
from benchmarks.calibration_set import EVALUATE, FAMILIES, FIT, MODELS, SPLIT, models_in
from benchmarks.calibration_thresholds import STATISTICS, Row, derive, flags, rate_text, score

# --------------------------------------------------------------------------------------------------------------
# The split


def test_split_is_by_family_and_the_evaluation_has_families_the_fitting_set_lacks():
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)
    assert {m.family for m in MODELS} == {f.name for f in FAMILIES}  # every model in a known family
    assert len({m.key for m in MODELS}) == len(MODELS)
    fit_families = {m.family for m in models_in(FIT)}
    held_families = {m.family for m in models_in(EVALUATE)}
    assert fit_families.isdisjoint(held_families)  # by family, never by instance
    assert len(held_families) >= 5
    for split in (FIT, EVALUATE):
        truths = [m.truth for m in models_in(split)]
        assert truths.count("sound") >= 6 and truths.count("masked") >= 6 and "open" not in truths
    assert sum(m.truth == "sound" for m in MODELS) >= 12 and sum(m.truth == "masked" for m in MODELS) >= 12
    # what the issue asks the evaluation to hold: sound models that look masked, two mechanisms at once, L2
    held = models_in(EVALUATE)
    assert any(m.norm == "L2" and m.truth == "sound" for m in held)
    assert any(m.norm == "L2" and m.truth == "masked" for m in held)
    assert {"straight-through quantizer", "JPEG-like rounding", "noise and rounding"} <= held_families
    assert all(SPLIT[m.family] != FIT for m in MODELS if m.norm == "L2")


def test_the_straight_through_models_round_forward_and_pass_the_gradient_unchanged():
    import torch

    from defenses.straight_through import JPEGRounding, STEQuantizer, dct_matrix

    basis = dct_matrix(28)
    assert torch.allclose(basis @ basis.T, torch.eye(28), atol=1e-5)  # orthonormal: the inverse is the transpose
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0), requires_grad=True)
    for model in (STEQuantizer(torch.nn.Identity(), bits=3), JPEGRounding(torch.nn.Identity(), step=0.1)):
        out = model(x)
        assert (out - x).abs().max() > 0.01  # the forward does change the input (it rounds)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (grad,) = torch.autograd.grad((out * weights).sum(), x)
        assert torch.equal(grad, weights)  # identity backward, exactly
    assert torch.equal(STEQuantizer(torch.nn.Identity(), bits=1)(torch.tensor([0.2, 0.7])), torch.tensor([0.0, 1.0]))


def test_the_gradient_in_forward_toy_has_the_exact_gradient_of_its_forward():
    """Why its family is `sound`: the purification step x + 0.01 sign(g(x)) is piecewise constant in x, so autograd's
    gradient equals the forward's own derivative wherever sign(g) does not flip (central differences, float64),
    and it is not the gradient of the plain model at x (the step does change where the gradient is taken)."""
    import torch

    from defenses.toys import GradientInForward

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()
    model = GradientInForward(net)
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    direction = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    weights = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def loss(z: torch.Tensor) -> torch.Tensor:
        return (model(z) * weights).sum()

    z = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(z), z)
    h = 1e-7
    with torch.no_grad():
        finite = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
    assert abs(finite.item() - (grad * direction).sum().item()) < 1e-6 * max(1.0, abs(finite.item()))
    z = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad((net(z) * weights).sum(), z)
    assert (plain - grad).abs().max() > 1e-4  # the step moves the point the gradient is taken at


# --------------------------------------------------------------------------------------------------------------
# The threshold rule


def _rows(sound: list[float | None], masked: list[float | None]) -> list[Row]:
    return [Row(f"s{i}", "sound", v) for i, v in enumerate(sound)] + [
        Row(f"m{i}", "masked", v) for i, v in enumerate(masked)
    ]


def test_threshold_is_halfway_between_the_highest_sound_and_the_lowest_masked_above_it():
    rows = _rows([0.05, 0.12, 0.3, None], [0.2, 0.9, 0.5, 1.0])
    threshold = derive(rows, higher_is_worse=True)
    assert threshold == pytest.approx(0.4)  # (0.3 + 0.5) / 2; 0.2 is below a sound value and cannot be caught
    rates = score(rows, threshold, higher_is_worse=True)
    assert (rates.false_alarms, rates.sound, rates.catches, rates.masked) == (0, 3, 3, 4)
    # mirrored for a statistic where lower is worse (a cosine)
    cosines = _rows([0.99, 0.95, 0.8], [0.1, 0.0, 0.85, 0.6])
    assert derive(cosines, higher_is_worse=False) == pytest.approx(0.7)
    assert score(cosines, 0.7, higher_is_worse=False).catches == 3
    # nothing masked beyond the sound models: the rule cannot fit, and says so
    assert derive(_rows([0.5, 0.9], [0.1, 0.9]), higher_is_worse=True) is None
    assert derive(_rows([None], [0.5]), higher_is_worse=True) is None


def test_scoring_counts_both_sides_of_the_threshold_and_the_intervals_are_exact():
    assert flags(0.6, 0.6, True) and not flags(0.6, 0.6, True, inclusive=False)
    assert flags(0.5, 0.7, False) and not flags(0.71, 0.7, False)
    rates = score(_rows([0.1, 0.7], [0.8, 0.2, None]), 0.6, higher_is_worse=True)
    assert (rates.false_alarms, rates.sound, rates.catches, rates.masked) == (1, 2, 1, 2)
    low, high = rates.false_alarm_interval()
    assert low == pytest.approx(0.0126, abs=1e-3) and high == pytest.approx(0.9874, abs=1e-3)  # CP for 1 of 2
    assert rate_text(0, 6) == "0 of 6 (0 - 46%)"  # Clopper-Pearson upper bound for 0 of 6: 45.9%
    assert rate_text(0, 0) == "none measured"
    assert {s.check for s in STATISTICS} <= {c.id for c in checks()}


# --------------------------------------------------------------------------------------------------------------
# The verdict's rule: a symptom alone is a warning; an attack gap (or a failed binarization test) backs it

ATTRIBUTES = {
    "apgd-ce": {"gradient": "exact", "single_step": False, "threat_kind": "lp"},
    "square": {"gradient": "none", "single_step": False, "threat_kind": "lp"},
}


def _outcomes(n: int, broken: dict[str, set[int]]) -> Outcomes:
    clean = {
        "attack": "clean",
        "batch": 0,
        "labels": [0] * n,
        "prediction": [0] * n,
        "draws_correct": [1] * n,
        "draws": 1,
    }
    rows = [
        {
            "attack": label,
            "batch": 0,
            "indices": list(range(n)),
            "attributes": ATTRIBUTES[label],
            "status": ["broken" if i in hit else "held" for i in range(n)],
            "distance": [0.0] * n,
            "margin": [0.0] * n,
            "draws_correct": [0 if i in hit else 1 for i in range(n)],
            "draws": 1,
            "n_forward": 0.0,
            "n_backward": 0.0,
            "seconds": 0.0,
            "violations": 0,
            "extra": {},
        }
        for label, hit in broken.items()
    ]
    return Outcomes.from_rows(clean, rows, list(broken), "full")


FD = Finding("finite-difference-mismatch", "fail", "median 97%")
BINARIZATION = Finding("binarization-test", "fail", "2 of 10 found")
GAP = Finding("adaptive-gap", "fail", "9 samples only BPDA broke")


def test_a_symptom_alone_is_not_masking():
    outcomes = _outcomes(100, {"apgd-ce": set(range(40)), "square": set(range(40))})
    result = verdict([FD], outcomes)
    assert result["gradient_masking"] == "not_detected" and result["claim_at_risk"] == "no"
    assert result["drivers"] == [] and result["unbacked_symptoms"] == ["finite-difference-mismatch"]
    assert "no attack gap or binarization failure backs" in result["summary"]


def test_a_symptom_with_an_attack_gap_or_a_failed_binarization_test_is_masking():
    outcomes = _outcomes(100, {"apgd-ce": set(range(40)), "square": set(range(40))})
    backed = verdict([FD, GAP], outcomes)
    assert backed["gradient_masking"] == "suspected" and backed["claim_at_risk"] == "yes"  # 60 samples still held
    assert backed["backed_by"] == ["adaptive-gap"] and backed["unbacked_symptoms"] == []
    assert [d["id"] for d in backed["drivers"]] == ["adaptive-gap", "finite-difference-mismatch"]
    binarized = verdict([FD, BINARIZATION], outcomes)
    assert binarized["gradient_masking"] == "suspected" and binarized["backed_by"] == ["binarization-test"]
    # a failed binarization test with no symptom: the attack is too weak, masking undecided
    alone = verdict([BINARIZATION], outcomes)
    assert alone["gradient_masking"] == "inconclusive" and alone["claim_at_risk"] == "unknown"
    # an attack gap needs no symptom
    assert verdict([GAP], outcomes)["gradient_masking"] == "suspected"


def test_no_gradient_path_is_backed_by_what_the_other_attacks_break():
    no_path = Finding("no-gradient-path", "fail", "no gradient reaches the input")
    broken = verdict([no_path], _outcomes(100, {"square": set(range(30))}))
    assert broken["gradient_masking"] == "suspected" and broken["backed_by"] == ["no-gradient-path"]
    # 3 broken samples: p = 1/8, no gap shown; exact gradients never ran, so it is not a clean bill either
    few = verdict([no_path], _outcomes(100, {"square": {0, 1, 2}}))
    assert few["gradient_masking"] == "inconclusive" and few["drivers"] == []
    assert "broke only 3 samples" in few["undecided"][-1]
