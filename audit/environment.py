"""The versions and machine facts a result depends on, recorded in every results.json."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "pyautoattack", "torchattacks", "foolbox", "numpy", "scipy")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        **{p: _version(p) for p in PACKAGES},
        "device": device,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }
