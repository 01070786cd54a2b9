"""The Defense protocol: what the attack zoo and the diagnostics see of a defended model.

A Defense is an `nn.Module` whose forward is the *exact* defended forward (logits, images in [0, 1], NCHW),
plus `surrogate(name)`, a context in which the same forward values carry a surrogate backward (BPDA).
Success is always judged on the exact forward; a surrogate only changes how gradients are taken.

The adapters that fit a model to it live beside it and depend on it, never the other way round:
defenses/adapters.py (MeanSparse, input quantization, input noise, `as_defense`) and defenses/opaque.py (a user's
own module, with automatic BPDA).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from defenses.ensemble import ENSEMBLE, ensemble_forward


class Defense(nn.Module):
    """Base adapter. Subclasses set `surrogates`, `randomized`, and describe themselves."""

    surrogates: tuple[str, ...] = ("exact",)
    randomized: bool = False  # declared by the defense (or by `declared_random` for the audit): EOT, several draws
    bounds: tuple[float, float] = (0.0, 1.0)

    def __init__(self, model: nn.Module, num_classes: int = 10, name: str = "model") -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.name = name
        self.train(False)  # the wrapper's own flag too, not only the wrapped model's

    @property
    def description(self) -> str:
        return f"{type(self).__name__} around {type(self.model).__name__}"

    @property
    def device(self) -> torch.device:
        tensor: torch.Tensor | None = next(self.model.parameters(), None)
        if tensor is None:
            tensor = next(self.model.buffers(), torch.empty(0))
        return tensor.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @contextmanager
    def surrogate(self, name: str = "exact", temperature: float | None = None) -> Iterator[Defense]:
        """Inside the block, backward follows surrogate `name`; forward values are unchanged.

        `ensemble` (offered with identity and smooth) averages the gradients of identity and of smooth at every
        temperature of the sweep (defenses/ensemble.py); its `temperature` is unused."""
        if name not in self.surrogates:
            raise ValueError(f"{self.description} has no surrogate {name!r}; it offers {self.surrogates}")
        if name == ENSEMBLE:
            with ensemble_forward(self):
                yield self
            return
        with self._surrogate_context(name, temperature):
            yield self

    def _surrogate_context(self, name: str, temperature: float | None) -> AbstractContextManager[Any]:
        return nullcontext()

    @contextmanager
    def frozen(self) -> Iterator[Defense]:
        """Inside the block no parameter asks for a gradient: attacks and probes need input gradients only, and a
        library that calls `loss.backward()` (pyautoattack's FAB does) would otherwise also compute every weight
        gradient and add it to `.grad`. Input gradients and forward values are unchanged."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        for parameter in trainable:
            parameter.requires_grad_(False)
        try:
            yield self
        finally:
            for parameter in trainable:
                parameter.requires_grad_(True)

    def reseed(self, seed: int) -> None:
        """Fix the randomness of the next forwards. A randomized defense with a generator of its own overrides
        this; one declared randomized without one is assumed to draw from torch's global generator."""
        if self.randomized:
            torch.manual_seed(seed)

    def base_model(self) -> nn.Module | None:
        """The same model without its defense, for transfer attacks and the gain table; None when there is none."""
        return None

    def train(self, mode: bool = True) -> Defense:
        # A defense is always evaluated in eval mode; `train()` would change BatchNorm and the results.
        return super().train(False)


class Undefended(Defense):
    """A plain model: exact gradients only."""


def declared_random(defense: Defense) -> Defense:
    """The same defense (its modules, weights and generators shared) declared randomized: what the audit attacks and
    scores once it finds the forward random though the model does not say so. A shallow copy, so the object the
    caller built keeps what its author declared."""
    found = copy.copy(defense)
    found.randomized = True
    return found
