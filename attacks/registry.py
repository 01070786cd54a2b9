"""Attacks by name. A name says the attack and how its gradients are taken, e.g.

    apgd-ce                       exact gradients
    apgd-ce+bpda-identity         straight-through BPDA through the defense's surrogate
    apgd-t+bpda-smooth-T0.1       smooth surrogate at temperature 0.1
    apgd-ce+eot10                 gradients averaged over 10 draws (randomized defenses)
    autoattack-standard           also -plus, -rand
    transfer-base:apgd-ce         crafted on the base model (MeanSparse off), judged on the defense
    square, square-strong, fab, fab-t, fgsm, spatial-grid, stadv, torchattacks:PGD, foolbox:LinfPGD

`Attack.label` produces these names, so every stored result names an attack that can be re-run.
"""
from __future__ import annotations

import re
from typing import Callable

from attacks.autoattack import APGD, FAB, AutoAttack, Square
from attacks.base import Attack
from attacks.single_step import FGSM

BASE_ATTACKS: dict[str, Callable[..., Attack]] = {
    "apgd-ce": lambda **kw: APGD(loss="ce", **kw),
    "apgd-dlr": lambda **kw: APGD(loss="dlr", **kw),
    "apgd-t": lambda **kw: APGD(targeted=True, **kw),
    "fab": lambda **kw: FAB(targeted=False, **kw),
    "fab-t": lambda **kw: FAB(targeted=True, **kw),
    "square": lambda **kw: Square(**kw),
    # Where no gradient reaches the input: more queries and restarts (RobustBench broke k-WTA with 30 restarts).
    "square-strong": lambda **kw: _named(Square(n_queries=10000, n_restarts=3, **kw), "square-strong"),
    "fgsm": lambda **kw: FGSM(**kw),
    "autoattack-standard": lambda **kw: AutoAttack("standard", **kw),
    "autoattack-plus": lambda **kw: AutoAttack("plus", **kw),
    "autoattack-rand": lambda **kw: AutoAttack("rand", **kw),
}


def _named(attack: Attack, name: str) -> Attack:
    attack.name = name
    return attack


def _spatial(name: str, **kw) -> Attack:
    from attacks.spatial import RotationTranslationGrid
    from attacks.stadv import StAdv

    return RotationTranslationGrid(**kw) if name == "spatial-grid" else StAdv(**kw)


MODIFIER = re.compile(r"\+(bpda-identity|bpda-smooth(?:-T(?P<t>[0-9.eE-]+))?|eot(?P<k>\d+))")
_NAME = re.compile(r"^(?P<base>[^+]+)(?P<mods>(\+[^+]+)*)$")


class UnknownAttack(ValueError):
    pass


def available() -> list[str]:
    return sorted([*BASE_ATTACKS, "spatial-grid", "stadv", "transfer-base:<attack>", "torchattacks:<Name>",
                   "foolbox:<Name>"])


def make_attack(spec: str, transfer_source=None) -> Attack:  # noqa: ANN001 - an nn.Module or None
    """Build an attack from its name (see the module docstring)."""
    if spec.startswith("transfer-base:"):
        from attacks.transfer import Transfer

        if transfer_source is None:
            raise UnknownAttack(f"{spec}: this defense has no base model to transfer from")
        return Transfer(make_attack(spec.split(":", 1)[1]), transfer_source)
    match = _NAME.match(spec)
    if not match:
        raise UnknownAttack(f"cannot parse attack name {spec!r}")
    base, mods = match.group("base"), match.group("mods") or ""
    kwargs: dict = {}
    for modifier in re.findall(r"\+[^+]+", mods):
        m = MODIFIER.fullmatch(modifier)
        if not m:
            raise UnknownAttack(f"unknown modifier {modifier!r} in {spec!r} (use +bpda-identity, +bpda-smooth-T0.1, +eotK)")
        if m.group(1) == "bpda-identity":
            kwargs["surrogate"] = "identity"
        elif m.group(1).startswith("bpda-smooth"):
            kwargs["surrogate"] = "smooth"
            kwargs["temperature"] = float(m.group("t")) if m.group("t") else None
        else:
            kwargs["eot"] = int(m.group("k"))
    if base in BASE_ATTACKS:
        return BASE_ATTACKS[base](**kwargs)
    if base in ("spatial-grid", "stadv"):
        return _spatial(base, **kwargs)
    if ":" in base:
        from attacks.external import ExternalAttack

        return ExternalAttack(base, **kwargs)
    raise UnknownAttack(f"unknown attack {base!r}; available: {', '.join(available())}")
