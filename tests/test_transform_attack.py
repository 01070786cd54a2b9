"""The TransformAttack contract: what the judge needs from a transformation attack, and nothing else.

A toy transform (a brightness shift, whose answers are known by hand) goes through the real judge to show that
the three declared methods are all the judge uses; an attack that claims a non-Lp threat without the contract is
refused with a clear error.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks import TransformAttack
from attacks.base import Attack, AttackOutput
from attacks.judge import judge
from attacks.spatial import RotationTranslationGrid
from attacks.stadv import StAdv
from attacks.threat_model import ThreatModel
from attacks.transfer import Transfer
from defenses.protocol import Undefended

LINF = ThreatModel("Linf", 0.1)


class Brighter(nn.Module):
    """Class 1 iff the image's mean intensity exceeds 0.5 (logit gap 10 per unit of mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(1)
        return torch.stack([torch.zeros_like(mean), 10 * (mean - 0.5)], dim=1)


class BrightnessShift(TransformAttack):
    """Adds one number per image, at most `limit`; proposes the shifts it was given, in or out of the limit."""

    name = "brightness"
    threat_kind = "brightness"
    gradient_free = True

    def __init__(self, proposals: torch.Tensor, limit: float = 0.25) -> None:
        super().__init__()
        self.proposals, self.limit = proposals, limit

    def clip_params(self, params: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(params, nan=0.0).clamp(-self.limit, self.limit)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return x + params.view(-1, 1, 1, 1)

    def param_distance(self, params: torch.Tensor) -> torch.Tensor:
        return params.abs().flatten(1).amax(1) / self.limit

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        # The attack's own image is deliberately wrong (all ones): the judge must rebuild it from the params.
        return AttackOutput(x_adv=torch.ones_like(x), params=self.proposals.view(-1, 1))


class FlowWithoutContract(Attack):
    """Claims a flow threat but declares none of the TransformAttack methods."""

    name = "flow-without-contract"
    threat_kind = "flow"

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        return AttackOutput(x_adv=x, params=torch.zeros(len(x), 1))


def test_spatial_and_flow_attacks_are_transform_attacks():
    for attack in (RotationTranslationGrid(), StAdv()):
        assert isinstance(attack, TransformAttack) and attack.threat_kind in ("spatial", "flow")
    with pytest.raises(TypeError):
        TransformAttack()  # abstract: the three methods and perturb are not defined


def test_transform_attack_cannot_declare_an_lp_threat():
    with pytest.raises(TypeError, match="cannot declare threat_kind 'lp'"):
        type("LpTransform", (BrightnessShift,), {"threat_kind": "lp"})


def test_judge_clips_and_reapplies_a_new_transform_attack():
    x = torch.full((4, 1, 6, 6), 0.3)
    y = torch.zeros(4, dtype=torch.long)
    # Mean 0.3 + shift: broken iff the clipped shift exceeds 0.2. 0.4 and 1.0 are out of the limit (clipped to 0.25,
    # broken); 0.1 and -0.5 are held (the second clipped to -0.25).
    attack = BrightnessShift(torch.tensor([0.4, 0.1, 1.0, -0.5]))
    record = judge(attack, Undefended(Brighter()), x, y, LINF, seed=0)
    clipped = torch.tensor([0.25, 0.1, 0.25, -0.25])
    assert record.success.tolist() == [True, False, True, False]
    assert record.violations == 3
    assert torch.allclose(record.extra["params"].flatten(), clipped)
    assert torch.allclose(record.x_adv, (x + clipped.view(-1, 1, 1, 1)).clamp(0, 1))
    assert torch.allclose(record.distance, torch.tensor([1.0, 0.4, 1.0, 1.0]))


def test_judge_refuses_a_non_lp_attack_without_the_contract():
    x = torch.full((2, 1, 6, 6), 0.3)
    y = torch.zeros(2, dtype=torch.long)
    defense = Undefended(Brighter())
    with pytest.raises(TypeError, match="declares threat_kind 'flow' but is not a TransformAttack"):
        judge(FlowWithoutContract(), defense, x, y, LINF, seed=0)
    # The realistic way to get there: a transfer attack (not a TransformAttack) wrapping stAdv, which the name
    # grammar refuses but the Python API can build.
    with pytest.raises(TypeError, match="not a TransformAttack"):
        judge(Transfer(StAdv(steps=1), Brighter()), defense, x, y, LINF, seed=0)
