"""The thorough budget: BPDA with every APGD loss on every surrogate, the ensemble surrogate, EOT for the attacks
that query the model, restart curves, and Square on the survivors of everything else; `quick` and `standard`
plans stay exactly what they were, except that `standard` adds the strongest MeanSparse-specific attack for a
MeanSparse model (issue 28)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import Attack, AttackOutput
from attacks.judge import DEFAULT_DRAWS, exact_logits, judge, score_logits
from attacks.names import UnknownAttack, format_name, parse_name
from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.checks.convergence import check_convergence, curve_keys
from audit.outcomes import Outcomes
from audit.plan import Plan
from audit.plan.suites import CASCADE_SQUARE, SMOOTH_TEMPERATURES, plan_suite
from audit.runner import run_plan
from audit.store import ResultStore
from defenses.adapters import RandomNoise, as_defense
from defenses.calibrate import calibrate
from defenses.ensemble import ENSEMBLE, members
from defenses.models.demo_cnn import DemoCNN
from defenses.opaque import OpaqueModel
from defenses.protocol import Undefended, declared_random
from defenses.sparsify import sparsify
from defenses.toys import HiddenNoise, QuantizedInput
from tests.conftest import require_shipped

THREAT = ThreatModel("Linf", 0.1)
# The default plans of a MeanSparse model (issue 14 trimmed them: APGD-T with BPDA and the two mildest smooth
# temperatures moved to `thorough`; the curve's larger budgets run on the survivors; a curve that starts at one of
# AutoAttack's parts does not run it again). Issue 29: `quick` and `standard` run the cascade in AutoAttack's place
# (APGD-CE, MALT-targeted APGD and Square evidence first, on the survivors); `thorough` runs AutoAttack itself.
ADAPTIVE_CORE = [
    "apgd-ce+bpda-identity",
    "apgd-dlr+bpda-identity",
    "apgd-ce+bpda-smooth-T0.1",
    "apgd-ce+bpda-smooth-T0.03",
    "transfer-base:apgd-ce",
]
CASCADE_HEAD = ["fgsm", "apgd-ce", "apgd-malt+survivors"]
STANDARD_FULL = [
    *CASCADE_HEAD,
    *ADAPTIVE_CORE,
    "apgd-continuation-linear",
    "apgd-ce+bpda-smooth-T0.03+survivors@iters=300",
    CASCADE_SQUARE,
]
QUICK_FULL = [*CASCADE_HEAD, *ADAPTIVE_CORE, CASCADE_SQUARE]
STANDARD_ADAPTIVE = [
    *ADAPTIVE_CORE,
    "square",
    "apgd-continuation-linear",
    "apgd-ce+bpda-smooth-T0.03+survivors@iters=300",
]
STANDARD_NOISE = ["fgsm", "autoattack-rand", "apgd-ce+eot20+survivors@iters=300"]


@pytest.fixture(scope="module")
def meansparse() -> nn.Module:
    torch.manual_seed(0)
    model = sparsify(DemoCNN(width=4).eval(), 0.4)
    calibrate(model, [torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))], progress=False)
    return model


def labels(suite: str, defense: nn.Module, budget: str) -> list[str]:
    return [a.label for a in plan_suite(suite, defense, budget).attacks]


# -- plans --------------------------------------------------------------------------------------------------------
def test_quick_and_standard_plans(meansparse):
    defense = as_defense(meansparse)
    assert labels("full", defense, "standard") == STANDARD_FULL
    assert labels("full", defense, "quick") == QUICK_FULL
    assert labels("adaptive", defense, "standard") == STANDARD_ADAPTIVE
    assert labels("full", RandomNoise(DemoCNN(width=4).eval()), "standard") == STANDARD_NOISE
    assert labels("autoattack", defense, "thorough") == ["autoattack-standard"]


def test_thorough_runs_every_loss_on_every_surrogate_then_square_on_the_survivors(meansparse):
    defense = as_defense(meansparse)
    plan = plan_suite("full", defense, "thorough")
    names = [a.label for a in plan.attacks]
    assert len(names) == len(set(names))
    assert names[: 2 + len(ADAPTIVE_CORE)] == ["fgsm", "autoattack-standard", *ADAPTIVE_CORE]  # AutoAttack itself
    assert CASCADE_SQUARE not in names and "apgd-malt+survivors" not in names
    surrogates = ["bpda-identity"] + [f"bpda-smooth-T{t:g}" for t in SMOOTH_TEMPERATURES] + ["bpda-ensemble"]
    for loss in ("apgd-ce", "apgd-dlr", "apgd-t"):
        for surrogate in surrogates:
            assert f"{loss}+{surrogate}" in names
    ensemble = [a for a in plan.attacks if a.surrogate == ENSEMBLE]
    assert [a.label for a in ensemble] == ["apgd-ce+bpda-ensemble", "apgd-dlr+bpda-ensemble", "apgd-t+bpda-ensemble"]
    assert all(a.gradient == "bpda-ensemble" for a in ensemble)
    family = "apgd-ce+bpda-smooth-T0.03"
    curve = [n for n in names if n.startswith(family)]
    larger = [
        f"{family}+survivors@iters=300",
        f"{family}+survivors@iters=1000",
        f"{family}+survivors@restarts=5",
        f"{family}+survivors@restarts=10",
    ]
    assert curve == [family, *larger]
    # Square's curve starts at AutoAttack's own Square part (5000 queries), so no standalone default Square.
    assert "square" not in names and "square+survivors@queries=20000" in names
    # Last: Square with restarts, on the survivors of everything else; before it, the curves' larger budgets.
    assert names[-1] == "square+survivors@restarts=5"
    last = plan.attacks[-1]
    assert last.on_survivors and last.n_restarts == 5 and last.n_queries == 5000 and last.gradient == "none"
    assert [a.label for a in plan.attacks if a.on_survivors] == [*larger, "square+survivors@queries=20000", last.label]
    assert names[-len(larger) - 2 :] == [*larger, "square+survivors@queries=20000", last.label]
    assert last.attributes()["on_survivors"] is True


def test_thorough_on_a_randomized_defense_uses_eot_for_square_and_fab():
    defense = RandomNoise(DemoCNN(width=4).eval())
    names = labels("full", defense, "thorough")
    assert "fab-t+eot20" in names and "square+eot20" in names and "square+eot20+survivors@queries=20000" in names
    assert names[-1] == "square+eot20+survivors@restarts=5"
    plain_query = [n for n in names if n.split("@")[0] in ("square", "fab-t", "fab", "square+survivors")]
    assert plain_query == []
    assert "apgd-ce+eot20+survivors@restarts=10" in names and "autoattack-rand" in names


def test_thorough_on_an_opaque_model_offers_the_ensemble_and_keeps_the_survivors_last(fmnist_test):
    torch.manual_seed(0)
    defense = OpaqueModel(QuantizedInput(8).eval())
    defense(fmnist_test.images[:4])  # the first forward keeps the inputs the scan needs
    assert ENSEMBLE in defense.surrogates
    plan = plan_suite("full", defense, "thorough")
    names = [a.label for a in plan.attacks]
    assert "apgd-t+bpda-ensemble" in names and names[-1] == "square+survivors@restarts=5"
    # No exact gradient reaches the input through the rounding: exact attacks are skipped, BPDA ones are not.
    skipped = dict(plan.skipped)
    assert "autoattack-standard" in skipped and "autoattack-standard" not in names
    assert "apgd-ce+bpda-ensemble" not in skipped and "apgd-ce+bpda-ensemble" in names


def test_run_order_moves_only_survivors_attacks():
    attacks = [make_attack(n) for n in ("square+survivors", "fgsm", "apgd-ce", "square+survivors@restarts=2")]
    assert Plan.of(attacks).in_run_order().labels == [
        "fgsm",
        "apgd-ce",
        "square+survivors",
        "square+survivors@restarts=2",
    ]


# -- names ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, canonical",
    [
        ("apgd-ce+bpda-ensemble", "apgd-ce+bpda-ensemble"),
        ("apgd-t+bpda-ensemble+eot5@restarts=2", "apgd-t+bpda-ensemble+eot5@restarts=2"),
        ("square+survivors@restarts=5", "square+survivors@restarts=5"),
        ("square+survivors+eot20@restarts=5,queries=10000", "square+eot20+survivors@queries=10000,restarts=5"),
        ("fab-t+eot20", "fab-t+eot20"),
        ("square+eot20", "square+eot20"),
        ("apgd-dlr+survivors+bpda-smooth-T0.1", "apgd-dlr+bpda-smooth-T0.1+survivors"),
    ],
)
def test_new_modifiers_round_trip(spec, canonical):
    parsed = parse_name(spec)
    assert format_name(parsed) == canonical and parse_name(canonical) == parsed
    attack = make_attack(spec)
    assert attack.label == canonical and make_attack(attack.label).label == canonical
    assert attack.on_survivors == ("+survivors" in canonical)
    assert attack.attributes()["family"] == canonical.split("@")[0].replace("+survivors", "")  # scheduling only


@pytest.mark.parametrize(
    "spec, message",
    [
        ("apgd-ce+bpda-ensemble-T0.1", "unknown modifier"),
        ("square+bpda-ensemble", "takes no gradients"),
        ("apgd-ce+survivors+survivors", r"more than one \+survivors"),
        ("apgd-ce+bpda-ensemble+bpda-identity", r"more than one \+bpda"),
        ("transfer-base:apgd-ce+survivors", "does not apply to a transfer"),
    ],
)
def test_bad_new_modifiers_are_refused_in_one_line(spec, message):
    with pytest.raises(UnknownAttack, match=message) as error:
        parse_name(spec)
    assert "\n" not in str(error.value)


# -- the ensemble surrogate ---------------------------------------------------------------------------------------
def _forward_and_gradient(
    defense: nn.Module, x: torch.Tensor, y: torch.Tensor, surrogate: str, temperature: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    z = x.clone().requires_grad_(True)
    with defense.surrogate(surrogate, temperature):
        logits = defense(z)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), z)
    return logits.detach(), grad


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("kind", ["meansparse", "opaque"])
def test_ensemble_forward_is_exact_bit_for_bit_and_its_gradient_the_mean(kind, meansparse, fmnist_test):
    x, y = fmnist_test.images[:12], fmnist_test.labels[:12]
    if kind == "meansparse":
        defense = as_defense(meansparse)
    else:
        torch.manual_seed(0)
        defense = OpaqueModel(QuantizedInput(8).eval())
        defense(x[:4])
    assert ENSEMBLE in defense.surrogates
    with torch.no_grad():
        exact = defense(x)
    logits, grad = _forward_and_gradient(defense, x, y, ENSEMBLE, None)
    assert torch.equal(_bits(logits), _bits(exact))
    assert "forward" not in defense.__dict__  # the shadowed forward is gone after the block
    grads = [_forward_and_gradient(defense, x, y, name, t)[1] for name, t in members()]
    assert len(grads) == 1 + len(SMOOTH_TEMPERATURES)
    mean = torch.stack(grads).mean(0)
    assert torch.allclose(grad, mean, rtol=1e-4, atol=1e-7 * float(mean.abs().max()))
    # The members really differ, so the test tells the mean from any single member.
    spread = max(float((g - mean).abs().max()) for g in grads)
    assert spread > 100 * float((grad - mean).abs().max()) and spread > 1e-3 * float(mean.abs().max())


def test_ensemble_attack_runs_through_the_judge(fmnist_test):
    defense = as_defense(require_shipped("demo-meansparse"))
    data = fmnist_test.subset(16, 0)
    x, y = data.images, data.labels
    with torch.no_grad():
        correct = int((defense(x).argmax(1) == y).sum())
    record = judge(make_attack("apgd-ce+bpda-ensemble@iters=5"), defense, x, y, THREAT, seed=0)
    assert THREAT.contains(record.x_adv, x).all()
    # APGD took a gradient step on every clean-correct point (the counts see one query per ensemble call).
    assert correct >= 8 and float(record.n_backward.sum()) >= 4 * correct


# -- Square on the survivors ---------------------------------------------------------------------------------------
class Recording(Attack):
    """Changes nothing, keeps the images it was given; runs on the survivors."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__(on_survivors=True)
        self.given: list[torch.Tensor] = []

    def perturb(self, model, x, y, threat, seed):  # noqa: ANN001 - the Attack protocol's signature
        self.given.append(x.clone())
        model(x)
        return AttackOutput(x.clone())


