"""One wrapper around the model counts every forward and backward, so budgets are measured, not self-reported.

Counts are in images: a forward of a batch of 50 counts 50. A backward is counted when a gradient flows back
through the logits of a forward call (a hook on the output), whichever loss or library drove it.
"""
from __future__ import annotations

import torch
from torch import nn


class CountingModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_images = 0
        self.backward_images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_images += x.shape[0]
        logits = self.model(x)
        if logits.requires_grad:
            batch = x.shape[0]

            def count_backward(grad: torch.Tensor) -> torch.Tensor:
                self.backward_images += batch
                return grad

            logits.register_hook(count_backward)
        return logits
