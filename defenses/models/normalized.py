"""`Normalized`: input normalisation in front of a model, as RobustBench's `normalize_model` does for ImageNet.

RobustBench wraps an ImageNet model as `Sequential(normalize=ImageNormalizer, model=...)`; its checkpoints hold only
the inner model's keys, and its loader adds the `model.` prefix back. Here the normalisation constants are
non-persistent buffers, so the wrapper's state dict is exactly `model.<inner keys>` and loads strictly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalized(nn.Module):
    # registered buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, model: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean).view(1, len(mean), 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std).view(1, len(std), 1, 1), persistent=False)
        self.model = model
        self.input_shape = getattr(model, "input_shape", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
