"""Data for the RobustBench entries: cifar-100-python, ImageNet validation folders, BicubicRes256Crop224, and
foolbox's real CIFAR-100 and ImageNet sample images."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audit.data import DataError, load_dataset
from audit.imagenet import bicubic_res256_crop224, load_imagenet


def write_cifar100(
    directory: Path, split: str, data: np.ndarray, fine: list[int], protocol: int = 2, names: int = 100
) -> None:
    """The authors' format: `train`/`test` dicts with fine and coarse labels, and `meta` with the label names."""
    directory.mkdir(parents=True, exist_ok=True)
    batch = {
        b"filenames": [f"img_{i}.png".encode() for i in range(len(fine))],
        b"batch_label": b"testing batch",
        b"fine_labels": fine,
        b"coarse_labels": [f // 5 for f in fine],
        b"data": data,
    }
    with open(directory / split, "wb") as handle:
        pickle.dump(batch, handle, protocol=protocol)
    meta = {
        b"fine_label_names": [f"class{i}".encode() for i in range(names)],
        b"coarse_label_names": [f"super{i}".encode() for i in range(20)],
    }
    with open(directory / "meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar100_loads_fine_labels_with_the_exact_layout(tmp_path, protocol):
    data = np.random.default_rng(protocol).integers(0, 256, size=(5, 3072), dtype=np.uint8)
    fine = [99, 0, 57, 57, 13]
    write_cifar100(tmp_path, "test", data, fine, protocol)
    loaded = load_dataset("cifar100", "test", tmp_path)
    assert loaded.num_classes == 100 and loaded.labels.tolist() == fine  # fine, not coarse ([19, 0, 11, ...])
    assert torch.equal(loaded.images, torch.from_numpy(data.reshape(5, 3, 32, 32).astype(np.float32) / 255))
    write_cifar100(tmp_path, "train", data[:2], fine[:2], protocol)
    assert load_dataset("cifar100", "train", tmp_path).labels.tolist() == [99, 0]


def test_cifar100_refuses_bad_files(tmp_path):
    with pytest.raises(DataError, match="pass --data-dir pointing at your cifar-100-python folder"):
        load_dataset("cifar100", "test")
    write_cifar100(tmp_path, "test", np.zeros((2, 3072), np.uint8), [1, 100])
    with pytest.raises(DataError, match=r"labels out of range 0..99 \(min 1, max 100\)"):
        load_dataset("cifar100", "test", tmp_path)
    write_cifar100(tmp_path, "test", np.zeros((2, 3072), np.uint8), [1, 2], names=10)
    with pytest.raises(DataError, match="10 fine label names, expected 100; is this CIFAR-100"):
        load_dataset("cifar100", "test", tmp_path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/zoo16-cifar100-pwned",))


def test_cifar100_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = Path("/tmp/zoo16-cifar100-pwned")
    marker.unlink(missing_ok=True)
    (tmp_path / "test").write_bytes(pickle.dumps({b"data": _Payload(), b"fine_labels": [0]}))
    with pytest.raises(DataError, match=r"test: not a CIFAR-100 python batch \(refusing to load class"):
        load_dataset("cifar100", "test", tmp_path)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# ImageNet


def test_bicubic_res256_crop224_resizes_the_shorter_side_and_crops_the_center():
    rng = np.random.default_rng(0)
    # Shorter side already 256: the resize is the identity, so the crop offsets can be checked pixel for pixel.
    pixels = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)  # H 256, W 320
    out = bicubic_res256_crop224(Image.fromarray(pixels))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert np.array_equal(out, pixels[16:240, 48:272].transpose(2, 0, 1).astype(np.float32) / 255)
    # 300 (W) x 257 (H): height -> 256, width -> int(256 * 300 / 257) = 298, crop at (16, round(74 / 2) = 37).
    pixels = rng.integers(0, 256, size=(257, 300, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pixels).resize((298, 256), Image.BICUBIC))[16:240, 37:261]
    assert np.array_equal(
        bicubic_res256_crop224(Image.fromarray(pixels)), expected.transpose(2, 0, 1).astype(np.float32) / 255
    )
    # Grey-scale JPEGs exist in ImageNet: converted to RGB like torchvision's ImageFolder loader does.
    grey = bicubic_res256_crop224(Image.fromarray(np.full((300, 400), 77, np.uint8)))
    assert grey.shape == (3, 224, 224) and np.allclose(grey, 77 / 255)


def _jpeg(path: Path, value: int, size=(300, 260)) -> None:  # noqa: ANN001 - untyped by design in this script/test
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, quality=95)


def test_imagenet_class_folders_label_by_sorted_wnid_and_decode_only_the_subset(tmp_path):
    wnids = [f"n{1000000 + 7 * i:08d}" for i in range(1000)]
    for wnid in wnids:
        (tmp_path / "val" / wnid).mkdir(parents=True)
    _jpeg(tmp_path / "val" / wnids[0] / "a.JPEG", 10)
    _jpeg(tmp_path / "val" / wnids[999] / "b.JPEG", 200)
    _jpeg(tmp_path / "val" / wnids[421] / "c.jpeg", 120)
    data = load_dataset("imagenet", "test", tmp_path)
    assert len(data) == 3 and data.labels.tolist() == [0, 421, 999] and data.num_classes == 1000
    sub = data.subset(2, seed=0)
    assert sub.images.shape == (2, 3, 224, 224) and sub.num_classes == 1000
    # The same samples the in-memory Dataset.subset picks for the same seed.
    generator = torch.Generator().manual_seed(0)
    assert sub.labels.tolist() == data.labels[torch.randperm(3, generator=generator)[:2].sort().values].tolist()
    assert abs(float(sub.images[sub.labels.tolist().index(999)].mean()) - 200 / 255) < 0.01
    (tmp_path / "val" / wnids[5]).rmdir()
    with pytest.raises(DataError, match="999 class folders, expected 1000"):
        load_imagenet(tmp_path)


def test_imagenet_flat_folder_with_a_labels_file(tmp_path):
    _jpeg(tmp_path / "ILSVRC2012_val_00000002.JPEG", 30)
    _jpeg(tmp_path / "ILSVRC2012_val_00000001.JPEG", 60)
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n")
    data = load_imagenet(tmp_path)
    assert data.labels.tolist() == [65, 970]
    images = data.slice(0, 2).images
    assert abs(float(images[0].mean()) - 60 / 255) < 0.01 and abs(float(images[1].mean()) - 30 / 255) < 0.01
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000003.JPEG 1\n")
    with pytest.raises(DataError, match=r"1 listed images are not in .* \(e\.g\. ILSVRC2012_val_00000003\.JPEG\)"):
        load_imagenet(tmp_path)
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 1000\n")
    with pytest.raises(DataError, match=r"class index 1000 out of range 0..999"):
        load_imagenet(tmp_path)


def test_imagenet_kaggle_solution_csv_maps_wnids_in_sorted_order(tmp_path):
    wnids = sorted(f"n{2000000 + 3 * i:08d}" for i in range(1000))
    rows = [f"img{i:04d},{wnids[(i * 7) % 1000]} 1 2 3 4" for i in range(1000)]
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    for i in range(1000):
        (tmp_path / f"img{i:04d}.JPEG").touch()  # never decoded here: only labels are read
    data = load_imagenet(tmp_path)
    assert data.labels[:3].tolist() == [0, 7, 14] and len(data) == 1000
    (tmp_path / "img0001.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"img0001\.JPEG: cannot decode image"):
        data.slice(1, 2)


def test_imagenet_without_a_known_layout_is_refused(tmp_path):
    _jpeg(tmp_path / "x.JPEG", 3)
    with pytest.raises(DataError, match="neither class folders .* nor images with a labels file"):
        load_imagenet(tmp_path)
    with pytest.raises(DataError, match="pass --data-dir pointing at the validation images"):
        load_dataset("imagenet")


# ---------------------------------------------------------------------------------------------------------------
# foolbox's real sample images


@pytest.mark.parametrize(
    "name,shape,classes,labels",
    [
        ("foolbox-cifar100", (3, 32, 32), 100, [49, 33, 72, 51, 71]),
        ("foolbox-imagenet", (3, 224, 224), 1000, [243, 559, 438, 990, 949]),
    ],
)
def test_foolbox_samples(name, shape, classes, labels):
    data = load_dataset(name)
    assert len(data) == 20 and data.images.shape[1:] == shape and data.num_classes == classes
    assert data.labels[:5].tolist() == labels and data.labels.max() < classes
    assert 0 <= float(data.images.min()) and float(data.images.max()) <= 1
    assert float(data.images.std()) > 0.1  # real photographs, not blank


def test_the_zoo_asks_only_for_the_preprocessing_the_loader_applies():
    from audit.imagenet import PREPROCESSINGS
    from defenses.models import robustbench as rb

    assert set(rb.PREPROCESSINGS) == set(PREPROCESSINGS)
    assert {e.preprocessing for e in rb.entries() if e.dataset == "imagenet"} == {"BicubicRes256Crop224"}
    entry = rb.find("Amini2024MeanSparse_Swin-L")
    with pytest.raises(ValueError, match="preprocessing 'Res256Crop224' is not what the imagenet loader applies"):
        rb.register(rb.ZooEntry("x", "imagenet", "Linf", 4 / 255, "swin", preprocessing="Res256Crop224"))
    assert rb.find(entry.name) is entry
