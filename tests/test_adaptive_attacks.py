"""MeanSparse-specific attacks (attacks/adaptive.py) and the per-layer attribution (audit/probes/attribution.py):
names, schedules, exact forwards left untouched, thresholds restored, a continuation stage at alpha 0 being the
base model exactly, continuation against BPDA on a masked model, and the attribution's account."""

from __future__ import annotations

import copy

import pytest
import torch

from attacks.adaptive import (
    AnnealedSurrogate,
    DeadZoneEscape,
    ThresholdContinuation,
    anneal_temperatures,
    scaled_thresholds,
    threshold_scales,
)
from attacks.judge import judge
from attacks.losses import margin
from attacks.names import UnknownAttack, format_name, parse_name
from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.checks.attribution import attribution_table, judge_attribution
from audit.plan.suites import MECHANISM, STRONGEST_MECHANISM, plan_suite
from audit.probes.attribution import layer_groups, run_attribution
from defenses.adapters import MeanSparseDefense, as_defense
from defenses.calibrate import calibrate
from defenses.meansparse import meansparse_layers
from defenses.protocol import Undefended
from defenses.sparsify import sparsify
from tests.conftest import require_shipped

THREAT = ThreatModel("Linf", 0.1)
SMALL = "@stages=3,iters=4"  # cheap budgets for the default run


def cheap(name: str) -> str:
    """`name` at the default run's cheap budgets (the continuation's straight-through stage too)."""
    return name + SMALL + (",finish=4" if name.startswith("apgd-continuation") else "")


NEW = ["apgd-continuation-linear", "apgd-continuation-geometric", "apgd-anneal", "apgd-escape"]


@pytest.fixture(scope="module")
def meansparse():
    return require_shipped("demo-meansparse")


@pytest.fixture(scope="module")
def small(fmnist_test):
    return fmnist_test.images[:24], fmnist_test.labels[:24]


def thresholds(model: torch.nn.Module) -> list[torch.Tensor]:
    return [layer.threshold.detach().clone() for _, layer in meansparse_layers(model)]


def modes(model: torch.nn.Module) -> list[tuple[str, float]]:
    return [(layer.gradient_mode, layer.temperature) for _, layer in meansparse_layers(model)]


# -- names and schedules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, canonical",
    [
        ("apgd-continuation-linear", "apgd-continuation-linear"),
        ("apgd-continuation-geometric@iters=10,stages=4", "apgd-continuation-geometric@stages=4,iters=10"),
        ("apgd-anneal@restarts=2", "apgd-anneal@restarts=2"),
        ("apgd-continuation-linear@finish=0", "apgd-continuation-linear@finish=0"),
        ("apgd-continuation-linear@finish=50", "apgd-continuation-linear"),
        ("apgd-escape@weight=0.5", "apgd-escape@weight=0.5"),
        ("apgd-escape@weight=1", "apgd-escape"),
        ("apgd-escape+bpda-identity@weight=2.5,stages=3", "apgd-escape+bpda-identity@stages=3,weight=2.5"),
        ("apgd-continuation-linear+eot5", "apgd-continuation-linear+eot5"),
        ("apgd-anneal+survivors@iters=30", "apgd-anneal+survivors@iters=30"),
    ],
)
def test_names_round_trip(spec, canonical):
    attack = make_attack(spec)
    assert attack.label == canonical and make_attack(attack.label).label == canonical
    assert format_name(parse_name(canonical)) == canonical


@pytest.mark.parametrize(
    "spec",
    [
        "apgd-continuation-linear+bpda-identity",
        "apgd-anneal+bpda-smooth-T0.1",
        "apgd-escape@weight=0",
        "apgd-escape@weight=-1",
        "apgd-anneal@stages=0",
        "apgd-continuation-linear@iters=2.5",
        "apgd-continuation-linear@schedule=1",
        "apgd-continuation-linear@finish=-1",
        "apgd-anneal@finish=0",
        "apgd-continuation-geometric@stages=0",
    ],
)
def test_bad_names_are_refused(spec):
    with pytest.raises(UnknownAttack):
        make_attack(spec)


