"""Swin Transformer with timm's exact state-dict layout (`swin_large_patch4_window7_224`, timm >= 0.9 NHWC layout).

RobustBench does not build the MeanSparse Swin-L from timm: it ships a copy of timm's `swin_transformer.py`
(`Meansparse_swin_L.py`) with MeanSparse written into the forward pass: in every block after the attention residual
(`meansparse1`) and after the MLP residual (`meansparse2`), and in every MLP after `fc1` (`mlp.meansparse1`) and
after `fc2` (`mlp.meansparse2`), all on (N, tokens, C) features. This file transcribes that copy, with empty
`nn.Identity` slots where MeanSparse goes, so the base model is timm's Swin key for key and
`sparsify(..., placement="swin")` fills the slots with the official key names. timm cannot be imported here
(torchvision does not load beside the CPU torch), and even where it can, timm's own Swin has no such slots, so
this copy is used everywhere, as RobustBench does. Attention takes timm's default, non-fused path
(`use_fused_attn(experimental=True)` is False unless TIMM_FUSED_ATTN=2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

SWIN_LARGE: dict[str, Any] = {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48), "window_size": 7}


def window_partition(x: torch.Tensor, window_size: tuple[int, int]) -> torch.Tensor:
    B, H, W, C = x.shape
    x = x.view(B, H // window_size[0], window_size[0], W // window_size[1], window_size[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size[0], window_size[1], C)


def window_reverse(windows: torch.Tensor, window_size: tuple[int, int], H: int, W: int) -> torch.Tensor:
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size[0], W // window_size[1], window_size[0], window_size[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, C)


def relative_position_index(win_h: int, win_w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(win_h), torch.arange(win_w), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += win_h - 1
    relative[:, :, 1] += win_w - 1
    relative[:, :, 0] *= 2 * win_w - 1
    return relative.sum(-1)


class WindowAttention(nn.Module):
    # registered buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    relative_position_index: torch.Tensor

    def __init__(self, dim: int, num_heads: int, window_size: tuple[int, int]) -> None:
        super().__init__()
        self.window_size = window_size
        self.window_area = window_size[0] * window_size[1]
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(*window_size), persistent=False)
        self.qkv = nn.Linear(dim, head_dim * num_heads * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(head_dim * num_heads, dim)
        self.proj_drop = nn.Dropout(0.0)
        self.softmax = nn.Softmax(dim=-1)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _rel_pos_bias(self) -> torch.Tensor:
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(self.window_area, self.window_area, -1).permute(2, 0, 1).contiguous()
        return bias.unsqueeze(0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        attn = attn + self._rel_pos_bias()
        if mask is not None:
            num_win = mask.shape[0]
            attn = attn.view(-1, num_win, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.attn_drop(self.softmax(attn))
        x = (attn @ v).transpose(1, 2).reshape(B_, N, -1)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """timm's Mlp with RobustBench's two MeanSparse slots: after fc1 (before GELU) and after fc2."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(0.0)
        self.meansparse1 = nn.Identity()
        self.meansparse2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.meansparse1(self.fc1(x)))
        x = self.fc2(self.norm(self.drop1(x)))
        return self.drop2(self.meansparse2(x))


