"""Switch the backward of every MeanSparse layer in a model at run time; forward stays bit-for-bit exact."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from defenses.meansparse import GRADIENT_MODES, meansparse_layers

DEFAULT_TEMPERATURE = 0.1


@contextmanager
def gradient_mode(model: nn.Module, mode: str, temperature: float = DEFAULT_TEMPERATURE) -> Iterator[nn.Module]:
    """`with gradient_mode(model, "identity"):` - gradients through MeanSparse follow `mode` inside the block."""
    if mode not in GRADIENT_MODES:
        raise ValueError(f"gradient mode must be one of {GRADIENT_MODES}, not {mode!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, not {temperature}")
    layers = [layer for _, layer in meansparse_layers(model)]
    saved = [(layer.gradient_mode, layer.temperature) for layer in layers]
    for layer in layers:
        layer.gradient_mode, layer.temperature = mode, temperature
    try:
        yield model
    finally:
        for layer, (old_mode, old_temperature) in zip(layers, saved):
            layer.gradient_mode, layer.temperature = old_mode, old_temperature
