"""APGD on the Carlini-Wagner margin loss: max_{j != y} z_j - z_y, the raw logit margin (Carlini & Wagner 2017,
"Towards evaluating the robustness of neural networks", their f_6 with kappa = 0).

pyautoattack's APGD offers cross-entropy and DLR (the margin divided by z_pi1 - z_pi3, which makes it invariant to
the logit scale). The raw margin is the third loss robustness evaluations use (PGD-CW in Madry et al.'s and
TRADES' tables): unlike CE it does not saturate once the true class is far behind, and unlike DLR it needs no
third logit, so it also runs on two-class models. No library we depend on pairs it with APGD's step-size schedule,
so it is APGD's own loop (one stage of `attacks.adaptive.StagedAPGD`, which hands pyautoattack a loss of ours)
with this loss. Takes +bpda and +eot modifiers like APGD-CE.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from attacks.adaptive import Stage, StagedAPGD
from attacks.catalog import register
from attacks.losses import margin


def cw_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CW margin loss, higher is better for the attacker (positive: misclassified)."""
    return -margin(logits, y)


@register("apgd-cw", {"iters": "n_iter", "restarts": "n_restarts"})
class CarliniWagnerAPGD(StagedAPGD):
    """APGD with the CW margin loss, `n_iter` iterations (AutoAttack's APGD default, 100) per restart."""

    name = "apgd-cw"
    role = "the model's own gradient on the Carlini-Wagner margin loss"

    def __init__(self, n_iter: int = 100, **kwargs: Any) -> None:
        super().__init__(n_stages=1, n_iter=n_iter, **kwargs)

    def stages(self, model: nn.Module) -> list[Stage]:
        return [Stage(nullcontext, cw_loss, "cw")]
