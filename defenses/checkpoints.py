"""Loading checkpoints written by others, safely.

Default: safetensors, or `torch.load(weights_only=True)` for `.pt/.pth` files, which refuses arbitrary objects.
Unpickling a full pickle runs code from the file, so it needs the explicit `trust_checkpoint=True` opt-in
(`--trust-checkpoint` on the command line).
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from defenses.errors import UserError

STRIPPED_PREFIXES = ("module.", "model.")


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, corrupt, untrusted or does not fit the model; the message says which."""


def save_checkpoint(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write a model's state dict as safetensors, with JSON-able metadata (architecture, how it was made)."""
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    meta = {key: json.dumps(value) for key, value in (metadata or {}).items()}
    save_file(state, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a safetensors file. Values we wrote are JSON; others (e.g. `{"format": "pt"}` in files
    from other tools) are kept as plain strings instead of failing."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or not safetensors ({error})") from None
    return {key: _json_or_string(value) for key, value in raw.items()}


def _json_or_string(value: str) -> Any:  # any JSON value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _first_line(error: BaseException) -> str:
    """The informative line of an exception message (torch's weights-only errors put the cause mid-text)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return lines[0] if lines else type(error).__name__


def load_state_dict(path: str | Path, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch file. Never unpickles arbitrary objects unless trusted."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"checkpoint {path} is corrupt or not safetensors ({error})") from None
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a file it is about to refuse; the refusal says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path} holds Python objects beyond tensors (or is not a torch checkpoint), and unpickling "
            f"them could run code. If you trust its author, pass --trust-checkpoint (detail: {_first_line(error)})"
        ) from None
    except Exception as error:  # noqa: BLE001 - torch raises KeyError, IndexError, ... on garbage files
        detail, kind = _first_line(error), type(error).__name__
        detail = detail if detail.startswith(kind) else f"{kind}: {detail}"
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({detail})") from None
    # RobustBench and most training scripts wrap the weights in a dict.
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    return state


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove `module.` (DataParallel) and `model.` prefixes, as RobustBench does before a strict load."""
    cleaned = {}
    for key, value in state.items():
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    return cleaned


def _optional_keys(model: nn.Module) -> set[str]:
    """Buffers a checkpoint may omit: MeanSparse's `momentum`/`epsilon`, absent from RobustBench's copy."""
    from defenses.meansparse import MeanSparse

    return {
        f"{name}.{buffer}" if name else buffer
        for name, module in model.named_modules()
        if isinstance(module, MeanSparse)
        for buffer in MeanSparse.OPTIONAL_BUFFERS
    }


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Strict load with a message that lists what does not match, instead of PyTorch's wall of text."""
    expected = model.state_dict()
    if not set(state) <= set(expected):  # keys that already fit (e.g. a model with a `model` child) stay as they are
        state = strip_prefixes(state)
    missing = sorted(set(expected) - set(state) - _optional_keys(model))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if wrong_shape:
            key = wrong_shape[0]
            parts.append(
                f"{len(wrong_shape)} shape mismatches (e.g. {key}: checkpoint {tuple(state[key].shape)}, "
                f"model {tuple(expected[key].shape)})"
            )
        raise CheckpointError(f"{source} does not fit the architecture: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model