def _run(defense, x, y, attacks, directory, mode="full", threat=THREAT):  # noqa: ANN001, ANN202 - test helper
    return run_plan(
        defense,
        x,
        y,
        threat,
        Plan.of(attacks),
        seed=0,
        store=ResultStore(directory, {"t": 1}),
        mode=mode,
        progress=False,
    )


def test_survivors_attack_runs_only_on_what_no_earlier_attack_broke(standard_model, fmnist_test, tmp_path):
    data = fmnist_test.subset(60, 3)
    defense = Undefended(standard_model)
    weak = ThreatModel("Linf", 0.02)
    recording = Recording()
    attacks = [make_attack("fgsm"), recording, make_attack("apgd-ce@iters=5")]
    outcomes = _run(defense, data.images, data.labels, attacks, tmp_path / "run", threat=weak)
    fgsm = outcomes.status["fgsm"]
    broken = {i for i, s in enumerate(fgsm) if s == "broken"}
    correct = {i for i, c in enumerate(outcomes.clean_correct) if c}
    assert 5 < len(broken) < len(correct) - 5  # FGSM breaks some, not all: both sides are exercised
    flat = data.images.flatten(1)
    seen = [int((flat == row).all(1).nonzero()[0]) for batch in recording.given for row in batch.flatten(1)]
    assert sorted(seen) == sorted(correct - broken)
    status = outcomes.status["recording+survivors"]
    assert {i for i, s in enumerate(status) if s == "not_run:cascade"} == broken
    assert {i for i, s in enumerate(status) if s == "held"} == correct - broken
    assert all(status[i] == "not_run:misclassified" for i in range(60) if i not in correct)
    assert outcomes.info["recording+survivors"].on_survivors
    # An ordinary attack after it still runs on every clean-correct sample (full mode).
    assert outcomes.counts("apgd-ce@iters=5")["ran"] == len(correct)
    # Rebuilt from the store alone (what `audit report DIR` does): the same statuses.
    store = ResultStore.open_existing(tmp_path / "run")
    rows = list(store.records())
    clean = next(r for r in rows if r["attack"] == "clean")
    rebuilt = Outcomes.from_rows(clean, rows, outcomes.order, "full")
    assert rebuilt.status == outcomes.status and rebuilt.info["recording+survivors"].on_survivors


