"""Datasets, offline and real: Fashion-MNIST/MNIST IDX files, local CIFAR-10 batches, foolbox's sample images.

Every loader returns float32 NCHW images in [0, 1] and int64 labels. Bad files raise `DataError` with a message
that names the file and the problem, never a bare traceback from deep inside numpy.
"""

from __future__ import annotations

import gzip
import pickle
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.dataset import DataError as DataError  # re-exported: callers catch audit.data.DataError
from audit.dataset import Dataset as Dataset  # re-exported: the type every loader here returns

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGE_MAGIC = 2051
IDX_LABEL_MAGIC = 2049
# The demo's validation split: the last 5000 training images, never trained on, used to choose alpha.
VALIDATION_SIZE = 5000


def _open_maybe_gzipped(directory: Path, stem: str) -> bytes:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            try:
                if candidate.suffix == ".gz":
                    with gzip.open(candidate, "rb") as handle:
                        return handle.read()
                return candidate.read_bytes()
            except (OSError, EOFError, zlib.error) as error:  # zlib.error: corrupt deflate stream
                raise DataError(f"{candidate}: cannot read ({error}); the file is corrupt or truncated") from None
    raise DataError(
        f"{directory / stem}[.gz] not found. Point --data-dir at a folder with the four IDX files "
        f"(on Debian/Ubuntu: apt-get install dataset-fashion-mnist)."
    )


