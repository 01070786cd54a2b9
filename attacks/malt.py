"""Targeted APGD on the few target classes MALT ranks closest (Melamed et al., "Adversarial Attacks via the
Mesoscopic Almost Linearity Targeting", NeurIPS 2024; github odeliamel/MALT, `targeting.py`).

AutoAttack's APGD-T attacks the 9 classes with the highest logits, one after the other. MALT ranks every other
class by the linearised distance to its decision boundary, (z_y - z_j) / ||grad_x (z_y - z_j)||_*, with ||.||_* the
dual norm of the threat (L1 for Linf, L2 for L2), and runs targeted APGD on the best `k` only: on RobustBench it
matched AutoAttack's APGD-T at a fraction of its cost. The ranking costs one backward pass per candidate class; the
attack itself is pyautoattack's APGD-T step (`APGDAttack_targeted.attack_single_run`, the upstream code), given
the ranked targets instead of the logit order.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from attacks.autoattack import APGD, TARGETS, _device
from attacks.base import AttackOutput
from attacks.catalog import register
from attacks.threat_model import ThreatModel

log = logging.getLogger(__name__)


def linearised_distances(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """[n, classes]: the linearised distance from each sample to the boundary between its label and each class
    (inf for the label itself, and where the logit difference has no gradient: a linear guess cannot rank it)."""
    dual = 1.0 if norm == "Linf" else 2.0 if norm == "L2" else math.inf if norm == "L1" else None
    if dual is None:
        raise ValueError(f"MALT ranking needs an Linf, L2 or L1 threat, not {norm!r}")
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        n, classes = logits.shape
        rows = torch.arange(n, device=logits.device)
        distances = torch.full((n, classes), math.inf, device=logits.device)
        for j in range(classes):
            others = y != j
            if not others.any():
                continue
            # Samples are independent under the model's eval forward, so one backward of the summed difference
            # gives every sample's own gradient.
            difference = logits[rows, y] - logits[:, j]
            (grad,) = torch.autograd.grad(difference[others].sum(), x, retain_graph=j < classes - 1)
            size = grad.flatten(1).norm(p=dual, dim=1)
            usable = others & (size > 0)
            distances[usable, j] = (difference.detach()[usable] / size[usable]).to(distances.dtype)
    return distances


def malt_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, k: int) -> torch.Tensor:
    """[n, k] target classes, nearest linearised boundary first (MALT's ranking)."""
    distances = linearised_distances(model, x, y, norm)
    return distances.topk(min(k, distances.shape[1] - 1), dim=1, largest=False).indices


@register("apgd-malt", TARGETS)
class MaltAPGD(APGD):
    """Targeted APGD (AutoAttack's APGD-T loss and step, 100 iterations) on the `n_target_classes` targets MALT
    ranks nearest, each target only on the samples the earlier ones left robust."""

    def __init__(self, n_target_classes: int = 3, **kwargs: Any) -> None:
        super().__init__(targeted=True, n_target_classes=n_target_classes, **kwargs)
        self.name = "apgd-malt"

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        apgd = self.build(model, threat, seed, _device(x))
        apgd.init_hyperparam(x)
        targets = malt_targets(model, x, y, threat.norm, self.n_target_classes)
        adv = x.clone()
        with torch.no_grad():
            robust = model(x).argmax(1) == y
        torch.random.manual_seed(seed)  # as pyautoattack's APGD-T: its random starts follow the seed
        for rank in range(targets.shape[1]):
            for _ in range(self.n_restarts):
                index = robust.nonzero().flatten()
                if index.numel() == 0:
                    break
                apgd.y_target = targets[index, rank]
                _, correct, _, proposal = apgd.attack_single_run(x[index], y[index])
                fooled = correct == 0
                adv[index[fooled]] = proposal[fooled]
                robust[index[fooled]] = False
        return AttackOutput(adv, extra={"targets": targets.cpu()})