def test_survivors_attack_with_nothing_left_is_not_run_not_missing(standard_model, fmnist_test, tmp_path):
    data = fmnist_test.subset(10, 4)
    wide = ThreatModel("Linf", 0.3)
    outcomes = _run(
        Undefended(standard_model),
        data.images,
        data.labels,
        [make_attack("apgd-ce@iters=20"), Recording()],
        tmp_path / "run",
        threat=wide,
    )
    correct = [i for i, c in enumerate(outcomes.clean_correct) if c]
    assert correct and all(outcomes.status["apgd-ce@iters=20"][i] == "broken" for i in correct)
    assert [outcomes.status["recording+survivors"][i] for i in correct] == ["not_run:cascade"] * len(correct)
    assert outcomes.info["recording+survivors"].on_survivors and outcomes.counts("recording+survivors")["ran"] == 0


# -- EOT for Square and FAB ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["square+eot20@queries=30", "fab-t+eot20@iters=3,targets=2"])
def test_eot_square_and_fab_run_on_a_randomized_toy_and_are_scored_on_common_draws(spec, standard_model, fmnist_test):
    defense = declared_random(Undefended(HiddenNoise(standard_model, sigma=0.1)))  # as the audit, finding the noise
    data = fmnist_test.subset(12, 5)
    indices = list(range(100, 112))
    attack = make_attack(spec)
    assert attack.label == spec and attack.eot == 20 and not attack.handles_eot  # the judge wraps EOT around it
    record = judge(attack, defense, data.images, data.labels, THREAT, seed=7, indices=indices)
    assert record.draws == DEFAULT_DRAWS
    correct, margin = score_logits(exact_logits(defense, record.x_adv, indices, 7, DEFAULT_DRAWS), data.labels)
    assert torch.equal(correct, record.draws_correct) and torch.equal(margin, record.margin)
    assert torch.equal(record.success, correct < DEFAULT_DRAWS)
    # Every query of the attack was an average over 20 draws.
    forwards = round(float(record.n_forward.sum()))
    assert forwards % 20 == 0 and forwards >= 20 * 2 * len(indices)


