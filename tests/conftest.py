"""Shared fixtures: the shipped demo models and small seeded slices of real Fashion-MNIST."""

from __future__ import annotations

import os
from pathlib import Path

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


# A third of the suite audits real Fashion-MNIST images. Without them those tests fail with this message rather
# than skip: a green run that silently left out the audits would claim what it never checked.
MISSING_FASHION_MNIST = (
    f"Fashion-MNIST is not installed at {FASHION_MNIST_DIR}: `make setup` installs the "
    "Debian package dataset-fashion-mnist (apt-get); elsewhere put its four IDX files there"
)


def require_fashion_mnist() -> None:
    if not FASHION_MNIST_DIR.is_dir() or not any(FASHION_MNIST_DIR.glob("t10k-images-idx3-ubyte*")):
        pytest.fail(MISSING_FASHION_MNIST, pytrace=False)


def pytest_report_header() -> str:
    present = FASHION_MNIST_DIR.is_dir() and any(FASHION_MNIST_DIR.glob("t10k-images-idx3-ubyte*"))
    return f"Fashion-MNIST: {FASHION_MNIST_DIR}" if present else f"WARNING: {MISSING_FASHION_MNIST}"


@pytest.fixture(scope="session")
def fmnist_test():
    require_fashion_mnist()
    return load_dataset("fashion-mnist", "test")


@pytest.fixture(scope="module")  # 60,000 images: held for one module at a time, not the whole run
def fmnist_train():
    require_fashion_mnist()
    return load_dataset("fashion-mnist", "train")


@pytest.fixture(scope="session")
def standard_model():
    from defenses.models.registry import load_shipped

    return load_shipped("demo-standard")


def require_shipped(name: str):
    """A shipped demo model. Its checkpoint is part of the repository, so a missing one is a broken checkout: the
    test fails saying so (it used to skip, and a green run then left out every test of that model)."""
    from defenses.models.registry import CHECKPOINT_DIR, SHIPPED, load_shipped

    if not (CHECKPOINT_DIR / SHIPPED[name]).is_file():
        pytest.fail(
            f"{name}: {CHECKPOINT_DIR / SHIPPED[name]} is missing (it is committed; `git status` shows why)",
            pytrace=False,
        )
    return load_shipped(name)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, str]:
    """Model specs and checkpoints of a 4-channel SmallCNN standard-trained for 150 steps (about 1 s, 80% clean
    accuracy) and of the same network with one MeanSparse layer calibrated on 5,000 training images: the default run's
    soundness tests audit these end to end, where the demo models would take minutes (tests/fixtures/tiny_models.py).
    """
    require_fashion_mnist()
    from defenses.calibrate import calibrate
    from defenses.checkpoints import save_checkpoint
    from defenses.sparsify import sparsify
    from defenses.toys import train_toy
    from tests.fixtures.tiny_models import ALPHA, PLACEMENT, small_cnn

    train = load_dataset("fashion-mnist", "train")
    model = train_toy(small_cnn(), train.images, train.labels, steps=150, seed=0)
    sparse = sparsify(model, ALPHA, placement=PLACEMENT)  # a copy: the same weights; statistics calibrated next
    calibrate(sparse, [train.images[i : i + 500] for i in range(0, 5000, 500)], progress=False)
    directory = tmp_path_factory.mktemp("tiny")
    save_checkpoint(model, directory / "small_cnn.safetensors")
    save_checkpoint(sparse, directory / "meansparse.safetensors", {"alpha": ALPHA})
    fixture = Path(__file__).parent / "fixtures" / "tiny_models.py"
    return {
        "small_cnn": f"{fixture}:small_cnn",
        "small_cnn_checkpoint": str(directory / "small_cnn.safetensors"),
        "meansparse": f"{fixture}:meansparse",
        "meansparse_checkpoint": str(directory / "meansparse.safetensors"),
    }
