"""The Attack protocol: an attack proposes points; the judge (attacks.judge) decides what they achieved.

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
    # For transformation attacks (spatial, flow): the parameters the judge re-applies itself.
    params: torch.Tensor | None = None


class Attack:
    """Base class. Subclasses set `name` (and the class attributes below that differ), and implement `perturb`.

    surrogate: which backward of the defense to use (`exact`, `identity`, `smooth`, `ensemble`); temperature for
        `smooth`.
    eot: number of draws to average gradients over, for randomized defenses (1 = none).
    on_survivors: run only on the samples every earlier attack of the plan left robust (the suite marks the others
        `not_run:cascade`), whatever the suite's mode; name modifier `+survivors`.

    What an attack *is* lives in attributes that the store records with every result, never parsed back out of
    its label: `threat_kind` (which threat it poses: an Lp ball, a spatial transform, a flow field),
    `gradient_free` (it only queries outputs), `single_step` (one gradient step, for the single-step check), and
    the derived `gradient` (where its gradients come from).
    """

    name: str = "attack"
    threat_kind: str = "lp"  # lp | spatial | flow
    gradient_free: bool = False
    own_gradients: bool = False  # it sets its own backward at every stage, so a +bpda modifier is refused
    role: str | None = None  # what it is for, in a few words, where its gradient does not say it (audit/plan/roles.py)
    single_step: bool = False
    handles_eot: bool = False  # the attack averages gradients over `eot` draws itself (else the judge wraps EOT)
    # The run's seed as given for every batch, as its library's own evaluation does (AutoAttack), instead of one
    # derived per batch: then it reproduces that evaluation per sample (benchmarks/audit_vs_autoattack.py).
    seed_as_given: bool = False

    def __init__(
        self, surrogate: str = "exact", temperature: float | None = None, eot: int = 1, on_survivors: bool = False
    ) -> None:
        self.surrogate = surrogate
        self.temperature = temperature
        self.eot = eot
        self.on_survivors = on_survivors

    @property
    def label(self) -> str:
        """The attack's canonical name (`attacks.names`): how gradients were taken and every non-default budget."""
        from attacks.names import label_of

        return label_of(self)

    @property
    def gradient(self) -> str:
        """Where the attack's gradients come from: `exact`, `bpda-<surrogate>`, `unrolled`, `transfer:<source>` or
        `none`."""
        if self.gradient_free:
            return "none"
        if self.surrogate == "exact":
            return "exact"
        if self.surrogate == "unrolled":  # the exact derivative of a test-time defense's unrolled forward
            return "unrolled"
        return "bpda-" + self.surrogate + (f"-T{self.temperature:g}" if self.temperature is not None else "")

    def attributes(self) -> dict[str, Any]:
        """What the store records about this attack next to its results."""
        from attacks.names import budget_of, family_of

        return {
            "threat_kind": self.threat_kind,
            "gradient": self.gradient,
            "single_step": self.single_step,
            "family": family_of(self),
            "budget": budget_of(self),
            "on_survivors": self.on_survivors,
        }

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """What identifies this attack's settings (for resume checks and the report)."""
        return {
            key: value for key, value in vars(self).items() if isinstance(value, (int, float, str, bool, type(None)))
        }