def read_idx(raw: bytes, expected_magic: int, source: str) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, then one int32 per dimension, then uint8 data)."""
    if len(raw) < 8:
        raise DataError(f"{source}: file too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[0:4], "big")
    if magic != expected_magic:
        raise DataError(f"{source}: wrong magic number {magic}, expected {expected_magic}; not the right IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{source}: truncated or padded file: header says shape {shape} ({expected} bytes), "
            f"found {len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_dataset(directory: str | Path, split: str, name: str) -> Dataset:
    """Fashion-MNIST or MNIST from IDX files (gzipped or raw). split is `train` or `test`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(
            f"data directory {directory} does not exist. Pass --data-dir with the four IDX files "
            f"(for Fashion-MNIST on Debian/Ubuntu: apt-get install dataset-fashion-mnist)."
        )
    image_stem, label_stem = IDX_FILES[split]
    images = read_idx(_open_maybe_gzipped(directory, image_stem), IDX_IMAGE_MAGIC, str(directory / image_stem))
    labels = read_idx(_open_maybe_gzipped(directory, label_stem), IDX_LABEL_MAGIC, str(directory / label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{directory}: shape mismatch: images {images.shape}, labels {labels.shape} "
            f"(expected (N, H, W) images and N labels)"
        )
    if labels.max(initial=0) > 9:
        raise DataError(f"{directory / label_stem}: labels out of range 0..9 (max {labels.max()})")
    tensor = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return Dataset(tensor, torch.from_numpy(labels.astype(np.int64)), name)


def _read_cifar_batch(
    path: Path, label_key: bytes, num_classes: int, folder: str, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """One python-pickle batch of the CIFAR authors, read with the restricted unpickler (data and labels only)."""
    if not path.is_file():
        raise DataError(f"{path} not found; pass --data-dir pointing at {folder}")
    try:
        with open(path, "rb") as handle:
            batch = _DataOnlyUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise DataError(f"{path}: not a {kind} python batch ({error})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(f"{path}: shape mismatch: data {data.shape}, labels {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels out of range 0..{num_classes - 1} (min {labels.min()}, max {labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str | Path, split: str = "test") -> Dataset:
    """CIFAR-10 from a local `cifar-10-batches-py` folder (the python pickle batches of its authors).

    These files are pickles of plain dicts of numpy arrays, lists and bytes, so they are read with a restricted
    unpickler that refuses every class but numpy's array constructors: a tampered file cannot run code.
    """
    directory = Path(directory)
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    batches = [_read_cifar_batch(directory / name, b"labels", 10, "cifar-10-batches-py", "CIFAR-10") for name in names]
    tensor = torch.from_numpy(np.concatenate([b[0] for b in batches]).astype(np.float32) / 255.0)
    return Dataset(tensor, torch.from_numpy(np.concatenate([b[1] for b in batches])), "cifar10")


def load_cifar100(directory: str | Path, split: str = "test") -> Dataset:
    """CIFAR-100 from a local `cifar-100-python` folder (`train`, `test`, `meta`), fine labels (100 classes), read
    with the same restricted unpickler as CIFAR-10. `meta`, when present, must list 100 fine label names."""
    directory = Path(directory)
    meta = directory / "meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as handle:
                names = _DataOnlyUnpickler(handle, encoding="bytes").load()[b"fine_label_names"]
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise DataError(f"{meta}: not the cifar-100-python meta file ({error})") from None
        if len(names) != 100:
            raise DataError(f"{meta}: {len(names)} fine label names, expected 100; is this CIFAR-100?")
    images, labels = _read_cifar_batch(
        directory / ("test" if split == "test" else "train"), b"fine_labels", 100, "cifar-100-python", "CIFAR-100"
    )
    return Dataset(torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels), "cifar100", 100)


# What a CIFAR-10 batch legitimately needs: numpy arrays (labels are lists, names are bytes). Nothing else.
# Protocol 2 written by Python 3 encodes bytes with `_codecs.encode`; protocol 5 rebuilds arrays with
# `_frombuffer`; numpy integer labels pickle as `scalar`. None of these can run code.
_NUMPY_CLASSES = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle hook
        if (module, name) in _NUMPY_CLASSES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load class {module}.{name} from a data file")


def load_foolbox_samples(dataset: str = "cifar10") -> Dataset:
    """The 20 real test images shipped inside the foolbox wheel (labels in their file names). The ImageNet ones are
    JPEGs of varied sizes (512x512, 1024x683): they get RobustBench's BicubicRes256Crop224, as a validation image
    would."""
    import foolbox  # noqa: F401 - only to find its data folder
    from PIL import Image

    folder = Path(foolbox.__file__).parent / "data"
    pattern = re.compile(rf"^{dataset}_(\d+)_(\d+)\.(?:png|jpg)$")
    found = sorted((int(m.group(1)), int(m.group(2)), p) for p in folder.iterdir() if (m := pattern.match(p.name)))
    if not found:
        raise DataError(f"no foolbox sample images for {dataset!r} in {folder}")
    arrays, labels = [], []
    for _, label, path in found:
        if dataset == "imagenet":
            from audit.imagenet import decode

            arrays.append(decode(path, "BicubicRes256Crop224"))
        else:
            with Image.open(path) as image:
                array = np.asarray(image, dtype=np.float32) / 255.0
            arrays.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        labels.append(label)
    classes = {"cifar100": 100, "imagenet": 1000}.get(dataset, 10)
    return Dataset(torch.from_numpy(np.stack(arrays)), torch.tensor(labels), f"foolbox-{dataset}", classes)


DATASETS = (
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "imagenet",
    "foolbox-cifar10",
    "foolbox-cifar100",
    "foolbox-imagenet",
)


def num_classes(dataset: str) -> int:
    """The dataset's class count, without loading it (what a `PATH.py:FACTORY` model is checked against)."""
    return {"cifar100": 100, "foolbox-cifar100": 100, "imagenet": 1000, "foolbox-imagenet": 1000}.get(dataset, 10)


def load_dataset(name: str, split: str = "test", data_dir: str | Path | None = None) -> Dataset:
    """One entry point by name. `split` is `train`, `test`, or for Fashion-MNIST/MNIST also `train-only`
    (the training images minus the validation split) and `validation` (the last 5000 training images)."""
    if split not in ("train", "test", "train-only", "validation"):
        raise DataError(f"unknown split {split!r}; choose train, test, train-only or validation")
    if name in ("fashion-mnist", "mnist"):
        if name == "mnist" and data_dir is None:
            raise DataError("MNIST has no default location: pass --data-dir with its four IDX files")
        base_split = "test" if split == "test" else "train"
        data = load_idx_dataset(data_dir or FASHION_MNIST_DIR, base_split, name)
        if split == "train-only":
            return data.slice(0, len(data) - VALIDATION_SIZE)
        if split == "validation":
            return data.slice(len(data) - VALIDATION_SIZE, len(data))
        return data
    if name == "cifar10":
        if data_dir is None:
            raise DataError("CIFAR-10 is not bundled: pass --data-dir pointing at your cifar-10-batches-py folder")
        return load_cifar10(data_dir, "test" if split == "test" else "train")
    if name == "cifar100":
        if data_dir is None:
            raise DataError("CIFAR-100 is not bundled: pass --data-dir pointing at your cifar-100-python folder")
        return load_cifar100(data_dir, "test" if split == "test" else "train")
    if name == "imagenet":
        from audit.imagenet import load_imagenet

        if data_dir is None:
            raise DataError(
                "ImageNet is not bundled: pass --data-dir pointing at the validation images (a folder of "
                "class folders, or a flat folder with a labels file)"
            )
        if split != "test":
            raise DataError("only the ImageNet validation split is supported (RobustBench evaluates on it)")
        return load_imagenet(data_dir)  # type: ignore[return-value]  # duck-types Dataset, decoding lazily
    if name in ("foolbox-cifar10", "foolbox-cifar100", "foolbox-imagenet"):
        return load_foolbox_samples(name.removeprefix("foolbox-"))
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
