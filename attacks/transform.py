"""TransformAttack: an attack whose threat is a parameterised transformation, not an Lp ball.

A spatial attack (rotation and translation) or a flow attack (stAdv) does not propose pixels inside a ball around
x; it proposes *parameters* of a transformation (an angle and a shift, a flow field). What such an attack poses as
a threat is therefore declared by three methods, which the judge (attacks.judge) uses instead of the
`ThreatModel`: `clip_params` keeps parameters inside the attack's limits (as `ThreatModel.project` does for
points), `apply` re-creates the image from the clipped parameters (so what is scored is what the limits allow,
never the attack's own image), and `param_distance` measures the result in the attack's own units (as
`ThreatModel.distance` does in the Lp norm).

Its own file, beside `threat_model.py` rather than inside `base.py`: `base.py` is the protocol every attack
follows, and the judge's Lp path needs nothing more; this is the second kind of threat, with its own contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from attacks.base import Attack


class TransformAttack(Attack, ABC):
    """Base class of the transformation attacks. Subclasses set `threat_kind` (not "lp": e.g. "spatial" for a
    rotation/translation, "flow" for a per-pixel flow field) and implement the three methods below and `perturb`,
    whose `AttackOutput.params` holds one parameter row per sample.
    """

    threat_kind: str = "transform"
    role = "a spatial threat model, reported apart from Lp"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The judge picks the Lp path on threat_kind == "lp": a transformation attack declaring it would be
        # projected into an Lp ball instead of having its parameters clipped.
        if cls.threat_kind == "lp":
            raise TypeError(f"{cls.__name__} is a TransformAttack and so cannot declare threat_kind 'lp'")

    @abstractmethod
    def clip_params(self, params: torch.Tensor) -> torch.Tensor:
        """Parameters (n, k) clamped into the attack's limits; NaN becomes the identity transformation."""

    @abstractmethod
    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The transformation: images (n, C, H, W) and parameters (n, k) -> images (n, C, H, W). The same function
        the attack searches with, so the judge re-creates exactly the image the attack saw."""

    @abstractmethod
    def param_distance(self, params: torch.Tensor) -> torch.Tensor:
        """Per-sample size of the transformation, (n,), in the attack's own units (e.g. a fraction of the limits,
        or pixels of flow): what the judge records as the distance."""
