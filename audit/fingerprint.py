"""What a run audited, by content: hashes of the model's state, its checkpoint file and the audited images, and
the versions that decide the numbers. Part of a run's identity (`AuditConfig.identity`), so a resume with other
weights at the same path, other images under the same `--data-dir`, or another torch is refused, naming what
changed; shown in results.json and the report, so two reviewers can tell they audited the same thing."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audit.config import AuditConfig
from audit.environment import git_commit

# Each identity key, in words, for the message that refuses a resume.
MEANING = {
    "model_state_sha256": "the model's weights and buffers",
    "checkpoint_sha256": "the checkpoint file",
    "model_file_sha256": "the model's Python file",
    "data_sha256": "the audited images and labels",
    "torch_version": "the torch version",
    "pyautoattack_version": "the pyautoattack version",
    "suite_version": "this suite's version (commit)",
}
CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _update(digest: hashlib._Hash, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().to("cpu").contiguous()
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    # Viewed as bytes, so every dtype (bfloat16 included, which numpy lacks) hashes the same way; hashed from the
    # buffer itself, without a copy (a WRN-94-16's weights are 1.5 GB).
    if tensor.numel():
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)


def state_sha256(model: nn.Module) -> str:
    """Every parameter and buffer after loading, by name: what runs, whatever file it came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        _update(digest, tensor)
    return digest.hexdigest()


def data_sha256(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256()
    _update(digest, images.float())
    _update(digest, labels.long())
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def suite_version() -> str:
    """The commit when run from a git checkout, else the installed package's version."""
    return git_commit() or f"meansparse-audit {_version('meansparse-audit')}"


def checkpoint_file(config: AuditConfig) -> Path | None:
    """The weights file `config.model` is loaded from, when there is one."""
    from defenses.models import robustbench
    from defenses.models.registry import CHECKPOINT_DIR, SHIPPED

    if config.robustbench_dir is not None:
        return robustbench.find(config.model, config.dataset, config.norm).path(config.robustbench_dir)
    if config.model in SHIPPED:
        return CHECKPOINT_DIR / SHIPPED[config.model]
    return Path(config.checkpoint) if config.checkpoint else None


def fingerprint(config: AuditConfig, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """The content part of a run's identity (keys in `MEANING`)."""
    checkpoint = checkpoint_file(config)
    model_file = Path(config.model.rpartition(":")[0]) if ".py:" in config.model else None
    return {
        "model_state_sha256": state_sha256(model),
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint is not None and checkpoint.is_file() else None,
        "model_file_sha256": file_sha256(model_file) if model_file is not None and model_file.is_file() else None,
        "data_sha256": data_sha256(images, labels),
        "torch_version": torch.__version__,
        "pyautoattack_version": _version("pyautoattack"),
        "suite_version": suite_version(),
    }
