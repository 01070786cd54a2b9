"""Datasets: real Fashion-MNIST, foolbox's CIFAR-10 samples, and loaders fed with files written here."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.data import (
    VALIDATION_SIZE,
    DataError,
    Dataset,
    load_cifar10,
    load_dataset,
    load_idx_dataset,
)

needs_fashion_mnist = pytest.mark.usefixtures("fmnist_test")  # fails with a clear message when it is missing


# ---------------------------------------------------------------------------------------------------------------
# IDX files written by the tests


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """IDX as its spec says: big-endian int32 magic (0x0000 08 ndim), one int32 per dim, then uint8 data."""
    assert magic & 0xFF == array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(
    directory: Path,
    images: np.ndarray,
    labels: np.ndarray,
    split: str = "test",
    gz: bool = True,
    image_magic: int = 2051,
    label_magic: int = 2049,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stems = {
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    }[split]
    for stem, raw in zip(stems, (idx_bytes(images, image_magic), idx_bytes(labels, label_magic))):
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)
    return directory


def random_idx_arrays(n: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range are present
    return images, rng.integers(0, 10, size=n, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Real Fashion-MNIST


@pytest.fixture(scope="module")
def fashion_train() -> Dataset:
    return load_dataset("fashion-mnist", "train")


@needs_fashion_mnist
def test_real_fashion_mnist_sizes_shapes_and_ranges(fashion_train):
    test = load_dataset("fashion-mnist", "test")
    for data, n in ((fashion_train, 60000), (test, 10000)):
        assert len(data) == n
        assert data.images.shape == (n, 1, 28, 28)
        assert data.images.dtype == torch.float32
        assert data.labels.dtype == torch.int64
        assert data.images.min().item() == 0.0 and data.images.max().item() == 1.0
        # Fashion-MNIST is exactly balanced: 6000 / 1000 images of each of the 10 classes.
        assert torch.bincount(data.labels, minlength=10).tolist() == [n // 10] * 10
        # Pixel values are k / 255 exactly: the uint8 data was not resampled or normalised.
        scaled = data.images[:100] * 255
        assert torch.equal(scaled, scaled.round())
    assert data.num_classes == 10


@needs_fashion_mnist
def test_real_fashion_mnist_validation_is_last_5000_train_images(fashion_train):
    validation = load_dataset("fashion-mnist", "validation")
    train_only = load_dataset("fashion-mnist", "train-only")
    assert VALIDATION_SIZE == 5000
    assert len(validation) == 5000 and len(train_only) == 55000
    assert torch.equal(validation.images, fashion_train.images[55000:])
    assert torch.equal(validation.labels, fashion_train.labels[55000:])
    assert torch.equal(train_only.images, fashion_train.images[:55000])
    assert torch.equal(train_only.labels, fashion_train.labels[:55000])


def test_unknown_split_and_dataset_are_refused():
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("fashion-mnist", "trian")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet-22k")
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10", "test")


# ---------------------------------------------------------------------------------------------------------------
# foolbox's 20 real CIFAR-10 test images


def test_foolbox_cifar10_samples_match_their_files():
    import foolbox
    from PIL import Image

    data = load_dataset("foolbox-cifar10")
    assert data.images.shape == (20, 3, 32, 32)
    assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert 0.0 <= data.images.min().item() and data.images.max().item() <= 1.0
    folder = Path(foolbox.__file__).parent / "data"
    files = sorted(p for p in folder.iterdir() if re.fullmatch(r"cifar10_\d+_\d+\.png", p.name))
    assert len(files) == 20
    expected_labels = [int(p.stem.split("_")[2]) for p in sorted(files, key=lambda p: int(p.stem.split("_")[1]))]
    assert data.labels.tolist() == expected_labels
    assert len(set(expected_labels)) > 1
    # Image k is the k-th file, channels first, pixel / 255.
    first = min(files, key=lambda p: int(p.stem.split("_")[1]))
    with Image.open(first) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    assert torch.equal(data.images[0], torch.from_numpy(pixels.transpose(2, 0, 1).copy()))


# ---------------------------------------------------------------------------------------------------------------
# Dataset.subset


def numbered_dataset(n: int = 50) -> Dataset:
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return Dataset(images, torch.arange(n) % 10, "numbered")


def test_subset_is_deterministic_per_seed_and_consistent():
    data = numbered_dataset()
    a, b = data.subset(10, seed=3), data.subset(10, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    index = a.images[:, 0, 0, 0].long()
    assert len(set(index.tolist())) == 10  # without replacement
    assert torch.equal(index, index.sort().values)  # kept in dataset order
    assert torch.equal(a.labels, index % 10)  # images and labels stay paired
    others = {tuple(data.subset(10, seed=s).images[:, 0, 0, 0].long().tolist()) for s in range(4, 9)}
    assert tuple(index.tolist()) not in others and len(others) > 1
    assert data.subset(None) is data and data.subset(50) is data and data.subset(500) is data


# ---------------------------------------------------------------------------------------------------------------
# IDX loader on files written here


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_idx_files_load_with_exact_values(tmp_path, gz):
    images, labels = random_idx_arrays()
    write_idx_dir(tmp_path, images, labels, gz=gz)
    data = load_idx_dataset(tmp_path, "test", "synthetic")
    assert data.images.shape == (7, 1, 28, 28) and data.images.dtype == torch.float32
    assert torch.equal(data.images[:, 0], torch.from_numpy(images.astype(np.float32) / 255.0))
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == labels.tolist()
    mnist = load_dataset("mnist", "test", tmp_path)
    assert torch.equal(mnist.images, data.images)


def test_idx_wrong_magic_number(tmp_path):
    images, labels = random_idx_arrays()
    write_idx_dir(tmp_path, images, labels)
    wrong = b"\x00\x00\x09\x03" + idx_bytes(images, 2051)[4:]  # data type byte 0x09 (int8) instead of 0x08
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(wrong))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: wrong magic number 2307, expected 2051"):
        load_idx_dataset(tmp_path, "test", "x")


def test_idx_labels_file_in_place_of_images_file(tmp_path):
    images, labels = random_idx_arrays()
    write_idx_dir(tmp_path, images, labels)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        load_idx_dataset(tmp_path, "test", "x")


def test_idx_truncated_file(tmp_path):
    images, labels = random_idx_arrays()
    write_idx_dir(tmp_path, images, labels, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"truncated or padded file: header says shape \(7, 28, 28\)"):
        load_idx_dataset(tmp_path, "test", "x")
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        load_idx_dataset(tmp_path, "test", "x")


def test_idx_truncated_gzip_stream(tmp_path):
    images, labels = random_idx_arrays()
    write_idx_dir(tmp_path, images, labels)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_idx_dataset(tmp_path, "test", "x")


def test_idx_corrupt_deflate_stream(tmp_path):
    images, labels = random_idx_arrays()
    write_idx_dir(tmp_path, images, labels)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[12] ^= 0xFF  # first bytes of the deflate data: zlib.error, not OSError
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: cannot read"):
        load_idx_dataset(tmp_path, "test", "x")


def test_idx_image_label_count_mismatch(tmp_path):
    images, labels = random_idx_arrays(n=7)
    write_idx_dir(tmp_path, images, labels[:5])
    with pytest.raises(DataError, match=r"shape mismatch: images \(7, 28, 28\), labels \(5,\)"):
        load_idx_dataset(tmp_path, "test", "x")


def test_idx_labels_out_of_range(tmp_path):
    images, labels = random_idx_arrays()
    labels[3] = 12
    write_idx_dir(tmp_path, images, labels)
    with pytest.raises(DataError, match=r"labels out of range 0..9 \(max 12\)"):
        load_idx_dataset(tmp_path, "test", "x")


def test_idx_missing_file_and_directory(tmp_path):
    images, labels = random_idx_arrays()
    write_idx_dir(tmp_path, images, labels)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[\.gz\] not found.*--data-dir"):
        load_idx_dataset(tmp_path, "test", "x")
    with pytest.raises(DataError, match=r"does-not-exist does not exist.*--data-dir"):
        load_idx_dataset(tmp_path / "does-not-exist", "test", "x")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):  # only the test split was written
        load_dataset("fashion-mnist", "validation", tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches, in the format of its authors


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], protocol: int = 2) -> None:
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_test_batch_loads_with_exact_layout(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    labels = [3, 8, 8, 0, 6, 9]
    write_cifar_batch(tmp_path / "test_batch", data, labels, protocol)
    loaded = load_dataset("cifar10", "test", tmp_path)
    assert loaded.images.shape == (6, 3, 32, 32) and loaded.images.dtype == torch.float32
    assert loaded.labels.dtype == torch.int64 and loaded.labels.tolist() == labels
    # Row layout of the authors: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32.
    for i, c, h, w in [(0, 0, 0, 0), (1, 1, 5, 7), (5, 2, 31, 31), (2, 2, 0, 31)]:
        assert loaded.images[i, c, h, w].item() == np.float32(data[i, c * 1024 + h * 32 + w]) / np.float32(255)
    assert torch.equal(loaded.images, torch.from_numpy(data.reshape(6, 3, 32, 32).astype(np.float32) / 255))


def test_cifar10_train_split_concatenates_five_batches(tmp_path):
    for k in range(1, 6):
        write_cifar_batch(tmp_path / f"data_batch_{k}", np.full((2, 3072), k, np.uint8), [k, k + 1])
    loaded = load_cifar10(tmp_path, "train")
    assert loaded.images.shape == (10, 3, 32, 32)
    assert loaded.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert loaded.images[:, 0, 0, 0].mul(255).round().tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4 not found"):
        load_cifar10(tmp_path, "train")


class _Payload:
    """Unpickling this runs a shell command: what a tampered data file could do with plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({b"data": _Payload(marker), b"labels": [0]}, handle, protocol=2)
    with pytest.raises(DataError, match=r"test_batch: not a CIFAR-10 python batch \(refusing to load class .*system"):
        load_dataset("cifar10", "test", tmp_path)
    assert not marker.exists()
    # The payload is real: plain pickle would have run it.
    with open(tmp_path / "test_batch", "rb") as handle:
        pickle.load(handle)
    assert marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (pickle.dumps({b"labels": [1]}), "not a CIFAR-10 python batch"),
        (pickle.dumps([1, 2, 3]), "not a CIFAR-10 python batch"),
        (b"\x80\x02}q\x00", "not a CIFAR-10 python batch"),  # truncated pickle
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "shape mismatch"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "shape mismatch"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), "out of range"),
    ],
    ids=["no-data", "not-a-dict", "truncated", "wrong-width", "count-mismatch", "bad-label"],
)
def test_cifar10_malformed_batches(tmp_path, content, message):
    (tmp_path / "test_batch").write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_cifar10(tmp_path, "test")
