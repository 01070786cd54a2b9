"""The Attack protocol: an attack proposes points; the runner (attacks.runner) decides what they achieved.

An attack gets a model that is already wrapped for it (call counting, the defense's surrogate backward set, EOT
if asked) and a seed; it returns an `AttackOutput` with its raw proposals. It never grades itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attacks.threat_model import ThreatModel


@dataclass
class AttackOutput:
    """Raw, untrusted proposals of one attack on one batch."""

    x_adv: torch.Tensor
    # Per-sample extras worth keeping, e.g. {"broken_by": [...], "queries": tensor}.
    extra: dict[str, Any] = field(default_factory=dict)
    # For transformation attacks (spatial, flow): the parameters the runner re-applies itself.
    params: torch.Tensor | None = None


class Attack:
    """Base class. Subclasses set `name`, `uses_gradients`, and implement `perturb`.

    surrogate: which backward of the defense to use (`exact`, `identity`, `smooth`); temperature for `smooth`.
    eot: number of draws to average gradients over, for randomized defenses (1 = none).
    """

    name: str = "attack"
    uses_gradients: bool = True
    kind: str = "lp"  # lp | spatial | flow

    def __init__(self, surrogate: str = "exact", temperature: float | None = None, eot: int = 1) -> None:
        self.surrogate = surrogate
        self.temperature = temperature
        self.eot = eot

    @property
    def label(self) -> str:
        """A unique, readable name that says how gradients were taken."""
        label = self.name
        if self.surrogate != "exact":
            label += f"+bpda-{self.surrogate}"
            if self.surrogate == "smooth" and self.temperature is not None:
                label += f"-T{self.temperature:g}"
        if self.eot > 1:
            label += f"+eot{self.eot}"
        return label

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                seed: int) -> AttackOutput:
        raise NotImplementedError

    def config(self) -> dict:
        """What identifies this attack's settings (for resume checks and the report)."""
        return {key: value for key, value in vars(self).items() if isinstance(value, (int, float, str, bool, type(None)))}
