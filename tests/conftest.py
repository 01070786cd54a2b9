"""Shared fixtures: the shipped demo models and small seeded slices of real Fashion-MNIST."""
from __future__ import annotations

import os

import pytest
import torch

from audit.data import FASHION_MNIST_DIR, load_dataset

# One intra-op thread for the whole run: the test models are small, and when anything else runs on the machine
# two threads can be ~80x slower than one (OpenMP threads spinning against a busy core). It also makes floating
# point sums independent of the core count, like the torchrun tests' subprocesses.
# AUDIT_TEST_THREADS and AUDIT_TEST_FLUSH_DENORMAL=1 shake out tests that lean on one CPU's rounding: the suite
# must pass at 1 and 2 threads, with and without denormals.
torch.set_num_threads(int(os.environ.get("AUDIT_TEST_THREADS", "1")))
torch.set_flush_denormal(os.environ.get("AUDIT_TEST_FLUSH_DENORMAL") == "1")


@pytest.fixture(scope="session")
def fmnist_test():
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (make setup installs it)")
    return load_dataset("fashion-mnist", "test")


@pytest.fixture(scope="module")  # 60,000 images: held for one module at a time, not the whole run
def fmnist_train():
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (make setup installs it)")
    return load_dataset("fashion-mnist", "train")


@pytest.fixture(scope="session")
def standard_model():
    from defenses.models.registry import load_shipped

    return load_shipped("demo-standard")


def shipped_or_skip(name: str):
    from defenses.models.registry import CHECKPOINT_DIR, SHIPPED, load_shipped

    if not (CHECKPOINT_DIR / SHIPPED[name]).is_file():
        pytest.skip(f"{name} checkpoint not built yet")
    return load_shipped(name)
