"""Turn `--model SPEC` into a Defense: a shipped demo model, `PATH.py:FACTORY`, or a RobustBench checkpoint."""
from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from defenses.checkpoints import CheckpointError, load_into, load_state_dict
from defenses.models.registry import SHIPPED, load_shipped
from defenses.protocol import Defense, as_defense


class ModelSpecError(ValueError):
    pass


@dataclass(frozen=True)
class RobustBenchEntry:
    """What our code needs to rebuild a RobustBench CIFAR WRN entry (architecture facts from its model zoo)."""

    depth: int
    width: int
    activation: str
    meansparse_alpha: float | None
    dataset: str = "cifar10"
    threat: str = "Linf"
    num_classes: int = 10


ROBUSTBENCH = {
    "Amini2024MeanSparse_S-WRN-94-16": RobustBenchEntry(94, 16, "swish", 0.15),
    "Amini2024MeanSparse_S-WRN-70-16": RobustBenchEntry(70, 16, "swish", 0.25, threat="L2"),
    "Bartoldson2024Adversarial_WRN-94-16": RobustBenchEntry(94, 16, "swish", None),
    "Wang2023Better_WRN-70-16": RobustBenchEntry(70, 16, "swish", None),
    "Wang2023Better_WRN-28-10": RobustBenchEntry(28, 10, "swish", None),
}
_GENERIC_WRN = re.compile(r"WRN-(\d+)-(\d+)", re.IGNORECASE)


def load_robustbench(model_dir: str | Path, name: str, threat: str = "Linf", dataset: str = "cifar10",
                     trust_checkpoint: bool = False) -> nn.Module:
    """Build the architecture for `name` and load `<model_dir>/<dataset>/<threat>/<name>.pt` strictly."""
    from defenses.models.wide_resnet import DMWideResNet
    from defenses.sparsify import sparsify

    entry = ROBUSTBENCH.get(name)
    if entry is None:
        match = _GENERIC_WRN.search(name)
        if not match:
            raise ModelSpecError(
                f"unknown RobustBench model {name!r}; known: {', '.join(ROBUSTBENCH)} (or any name with WRN-D-W)"
            )
        entry = RobustBenchEntry(int(match.group(1)), int(match.group(2)), "swish",
                                 None if "MeanSparse" not in name else 0.15)
    path = Path(model_dir) / dataset / (entry.threat if name in ROBUSTBENCH else threat) / f"{name}.pt"
    model = DMWideResNet(num_classes=entry.num_classes, depth=entry.depth, width=entry.width,
                         activation=entry.activation)
    if entry.meansparse_alpha is not None:
        model = sparsify(model, entry.meansparse_alpha, placement="wrn")
    return load_into(model, load_state_dict(path, trust_checkpoint), source=str(path)).eval()


def load_factory(spec: str, checkpoint: str | None = None, trust_checkpoint: bool = False) -> nn.Module:
    """`PATH.py:FACTORY`: trusted user code whose factory returns an nn.Module mapping [0, 1] images to logits."""
    path_text, _, factory_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ModelSpecError(f"model file {path} not found (expected PATH.py:FACTORY)")
    module_name = f"audit_user_model_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    module_spec.loader.exec_module(module)
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        raise ModelSpecError(f"{path} has no callable {factory_name!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    if checkpoint:
        load_into(model, load_state_dict(checkpoint, trust_checkpoint), source=checkpoint)
    return model.eval()


def resolve_model(spec: str, *, num_classes: int = 10, checkpoint: str | None = None,
                  robustbench_dir: str | None = None, trust_checkpoint: bool = False) -> tuple[Defense, str]:
    """Returns (defense, kind) where kind is `shipped`, `factory` or `robustbench`."""
    if robustbench_dir is not None:
        model = load_robustbench(robustbench_dir, spec, trust_checkpoint=trust_checkpoint)
        return as_defense(model, num_classes, spec), "robustbench"
    if spec in SHIPPED:
        return as_defense(load_shipped(spec), num_classes, spec), "shipped"
    if ".py:" in spec:
        model = load_factory(spec, checkpoint, trust_checkpoint)
        # User code is opaque unless it contains our MeanSparse layers, whose surrogates we know.
        from defenses.meansparse import meansparse_layers

        return as_defense(model, num_classes, spec, opaque=not meansparse_layers(model)), "factory"
    raise ModelSpecError(
        f"unknown model {spec!r}: use a shipped model ({', '.join(SHIPPED)}), PATH.py:FACTORY, "
        f"or --robustbench-dir DIR with a RobustBench name"
    )


__all__ = ["CheckpointError", "ModelSpecError", "resolve_model", "load_robustbench", "load_factory"]
