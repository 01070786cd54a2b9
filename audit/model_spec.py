"""Turn `--model SPEC` into a Defense: a shipped demo model, `PATH.py:FACTORY`, or a RobustBench checkpoint."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from torch import nn

from defenses.checkpoints import CheckpointError, load_into, load_state_dict
from defenses.models import robustbench
from defenses.models.registry import SHIPPED, load_shipped
from defenses.protocol import Defense, as_defense


class ModelSpecError(ValueError):
    pass


def load_robustbench(model_dir: str | Path, name: str, threat: str | None = None, dataset: str | None = None,
                     trust_checkpoint: bool = False) -> nn.Module:
    """The RobustBench model `name` from `<model_dir>/<dataset>/<threat>/<name>.pt` (entries and loading:
    `defenses.models.robustbench`)."""
    return robustbench.load(model_dir, name, dataset, threat, trust_checkpoint)[0]


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
                  robustbench_dir: str | None = None, trust_checkpoint: bool = False, dataset: str | None = None,
                  threat: str | None = None) -> tuple[Defense, str]:
    """Returns (defense, kind) where kind is `shipped`, `factory` or `robustbench`. `dataset` and `threat` pick
    among RobustBench entries that share a name."""
    if robustbench_dir is not None:
        model, entry = robustbench.load(robustbench_dir, spec, dataset, threat, trust_checkpoint)
        return as_defense(model, entry.num_classes, spec), "robustbench"
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