# -- strength curves over restarts ---------------------------------------------------------------------------------
def _outcomes(broken: dict[str, set[int]], n: int = 200, survivors: tuple[str, ...] = ()) -> Outcomes:
    clean = {
        "attack": "clean",
        "batch": 0,
        "labels": [0] * n,
        "prediction": [0] * n,
        "draws_correct": [1] * n,
        "draws": 1,
    }
    rows, before = [], set()
    for label, hit in broken.items():
        family, _, text = label.partition("@")
        budget = {"iters": 100, "restarts": 1} | {k: int(v) for k, v in (p.split("=") for p in text.split(",") if p)}
        on_survivors = label in survivors
        index = [i for i in range(n) if not (on_survivors and i in before)]
        rows.append(
            {
                "attack": label,
                "batch": 0,
                "indices": index,
                "attributes": {
                    "gradient": "bpda-smooth-T0.03",
                    "family": family,
                    "budget": budget,
                    "on_survivors": on_survivors,
                },
                "status": ["broken" if i in hit else "held" for i in index],
                "distance": [0.0] * len(index),
                "margin": [0.0] * len(index),
                "draws_correct": [int(i not in hit) for i in index],
                "draws": 1,
                "n_forward": 0.0,
                "n_backward": 0.0,
                "seconds": 0.0,
                "violations": 0,
                "extra": {},
            }
        )
        before |= hit
    return Outcomes.from_rows(clean, rows, list(broken), "full")


