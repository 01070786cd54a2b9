"""Sharding an audit over processes launched by `torchrun --nproc-per-node N`.

Batches (as a single process would form them) are dealt round-robin to ranks; each rank appends its records to
its own file; after every attack the ranks meet (barrier) and re-read all records, so cascade mode sees the same
robust set everywhere and rank 0 writes one output directory identical to a single-process run with the same seed
(bit-identical when each process uses the same number of threads as the single run; torchrun sets one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, batch_id: int) -> bool:
        return batch_id % self.world_size == self.rank

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def init_from_environment(device: str) -> tuple[Shard, str]:
    """Join the process group if launched by torchrun; returns the shard and this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Shard(), device
    rank = int(os.environ["RANK"])
    if device.startswith("cuda") and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
        backend = "nccl"
    else:
        backend = "gloo"
    if not torch.distributed.is_initialized():
        # Ranks wait at the barrier after each attack for the rank with the most work, and the others wait while
        # rank 0 runs the probes: on a large model that is hours, far past the default 30 minutes. A rank that
        # dies is caught by torchrun, which stops the others, so the long timeout does not hang a failed run.
        torch.distributed.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    return Shard(rank, world_size), device


def shutdown(shard: Shard) -> None:
    if shard.world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
