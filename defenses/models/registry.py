"""Architectures by name, and the demo models shipped with the suite (safetensors + metadata)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from defenses.checkpoints import CheckpointError, load_into, load_state_dict, read_metadata
from defenses.models.demo_cnn import DemoCNN
from defenses.models.wide_resnet import DMWideResNet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"demo_cnn": DemoCNN, "dm_wide_resnet": DMWideResNet}
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = {
    "demo-standard": "demo_standard.safetensors",
    "demo-adversarial": "demo_adversarial.safetensors",
    "demo-meansparse": "demo_meansparse.safetensors",
}


def build(architecture: str, **kwargs: Any) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**kwargs)


def load_checkpoint_file(path: str | Path) -> nn.Module:
    """A model from one of our safetensors files: metadata says how to build it (and where MeanSparse goes)."""
    from defenses.sparsify import sparsify

    meta = read_metadata(path)
    if "architecture" not in meta:
        raise CheckpointError(f"{path} has no 'architecture' metadata; load it with PATH.py:FACTORY --checkpoint")
    model = build(meta["architecture"], **meta.get("arch_kwargs", {}))
    if "meansparse" in meta:
        model = sparsify(model, meta["meansparse"]["alpha"], placement=meta["meansparse"]["placement"])
    load_into(model, load_state_dict(path), source=str(path))
    return model.eval()


def load_shipped(name: str) -> nn.Module:
    if name not in SHIPPED:
        raise CheckpointError(f"unknown model {name!r}; shipped models: {', '.join(SHIPPED)}")
    path = CHECKPOINT_DIR / SHIPPED[name]
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from this installation (run `audit train` to make it)")
    return load_checkpoint_file(path)
