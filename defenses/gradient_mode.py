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


@contextmanager
def layer_gradient_modes(
    model: nn.Module, modes: dict[str, str], temperature: float = DEFAULT_TEMPERATURE
) -> Iterator[nn.Module]:
    """Per-layer backward: MeanSparse layer `name` (as `meansparse_layers` names it) follows `modes[name]` inside
    the block, the others keep theirs; restored on exit. Forward values are unchanged, as with `gradient_mode`."""
    layers = dict(meansparse_layers(model))
    unknown = sorted(set(modes) - set(layers))
    if unknown:
        raise ValueError(f"no MeanSparse layer named {', '.join(unknown)}; the model has {', '.join(layers)}")
    for mode in modes.values():
        if mode not in GRADIENT_MODES:
            raise ValueError(f"gradient mode must be one of {GRADIENT_MODES}, not {mode!r}")
    saved = {name: (layers[name].gradient_mode, layers[name].temperature) for name in modes}
    for name, mode in modes.items():
        layers[name].gradient_mode, layers[name].temperature = mode, temperature
    try:
        yield model
    finally:
        for name, (old_mode, old_temperature) in saved.items():
            layers[name].gradient_mode, layers[name].temperature = old_mode, old_temperature
