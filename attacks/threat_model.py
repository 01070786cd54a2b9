"""Threat models are value objects: they own projection and distance, so no attack re-implements them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NORMS = ("Linf", "L2")
# A float32 perturbation may overshoot eps by rounding (~1e-9 for Linf in pyautoattack); allow that much.
TOLERANCE = 1e-5


@dataclass(frozen=True)
class ThreatModel:
    """An Lp ball of radius eps around each input, intersected with the input bounds."""

    norm: str
    eps: float
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {self.norm!r}")
        if not (self.eps > 0) or (self.eps != math.inf and not math.isfinite(self.eps)):
            raise ValueError(f"eps must be > 0, not {self.eps}")

    @property
    def unbounded(self) -> bool:
        return self.eps == math.inf

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        delta = (x_adv - x).flatten(1)
        return delta.abs().amax(dim=1) if self.norm == "Linf" else delta.norm(p=2, dim=1)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The closest point (in this norm) inside the ball and the bounds, per sample."""
        delta = x_adv - x
        if not self.unbounded:
            if self.norm == "Linf":
                delta = delta.clamp(-self.eps, self.eps)
            else:
                norms = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
                factor = (self.eps / norms).clamp(max=1.0)
                delta = delta * factor.view(-1, *([1] * (x.dim() - 1)))
        return (x + delta).clamp(*self.bounds)

    def contains(self, x_adv: torch.Tensor, x: torch.Tensor, tolerance: float = TOLERANCE) -> torch.Tensor:
        """Per-sample: inside the ball (up to float tolerance) and inside the bounds."""
        low, high = self.bounds
        flat = x_adv.flatten(1)
        in_bounds = (flat >= low - tolerance).all(1) & (flat <= high + tolerance).all(1)
        in_ball = self.distance(x_adv, x) <= self.eps + tolerance * max(1.0, self.eps if not self.unbounded else 1.0)
        return in_bounds & in_ball & torch.isfinite(flat).all(1)

    def with_eps(self, eps: float) -> "ThreatModel":
        return ThreatModel(self.norm, eps, self.bounds)

    def __str__(self) -> str:
        return f"{self.norm} eps={self.eps:g}"
