"""The one hand-written PGD of the suite (Madry et al. 2018), used by adversarial training (FGSM-RS is one step of
it with a random start) and by the probes (which need every iterate, and the *last* point rather than the best:
APGD keeps the best point, which hides exactly what Pintor et al.'s indicators look for). Attacks in the zoo use
the libraries' implementations instead.

It works on the perturbation: the forward sees clamp(x + delta) to the input bounds, delta is clipped to the ball
after every signed (Linf) or normalised (L2) gradient step of CE, and the returned point is clamp(x + delta).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.threat_model import ThreatModel


@dataclass
class PGDTrace:
    """What the loop saw: the returned (last) point and, when recorded, per iterate CE and success."""

    x_last: torch.Tensor
    losses: torch.Tensor  # (steps + 1, n) CE at every iterate, the start and the returned point included
    adversarial: torch.Tensor  # (steps + 1, n) bool: misclassified at that iterate (the same forward as the loss)


def pgd(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    record: bool = False,
) -> PGDTrace:
    """PGD on CE from x (or from a uniform random start drawn from `generator`), returning its last iterate.

    A sample whose loss has no gradient (graph interrupted) simply does not move.
    """
    low, high = threat.bounds
    delta = torch.zeros_like(x) if generator is None else threat.random_delta(tuple(x.shape), generator).to(x)
    losses, adversarial = [], []
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            logits = model((x + delta).clamp(low, high))
            loss = F.cross_entropy(logits, y, reduction="none")
            grad = None
            if loss.requires_grad:
                (grad,) = torch.autograd.grad(loss.mean(), delta, allow_unused=True)
        if record:
            losses.append(loss.detach())
            adversarial.append(logits.detach().argmax(1) != y)
        step = threat.steepest_step(torch.nan_to_num(grad)) if grad is not None else torch.zeros_like(x)
        delta = threat.clip_delta(delta.detach() + step_size * step)
    x_last = (x + delta).clamp(low, high).detach()
    if record:
        with torch.no_grad():
            logits = model(x_last)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
        adversarial.append(logits.argmax(1) != y)
    empty = torch.empty(0, len(x), device=x.device)
    return PGDTrace(
        x_last, torch.stack(losses) if record else empty, torch.stack(adversarial) if record else empty.bool()
    )
