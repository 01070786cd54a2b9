"""Threat models are value objects: they own projection, distance, the steepest-ascent step and random draws for
their norm, so no attack, probe or training loop branches on the norm itself."""

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

    def clip_delta(self, delta: torch.Tensor) -> torch.Tensor:
        """A perturbation clipped into the ball alone (the bounds are applied to x + delta by the caller)."""
        if self.unbounded:
            return delta
        if self.norm == "Linf":
            return delta.clamp(-self.eps, self.eps)
        norms = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        return delta * (self.eps / norms).clamp(max=1.0).view(-1, *([1] * (delta.dim() - 1)))

    def steepest_step(self, grad: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent direction of unit size in this norm: the sign for Linf, the normalised gradient for
        L2 (a zero gradient stays zero)."""
        if self.norm == "Linf":
            return grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-20).view(-1, *([1] * (grad.dim() - 1)))
        return grad / norms

    def random_direction(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """A random direction of unit size in this norm: Rademacher signs for Linf, a normalised Gaussian for L2."""
        if self.norm == "Linf":
            return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
        d = torch.randn(shape, generator=generator)
        return d / d.flatten(1).norm(dim=1).clamp_min(1e-20).view(-1, *([1] * (len(shape) - 1)))

    def random_delta(
        self, shape: tuple[int, ...], generator: torch.Generator, radius: float | None = None
    ) -> torch.Tensor:
        """A random perturbation inside the ball of `radius` (default eps): uniform per coordinate for Linf,
        a uniform radius along a random direction for L2."""
        radius = self.eps if radius is None else radius
        if self.norm == "Linf":
            return (torch.rand(shape, generator=generator) * 2 - 1) * radius
        u = torch.rand(shape[0], generator=generator).view(-1, *([1] * (len(shape) - 1)))
        return self.random_direction(shape, generator) * u * radius

    def covering_eps(self, x: torch.Tensor) -> float:
        """The smallest eps whose ball covers the whole input box: unbounded in effect, finite for APGD."""
        width = float(self.bounds[1] - self.bounds[0])
        return width if self.norm == "Linf" else width * math.sqrt(x[0].numel())

    def with_eps(self, eps: float) -> ThreatModel:
        return ThreatModel(self.norm, eps, self.bounds)

    def __str__(self) -> str:
        return f"{self.norm} eps={self.eps:g}"
