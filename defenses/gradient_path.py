"""Whether any gradient reaches a defense's input under a surrogate: the question automatic BPDA's planner and
the `gradient-path` probe ask (a model with no gradient path cannot be attacked by gradients at all)."""

from __future__ import annotations

import torch

from defenses.protocol import Defense


def _probe_weights(logits: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(logits.shape, generator=generator).to(logits.device, logits.dtype)


def gradient_reaches_input(
    defense: Defense, x: torch.Tensor, surrogate: str = "exact", temperature: float | None = None
) -> bool:
    """True if some non-zero gradient of the logits reaches the input under `surrogate`.

    The loss is a fixed random projection of the logits (a sum could have zero gradient, e.g. after a softmax).
    False when autograd cannot reach the input at all, or when every entry of the gradient is exactly zero.
    """
    x = x.detach().clone().to(defense.device).requires_grad_(True)
    with torch.enable_grad(), defense.surrogate(surrogate, temperature):
        logits = defense(x)
        if not isinstance(logits, torch.Tensor) or not logits.requires_grad:
            return False
        (grad,) = torch.autograd.grad((logits * _probe_weights(logits)).sum(), x, allow_unused=True)
    return grad is not None and bool(torch.isfinite(grad).all()) and bool((grad != 0).any())
