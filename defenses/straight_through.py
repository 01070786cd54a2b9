"""Non-differentiable input transforms whose author already handled the gradient: the forward rounds, the
backward is the identity (a straight-through estimator, Bengio et al. 2013; BPDA built in, Athalye et al. 2018).

They *look* masked to a scanner (the forward jumps, so finite differences disagree with the gradient), yet the
model's own gradient is the one an adaptive attacker would pick, so exact-gradient attacks lose nothing:
sound by construction, the calibration's test that a symptom alone does not decide masking
(benchmarks/calibration_set.py).

    STEQuantizer   bit-depth reduction round(x * levels) / levels, identity backward
    JPEGRounding   JPEG-like compression: orthonormal 2-D DCT of each 28x28 channel, coefficients rounded to a
                   step, inverse DCT; identity backward
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class _StraightThrough(torch.autograd.Function):
    """forward: `transform(x)`; backward: the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, transform: Any) -> torch.Tensor:
        return transform(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class STEQuantizer(nn.Module):
    """round(x * (2**bits - 1)) / (2**bits - 1) before `model`, differentiated as the identity."""

    def __init__(self, model: nn.Module, bits: int = 3) -> None:
        super().__init__()
        self.model, self.levels = model, 2**bits - 1

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_StraightThrough.apply(x, self._quantize))


def dct_matrix(size: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix (rows are basis vectors), so the inverse is its transpose."""
    k = torch.arange(size, dtype=torch.float64).view(-1, 1)
    i = torch.arange(size, dtype=torch.float64).view(1, -1)
    basis = torch.cos(math.pi * (2 * i + 1) * k / (2 * size)) * math.sqrt(2 / size)
    basis[0] /= math.sqrt(2)
    return basis.float()


class JPEGRounding(nn.Module):
    """DCT coefficients rounded to multiples of `step` (the lossy step of JPEG), then back, clamped to [0, 1]."""

    basis: torch.Tensor  # a registered buffer, declared for the type checker

    def __init__(self, model: nn.Module, step: float = 0.1, size: int = 28) -> None:
        super().__init__()
        self.model, self.step = model, step
        self.register_buffer("basis", dct_matrix(size))

    def _compress(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.basis @ x @ self.basis.T
        coefficients = torch.round(coefficients / self.step) * self.step
        return (self.basis.T @ coefficients @ self.basis).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_StraightThrough.apply(x, self._compress))


__all__ = ["JPEGRounding", "STEQuantizer", "dct_matrix"]
