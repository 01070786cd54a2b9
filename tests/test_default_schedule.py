"""The default budget's cascade in AutoAttack's place (issue 29): what it plans, MALT's target ranking on a model
whose answer is known, bfloat16 proposals judged in float32, `--batch-size auto` backing off on out-of-memory."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attacks.judge import judge
from attacks.malt import linearised_distances, malt_targets
from attacks.precision import float32_scoring, proposals_in
from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.batch_size import find_batch_size
from audit.plan.suites import CASCADE_SQUARE, plan_suite
from defenses.adapters import RandomNoise, as_defense
from defenses.models.demo_cnn import DemoCNN

THREAT = ThreatModel("Linf", 0.1)


def test_standard_full_runs_the_cascade_and_thorough_runs_autoattack():
    defense = as_defense(DemoCNN(width=4).eval())
    standard = [a.label for a in plan_suite("full", defense, "standard").attacks]
    assert standard == ["fgsm", "apgd-ce", "apgd-malt+survivors", "apgd-ce+survivors@iters=300", CASCADE_SQUARE]
    assert not any(label.startswith(("autoattack", "fab")) for label in standard)
    square = make_attack(CASCADE_SQUARE)
    assert (square.n_queries, square.n_probe, square.probe_queries, square.on_survivors) == (5000, 10, 5000, True)
    assert make_attack("apgd-malt+survivors").n_target_classes == 3
    thorough = [a.label for a in plan_suite("full", defense, "thorough").attacks]
    assert "autoattack-standard" in thorough
    assert CASCADE_SQUARE not in thorough and "apgd-malt+survivors" not in thorough
    # A randomized defense keeps AutoAttack-rand (the cascade has no EOT version), and `adaptive` its own Square.
    noisy = [a.label for a in plan_suite("full", RandomNoise(DemoCNN(width=4).eval()), "standard").attacks]
    assert "autoattack-rand" in noisy and CASCADE_SQUARE not in noisy
    assert CASCADE_SQUARE not in [a.label for a in plan_suite("adaptive", defense, "standard").attacks]


class Linear(nn.Module):
    """logits = W x + b, at x = 0 the logits are b: every linearised distance is exact and known."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


def test_malt_ranks_targets_by_linearised_distance_not_by_logit():
    # Label 0, logit 10. Class 1: logit 9 (the highest other, AutoAttack's first target) but its boundary is far
    # (gap 1 over an L1 gradient norm of 0.1: distance 10); class 2: logit 0 (the lowest) but nearest (10 / 100 =
    # 0.1); class 3: 5 / 10 = 0.5 in Linf (L1 dual norm), 5 / 5 = 1 in L2.
    weight = torch.tensor([[0.0, 0, 0, 0], [0.1, 0, 0, 0], [0, 100.0, 0, 0], [2.5, 2.5, 2.5, 2.5]])
    model = Linear(weight, torch.tensor([10.0, 9.0, 0.0, 5.0])).eval()
    x, y = torch.zeros(2, 4), torch.tensor([0, 0])
    linf = linearised_distances(model, x, y, "Linf")
    assert torch.allclose(linf[0, 1:], torch.tensor([10.0, 0.1, 0.5]), rtol=1e-5) and math.isinf(linf[0, 0])
    l2 = linearised_distances(model, x, y, "L2")
    assert torch.allclose(l2[0, 1:], torch.tensor([10.0, 0.1, 1.0]), rtol=1e-5)
    assert malt_targets(model, x, y, "Linf", 2).tolist() == [[2, 3], [2, 3]]
    assert malt_targets(model, x, y, "L2", 9).tolist() == [[2, 3, 1], [2, 3, 1]]  # k is capped at the other classes
    # Label 3: the distances are from its own logit; the label itself is never a target.
    assert malt_targets(model, x, torch.tensor([3, 3]), "Linf", 3)[0].tolist() == [0, 1, 2]


def test_malt_apgd_breaks_an_undefended_model(standard_model, fmnist_test):
    defense = as_defense(standard_model)
    x, y = fmnist_test.images[:32], fmnist_test.labels[:32]
    record = judge(make_attack("apgd-malt"), defense, x, y, THREAT, seed=0)
    with torch.no_grad():
        clean_correct = defense(x).argmax(1) == y
    assert clean_correct.sum() >= 24
    assert record.success[clean_correct].float().mean() >= 0.95  # an undefended CNN at eps 0.1 falls to ~0%
    assert record.extra["targets"].shape == (32, 3)


