"""Honest per-sample scoring: common draws for randomized defenses, `not_run` never counted as missed or robust,
and the statistics every number carries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.autoattack import APGD
from attacks.base import Attack, AttackOutput
from attacks.single_step import FGSM
from attacks.threat_model import ThreatModel
from audit.checks import comparisons, verdict
from audit.plan import Plan
from audit.runner import run_plan
from audit.stats import clopper_pearson, mcnemar_one_sided
from audit.store import ResultStore
from defenses.adapters import RandomNoise
from defenses.protocol import Undefended

THREAT = ThreatModel("Linf", 0.1)


class DoNothing(Attack):
    """Returns the input unchanged, under any name (and, if asked, posing as a single-step attack)."""

    def __init__(self, name: str, single_step: bool = False) -> None:
        super().__init__()
        self.name, self.single_step = name, single_step

    def perturb(self, model, x, y, threat, seed):  # noqa: ANN001 - untyped by design in this script/test
        model(x)  # it queries the model, as a real attack would
        return AttackOutput(x.clone())


def _run(defense, x, y, attacks, directory, mode="full", threat=THREAT):  # noqa: ANN001, ANN202 - untyped by design in this script/test
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


@pytest.fixture(scope="module")
def data(fmnist_test):
    subset = fmnist_test.subset(120, 0)
    return subset.images, subset.labels


@pytest.mark.parametrize("mode", ["full", "cascade"])
def test_do_nothing_attacks_change_nothing_on_a_noise_defense(standard_model, data, tmp_path, mode):
    x, y = data
    defense = RandomNoise(standard_model, sigma=0.05, seed=1)
    one = _run(defense, x, y, [DoNothing("nothing")], tmp_path / "one", mode)
    six = _run(
        defense,
        x,
        y,
        [DoNothing("fgsm", single_step=True), DoNothing("apgd-ce")] + [DoNothing(f"nothing{k}") for k in range(4)],
        tmp_path / "six",
        mode,
    )
    # The noise does flip some predictions (so the test can tell), yet an unchanged input is judged exactly as
    # the clean input was: on the same common draws.
    assert 0 < sum(c < 10 for c in six.clean_draws_correct) < len(y)
    assert six.worst_case_robust() == one.worst_case_robust() == six.clean_correct
    assert six.worst_case_mean_over_draws() == pytest.approx(one.worst_case_mean_over_draws())
    assert all(s != "broken" for label in six.order for s in six.status[label])
    (single,) = comparisons.check_single_step_beats_iterative(six)
    assert single.status == "pass"
    assert verdict([single], six, {"randomized": True})["gradient_masking"] != "suspected"


def test_cascade_on_a_linear_model_fails_no_comparison(fmnist_test, tmp_path):
    """FGSM first, then APGD-CE on what FGSM left: a linear model has nothing to mask."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    train = fmnist_test.subset(2000, 1)
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.5)
    for _ in range(100):
        loss = nn.functional.cross_entropy(linear(train.images), train.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    data = fmnist_test.subset(200, 0)
    outcomes = _run(Undefended(linear.eval()), data.images, data.labels, [FGSM(), APGD(n_iter=20)], tmp_path, "cascade")
    fgsm_broke = outcomes.counts("fgsm")["broken"]
    assert fgsm_broke > 50  # FGSM does most of the work, so APGD runs on few samples
    assert outcomes.counts("apgd-ce@iters=20")["ran"] == sum(outcomes.clean_correct) - fgsm_broke
    assert outcomes.robust_alone("apgd-ce@iters=20") is None
    found = {finding.id: finding for check in comparisons.COMPARISONS for finding in check(outcomes)}
    # Only the single-step comparison applies here (no gradient-free, transfer or BPDA attack ran), and it passes
    # on exactly the samples both saw: APGD ran only on what FGSM left, so FGSM can have won none of them.
    assert {k: f.status for k, f in found.items()} == {
        "blackbox-beats-whitebox": "skipped",
        "transfer-beats-whitebox": "skipped",
        "single-step-beats-iterative": "pass",
        "adaptive-gap": "skipped",
    }
    single = found["single-step-beats-iterative"].evidence
    assert single["paired"] == outcomes.counts("apgd-ce@iters=20")["ran"] > 20 and single["count"] == 0


def test_clopper_pearson_and_mcnemar():
    low, high = clopper_pearson(67, 100)
    assert low == pytest.approx(0.5688, abs=1e-3) and high == pytest.approx(0.7608, abs=1e-3)
    assert clopper_pearson(0, 50)[0] == 0.0 and clopper_pearson(50, 50)[1] == 1.0
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    assert mcnemar_one_sided(7, 0) == pytest.approx(0.5**7)
    assert mcnemar_one_sided(5, 5) > 0.5
    assert mcnemar_one_sided(0, 0) == 1.0


def test_gain_table_pairs_the_same_images():
    from audit.gain import gain_table, paired_gain
    from audit.outcomes import Outcomes

    def outcomes(robust_aa: list[bool], robust_other: list[bool]) -> Outcomes:
        n = len(robust_aa)
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
                "attributes": {"gradient": "exact", "parts": {"apgd-ce": {"gradient": "exact"}}}
                if label[0] == "a"
                else {"gradient": "bpda-identity"},
                "status": ["held" if r else "broken" for r in robust],
                "distance": [0.0] * n,
                "margin": [0.0] * n,
                "draws_correct": [int(r) for r in robust],
                "draws": 1,
                "n_forward": 0.0,
                "n_backward": 0.0,
                "seconds": 0.0,
                "violations": 0,
                "extra": {"broken_by": ["" if r else "apgd-ce" for r in robust]} if label[0] == "a" else {},
            }
            for label, robust in (("autoattack-standard", robust_aa), ("bpda", robust_other))
        ]
        return Outcomes.from_rows(clean, rows, ["autoattack-standard", "bpda"], "full")

    n = 200
    base = outcomes([i < 100 for i in range(n)], [True] * n)  # base: 50% under AutoAttack
    # The defense: 12 more samples survive AutoAttack, but BPDA breaks 20 of its AutoAttack survivors.
    defense = outcomes([i < 112 for i in range(n)], [not (90 <= i < 110) for i in range(n)])
    table = gain_table(defense, base)
    assert table["base_autoattack"]["accuracy"] == 0.5 and table["defense_autoattack"]["accuracy"] == 0.56
    assert table["claimed_gain"]["gain"] == pytest.approx(0.06)
    low, high = table["claimed_gain"]["ci95"]
    assert 0 < low < 0.06 <= high  # 12 discordant pairs, all one way: significant
    assert table["defense_worst_case"]["accuracy"] == pytest.approx(0.46)
    assert table["base_attacks"] == ["autoattack-standard", "bpda"]  # the base's worst case is over both
    surviving = table["surviving_gain"]
    assert surviving["gain"] == pytest.approx(-0.04) and surviving["ci95"][0] < -0.04 < surviving["ci95"][1] < 0.01
    same = paired_gain([True] * 10, [True] * 10)  # no discordant pair: 0, but 10 samples cannot pin it down
    assert same["gain"] == 0.0 and same["ci95"][0] < -0.2 and same["ci95"][1] > 0.2 and same["only_base_robust"] == 0


