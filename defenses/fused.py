"""MeanSparse's elementwise work as single fused kernels (torch.compile), with an eager fallback.

Why by hand: in eager PyTorch the official operator `where(|x - mean| < crop, mean, x)` is four passes over the
activations (subtract, abs, compare, select) and the select on a boolean mask is itself slow on the CPU; on a
small model that made the MeanSparse forward 1.7x the base forward. One fused kernel reads x once and writes once,
like an activation function. The fused kernel computes the same IEEE operations (subtract, absolute value, strict
comparison, select), so its output is bit-for-bit the eager one (tests/test_meansparse.py checks it against the
official formula). The backward passes are fused the same way: compiling the forward for autograd instead was
slower than eager on the CPU, so the gradients are explicit kernels behind one autograd Function.

MeanSparse sits right before a ReLU in most placements (the paper's: after each BatchNorm, before its
activation). The `*_relu` kernels do both in the same single pass, so the ReLU's own pass over the activations
disappears too: the operator then costs about nothing next to the base model's forward. Their values are the
composition's bit for bit (the same selects, in the same order).

torch.compile needs a C++ compiler on the CPU (Triton on CUDA); where it fails, the eager code runs instead,
with one warning. The first call compiles (seconds; cached on disk for later processes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def dead_zone_eager(x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """The official operator: the channel mean inside the band |x - mean| < crop (strict), x outside."""
    return torch.where((x - mean).abs() < crop, mean, x)


def dead_zone_backward_eager(
    grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor
) -> torch.Tensor:
    """What autograd gives through the official operator: 0 inside the band, the incoming gradient outside."""
    return torch.where((x - mean).abs() < crop, torch.zeros_like(grad), grad)


def smooth_backward_eager(
    grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor, tau: torch.Tensor
) -> torch.Tensor:
    """grad times d/dx of mean + d * sigmoid((|d| - crop) / tau), d = x - mean:  s + |d| * s * (1 - s) / tau."""
    distance = (x - mean).abs()
    s = torch.sigmoid((distance - crop) / tau)
    return grad * (s + distance * s * (1 - s) / tau)


def dead_zone_relu_eager(x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """relu(the official operator)."""
    return torch.relu(dead_zone_eager(x, mean, crop))


def _relu_gate(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """The ReLU's backward at the MeanSparse output (autograd's: the gradient where that output is > 0, else 0)."""
    return torch.where(dead_zone_eager(x, mean, crop) > 0, grad, torch.zeros_like(grad))


def dead_zone_relu_backward_eager(
    grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor
) -> torch.Tensor:
    return dead_zone_backward_eager(_relu_gate(grad, x, mean, crop), x, mean, crop)


def identity_relu_backward_eager(
    grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor
) -> torch.Tensor:
    return _relu_gate(grad, x, mean, crop)


def smooth_relu_backward_eager(
    grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, crop: torch.Tensor, tau: torch.Tensor
) -> torch.Tensor:
    return smooth_backward_eager(_relu_gate(grad, x, mean, crop), x, mean, crop, tau)


class _Fused:
    """Calls the compiled version of `eager`; after a compiler failure, `eager` itself, for good."""

    def __init__(self, eager: Callable[..., torch.Tensor]) -> None:
        self.eager = eager
        self.compiled: Callable[..., torch.Tensor] | None = None
        self.failed = False

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        # Under a TorchFunctionMode (automatic BPDA's recording mode) dynamo would trace the mode's Python too;
        # with the ReLU fused in, that gave wrong values (tests/test_auto_bpda.py), so such calls run eagerly.
        if self.failed or torch._C._is_torch_function_mode_enabled():
            return self.eager(*tensors)
        if self.compiled is None:
            # dynamic=True: one kernel for every batch size and layer shape, no recompiling per attack batch.
            self.compiled = torch.compile(self.eager, dynamic=True)
        try:
            return self.compiled(*tensors)
        except Exception as error:  # noqa: BLE001 - any compiler failure; a genuine error re-raises from eager
            self.failed = True
            log.warning(
                "MeanSparse runs unfused (%s: %s); results are the same, only slower",
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )
            return self.eager(*tensors)


dead_zone = _Fused(dead_zone_eager)
dead_zone_backward = _Fused(dead_zone_backward_eager)
smooth_backward = _Fused(smooth_backward_eager)
dead_zone_relu = _Fused(dead_zone_relu_eager)
dead_zone_relu_backward = _Fused(dead_zone_relu_backward_eager)
identity_relu_backward = _Fused(identity_relu_backward_eager)
smooth_relu_backward = _Fused(smooth_relu_backward_eager)
