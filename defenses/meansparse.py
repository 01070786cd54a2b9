"""MeanSparse (Amini et al.), exactly as published, with switchable surrogate gradients.

Forward (official, bit for bit):  out = mean  where |x - mean| < alpha * std  (strict <, per channel),
                                  out = x     otherwise;   alpha == 0 passes x through unchanged.

The official module has no custom backward: through `torch.where` the gradient is 0 inside the band and 1
outside. `gradient_mode` picks what backward gives, never what forward gives:
  exact     what autograd gives through the official operator (what AutoAttack sees), bit for bit;
  identity  straight-through BPDA: the gradient passes as if the operator were absent;
  smooth    the gradient of mean + d * sigmoid((|d| - alpha*std) / (T*std)), d = x - mean: a differentiable
            dead zone whose temperature T (in units of the channel's std) sharpens it as T -> 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from defenses.fused import (
    dead_zone,
    dead_zone_backward,
    dead_zone_relu,
    dead_zone_relu_backward,
    identity_relu_backward,
    smooth_backward,
    smooth_relu_backward,
)

GRADIENT_MODES = ("exact", "identity", "smooth")
LAYOUTS = ("auto", "channels_first", "tokens", "channels_last")


def reduction_dims(x: torch.Tensor, layout: str) -> tuple[int, ...]:
    """The dims statistics are taken over: all but the channel dim."""
    if layout == "channels_last":
        return tuple(range(x.dim() - 1))
    if layout == "tokens" or (layout == "auto" and x.dim() == 3):
        return (0, 1)
    return (0,) + tuple(range(2, x.dim()))  # NCHW maps, or (N, C) features


def channel_view(stat: torch.Tensor, x: torch.Tensor, layout: str) -> torch.Tensor:
    """Reshape a per-channel statistic so it broadcasts against x."""
    dims = reduction_dims(x, layout)
    shape = [1 if d in dims else -1 for d in range(x.dim())]
    return stat.view(shape)


class _MeanSparseFunction(torch.autograd.Function):
    """Forward: the official operator (then the ReLU that follows it, with `relu`). Backward: the gradient `mode`
    asks for, times the ReLU's when fused (each a single fused kernel)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        mean: torch.Tensor,
        crop: torch.Tensor,
        std: torch.Tensor,
        temperature: float,
        mode: str,
        relu: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, mean, crop, std)
        ctx.temperature, ctx.mode, ctx.relu = temperature, mode, relu
        return dead_zone_relu(x, mean, crop) if relu else dead_zone(x, mean, crop)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, mean, crop, std = ctx.saved_tensors
        if ctx.mode == "exact":
            grad = (dead_zone_relu_backward if ctx.relu else dead_zone_backward)(grad_out, x, mean, crop)
        elif ctx.mode == "identity":
            grad = identity_relu_backward(grad_out, x, mean, crop) if ctx.relu else grad_out
        else:
            tau = ctx.temperature * std.clamp_min(1e-12)
            grad = (smooth_relu_backward if ctx.relu else smooth_backward)(grad_out, x, mean, crop, tau)
        return grad, None, None, None, None, None, None


class MeanSparse(nn.Module):
    """The official MeanSparse operator, with the official buffer names so official checkpoints load strictly.

    `momentum` and `epsilon` exist in the authors' module but not in RobustBench's copy; both layouts load.
    """

    OPTIONAL_BUFFERS = ("momentum", "epsilon")

    # registered buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    running_mean: torch.Tensor
    running_var: torch.Tensor
    threshold: torch.Tensor
    flag_update_statistics: torch.Tensor
    batch_num: torch.Tensor
    momentum: torch.Tensor
    epsilon: torch.Tensor

    def __init__(self, num_features: int, alpha: float = 0.0, layout: str = "auto") -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        self.layout = layout
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.zeros(num_features))
        self.register_buffer("threshold", torch.tensor(float(alpha)))
        self.register_buffer("flag_update_statistics", torch.tensor(0))
        self.register_buffer("batch_num", torch.tensor(0.0))
        self.register_buffer("momentum", torch.tensor(0.1))
        self.register_buffer("epsilon", torch.tensor(1e-5))
        self.gradient_mode = "exact"
        self.temperature = 0.1

    @property
    def alpha(self) -> float:
        return round(float(self.threshold), 6)  # the buffer is float32: 0.3 would read 0.30000001192...

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, alpha={self.alpha:g}, layout={self.layout}"

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        for name in self.OPTIONAL_BUFFERS:
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """The operator; with `relu`, the ReLU that follows it too, in the same fused pass (MeanSparseBefore)."""
        if bool(self.flag_update_statistics):
            # The official calibration: average over batches of per-batch mean and unbiased variance.
            dims = reduction_dims(x, self.layout)
            self.running_mean += x.detach().mean(dim=dims) / self.batch_num
            self.running_var += x.detach().var(dim=dims) / self.batch_num
        if self.threshold == 0:
            return torch.relu(x) if relu else x
        mean = channel_view(self.running_mean, x, self.layout)
        std = torch.sqrt(channel_view(self.running_var, x, self.layout))
        crop = self.threshold * std
        # dead_zone is the official `torch.where(torch.abs(x - mean) < crop, mean * torch.ones_like(x), x)`, bit
        # for bit, fused into one kernel (defenses/fused.py); so is each mode's backward.
        return _MeanSparseFunction.apply(x, mean, crop, std, self.temperature, self.gradient_mode, relu)


class MeanSparseBefore(nn.Module):
    """Applies MeanSparse to the input of a wrapped module (e.g. before an activation); a plain ReLU is fused
    into MeanSparse's kernel (same values, one pass fewer)."""

    def __init__(self, meansparse: MeanSparse, module: nn.Module) -> None:
        super().__init__()
        self.meansparse = meansparse
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = self.module
        # Exactly ReLU (a subclass may compute something else), and no hooks on it (they would not run).
        if (
            type(relu) is nn.ReLU
            and isinstance(self.meansparse, MeanSparse)
            and not (relu._forward_hooks or relu._forward_pre_hooks)
        ):
            return self.meansparse(x, relu=True)
        return self.module(self.meansparse(x))


def meansparse_layers(model: nn.Module) -> list[tuple[str, MeanSparse]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MeanSparse)]