def test_restarts_are_a_strength_curve_of_their_own():
    f = "apgd-ce+bpda-smooth-T0.03"
    base = set(range(40))
    still_falling = _outcomes(
        {
            f: base,
            f"{f}@iters=300": base,
            f"{f}@iters=1000": base | {40},
            f"{f}@restarts=5": base | {41},
            f"{f}@restarts=10": base | set(range(41, 56)),
            "square+survivors@restarts=5": set(),
        },
        survivors=("square+survivors@restarts=5",),
    )
    found = curve_keys(still_falling)
    assert found == {
        f"{f}@iters": ("iters", [f, f"{f}@iters=300", f"{f}@iters=1000"]),
        f"{f}@restarts": ("restarts", [f, f"{f}@restarts=5", f"{f}@restarts=10"]),
    }
    # The survivors' Square ran after the top of the curve and so skipped what it broke: that does not hide it.
    assert still_falling.status["square+survivors@restarts=5"][50] == "not_run:cascade"
    (finding,) = check_convergence(still_falling)
    families = finding.evidence["families"]
    assert finding.status == "fail" and f"{f}@restarts=10" in finding.message
    assert families[f"{f}@restarts"]["only_largest_broke"] == 14  # 42..55: 41 was broken at 5 restarts already
    assert families[f"{f}@iters"]["only_largest_broke"] == 1
    # What to spend next is a concrete attack one step up the curve (the budget may be thorough already).
    assert families[f"{f}@restarts"]["next"] == f"{f}@restarts=30" and f"{f}@restarts=30" in finding.message
    assert families[f"{f}@iters"]["next"] == f"{f}@iters=3000"
    curve = finding.data["curves"][f"{f}@restarts"]
    assert curve["key"] == "restarts" and [b["restarts"] for b in curve["budget"]] == [1, 5, 10]
    assert curve["worst_case"][0] > curve["worst_case"][1] > curve["worst_case"][2] + 0.05
    assert json.loads(json.dumps(finding.to_json()))
    # Ten restarts add nothing over five: converged.
    flat = _outcomes({f: base, f"{f}@restarts=5": base | {41}, f"{f}@restarts=10": base | {41}})
    (converged,) = check_convergence(flat)
    assert converged.status == "pass" and list(converged.data["curves"]) == [f]


