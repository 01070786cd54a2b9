"""`--batch-size auto`: the largest batch that fits, found by backing off on out-of-memory.

A GPU that holds a bigger batch runs an attack's steps on more samples at once; too big a batch fails. Before any
attack runs, one forward and backward pass (what a gradient attack's step costs) is tried on the audited images,
tiled up to the candidate size: from the number of images down, halving on out-of-memory. The size chosen is
recorded in the results (`config.batch_size`, `config.batch_size_auto`). A batch that still runs out of memory in
an attack is split again by the runner (audit/runner.py), so the choice is a speed setting, never a correctness one.
"""

from __future__ import annotations

import logging

import torch

from defenses.protocol import Defense

log = logging.getLogger(__name__)


def out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error, or the CPU allocator's."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in str(error) or "can't allocate memory" in str(error))
    )


def _step_fits(defense: Defense, x: torch.Tensor) -> bool:
    x = x.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            defense(x).sum().backward()
        return True
    except Exception as error:  # only out-of-memory means "smaller": anything else is a real failure
        if not out_of_memory(error):
            raise
        return False
    finally:
        del x
        if defense.device.type == "cuda":
            torch.cuda.empty_cache()


def find_batch_size(defense: Defense, images: torch.Tensor, largest: int | None = None) -> int:
    """The largest batch, `largest` (default: the number of images) halved until a forward and backward pass fits."""
    size = max(1, largest or len(images))
    while True:
        tiled = images[torch.arange(size) % len(images)].to(defense.device)
        if _step_fits(defense, tiled):
            log.info("--batch-size auto: %d samples per batch fit", size)
            return size
        if size == 1:
            raise RuntimeError("--batch-size auto: even one sample runs out of memory")
        log.info("--batch-size auto: %d samples ran out of memory; trying %d", size, size // 2)
        size //= 2