def test_a_strength_curve_still_falling_makes_the_verdict_inconclusive(data, tmp_path):
    """One iteration of APGD is far from converged on the adversarially trained demo model at eps 0.15 (twenty
    iterations break about 50 more of 120 points here), twenty are (fifty add nothing): the same family at a larger
    budget breaking points nothing else broke means the audit may not clear the model."""
    from audit.checks.convergence import check_convergence
    from defenses.models.registry import load_shipped

    x, y = data
    model, wide = Undefended(load_shipped("demo-adversarial")), ThreatModel("Linf", 0.15)
    short = _run(model, x, y, [APGD(n_iter=1), APGD(n_iter=20)], tmp_path / "a", threat=wide)
    (finding,) = check_convergence(short)
    family = finding.evidence["families"]["apgd-ce"]
    assert finding.status == "fail" and family["only_largest_broke"] >= 20 and family["p_value"] < 1e-4
    assert verdict([finding], short)["gradient_masking"] == "inconclusive"
    curve = finding.data["curves"]["apgd-ce"]["worst_case"]
    assert curve[0] > curve[1] + 0.1
    # Twenty and fifty iterations agree: converged, no word against the model.
    long = _run(model, x, y, [APGD(n_iter=20), APGD(n_iter=50)], tmp_path / "b", threat=wide)
    (converged,) = check_convergence(long)
    assert converged.status == "pass" and converged.evidence["families"]["apgd-ce"]["only_largest_broke"] <= 2


