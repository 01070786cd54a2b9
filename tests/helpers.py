"""Small seeded models shared by several test files."""

from __future__ import annotations

import torch
from torch import nn

from defenses.models.wide_resnet import DMWideResNet


def random_wrn(seed: int, depth: int = 10, width: int = 2) -> DMWideResNet:
    """A small WRN whose BN statistics and affine parameters are randomised, so every weight matters in eval mode."""
    torch.manual_seed(seed)
    model = DMWideResNet(depth=depth, width=width)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.2)
    return model.eval()
