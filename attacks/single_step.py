"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps. Kept for one diagnostic: a single step
that beats an iterative attack is a classic symptom of masked gradients (Athalye et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import Attack, AttackOutput
from attacks.catalog import register
from attacks.threat_model import ThreatModel


@register("fgsm")
class FGSM(Attack):
    name = "fgsm"
    role = "the single step the diagnostics compare with"
    single_step = True

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
        return AttackOutput((x.detach() + threat.eps * threat.steepest_step(grad)).clamp(*threat.bounds))
