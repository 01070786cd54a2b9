"""The adapters that fit a known kind of model to the Defense protocol, and `as_defense`, which picks one."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from defenses.calibrate import set_alpha
from defenses.ensemble import with_ensemble
from defenses.gradient_mode import DEFAULT_TEMPERATURE, gradient_mode
from defenses.meansparse import meansparse_layers
from defenses.opaque import OpaqueModel
from defenses.protocol import Defense, Undefended


class MeanSparseDefense(Defense):
    """A model containing MeanSparse layers: exact, straight-through (identity), smooth and ensemble surrogates."""

    surrogates = with_ensemble(("exact", "identity", "smooth"))

    def __init__(self, model: nn.Module, num_classes: int = 10, name: str = "model") -> None:
        super().__init__(model, num_classes, name)
        self.layers = meansparse_layers(model)
        if not self.layers:
            raise ValueError("MeanSparseDefense needs a model with MeanSparse layers")

    @property
    def alpha(self) -> float:
        return self.layers[0][1].alpha

    @property
    def description(self) -> str:
        return f"MeanSparse (alpha={self.alpha:g}, {len(self.layers)} layers) in {type(self.model).__name__}"

    def base_model(self) -> nn.Module:
        """The same network with every MeanSparse threshold at 0 (the operator then passes x through)."""
        return set_alpha(copy.deepcopy(self.model), 0.0).eval()

    def _surrogate_context(self, name: str, temperature: float | None) -> AbstractContextManager[Any]:
        return gradient_mode(self.model, name, DEFAULT_TEMPERATURE if temperature is None else temperature)


class _StraightThroughRound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, levels: int) -> torch.Tensor:
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class InputQuantization(Defense):
    """Bit-depth reduction of the input: exact gradients are zero almost everywhere; `identity` is BPDA."""

    surrogates = ("exact", "identity")

    def __init__(self, model: nn.Module, bits: int = 3, num_classes: int = 10, name: str = "model") -> None:
        super().__init__(model, num_classes, name)
        self.levels = 2**bits - 1
        self.bits = bits
        self._mode = "exact"

    @property
    def description(self) -> str:
        return f"input quantization to {self.bits} bits before {type(self.model).__name__}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mode == "identity":
            return self.model(_StraightThroughRound.apply(x, self.levels))
        return self.model(torch.round(x * self.levels) / self.levels)

    @contextmanager
    def _surrogate_context(self, name: str, temperature: float | None) -> Iterator[None]:
        old, self._mode = self._mode, name
        try:
            yield
        finally:
            self._mode = old


class RandomNoise(Defense):
    """Gaussian noise added to the input at every forward: randomized, so attacks need EOT.

    The noise comes from the defense's own generator, seeded at construction, so a run is reproducible.
    """

    randomized = True

    def __init__(
        self, model: nn.Module, sigma: float = 0.2, seed: int = 0, num_classes: int = 10, name: str = "model"
    ) -> None:
        super().__init__(model, num_classes, name)
        self.sigma = sigma
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def description(self) -> str:
        return f"Gaussian input noise (sigma={self.sigma:g}) before {type(self.model).__name__}"

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator).to(x.device, x.dtype)
        return self.model((x + self.sigma * noise).clamp(0, 1))


def as_defense(model: nn.Module, num_classes: int = 10, name: str = "model", opaque: bool = False) -> Defense:
    """Wrap a model in the adapter that fits it: MeanSparse layers are found automatically."""
    if isinstance(model, Defense):
        return model
    if opaque:
        return OpaqueModel(model, num_classes, name)
    if meansparse_layers(model):
        return MeanSparseDefense(model, num_classes, name)
    return Undefended(model, num_classes, name)
