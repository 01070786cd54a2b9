"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps. Kept for one diagnostic: a single step
that beats an iterative attack is a classic symptom of masked gradients (Athalye et al. 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.base import Attack, AttackOutput


class FGSM(Attack):
    name = "fgsm"
    single_step = True

    def perturb(self, model, x, y, threat, seed):  # noqa: ANN001
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
        if threat.norm == "Linf":
            step = threat.eps * grad.sign()
        else:
            norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
            step = threat.eps * grad / norms
        return AttackOutput((x.detach() + step).clamp(0, 1))
