"""Every forward and backward through the model is counted, so budgets are measured, not self-reported.

Counts are in images: a forward of a batch of 50 counts 50. A backward is counted when a gradient flows back
through the logits of a forward call (a hook on the output), whichever loss or library drove it. Attacks see the
model through `CountingModel`; probes, which need the defense itself, are counted with `count_calls` (hooks on
the module, removed on exit).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class CallCounter:
    def __init__(self) -> None:
        self.forward_images = 0
        self.backward_images = 0

    def saw(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        self.forward_images += x.shape[0]
        if logits.requires_grad:
            batch = x.shape[0]

            def count_backward(grad: torch.Tensor) -> torch.Tensor:
                self.backward_images += batch
                return grad

            logits.register_hook(count_backward)


class CountingModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.counter = CallCounter()

    @property
    def forward_images(self) -> int:
        return self.counter.forward_images

    @property
    def backward_images(self) -> int:
        return self.counter.backward_images

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        self.counter.saw(x, logits)
        return logits


@contextmanager
def count_calls(module: nn.Module) -> Iterator[CallCounter]:
    """Count the calls of `module` itself (not of its children) inside the block."""
    counter = CallCounter()

    def hook(_: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            counter.saw(inputs[0], output)

    handle = module.register_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()
