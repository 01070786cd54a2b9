"""The in-memory dataset every loader returns, and the error for a bad dataset file.

Its own module so the loaders (`audit.data`, `audit.imagenet`) can share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from defenses.errors import UserError


class DataError(UserError, ValueError):
    """A dataset file is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Dataset:
    images: torch.Tensor  # float32, (N, C, H, W), in [0, 1]
    labels: torch.Tensor  # int64, (N,)
    name: str
    num_classes: int = 10
    indices: torch.Tensor | None = None  # int64 (N,): each sample's index in the file it came from (None: 0..N-1)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dataset_index(self) -> torch.Tensor:
        return torch.arange(len(self)) if self.indices is None else self.indices

    def subset(self, n: int | None, seed: int = 0) -> Dataset:
        """A seeded, deterministic choice of n samples (all of them, in order, when n is None or too large)."""
        if n is None or n >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=generator)[:n].sort().values
        return Dataset(self.images[index], self.labels[index], self.name, self.num_classes, self.dataset_index[index])

    def slice(self, start: int, stop: int) -> Dataset:
        return Dataset(
            self.images[start:stop],
            self.labels[start:stop],
            self.name,
            self.num_classes,
            self.dataset_index[start:stop],
        )
