"""`calibrate`: MeanSparse statistics from one pass over training data (eval mode, no grad).

`official` reproduces the authors' statistic: the average over batches of per-batch mean and of per-batch
unbiased variance. Note that this variance misses the spread *between* batch means, and the last, smaller batch
counts as much as a full one. `exact` streams the true mean and (unbiased) variance of all the features with
Chan et al.'s parallel update, which is what "per-channel mean and std" means literally.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from defenses.meansparse import meansparse_layers, reduction_dims
from defenses.sparsify import SparsifyError


class _ExactStatistics:
    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, x: torch.Tensor, dims: tuple[int, ...]) -> None:
        x = x.detach().double()
        n = x.numel() // x.shape[[d for d in range(x.dim()) if d not in dims][0]]
        mean = x.mean(dim=dims)
        m2 = ((x - _expand(mean, x, dims)) ** 2).sum(dim=dims)
        if self.mean is None or self.m2 is None:  # first batch (both are set together)
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
        self.count = total


def _expand(stat: torch.Tensor, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return stat.view([1 if d in dims else -1 for d in range(x.dim())])


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple[Any, ...]],
    method: str = "official",
    progress: bool = True,
) -> nn.Module:
    """Set every MeanSparse layer's running_mean / running_var from the images in `batches` (in place)."""
    if method not in ("official", "exact"):
        raise ValueError(f"method must be 'official' or 'exact', not {method!r}")
    layers = meansparse_layers(model)
    if not layers:
        raise SparsifyError("the model has no MeanSparse layers to calibrate")
    batches = list(batches)
    images = [b[0] if isinstance(b, (tuple, list)) else b for b in batches]
    was_training = model.training
    model.eval()
    reference = next(model.parameters(), layers[0][1].running_mean)  # MeanSparse buffers if no parameters
    device = reference.device
    dtype = reference.dtype if reference.is_floating_point() else torch.float32  # a float16 model gets float16 images

    def forward(x: torch.Tensor) -> None:
        try:
            model(x.to(device, dtype))
        except Exception as error:  # noqa: BLE001 - the user's model may raise anything: one line, not a traceback
            raise SparsifyError(
                f"calibrating MeanSparse: the model's forward raised {type(error).__name__} on "
                f"images of shape {tuple(x.shape)}: {' '.join(str(error).split())[:200]}"
            ) from error

    # Thresholds are set to 0 during the pass, so each layer sees the un-sparsified features, as in the paper.
    saved = {name: layer.threshold.clone() for name, layer in layers}
    for _, layer in layers:
        layer.threshold.zero_()
        layer.running_mean.zero_()
        layer.running_var.zero_()
    try:
        if method == "official":
            for _, layer in layers:
                layer.batch_num.fill_(len(images))
                layer.flag_update_statistics.fill_(1)
            for x in tqdm(images, desc="calibrating MeanSparse", disable=not progress, leave=False):
                forward(x)
        else:
            stats = {name: _ExactStatistics() for name, _ in layers}
            hooks = [
                layer.register_forward_pre_hook(
                    lambda module, inputs, name=name: stats[name].update(
                        inputs[0], reduction_dims(inputs[0], module.layout)
                    )
                )
                for name, layer in layers
            ]
            try:
                for x in tqdm(images, desc="calibrating MeanSparse", disable=not progress, leave=False):
                    forward(x)
            finally:
                for handle in hooks:
                    handle.remove()
            for name, layer in layers:
                s = stats[name]
                assert s.mean is not None and s.m2 is not None  # every layer saw the calibration images
                layer.running_mean.copy_(s.mean.to(layer.running_mean))
                layer.running_var.copy_((s.m2 / (s.count - 1)).to(layer.running_var))
                layer.batch_num.fill_(len(images))
    finally:
        for name, layer in layers:
            layer.flag_update_statistics.fill_(0)
            layer.threshold.copy_(saved[name])
        model.train(was_training)
    return model


def set_alpha(model: nn.Module, alpha: float) -> nn.Module:
    """Set every MeanSparse layer's threshold (alpha) in place."""
    for _, layer in meansparse_layers(model):
        layer.threshold.fill_(float(alpha))
    return model
