"""The losses attacks, probes and the judge share: the logit margin and per-sample CE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the best other logit, per sample (negative: misclassified). Works on (..., n, classes)
    logits with (n,) labels, e.g. (draws, n, classes)."""
    index = y.view(*([1] * (logits.dim() - 2)), -1, 1).expand(*logits.shape[:-1], 1)
    true = logits.gather(-1, index).squeeze(-1)
    others = logits.scatter(-1, index, float("-inf")).amax(-1)
    return true - others


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-sample attacker loss, higher is better for the attacker: `ce`, or `margin` (minus the margin)."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "margin":
        return -margin(logits, y)
    raise ValueError(f"loss must be 'ce' or 'margin', not {loss!r}")
