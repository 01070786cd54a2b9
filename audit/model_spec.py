"""Turn `--model SPEC` into a Defense: a shipped demo model, `PATH.py:FACTORY`, or a RobustBench checkpoint."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from torch import nn

from defenses.adapters import as_defense
from defenses.checkpoints import CheckpointError, load_into, load_state_dict
from defenses.errors import UserError
from defenses.models import robustbench
from defenses.models.registry import SHIPPED, load_shipped
from defenses.protocol import Defense


class ModelSpecError(UserError, ValueError):
    """A --model spec that cannot be resolved or built."""


def _summary(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text if len(text) <= limit else text[: limit - 3] + '...'}"


def load_factory(spec: str, checkpoint: str | None = None, trust_checkpoint: bool = False) -> nn.Module:
    """`PATH.py:FACTORY`: trusted user code whose factory returns an nn.Module mapping [0, 1] images to logits."""
    path_text, _, factory_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ModelSpecError(f"model file {path} not found (expected PATH.py:FACTORY)")
    module_name = f"audit_user_model_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelSpecError(f"model file {path} is not a Python file (expected PATH.py:FACTORY)")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    # The user's code may raise anything; it is summarised in one line (--debug shows the traceback).
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything; reported in one line
        raise ModelSpecError(f"importing {path} raised {_summary(error)}; fix the file") from error
    factory = getattr(module, factory_name, None) if factory_name.isidentifier() else None
    if factory is None or not callable(factory):
        raise ModelSpecError(f"{path} has no callable {factory_name!r} (expected PATH.py:FACTORY)")
    try:
        model = factory()
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything; reported in one line
        raise ModelSpecError(f"{spec}: calling {factory_name}() raised {_summary(error)}; fix the factory") from error
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    if checkpoint:
        load_into(model, load_state_dict(checkpoint, trust_checkpoint), source=checkpoint)
    return model.eval()


def resolve_model(
    spec: str,
    *,
    num_classes: int = 10,
    checkpoint: str | None = None,
    robustbench_dir: str | None = None,
    trust_checkpoint: bool = False,
    dataset: str | None = None,
    threat: str | None = None,
) -> tuple[Defense, str]:
    """Returns (defense, kind) where kind is `shipped`, `factory` or `robustbench`. `dataset` and `threat` pick
    among RobustBench entries that share a name.

    A float16/bfloat16 model is converted to float32 here (`audit.inputs.to_float32`, which says why)."""
    defense, kind = _resolve(
        spec,
        num_classes=num_classes,
        checkpoint=checkpoint,
        robustbench_dir=robustbench_dir,
        trust_checkpoint=trust_checkpoint,
        dataset=dataset,
        threat=threat,
    )
    from audit.inputs import to_float32

    to_float32(defense.model)
    return defense, kind


def _resolve(
    spec: str,
    *,
    num_classes: int,
    checkpoint: str | None,
    robustbench_dir: str | None,
    trust_checkpoint: bool,
    dataset: str | None,
    threat: str | None,
) -> tuple[Defense, str]:
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


__all__ = ["CheckpointError", "ModelSpecError", "resolve_model", "load_factory"]
