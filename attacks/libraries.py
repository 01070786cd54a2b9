"""The attack libraries behind `torchattacks:NAME` and `foolbox:NAME`: which attacks they offer and their classes.

A leaf module (it imports nothing of ours), so the name grammar (`attacks.names`) can check library names without
importing the adapter (`attacks.external`), which itself needs the grammar's error type.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

LIBRARIES = ("torchattacks", "foolbox")
# Score- or decision-based attacks, which take no gradients (informational, for the diagnostics).
GRADIENT_FREE = {
    "torchattacks": {"VANILA", "GN", "Square", "OnePixel", "Pixle", "SPSA"},
    "foolbox": {
        "BoundaryAttack",
        "HopSkipJumpAttack",
        "GenAttack",
        "SaltAndPepperNoiseAttack",
        "PointwiseAttack",
        "DatasetAttack",
        "InversionAttack",
        "GaussianBlurAttack",
        "LinearSearchBlendedUniformNoiseAttack",
        "L2ContrastReductionAttack",
        "BinarySearchContrastReductionAttack",
        "LinearSearchContrastReductionAttack",
        "L2AdditiveGaussianNoiseAttack",
        "L2AdditiveUniformNoiseAttack",
        "L2ClippingAwareAdditiveGaussianNoiseAttack",
        "L2ClippingAwareAdditiveUniformNoiseAttack",
        "LinfAdditiveUniformNoiseAttack",
        "L2RepeatedAdditiveGaussianNoiseAttack",
        "L2RepeatedAdditiveUniformNoiseAttack",
        "L2ClippingAwareRepeatedAdditiveGaussianNoiseAttack",
        "L2ClippingAwareRepeatedAdditiveUniformNoiseAttack",
        "LinfRepeatedAdditiveUniformNoiseAttack",
        "SpatialAttack",
    },
}
# Attacks whose norm is plain from the name, so a mismatch with the threat model can be warned about.
TORCHATTACKS_L2 = {"PGDL2", "PGDRSL2", "CW", "DeepFool", "EADEN"}


def declared_norm(library: str, name: str) -> str | None:
    """The norm an attack works in, when its name says so (foolbox: `L2...`, `Linf...`), else None."""
    if library == "torchattacks":
        return "L2" if name in TORCHATTACKS_L2 else None
    for prefix, norm in (("Linf", "Linf"), ("LInf", "Linf"), ("L2", "L2"), ("L1", "L1"), ("L0", "L0")):
        if name.startswith(prefix):
            return norm
    return None


def import_foolbox() -> Any:
    # foolbox imports GitPython, which fails without a `git` executable unless told to stay quiet.
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import foolbox

    return foolbox


def available_attacks(library: str) -> list[str]:
    """The attack class names `library` offers (what `library:NAME` accepts)."""
    if library == "torchattacks":
        import torchattacks
        from torchattacks.attack import Attack as Base

        module = torchattacks
    elif library == "foolbox":
        fb = import_foolbox()
        module, Base = fb.attacks, fb.attacks.base.Attack
    else:
        raise ValueError(f"unknown attack library {library!r}; choose one of {', '.join(LIBRARIES)}")
    return sorted(
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, Base)
        and not inspect.isabstract(obj)
        and obj is not Base
        and not name.startswith("_")
    )


def attack_class(library: str, name: str) -> type:
    """The class `library:NAME` stands for (NAME one of `available_attacks(library)`)."""
    if library == "torchattacks":
        import torchattacks

        return getattr(torchattacks, name)
    return getattr(import_foolbox().attacks, name)
