"""ImageNet validation images from a local folder, decoded with Pillow, preprocessed as RobustBench does.

Two layouts:
  - class folders: `DIR/val/<wnid>/*.JPEG` (or `DIR/<wnid>/*.JPEG`), 1000 of them; the label is the folder's index
    in sorted order, which is the class index of torchvision, timm and RobustBench;
  - a flat folder of images with a labels file in it: `labels.txt` or `val.txt` with lines `<file name> <index>`
    (Caffe's `val.txt` format, same class indices), or Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`,
    the first word the wnid, mapped through the sorted list of the 1000 wnids it contains).
Only the images an audit uses are decoded: `subset(n, seed)` picks the same samples `Dataset.subset` would.

`BicubicRes256Crop224` is RobustBench's preprocessing for the MeanSparse ImageNet entries: torchvision's
`Resize(256, bicubic)` (shorter side to 256, longer `int(256 * long / short)`), `CenterCrop(224)`, `ToTensor()`,
written with Pillow directly (torchvision's PIL path calls the same `Image.resize` and `Image.crop`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from audit.dataset import DataError, Dataset

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
NUM_CLASSES = 1000
LABEL_FILES = ("labels.txt", "val.txt", "LOC_val_solution.csv")


def _resize_shorter(image: Any, size: int, resample: int) -> Any:  # PIL images
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize((new_w, new_h), resample)


def _center_crop(image: Any, size: int) -> Any:  # PIL images, typed loosely by Pillow
    width, height = image.size
    if width < size or height < size:
        raise DataError(f"image of {width}x{height} is smaller than the {size}x{size} crop")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def bicubic_res256_crop224(image: Any) -> np.ndarray:  # a PIL image
    """RobustBench's `BicubicRes256Crop224` on a PIL image: float32 CHW in [0, 1]."""
    from PIL import Image

    image = _center_crop(_resize_shorter(image.convert("RGB"), 256, Image.Resampling.BICUBIC), 224)
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


PREPROCESSINGS: dict[str, Callable[..., Any]] = {"BicubicRes256Crop224": bicubic_res256_crop224}


def decode(path: Path, preprocessing: str = "BicubicRes256Crop224") -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return PREPROCESSINGS[preprocessing](image)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:  # Pillow raises these on corrupt files
        raise DataError(f"{path}: cannot decode image ({error})") from None


class ImageFolderDataset:
    """Image paths and labels; images are decoded only for the samples that are asked for."""

    def __init__(
        self,
        paths: list[Path],
        labels: list[int],
        name: str = "imagenet",
        preprocessing: str = "BicubicRes256Crop224",
        num_classes: int = NUM_CLASSES,
    ) -> None:
        self.paths, self.name, self.num_classes, self.preprocessing = paths, name, num_classes, preprocessing
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, index: torch.Tensor) -> Dataset:
        arrays = [
            decode(self.paths[i], self.preprocessing)
            for i in tqdm(index.tolist(), desc="decoding images", unit="img", leave=False)
        ]
        images = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, 224, 224)
        return Dataset(images, self.labels[index], self.name, self.num_classes, index)

    def subset(self, n: int | None, seed: int = 0) -> Dataset:
        """The samples `Dataset.subset(n, seed)` would choose, decoded."""
        if n is None or n >= len(self):
            return self._decode(torch.arange(len(self)))
        generator = torch.Generator().manual_seed(seed)
        return self._decode(torch.randperm(len(self), generator=generator)[:n].sort().values)

    def slice(self, start: int, stop: int) -> Dataset:
        return self._decode(torch.arange(len(self))[start:stop])

    @property
    def images(self) -> torch.Tensor:
        return self.subset(None).images


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(directory: Path) -> ImageFolderDataset:
    classes = sorted(p for p in directory.iterdir() if p.is_dir())
    if len(classes) != NUM_CLASSES:
        raise DataError(
            f"{directory}: {len(classes)} class folders, expected {NUM_CLASSES} (the label of an image is "
            f"its folder's index among the sorted 1000 wnids, so all of them must be there)"
        )
    paths, labels = [], []
    for index, folder in enumerate(classes):
        for path in _images_in(folder):
            paths.append(path)
            labels.append(index)
    return ImageFolderDataset(paths, labels)


def _labels_file(directory: Path, labels_path: Path) -> ImageFolderDataset:
    entries: list[tuple[str, str]] = []
    with open(labels_path, newline="", encoding="utf-8") as handle:
        if labels_path.suffix == ".csv":
            for row in csv.DictReader(handle):
                try:
                    entries.append((row["ImageId"], row["PredictionString"].split()[0]))
                except (KeyError, IndexError, AttributeError):
                    raise DataError(f"{labels_path}: expected ImageId,PredictionString rows") from None
        else:
            for number, line in enumerate(handle, 1):
                parts = line.replace(",", " ").split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise DataError(f"{labels_path}:{number}: expected '<file name> <class index>', got {line!r}")
                entries.append((parts[0], parts[1]))
    if not entries:
        raise DataError(f"{labels_path}: no labels")
    if all(label.isdigit() for _, label in entries):
        labels = [int(label) for _, label in entries]
    else:
        wnids = sorted({label for _, label in entries})
        if len(wnids) != NUM_CLASSES:
            raise DataError(
                f"{labels_path}: {len(wnids)} distinct wnids, expected {NUM_CLASSES} to map them to "
                f"class indices; use integer labels instead"
            )
        index = {wnid: i for i, wnid in enumerate(wnids)}
        labels = [index[label] for _, label in entries]
    if max(labels) >= NUM_CLASSES:
        raise DataError(f"{labels_path}: class index {max(labels)} out of range 0..{NUM_CLASSES - 1}")
    files = {p.name: p for p in _images_in(directory)} | {p.stem: p for p in _images_in(directory)}
    missing = [name for name, _ in entries if name not in files]
    if missing:
        raise DataError(f"{labels_path}: {len(missing)} listed images are not in {directory} (e.g. {missing[0]})")
    order = sorted(range(len(entries)), key=lambda i: files[entries[i][0]].name)
    return ImageFolderDataset([files[entries[i][0]] for i in order], [labels[i] for i in order])


def load_imagenet(directory: str | Path) -> ImageFolderDataset:
    """The validation images under `directory` in either layout (see the module docstring)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"ImageNet folder {directory} does not exist")
    for candidate in (directory / "val", directory):
        for name in LABEL_FILES:
            if (candidate / name).is_file() and _images_in(candidate):
                return _labels_file(candidate, candidate / name)
    base = directory / "val" if (directory / "val").is_dir() else directory
    if any(p.is_dir() for p in base.iterdir()):
        return _class_folders(base)
    raise DataError(
        f"{directory}: neither class folders (val/<wnid>/*.JPEG) nor images with a labels file "
        f"({', '.join(LABEL_FILES)})"
    )
