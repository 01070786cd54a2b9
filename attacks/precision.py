"""Precision of the attack's proposals, apart from the judge's scoring.

On a GPU, an attack's forward and backward passes in bfloat16 (autocast) or TF32 matmuls run several times faster.
A cheaper proposal can only make the attack weaker, never inflate its success: the judge re-scores every proposal
with the defense's exact forward in float32, TF32 off (`float32_scoring`). So `--proposal-precision` trades attack
strength for speed, and what it buys is measured on the same images (benchmarks/proposal_precision.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("float32", "tf32", "bfloat16")


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def proposals_in(precision: str, device: torch.device) -> Iterator[None]:
    """The attack's passes in `precision`: float32 (TF32 off), tf32 (TF32 matmuls, CUDA only), or bfloat16
    (autocast, CPU or CUDA)."""
    if precision not in PRECISIONS:
        raise ValueError(f"proposal precision must be one of {PRECISIONS}, not {precision!r}")
    with _tf32(precision == "tf32"):
        if precision == "bfloat16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield


@contextlib.contextmanager
def float32_scoring(device: torch.device) -> Iterator[None]:
    """What the judge scores under: float32, no autocast, TF32 off, whatever the attack ran in."""
    with _tf32(False), torch.autocast(device_type=device.type, enabled=False):
        yield