# -- end to end ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_thorough_audit_end_to_end_on_demo_meansparse(tmp_path, fmnist_test):
    """`audit run --budget thorough` on 8 images (about 10 min on 2 cores: Square's 5000 to 25000 queries per
    sample dominate), then `audit report DIR` from the store alone gives the same results."""
    from audit.cli import main
    from audit.pipeline import derive_results

    require_shipped("demo-meansparse")
    out = tmp_path / "thorough"
    assert (
        main(["run", "--model", "demo-meansparse", "--n", "8", "--budget", "thorough", "--quiet", "--out", str(out)])
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    attacks = {a["name"]: a for a in results["attacks"]}
    names = list(attacks)
    assert results["budget"] == "thorough" and names[-1] == "square+survivors@restarts=5"
    # The larger budgets of the curves run last, on the survivors of everything before them.
    tail = [n for n in names if attacks[n]["on_survivors"]]
    assert names[-len(tail) :] == tail and {
        "square+survivors@queries=20000",
        "apgd-ce+bpda-smooth-T0.03+survivors@iters=1000",
    } <= set(tail)
    assert {
        "apgd-ce+bpda-ensemble",
        "apgd-dlr+bpda-ensemble",
        "apgd-t+bpda-ensemble",
        "apgd-t+bpda-smooth-T0.03",
        "apgd-dlr+bpda-smooth-T1",
    } <= set(names)
    # The survivors' Square ran exactly on the samples no earlier Lp attack broke.
    worst = results["worst_case"]["lp"]
    survivors = attacks[names[-1]]
    assert survivors["ran"] == round(worst["accuracy"] * 8) + survivors["broken"]
    curves = next(f for f in results["findings"] if f["id"] == "attack-convergence")["data"]["curves"]
    assert {c["key"] for c in curves.values()} == {"iters", "restarts", "queries"}
    before = (out / "samples.csv").read_text()
    again = derive_results(out)
    assert again["attacks"] == results["attacks"] and (out / "samples.csv").read_text() == before


def test_thorough_audit_end_to_end_on_a_tiny_meansparse_model(tmp_path, tiny_checkpoints):
    """`audit run --budget thorough` in the default run: every attack of the thorough plan runs on a tiny
    MeanSparse model (6 images, eps 0.12), the curves' larger budgets and Square last on the survivors, and
    `audit report DIR` rebuilds the same results from the store alone. At eps 0.12 the gradient attacks leave no
    survivor (measured), so the survivors' Square has none to query; the slow test above has survivors."""
    from audit.cli import main
    from audit.model_spec import resolve_model
    from audit.pipeline import derive_results

    out = tmp_path / "thorough"
    assert (
        main(
            [
                "run",
                "--model",
                tiny_checkpoints["meansparse"],
                "--checkpoint",
                tiny_checkpoints["meansparse_checkpoint"],
                "--n",
                "6",
                "--eps",
                "0.12",
                "--budget",
                "thorough",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    defense, _ = resolve_model(tiny_checkpoints["meansparse"], checkpoint=tiny_checkpoints["meansparse_checkpoint"])
    planned = plan_suite("full", defense, "thorough").in_run_order().labels
    attacks = {a["name"]: a for a in results["attacks"]}
    names = list(attacks)
    assert results["budget"] == "thorough" and names == planned
    assert {"apgd-ce+bpda-ensemble", "apgd-t+bpda-smooth-T0.03", "apgd-dlr+bpda-smooth-T1"} <= set(names)
    # Every attack not on the survivors ran on every correctly classified sample (the full mode).
    correct = round(results["clean_accuracy"] * 6)
    assert correct >= 4 and all(a["ran"] == correct for a in attacks.values() if not a["on_survivors"])
    tail = [n for n in names if attacks[n]["on_survivors"]]
    assert names[-len(tail) :] == tail and names[-1].startswith("square+survivors")
    worst = results["worst_case"]["lp"]
    for k, name in enumerate(tail):  # each on exactly what no attack before it broke
        assert attacks[name]["ran"] == round(worst["accuracy"] * 6) + sum(attacks[n]["broken"] for n in tail[k:])
    curves = next(f for f in results["findings"] if f["id"] == "attack-convergence")["data"]["curves"]
    assert {c["key"] for c in curves.values()} == {"iters", "restarts", "queries"}
    assert results["gain"]["base_autoattack"]["n"] == 6  # the base audit ran too
    before = (out / "samples.csv").read_text()
    again = derive_results(out)
    assert again["attacks"] == results["attacks"] and again["verdict"] == results["verdict"]
    assert (out / "samples.csv").read_text() == before
