"""RobustBench's robust-architecture WideResNet (Peng et al. 2023, "RaWRN"), as in its model zoo.

Transcribed from RobustBench's `robustarch_wide_resnet.py` (`NormalizedWideResNet`) and its MeanSparse copy
`Meansparse_ra_wrn_70_16.py`, because RobustBench itself needs torchvision (for `SqueezeExcitation`), which
cannot be imported beside the CPU torch here. State-dict keys match both files: `init_conv`,
`layer.{g}.block.{b}.{batchnorm_0, conv_0, batchnorm_1, conv_1, shortcut, se.fc1, se.fc2}`, `batchnorm`, `logits`.
As in our DM WideResNet, each block has empty `meansparse_0/1/2` slots and the model a `meansparse_end` slot
(parameter-free `nn.Identity`); `sparsify(..., placement="wrn")` fills them, which gives the official MeanSparse
keys. The input normalisation is a non-persistent buffer (RobustBench keeps it as a plain attribute), so it is
not in checkpoints.

RaWRN-70-16 (`Amini2024MeanSparse_Ra_WRN_70_16`): stem width 96, depths (30, 31, 10), stage widths
(216, 432, 864), SiLU, squeeze-excitation with ratio 0.25 and ReLU after the second convolution (`se_order=2`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defenses.models.wide_resnet import CIFAR10_MEAN, CIFAR10_STD, NormalizedWideResNet

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}


class SqueezeExcitation(nn.Module):
    """torchvision's `ops.misc.SqueezeExcitation` (same keys `fc1`, `fc2`, same arithmetic), without torchvision."""

    def __init__(self, input_channels: int, squeeze_channels: int, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class RaBlock(nn.Module):
    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        stride: int,
        groups: int,
        activation: type[nn.Module],
        se_ratio: float | None,
        se_activation: type[nn.Module],
        se_order: int,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"unsupported stride {stride}")
        self.batchnorm_0 = nn.BatchNorm2d(in_planes, momentum=0.01)
        self.meansparse_0 = nn.Identity()
        self.relu_0 = activation()  # RobustBench uses inplace=True; same values, and safe under autograd here
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride, 0, groups=groups, bias=False)  # padded by hand
        self.batchnorm_1 = nn.BatchNorm2d(out_planes, momentum=0.01)
        self.meansparse_1 = nn.Identity()
        self.relu_1 = activation()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, groups=groups, bias=False)
        self.has_shortcut = in_planes != out_planes
        self.shortcut: nn.Module | None = (
            nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False) if self.has_shortcut else None
        )
        self.stride = stride
        self.se = None
        self.se_order = se_order
        if se_ratio:
            self.se = SqueezeExcitation(out_planes, int(round(se_ratio * out_planes)), se_activation)
        self.meansparse_2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_shortcut:
            x = self.relu_0(self.meansparse_0(self.batchnorm_0(x)))
            v = x
        else:
            v = self.relu_0(self.meansparse_0(self.batchnorm_0(x)))
        v = F.pad(v, (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1))
        out = self.conv_0(v)
        if self.se is not None and self.se_order == 1:
            out = self.se(out)
        out = self.conv_1(self.relu_1(self.meansparse_1(self.batchnorm_1(out))))
        if self.se is not None and self.se_order == 2:
            out = self.se(out)
        out = torch.add(x if self.shortcut is None else self.shortcut(x), out)  # shortcut is None iff not has_shortcut
        return self.meansparse_2(out)


class RaBlockGroup(nn.Module):
    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int, **kwargs: Any) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *[
                RaBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, **kwargs)
                for i in range(blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class RobustArchWideResNet(NormalizedWideResNet):
    """RobustBench's `NormalizedWideResNet` (defaults: RaWRN-70-16 on CIFAR-10)."""

    def __init__(
        self,
        num_classes: int = 10,
        stem_width: int = 96,
        depth: Sequence[int] = (30, 31, 10),
        stage_width: Sequence[int] = (216, 432, 864),
        groups: Sequence[int] = (1, 1, 1),
        activation: str = "silu",
        se_ratio: float | None = 0.25,
        se_activation: str = "relu",
        se_order: int = 2,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        padding: int = 0,
        num_input_channels: int = 3,
    ) -> None:
        super().__init__()
        channels = [stem_width, *stage_width]
        block_kwargs = dict(
            activation=ACTIVATIONS[activation],
            se_ratio=se_ratio,
            se_activation=ACTIVATIONS[se_activation],
            se_order=se_order,
        )
        layer_groups: list[nn.Module] = [
            RaBlockGroup(depth[g], channels[g], channels[g + 1], 1 if g == 0 else 2, groups=groups[g], **block_kwargs)
            for g in range(3)
        ]
        self._build(
            layer_groups, channels, ACTIVATIONS[activation], num_classes, mean, std, padding, num_input_channels
        )