def test_bfloat16_proposals_are_judged_in_float32(standard_model, fmnist_test):
    defense = as_defense(standard_model)
    x, y = fmnist_test.images[:32], fmnist_test.labels[:32]
    with proposals_in("bfloat16", torch.device("cpu")):
        assert defense(x).dtype == torch.bfloat16  # the proposals' passes really run in bfloat16
        with float32_scoring(torch.device("cpu")):
            assert defense(x).dtype == torch.float32
    low = judge(make_attack("apgd-ce"), defense, x, y, THREAT, seed=0, precision="bfloat16")
    full = judge(make_attack("apgd-ce"), defense, x, y, THREAT, seed=0)
    # The judge's margins are float32 logits of the projected points: re-scoring them by hand gives them exactly.
    with torch.no_grad():
        logits = defense(low.x_adv)
    assert logits.dtype == torch.float32 and low.x_adv.dtype == torch.float32
    assert torch.equal(low.success, logits.argmax(1) != y)
    assert float((low.x_adv - x).abs().max()) <= 0.1 + 1e-6
    # Still a strong attack on an undefended model: within 2 of 32 samples of the float32 proposals.
    assert int(low.success.sum()) >= int(full.success.sum()) - 2 and int(low.success.sum()) >= 24


class RunsOutOfMemory(nn.Module):
    """A model that raises CUDA's out-of-memory error above `limit` samples, as a GPU would."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.linear, self.tried = limit, nn.Linear(784, 10), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tried.append(len(x))
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated, {len(x)} > {self.limit})")
        return self.linear(x.flatten(1))


def test_batch_size_auto_backs_off_on_out_of_memory():
    model = RunsOutOfMemory(limit=100).eval()
    images = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert find_batch_size(as_defense(model), images) == 62  # 1000 -> 500 -> 250 -> 125 -> 62
    assert model.tried == [1000, 500, 250, 125, 62]
    roomy = RunsOutOfMemory(limit=10_000).eval()
    assert find_batch_size(as_defense(roomy), images[:300]) == 300  # never more than the images
    with pytest.raises(RuntimeError, match="even one sample"):
        find_batch_size(as_defense(RunsOutOfMemory(limit=0).eval()), images[:4])


def test_batch_size_auto_lets_other_errors_through():
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        find_batch_size(as_defense(Broken().eval()), torch.rand(8, 1, 28, 28))


def _cascade_outcomes(broken: dict[str, list[int]], n: int = 40):
    """Outcomes of the cascade plus a BPDA attack; each attack breaks the listed samples, later cascade attacks run
    on the survivors of the earlier ones only (the others `not_run:cascade`)."""
    from attacks.registry import canonical_name
    from audit.outcomes import Outcomes
    from audit.plan.suites import CASCADE

    clean = {
        "attack": "clean",
        "batch": 0,
        "labels": [0] * n,
        "prediction": [0] * n,
        "draws_correct": [1] * n,
        "draws": 1,
    }
    rows, left = [], set(range(n))
    for label in [canonical_name(c) for c in CASCADE] + ["bpda"]:
        on = sorted(left) if "+survivors" in label else list(range(n))
        rows.append(
            {
                "attack": label,
                "batch": 0,
                "indices": on,
                "attributes": {"gradient": "exact"},
                "status": ["broken" if i in broken.get(label, []) else "held" for i in on],
                "distance": [0.0] * len(on),
                "margin": [0.0] * len(on),
                "draws_correct": [1] * len(on),
                "draws": 1,
                "n_forward": 0.0,
                "n_backward": 0.0,
                "seconds": 0.0,
                "violations": 0,
                "extra": {},
            }
        )
        if label != "bpda":
            left -= set(broken.get(label, []))
    return Outcomes.from_rows(clean, rows, [r["attack"] for r in rows], "full")


def test_gain_table_uses_the_cascade_where_autoattack_did_not_run():
    from audit.gain import autoattack_source, gain_table

    base = _cascade_outcomes({"apgd-ce": list(range(20)), "apgd-malt+survivors": [20, 21]})  # 18 of 40 robust
    defense = _cascade_outcomes(
        {"apgd-ce": list(range(10)), CASCADE_SQUARE: [10, 11], "bpda": list(range(30, 40))}
    )  # 28 robust under the cascade, 18 worst case
    table = gain_table(defense, base)
    assert table["base_autoattack"]["accuracy"] == pytest.approx(18 / 40)
    assert table["defense_autoattack"]["accuracy"] == pytest.approx(28 / 40)  # BPDA is not part of the figure
    assert table["defense_worst_case"]["accuracy"] == pytest.approx(18 / 40)
    assert table["autoattack_source"] == autoattack_source(defense.order)
    assert table["autoattack_source"] == f"cascade: apgd-ce, apgd-malt+survivors, {CASCADE_SQUARE}"
    assert autoattack_source(["fgsm", "autoattack-standard", "apgd-ce"]) == "autoattack-standard"


def test_the_claim_at_risk_test_compares_with_the_cascade_where_autoattack_did_not_run():
    from audit.checks.comparisons import beyond_autoattack

    # The cascade breaks 0-11 (Square only 10 and 11, on the survivors), BPDA 30-39: the cascade's figure holds 28.
    outcomes = _cascade_outcomes({"apgd-ce": list(range(10)), CASCADE_SQUARE: [10, 11], "bpda": list(range(30, 40))})
    beyond = beyond_autoattack(outcomes)
    assert beyond is not None and beyond["autoattack"].startswith("cascade: apgd-ce")
    assert (beyond["autoattack_robust"], beyond["only_others_broke"], beyond["only_autoattack_broke"]) == (28, 10, 12)
