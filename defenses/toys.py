"""Toy defenses written as a user would write them: plain nn.Modules, no class of ours inside.

Each hides a non-differentiable operation on the input's path, so exact-gradient attacks see nothing useful and
only automatic BPDA (defenses/auto_bpda.py) gives an attack that fits:

    QuantizedInput   input quantization to `levels` steps (bit-depth reduction: `torch.round`)
    Thermometer      thermometer encoding of each pixel into `levels` binary channels built from comparisons,
                     as published (Buckman et al. 2018): no gradient path to the input at all
    KWTA             k-winners-take-all activations (Xiao et al. 2020, their `Sparsify2D_vol`: `x >= topk value`)
    WhereDeadZone    MeanSparse's operator as a plain `torch.where` in a user's own module
                     (`plain_dead_zones` swaps our MeanSparse layers for it, same statistics)

`train_toy` standard-trains one quickly (seeded), for tests and the numbers in docs/models.md.

Wrappers that mask on purpose around any model, each the textbook case of one symptom (tests and
benchmarks/calibration.py):

    KillGradients      identity forward, zero backward (a gradient-killing layer)
    ScaledLogits       logits times 1e4: softmax saturates, CE gradients underflow to exactly 0
    Softmaxed          probabilities instead of logits
    GradientInForward  a test-time defense: one gradient step of purification inside forward
    HiddenNoise        Gaussian input noise from torch's global generator, declared nowhere
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class SmallCNN(nn.Module):
    """conv-act-pool twice, then a linear classifier: small enough to train in seconds on Fashion-MNIST."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 16, activation: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.act1 = copy.deepcopy(activation) if activation is not None else nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.act2 = copy.deepcopy(activation) if activation is not None else nn.ReLU()
        self.classifier = nn.Linear(2 * width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.act1(self.conv1(x)), 2)
        x = F.max_pool2d(self.act2(self.conv2(x)), 2)
        return self.classifier(x.flatten(1))


class QuantizedInput(nn.Module):
    """round(x * (levels - 1)) / (levels - 1) before a network (a fresh SmallCNN unless `net` is given)."""

    def __init__(self, levels: int = 8, width: int = 16, net: nn.Module | None = None) -> None:
        super().__init__()
        self.levels = levels
        self.net = SmallCNN(1, width=width) if net is None else net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = self.levels - 1
        return self.net(torch.round(x * steps) / steps)


class Thermometer(nn.Module):
    """Each pixel x becomes `levels` channels [x > 0/levels, x > 1/levels, ...] (Buckman et al. 2018), then a CNN."""

    # registered buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    thresholds: torch.Tensor

    def __init__(self, levels: int = 16, width: int = 16) -> None:
        super().__init__()
        self.levels = levels
        self.register_buffer("thresholds", torch.arange(levels, dtype=torch.float32) / levels)
        self.net = SmallCNN(levels, width=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = (x.unsqueeze(2) > self.thresholds.view(1, 1, -1, 1, 1)).float()  # (N, C, levels, H, W)
        return self.net(code.flatten(1, 2))


class KWTAActivation(nn.Module):
    """k-WTA over all units of a sample (Xiao et al. 2020, `Sparsify2D_vol`): keep the top `ratio`, zero the rest."""

    def __init__(self, ratio: float = 0.1) -> None:
        super().__init__()
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.view(x.shape[0], -1)
        k = max(1, int(self.ratio * flat.shape[1]))
        top = flat.topk(k, dim=1)[0][:, -1]
        top = top.repeat(flat.shape[1], 1).permute(1, 0).view_as(x)
        return (x >= top).to(x) * x


class KWTA(nn.Module):
    """A SmallCNN with k-WTA activations instead of ReLU."""

    def __init__(self, ratio: float = 0.1, width: int = 16) -> None:
        super().__init__()
        self.net = SmallCNN(1, width=width, activation=KWTAActivation(ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WhereDeadZone(nn.Module):
    """MeanSparse's forward as a user writes it: `torch.where(|x - mean| < alpha * std, mean, x)`, per channel."""

    # registered buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    mean: torch.Tensor
    var: torch.Tensor
    alpha: torch.Tensor

    def __init__(self, mean: torch.Tensor, var: torch.Tensor, alpha: float) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("var", var.detach().clone())
        self.register_buffer("alpha", torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = self.mean.view(shape)
        crop = self.alpha * torch.sqrt(self.var.view(shape))
        return torch.where(torch.abs(x - mean) < crop, mean * torch.ones_like(x), x)


def plain_dead_zones(model: nn.Module) -> nn.Module:
    """A copy of `model` with each of our MeanSparse layers replaced by a plain WhereDeadZone (same statistics)."""
    from defenses.meansparse import MeanSparse

    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, MeanSparse):
                replacement = WhereDeadZone(child.running_mean, child.running_var, float(child.threshold))
                setattr(module, child_name, replacement)
    return model.eval()


class _ZeroBackward(torch.autograd.Function):
    """Identity forward, zero backward: the classic gradient-killing layer."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad)


class KillGradients(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_ZeroBackward.apply(x))


class ScaledLogits(nn.Module):
    """Logits times 1e4: softmax saturates and CE gradients underflow to exactly zero."""

    def __init__(self, model: nn.Module, scale: float = 1e4) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


class Softmaxed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(1)


class GradientInForward(nn.Module):
    """A 'dynamic' defense: one gradient step of purification inside forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            energy = self.model(z).logsumexp(1).sum()
            (grad,) = torch.autograd.grad(energy, z)
        return self.model((x + 0.01 * grad.sign()).clamp(0, 1))


class HiddenNoise(nn.Module):
    """Gaussian input noise drawn from torch's global generator at every forward, and no word about it."""

    def __init__(self, model: nn.Module, sigma: float = 0.1) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x + self.sigma * torch.randn_like(x)).clamp(0, 1))


TOYS = {"quantized": QuantizedInput, "thermometer": Thermometer, "kwta": KWTA}


def train_toy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """Standard training (SGD with Nesterov momentum, cosine schedule) on random batches; returns eval().

    Seeded throughout: the weights are re-initialised from `seed` first, so the result does not depend on the
    global random state at the model's construction.
    """
    torch.manual_seed(seed)
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()  # type: ignore[operator]  # hasattr above; nn.Module.__getattr__ is untyped
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in tqdm(range(steps), desc=f"train {type(model).__name__}", disable=not progress, leave=False):
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


__all__ = [
    "GradientInForward",
    "HiddenNoise",
    "KWTA",
    "KWTAActivation",
    "KillGradients",
    "QuantizedInput",
    "ScaledLogits",
    "SmallCNN",
    "Softmaxed",
    "Thermometer",
    "TOYS",
    "WhereDeadZone",
    "plain_dead_zones",
    "train_toy",
]