def test_the_continuation_ends_with_its_straight_through_stages(meansparse):
    defense = MeanSparseDefense(copy.deepcopy(meansparse))
    stages = make_attack("apgd-continuation-linear@stages=3,iters=7,finish=30").stages(defense)
    assert [(stage.describe, stage.n_iter) for stage in stages] == [
        ("thresholds x0", None),
        ("thresholds x0.5", None),
        ("thresholds x1", None),
        ("straight-through", 30),
    ]
    alone = make_attack("apgd-continuation-linear@stages=3,finish=0").stages(defense)
    assert [stage.describe for stage in alone] == [stage.describe for stage in stages[:3]]
    finish = make_attack("apgd-continuation-linear@stages=2").stages(defense)[-1]
    with finish.context():  # the backward is straight-through, the thresholds the real ones
        layers = meansparse_layers(defense.model)
        assert modes(defense.model) == [("identity", layer.temperature) for _, layer in layers]
        assert all(torch.equal(a, b) for a, b in zip(thresholds(defense.model), thresholds(meansparse)))
    assert all(mode == "exact" for mode, _ in modes(defense.model))


def test_a_continuation_of_one_stage_is_refused():
    with pytest.raises(ValueError):
        make_attack("apgd-continuation-linear@stages=1")


def test_schedules():
    assert threshold_scales("linear", 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert threshold_scales("geometric", 5) == [0.0, 0.125, 0.25, 0.5, 1.0]
    temperatures = anneal_temperatures(5)
    assert temperatures[0] == 1.0 and temperatures[-1] == pytest.approx(0.01, rel=1e-12)
    assert all(a > b for a, b in zip(temperatures, temperatures[1:]))
    assert DeadZoneEscape(weight=2.0, n_stages=3).weights() == [2.0, 1.0, 0.0]


def test_attributes_say_where_the_gradients_come_from():
    assert make_attack("apgd-continuation-geometric").gradient == "adaptive-continuation-geometric"
    assert make_attack("apgd-anneal").gradient == "bpda-smooth-anneal"
    assert make_attack("apgd-escape").gradient == "exact"
    assert make_attack("apgd-escape+bpda-identity").gradient == "bpda-identity"
    budget = make_attack("apgd-continuation-linear").attributes()["budget"]
    assert budget == {"stages": 5, "iters": 20, "restarts": 1, "finish": 50}


# -- the continuation's thresholds ----------------------------------------------------------------------------------
def test_a_continuation_stage_at_alpha_0_is_the_base_model_exactly(meansparse, small):
    x, _ = small
    defense = MeanSparseDefense(copy.deepcopy(meansparse))
    base = defense.base_model()
    before = thresholds(defense.model)
    with torch.no_grad():
        exact = defense(x)
        with scaled_thresholds(defense.model, 0.0):
            assert all(float(t) == 0.0 for t in thresholds(defense.model))
            at_zero = defense(x)
        with scaled_thresholds(defense.model, 1.0):
            at_one = defense(x)
        reference = base(x)
    assert torch.equal(at_zero, reference)  # bit for bit
    assert torch.equal(at_one, exact)
    assert not torch.equal(exact, reference)  # the defense is not its base: the test above means something
    assert all(torch.equal(a, b) for a, b in zip(thresholds(defense.model), before))


def test_thresholds_are_restored_bit_for_bit_after_an_exception(meansparse):
    model = copy.deepcopy(meansparse)
    before = thresholds(model)
    with pytest.raises(RuntimeError, match="boom"):
        with scaled_thresholds(model, 0.37):
            assert not torch.equal(thresholds(model)[0], before[0])
            raise RuntimeError("boom")
    assert all(torch.equal(a, b) for a, b in zip(thresholds(model), before))


def test_an_attack_that_fails_midway_leaves_the_thresholds_as_they_were(meansparse, small, monkeypatch):
    x, y = small
    defense = MeanSparseDefense(copy.deepcopy(meansparse))
    before = thresholds(defense.model)
    calls = {"n": 0}
    original = ThresholdContinuation._apgd

    def failing(self, *args, **kwargs):  # noqa: ANN001, ANN202 - the patched method
        calls["n"] += 1
        if calls["n"] == 2:  # inside the second stage, with the thresholds scaled
            assert float(meansparse_layers(defense.model)[0][1].threshold) != float(before[0])
            raise RuntimeError("stage failed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ThresholdContinuation, "_apgd", failing)
    with pytest.raises(RuntimeError, match="stage failed"):
        judge(make_attack(cheap("apgd-continuation-linear")), defense, x, y, THREAT, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(thresholds(defense.model), before))


# -- every new attack: the exact forward untouched, the defense left as it was ---------------------------------------
@pytest.mark.parametrize("name", [*NEW, "apgd-escape+bpda-identity"])
def test_judged_scores_are_the_plain_models_and_the_defense_is_left_as_it_was(name, meansparse, small):
    x, y = small
    defense = MeanSparseDefense(copy.deepcopy(meansparse))
    plain = copy.deepcopy(meansparse)  # never attacked, never switched
    before, modes_before = thresholds(defense.model), modes(defense.model)
    record = judge(make_attack(cheap(name)), defense, x, y, THREAT, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(thresholds(defense.model), before))
    assert modes(defense.model) == modes_before
    with torch.no_grad():
        logits = plain(record.x_adv)
    assert torch.equal(record.margin, margin(logits, y))  # bit for bit
    assert torch.equal(record.success, logits.argmax(1) != y)
    assert THREAT.contains(record.x_adv, x).all()
    # They attack: clean-correct points fall even at this tiny budget (measured 2-3 of 20; ~70% robust at full).
    with torch.no_grad():
        correct = plain(x).argmax(1) == y
    assert int((record.success & correct).sum()) >= 1


def test_attacks_refuse_models_they_cannot_follow(standard_model, small):
    x, y = small
    plain = Undefended(standard_model)
    for attack in (
        ThresholdContinuation(n_stages=2, n_iter=2),
        AnnealedSurrogate(n_stages=2, n_iter=2),
        DeadZoneEscape(n_stages=2, n_iter=2),
    ):
        with pytest.raises(TypeError):
            judge(attack, plain, x, y, THREAT, seed=0)


def test_seeded(meansparse, small):
    x, y = small
    defense = MeanSparseDefense(copy.deepcopy(meansparse))
    first = judge(make_attack(cheap("apgd-continuation-geometric")), defense, x, y, THREAT, seed=3)
    again = judge(make_attack(cheap("apgd-continuation-geometric")), defense, x, y, THREAT, seed=3)
    assert torch.equal(first.x_adv, again.x_adv)


# -- plans -----------------------------------------------------------------------------------------------------------
def test_plans_run_the_strongest_in_standard_and_all_in_thorough(meansparse, standard_model):
    defense = as_defense(meansparse)
    standard = [a.label for a in plan_suite("full", defense, "standard").attacks]
    thorough = [a.label for a in plan_suite("full", defense, "thorough").attacks]
    quick = [a.label for a in plan_suite("full", defense, "quick").attacks]
    assert [n for n in standard if n in MECHANISM] == [STRONGEST_MECHANISM]
    assert [n for n in thorough if n in MECHANISM] == list(MECHANISM) and set(MECHANISM) == set(NEW)
    assert not set(quick) & set(MECHANISM)
    plain = [a.label for a in plan_suite("full", Undefended(standard_model), "thorough").attacks]
    assert not set(plain) & set(MECHANISM)


# -- a masked model: continuation reaches at least BPDA ----------------------------------------------------------------
def pixel_dead_zone(fmnist_train, alpha: float) -> torch.nn.Module:
    """demo-adversarial with a MeanSparse dead zone on its input pixels, calibrated on 5000 training images: the
    exact gradient of every pixel inside the band is 0, and a pixel the attack moves into it jumps to the mean."""
    model = sparsify(require_shipped("demo-adversarial"), alpha, placement=["stem.0"])
    calibrate(model, [fmnist_train.images[i : i + 500] for i in range(0, 5000, 500)], progress=False)
    return model.eval()


@pytest.mark.slow
def test_mechanism_attacks_against_bpda_on_a_masked_model(fmnist_train, fmnist_test):
    x, y = fmnist_test.images[:200], fmnist_test.labels[:200]
    defense = MeanSparseDefense(pixel_dead_zone(fmnist_train, 0.5))
    robust = {
        name: int((~judge(make_attack(name), defense, x, y, THREAT, seed=0).success).sum())
        for name in ("apgd-ce", "apgd-ce+bpda-identity", "apgd-continuation-linear", "apgd-anneal")
    }
    exact, identity = robust["apgd-ce"], robust["apgd-ce+bpda-identity"]
    # Masking beyond doubt: exact APGD-CE far above BPDA (measured 149 against 128 of 200).
    assert exact >= identity + 10
    # The annealed surrogate reaches the BPDA result (measured 128).
    assert robust["apgd-anneal"] <= identity + 4
    # The continuation (edge move and straight-through finish) reaches the BPDA result: measured 128 against 128
    # (the continuation alone, finish=0 and no edge move, held 135); 21 below the exact attack.
    assert robust["apgd-continuation-linear"] <= identity + 2
    assert robust["apgd-continuation-linear"] <= exact - 12


# -- per-layer attribution -----------------------------------------------------------------------------------------
def test_layer_groups():
    names = [f"l{i}" for i in range(10)]
    assert layer_groups(names[:3], 8) == [["l0"], ["l1"], ["l2"]]
    groups = layer_groups(names, 4)
    assert [n for g in groups for n in g] == names and len(groups) == 4 and {len(g) for g in groups} <= {2, 3}


def test_attribution_of_a_model_with_one_dead_zone_names_that_layer(meansparse, fmnist_test):
    x, y = fmnist_test.images[:40], fmnist_test.labels[:40]
    model = copy.deepcopy(meansparse)
    target = "block1.act1.meansparse"
    for name, layer in meansparse_layers(model):
        layer.threshold.fill_(1.0 if name == target else 0.0)
    measurement = run_attribution(MeanSparseDefense(model), x, y, THREAT, seed=0, iters=20)
    table = attribution_table(measurement)
    shares = {row["group"]: row["share"] for row in table["rows"]}
    # A gap to attribute (measured: 6 of 40 samples; exact gradients beat straight-through here).
    assert abs(table["gap"]) >= 3
    # Layers at alpha 0 pass x through whatever their backward: the whole gap is the dead zone's, exactly.
    assert shares[target] == table["gap"]
    assert all(share == 0 for group, share in shares.items() if group != target)
    assert table["residual"] == 0
    kept = {row["group"]: row["kept"] for row in table["rows"]}
    assert kept[target] == table["gap"] and all(k == 0 for g, k in kept.items() if g != target)
    (finding,) = judge_attribution(measurement)
    assert finding.status == "warn" and target in finding.message


def _measurement(exact: int, straight: int, only: list[int], all_but: list[int], n: int = 50) -> dict:
    def robust(k: int) -> list[bool]:
        return [True] * k + [False] * (n - k)

    names = [f"layer{i}" for i in range(len(only))]
    return {
        "attack": "apgd-ce@iters=50",
        "n": n,
        "layers": names,
        "alphas": [0.3] * len(names),
        "groups": [{"name": name, "layers": [name]} for name in names],
        "robust_exact": robust(exact),
        "robust_straight_through": robust(straight),
        "robust_only": [robust(k) for k in only],
        "robust_all_but": [robust(k) for k in all_but],
    }


def test_the_account_adds_up():
    table = attribution_table(_measurement(exact=40, straight=30, only=[34, 39, 40], all_but=[36, 30, 31]))
    assert table["gap"] == 10
    assert [r["share"] for r in table["rows"]] == [6, 1, 0]
    assert table["residual"] == 3 and sum(r["share"] for r in table["rows"]) + table["residual"] == table["gap"]
    assert [r["kept"] for r in table["rows"]] == [6, 0, 1]
    assert table["gap_points"] == 20.0 and table["rows"][0]["share_of_gap"] == 0.6
    (finding,) = judge_attribution(_measurement(exact=40, straight=30, only=[34, 39, 40], all_but=[36, 30, 31]))
    assert finding.status == "warn" and "layer0" in finding.message
    (quiet,) = judge_attribution(_measurement(exact=40, straight=39, only=[40, 40], all_but=[39, 39]))
    assert quiet.status == "pass"
    (skip,) = judge_attribution({"skipped": "no MeanSparse layers"})
    assert skip.status == "skipped"


def test_the_report_shows_the_attribution_table_and_plot(tmp_path):
    from audit.report.html import render_html
    from audit.report.markdown import render_markdown
    from audit.report.plots import layer_attribution

    (finding,) = judge_attribution(_measurement(exact=40, straight=30, only=[34, 39, 40], all_but=[36, 30, 31]))
    results = {
        "findings": [finding.to_json()],
        "model": "m",
        "threat_model": {"norm": "Linf", "eps": 0.1},
        "worst_case_robust_accuracy": 0.6,
        "attacks": [],
        "dataset": "d",
        "n_samples": 50,
        "seed": 0,
        "clean_accuracy": 0.8,
    }
    assert layer_attribution(results, [], tmp_path / "a.png") is not None and (tmp_path / "a.png").stat().st_size
    html = render_html(results, [("Per-layer attribution of the masking", tmp_path / "a.png")])
    assert "Per-layer attribution of the masking" in html and "layer0" in html and "+12.0 (+6)" in html
    assert "residual (the layers together)" in html and "+6.0 (+3)" in html
    markdown = render_markdown(results, [])
    assert "| layer0 | 0.3 | 34 / 50 | +12.0 (+6) | 36 / 50 | +12.0 (+6) |" in markdown


# -- the store: worst case, adaptive-gap, convergence curves ---------------------------------------------------------
def test_they_reach_the_worst_case_the_comparisons_and_the_curves(meansparse, small, tmp_path):
    from audit.checks.comparisons import check_adaptive_gap
    from audit.checks.convergence import curve_keys
    from audit.plan import Plan
    from audit.report.text import attack_kind
    from audit.runner import run_plan
    from audit.store import ResultStore

    x, y = small
    low, high = "apgd-continuation-linear@stages=2,iters=2", "apgd-continuation-linear@stages=2,iters=4"
    names = ["apgd-ce@iters=4", low, high]
    outcomes = run_plan(
        MeanSparseDefense(copy.deepcopy(meansparse)),
        x,
        y,
        THREAT,
        Plan.of([make_attack(n) for n in names]),
        seed=0,
        store=ResultStore(tmp_path, {"test": 1}),
        progress=False,
    )
    worst = outcomes.worst_case_robust("lp")
    for label in names:  # each attack's breaks count in the per-sample worst case
        assert all(not w for w, s in zip(worst, outcomes.status[label]) if s == "broken")
    (gap,) = check_adaptive_gap(outcomes)
    assert gap.evidence["challengers"] == [low, high] and gap.evidence["reference"] == ["apgd-ce@iters=4"]
    assert attack_kind({"gradient": outcomes.info[low].gradient}) == "adaptive"
    key, line = curve_keys(outcomes)["apgd-continuation-linear"]  # one family at two budgets: a strength curve
    assert line == [low, high] and key == "iters"