class SwinTransformerBlock(nn.Module):
    # registered buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    attn_mask: torch.Tensor

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        target = (window_size, window_size)
        # no window larger than the feature map, and no shift where the window covers it
        self.window_size = (min(input_resolution[0], target[0]), min(input_resolution[1], target[1]))
        self.shift_size = tuple(0 if r <= w else shift_size for r, w in zip(input_resolution, self.window_size))
        self.window_area = self.window_size[0] * self.window_size[1]
        self.norm1 = nn.LayerNorm(dim)
        self.meansparse1 = nn.Identity()
        self.attn = WindowAttention(dim, num_heads, self.window_size)
        self.drop_path1 = nn.Identity()  # stochastic depth: off at inference
        self.norm2 = nn.LayerNorm(dim)
        self.meansparse2 = nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = nn.Identity()
        self.register_buffer("attn_mask", self._attn_mask(), persistent=False)

    def _attn_mask(self) -> torch.Tensor | None:
        if not any(self.shift_size):
            return None
        H = math.ceil(self.input_resolution[0] / self.window_size[0]) * self.window_size[0]
        W = math.ceil(self.input_resolution[1] / self.window_size[1]) * self.window_size[1]
        img_mask = torch.zeros((1, H, W, 1))
        count = 0
        for h in ((0, -self.window_size[0]), (-self.window_size[0], -self.shift_size[0]), (-self.shift_size[0], None)):
            for w in (
                (0, -self.window_size[1]),
                (-self.window_size[1], -self.shift_size[1]),
                (-self.shift_size[1], None),
            ):
                img_mask[:, h[0] : h[1], w[0] : w[1], :] = count
                count += 1
        windows = window_partition(img_mask, self.window_size).view(-1, self.window_area)
        mask = windows.unsqueeze(1) - windows.unsqueeze(2)
        return mask.masked_fill(mask != 0, (-100.0)).masked_fill(mask == 0, 0.0)

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        has_shift = any(self.shift_size)
        shifted = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2)) if has_shift else x
        pad_h = (self.window_size[0] - H % self.window_size[0]) % self.window_size[0]
        pad_w = (self.window_size[1] - W % self.window_size[1]) % self.window_size[1]
        shifted = torch.nn.functional.pad(shifted, (0, 0, 0, pad_w, 0, pad_h))
        _, Hp, Wp, _ = shifted.shape
        windows = window_partition(shifted, self.window_size).view(-1, self.window_area, C)
        windows = self.attn(windows, mask=self.attn_mask).view(-1, self.window_size[0], self.window_size[1], C)
        shifted = window_reverse(windows, self.window_size, Hp, Wp)[:, :H, :W, :].contiguous()
        return torch.roll(shifted, shifts=self.shift_size, dims=(1, 2)) if has_shift else shifted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x + self.drop_path1(self._attn(self.norm1(x)))
        x = x.reshape(B, -1, C)
        x = self.meansparse1(x)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        x = self.meansparse2(x)
        return x.reshape(B, H, W, C)


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinTransformerStage(nn.Module):
    def __init__(
        self,
        dim: int,
        out_dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        downsample: bool,
        num_heads: int,
        window_size: int,
    ) -> None:
        super().__init__()
        halved = (input_resolution[0] // 2, input_resolution[1] // 2)
        resolution = halved if downsample else input_resolution
        self.downsample = PatchMerging(dim, out_dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                SwinTransformerBlock(out_dim, resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2)
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"Swin expects {self.img_size[0]}x{self.img_size[1]} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]} (ImageNet entries use BicubicRes256Crop224)"
            )
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ClassifierHead(nn.Module):
    """timm's ClassifierHead on NHWC features: mean over H and W, then `fc`."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.0)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x.mean((1, 2))))


class SwinTransformer(nn.Module):
    """timm's `SwinTransformer` (defaults: Swin-L, patch 4, window 7, 224x224, 1000 classes)."""

    def __init__(
        self,
        num_classes: int = 1000,
        img_size: int = 224,
        patch_size: int = 4,
        embed_dim: int = SWIN_LARGE["embed_dim"],
        depths: Sequence[int] = SWIN_LARGE["depths"],
        num_heads: Sequence[int] = SWIN_LARGE["num_heads"],
        window_size: int = SWIN_LARGE["window_size"],
    ) -> None:
        super().__init__()
        self.input_shape = (3, img_size, img_size)
        dims = [int(embed_dim * 2**i) for i in range(len(depths))]
        self.patch_embed = PatchEmbed(img_size, patch_size, dims[0])
        grid = self.patch_embed.grid_size
        stages, scale, in_dim = [], 1, dims[0]
        for i, depth in enumerate(depths):
            stages.append(
                SwinTransformerStage(
                    in_dim,
                    dims[i],
                    (grid[0] // scale, grid[1] // scale),
                    depth,
                    downsample=i > 0,
                    num_heads=num_heads[i],
                    window_size=window_size,
                )
            )
            in_dim = dims[i]
            if i > 0:
                scale *= 2
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = ClassifierHead(dims[-1], num_classes)
        for module in self.modules():  # timm's init for Linear layers; only matters for random-weight tests
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.layers(self.patch_embed(x))))
