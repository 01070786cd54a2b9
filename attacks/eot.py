"""Expectation over Transformation (Athalye et al. 2018) for randomized defenses: the logits averaged over K draws,
whose gradient is the average of the draws' gradients. Attacks that do EOT themselves (pyautoattack's APGD with
eot_iter) get the plain model instead."""

from __future__ import annotations

import torch
from torch import nn


class EOT(nn.Module):
    def __init__(self, model: nn.Module, draws: int) -> None:
        super().__init__()
        if draws < 1:
            raise ValueError(f"EOT needs at least one draw, not {draws}")
        self.model, self.draws = model, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.draws == 1:
            return self.model(x)
        return torch.stack([self.model(x) for _ in range(self.draws)]).mean(0)
