"""ConvNeXt with timm's exact module tree and state-dict layout (`timm.create_model("convnext_large")`).

Hand-written because timm cannot be imported on these machines (it imports torchvision, which does not load beside
the CPU torch wheel); when timm does import, `build_convnext(..., backend="auto")` uses timm itself. This is the
path timm's `ConvNeXt` takes for the RobustBench entries: patch stem, `conv_mlp=False` (channels-last MLP with
`nn.Linear`), LayerNorm eps 1e-6, layer scale, no stochastic depth at inference (`drop_path` is `nn.Identity`),
`NormMlpClassifierHead` without hidden layer. Module names match timm's, so `sparsify(..., placement="convnext")`
puts MeanSparse where RobustBench's `add_custom_layer_imagenet` puts it (`mlp.act.0`, `drop_path.1`), and the key
list is tested against timm's published parameter names (tests/fixtures/timm_keys/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONVNEXT_LARGE: dict[str, Any] = {"depths": (3, 3, 27, 3), "dims": (192, 384, 768, 1536)}


class GELU(nn.Module):
    """timm's `layers.activations.GELU` (exact erf GELU); RobustBench's placement looks for this class."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x)


class LayerNorm(nn.LayerNorm):
    """timm's channels-last `LayerNorm` (eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)


class LayerNorm2d(nn.LayerNorm):
    """timm's `LayerNorm2d`: LayerNorm over the channels of an NCHW map, through a permute as timm does it."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Module):
    """timm's `layers.Mlp` (keys `fc1`, `fc2`; `act` is where MeanSparse goes before the GELU)."""

    def __init__(self, in_features: int, hidden_features: int, act_layer: type[nn.Module] = GELU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 4, ls_init_value: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True)
        self.norm = LayerNorm(dim)
        self.mlp = Mlp(dim, int(mlp_ratio * dim))
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim))
        self.shortcut = nn.Identity()
        self.drop_path = nn.Identity()  # stochastic depth is off at inference; RobustBench puts MeanSparse after it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_dw(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.mlp(x)
        x = x.permute(0, 3, 1, 2)
        x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return self.drop_path(x) + self.shortcut(shortcut)


class ConvNeXtStage(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int, depth: int) -> None:
        super().__init__()
        if in_chs != out_chs or stride > 1:
            self.downsample: nn.Module = nn.Sequential(
                LayerNorm2d(in_chs), nn.Conv2d(in_chs, out_chs, 2, stride=stride)
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(out_chs) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class NormMlpClassifierHead(nn.Module):
    """timm's head for ConvNeXt (no hidden layer): average pool, LayerNorm2d, flatten, linear."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.global_pool = nn.AdaptiveAvgPool2d(1)  # what timm's SelectAdaptivePool2d('avg') uses for NCHW
        self.norm = LayerNorm2d(in_features)
        self.flatten = nn.Flatten(1)
        self.pre_logits = nn.Identity()
        self.drop = nn.Dropout(0.0)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_logits(self.flatten(self.norm(self.global_pool(x))))
        return self.fc(self.drop(x))


class ConvNeXt(nn.Module):
    """timm's `ConvNeXt` on the path `convnext_large` takes (defaults: ConvNeXt-L, 1000 classes)."""

    input_shape = (3, 224, 224)

    def __init__(
        self,
        num_classes: int = 1000,
        depths: Sequence[int] = CONVNEXT_LARGE["depths"],
        dims: Sequence[int] = CONVNEXT_LARGE["dims"],
        patch_size: int = 4,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, dims[0], kernel_size=patch_size, stride=patch_size), LayerNorm2d(dims[0])
        )
        prev = dims[0]
        stages = []
        for i in range(4):
            stages.append(ConvNeXtStage(prev, dims[i], 1 if i == 0 else 2, depths[i]))
            prev = dims[i]
        self.stages = nn.Sequential(*stages)
        self.norm_pre = nn.Identity()
        self.head = NormMlpClassifierHead(prev, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's init (trunc_normal std 0.02, zero bias); it only matters for random-weight tests.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm_pre(self.stages(self.stem(x))))


def build_convnext(
    num_classes: int = 1000,
    depths: Sequence[int] = CONVNEXT_LARGE["depths"],
    dims: Sequence[int] = CONVNEXT_LARGE["dims"],
    backend: str = "auto",
) -> nn.Module:
    """ConvNeXt from timm when it imports (backend `auto` or `timm`), else this module's copy (`ours`)."""
    if backend not in ("auto", "timm", "ours"):
        raise ValueError(f"backend must be auto, timm or ours, not {backend!r}")
    if backend != "ours":
        timm = _import_timm(required=backend == "timm")
        if timm is not None:
            from timm.models.convnext import ConvNeXt as TimmConvNeXt

            model = TimmConvNeXt(num_classes=num_classes, depths=tuple(depths), dims=tuple(dims))
            model.input_shape = ConvNeXt.input_shape  # what `sparsify` runs its shape-finding forward with
            return model
    return ConvNeXt(num_classes=num_classes, depths=depths, dims=dims)


def _import_timm(required: bool) -> Any:  # the timm module or None
    try:
        import timm
    except Exception:  # noqa: BLE001 - timm fails with RuntimeError/ImportError when torchvision does not load
        if required:
            raise
        return None
    return timm