def test_a_curve_starts_at_autoattacks_own_apgd_ce_and_its_top_runs_on_survivors():
    """The default plan does not run APGD-CE twice: AutoAttack's part is the curve's 100-iteration point, and the
    300-iteration top (`+survivors`) runs only where nothing broke; what it breaks is what the check counts."""
    from audit.checks.convergence import check_convergence, curves
    from audit.outcomes import Outcomes

    n = 40
    clean = {
        "attack": "clean",
        "batch": 0,
        "labels": [0] * n,
        "prediction": [0] * n,
        "draws_correct": [1] * n,
        "draws": 1,
    }
    part = {"threat_kind": "lp", "gradient": "exact", "family": "apgd-ce", "budget": {"iters": 100, "restarts": 1}}
    aa_broke = set(range(10))
    aa = {
        "attack": "autoattack-standard",
        "batch": 0,
        "indices": list(range(n)),
        "attributes": {"gradient": "exact", "family": "autoattack-standard", "budget": {}, "parts": {"apgd-ce": part}},
        "status": ["broken" if i in aa_broke else "held" for i in range(n)],
        "distance": [0.0] * n,
        "margin": [0.0] * n,
        "draws_correct": [0 if i in aa_broke else 1 for i in range(n)],
        "draws": 1,
        "n_forward": 0.0,
        "n_backward": 0.0,
        "seconds": 0.0,
        "violations": 0,
        "extra": {"broken_by": ["apgd-ce" if i in aa_broke else "" for i in range(n)]},
    }
    survivors = [i for i in range(n) if i not in aa_broke]
    top_broke = set(survivors[:8])  # eight more: still falling
    top = {
        "attack": "apgd-ce+survivors@iters=300",
        "batch": 0,
        "indices": survivors,
        "attributes": {**part, "budget": {"iters": 300, "restarts": 1}, "on_survivors": True},
        "status": ["broken" if i in top_broke else "held" for i in survivors],
        "distance": [0.0] * len(survivors),
        "margin": [0.0] * len(survivors),
        "draws_correct": [0 if i in top_broke else 1 for i in survivors],
        "draws": 1,
        "n_forward": 0.0,
        "n_backward": 0.0,
        "seconds": 0.0,
        "violations": 0,
        "extra": {},
    }
    order = ["autoattack-standard", "apgd-ce+survivors@iters=300"]
    outcomes = Outcomes.from_rows(clean, [aa, top], order, "full")
    assert curves(outcomes) == {"apgd-ce": ["autoattack-standard/apgd-ce", "apgd-ce+survivors@iters=300"]}
    assert outcomes.status["apgd-ce+survivors@iters=300"][0] == "not_run:cascade"
    (finding,) = check_convergence(outcomes)
    assert finding.status == "fail" and finding.evidence["families"]["apgd-ce"]["only_largest_broke"] == 8
    assert finding.evidence["families"]["apgd-ce"]["next"] == "apgd-ce+survivors@iters=900"
    curve = finding.data["curves"]["apgd-ce"]["worst_case"]
    assert curve == [0.75, 0.55]
