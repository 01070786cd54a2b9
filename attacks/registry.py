"""Attacks by name. The grammar lives in `attacks.names`; a name says the attack, how its gradients are taken and
its budget, e.g.

    apgd-ce                       exact gradients, default budget
    apgd-ce+bpda-identity         straight-through BPDA through the defense's surrogate
    apgd-t+bpda-smooth-T0.1       smooth surrogate at temperature 0.1
    apgd-dlr+bpda-ensemble        gradients averaged over identity and smooth at every temperature of the sweep
    apgd-ce+eot10                 gradients averaged over 10 draws (randomized defenses)
    apgd-ce+unrolled              the full gradient through a test-time defense's own optimisation steps
    square+eot20, fab-t+eot20     EOT for attacks that query the model: their logits averaged over 20 draws
    square+survivors@restarts=5   run last, only on the samples every other attack left robust
    apgd-malt@targets=3           targeted APGD on the 3 targets MALT ranks nearest (attacks/malt.py)
    apgd-cw                       APGD on the Carlini-Wagner margin loss (attacks/apgd_cw.py)
    apgd-t@iters=500,restarts=5   a bigger budget (each attack registers its keys: attacks.catalog)
    square@queries=20000          also restarts=
    autoattack-standard           also -plus, -rand
    transfer-base:apgd-ce         crafted on the base model (MeanSparse off), judged on the defense
    apgd-continuation-linear      MeanSparse thresholds ramped 0 -> alpha, then straight-through (also -geometric)
    apgd-anneal@stages=5,iters=20 smooth surrogate annealed T = 1 -> 0.01, exact forward
    apgd-escape@weight=0.5        margin loss plus a dead-zone escape term (attacks/adaptive.py)
    fab, fab-t, fgsm, spatial-grid, stadv, torchattacks:PGD@steps=20, foolbox:LinfPGD

`Attack.label` produces these names (`attacks.names.label_of`), so every stored result names an attack that can be
re-run: `make_attack(a.label).label == a.label`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attacks.base import Attack
from attacks.catalog import entries
from attacks.names import AttackName, UnknownAttack, parse_name

if TYPE_CHECKING:
    from torch import nn

__all__ = ["UnknownAttack", "available", "canonical_name", "make_attack", "build_attack"]


def available() -> list[str]:
    return sorted([*entries(), "transfer-base:<attack>", "torchattacks:<Name>", "foolbox:<Name>"])


def build_attack(name: AttackName, transfer_source: nn.Module | None = None) -> Attack:
    """Build the attack a parsed name describes."""
    if name.inner is not None:
        from attacks.transfer import Transfer

        if transfer_source is None:
            raise UnknownAttack(
                f"{name.base}:{name.inner.base}: this defense has no base model to transfer from "
                f"(it has no MeanSparse layers to switch off)"
            )
        return Transfer(build_attack(name.inner), transfer_source)
    kwargs = name.constructor_kwargs()
    if name.library is not None:
        from attacks.external import ExternalAttack

        return ExternalAttack(name.base, **kwargs)
    attack: Attack = entries()[name.base].build(**kwargs)
    return attack


def make_attack(spec: str, transfer_source: nn.Module | None = None) -> Attack:
    """Build an attack from its name (see `attacks.names`); a bad name raises UnknownAttack (one line)."""
    return build_attack(parse_name(spec), transfer_source)


def canonical_name(spec: str) -> str:
    """The label of the attack `spec` names (defaults left out), e.g. `apgd-ce@iters=100` -> `apgd-ce`."""
    from torch import nn

    # A transfer attack needs a source model to be built; any module gives the same label.
    return make_attack(spec, transfer_source=nn.Identity()).label
