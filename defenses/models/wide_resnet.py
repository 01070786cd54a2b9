"""The DeepMind-style WideResNet of RobustBench's CIFAR entries (MeanSparse ones included).

State-dict keys match RobustBench's `DMWideResNet` and `MeanSparse_DMWideResNet`: `init_conv`,
`layer.{g}.block.{b}.{batchnorm_0, conv_0, batchnorm_1, conv_1, shortcut}`, `batchnorm`, `logits`. The input
normalisation lives inside the model as non-persistent buffers, as in RobustBench, so it is not in checkpoints.
Each block has empty `meansparse_0/1/2` slots and the model a `meansparse_end` slot (parameter-free
`nn.Identity`, so they add no keys); `defenses.sparsify(..., placement="wrn")` fills them, which yields exactly
the official MeanSparse key layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class Swish(nn.SiLU):
    """RobustBench's Swish, `x * sigmoid(x)`, computed the same way so logits match its models bit for bit.

    `nn.SiLU`'s fused kernel rounds differently (about 1 ulp on a quarter of the values); subclassing it keeps
    `isinstance(m, nn.SiLU)` true, so `sparsify(..., placement="activations")` still finds it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


# "silu" is torch's fused nn.SiLU, what RobustBench's zoo passes as activation_fn for the SiLU WRNs (Swish differs by
# about 1 ulp); "swish" is RobustBench's own Swish class.
ACTIVATIONS = {"relu": nn.ReLU, "swish": Swish, "silu": nn.SiLU}


class WideResNetBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes, momentum=0.01)
        self.meansparse_0 = nn.Identity()
        self.relu_0 = activation()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)  # padded by hand ("SAME")
        self.batchnorm_1 = nn.BatchNorm2d(out_planes, momentum=0.01)
        self.meansparse_1 = nn.Identity()
        self.relu_1 = activation()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.has_shortcut = in_planes != out_planes
        self.shortcut: nn.Module | None = (
            nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False) if self.has_shortcut else None
        )
        self.meansparse_2 = nn.Identity()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_shortcut:
            x = self.relu_0(self.meansparse_0(self.batchnorm_0(x)))
            v = x
        else:
            v = self.relu_0(self.meansparse_0(self.batchnorm_0(x)))
        v = F.pad(v, (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1))
        out = self.conv_0(v)
        out = self.conv_1(self.relu_1(self.meansparse_1(self.batchnorm_1(out))))
        out = torch.add(x if self.shortcut is None else self.shortcut(x), out)  # shortcut is None iff not has_shortcut
        return self.meansparse_2(out)


class WideResNetGroup(nn.Module):
    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *[
                WideResNetBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, activation)
                for i in range(blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class NormalizedWideResNet(nn.Module):
    """What RobustBench's two WideResNets share, under the same parameter names so checkpoints load strictly:
    input normalization and padding, the stem conv, three groups of blocks, the BN-activation head (with a
    `meansparse_end` slot), an 8x8 average pool and the linear classifier. Subclasses build the groups."""

    input_shape = (3, 32, 32)

    # registered buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    mean: torch.Tensor
    std: torch.Tensor

    def _build(
        self,
        groups: Sequence[nn.Module],
        channels: Sequence[int],
        activation: type[nn.Module],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        padding: int,
        num_input_channels: int,
    ) -> None:
        self.register_buffer("mean", torch.tensor(mean).view(num_input_channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(num_input_channels, 1, 1), persistent=False)
        self.padding = padding
        self.init_conv = nn.Conv2d(num_input_channels, channels[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(*groups)
        self.batchnorm = nn.BatchNorm2d(channels[3], momentum=0.01)
        self.meansparse_end = nn.Identity()
        self.relu = activation()
        self.logits = nn.Linear(channels[3], num_classes)
        self.num_channels = channels[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding > 0:
            x = F.pad(x, (self.padding,) * 4)
        out = self.init_conv((x - self.mean) / self.std)
        out = self.layer(out)
        out = self.relu(self.meansparse_end(self.batchnorm(out)))
        out = F.avg_pool2d(out, 8).view(-1, self.num_channels)  # as RobustBench (32x32 input -> 8x8)
        return self.logits(out)


class DMWideResNet(NormalizedWideResNet):
    """WRN-depth-width; depth = 6 * blocks_per_group + 4 (e.g. 28, 34, 70, 94)."""

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 28,
        width: int = 10,
        activation: str = "swish",
        mean: tuple[float, ...] = CIFAR10_MEAN,
        std: tuple[float, ...] = CIFAR10_STD,
        padding: int = 0,
        num_input_channels: int = 3,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6k + 4, got {depth}")
        channels = [16, 16 * width, 32 * width, 64 * width]
        blocks = (depth - 4) // 6
        act = ACTIVATIONS[activation]
        groups = [WideResNetGroup(blocks, channels[g], channels[g + 1], 1 if g == 0 else 2, act) for g in range(3)]
        self._build(groups, channels, act, num_classes, mean, std, padding, num_input_channels)
