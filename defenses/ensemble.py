"""The ensemble surrogate: one backward that averages the gradients of every BPDA surrogate a defense offers.

Why a surrogate of its own: the straight-through (identity) backward and the smooth backward at each temperature of
the sweep each see a different piece of a dead zone's landscape; which one fits a given defense is not known in
advance. Averaging their gradients is the ensemble-of-surrogates attack of Athalye et al. 2018 (sec. 4.1): one
attack that follows every surrogate at once. It lives in `defenses/` (not `attacks/`) because it is a property of
how a defense's backward is taken, selected like any other surrogate (`defense.surrogate("ensemble")`), so every
attack gets it unchanged by name (`apgd-ce+bpda-ensemble`) and the judge needs no special case.

The forward value is the exact forward, bit for bit:

    out = f_1(x).detach() + sum_k (f_k(x) - f_k(x).detach()) / K

Each `f_k(x) - f_k(x).detach()` is exactly 0.0 in floating point (a - a), so `out` holds f_1's values (and every
member's forward values are the exact forward's: a surrogate never changes them); its gradient is the mean of the
K members' gradients. Each member's surrogate is captured in the autograd graph when its forward runs (MeanSparse
stores its mode in the node; automatic BPDA builds its replacement at forward time), so the backward, which runs
after the members' contexts are closed, still follows each member's own surrogate.

Cost: every call runs K forwards (and its backward K backwards) inside the defense; the judge's counting wrapper
sits outside it and counts one query per call, so an ensemble attack's recorded forward/backward counts are those
of one surrogate, and its seconds show the K-fold cost.

For a randomized defense the K member forwards are K draws (their values differ); `out` then carries member 1's
draw, and the gradient averages over both surrogates and draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

import torch

ENSEMBLE = "ensemble"
# The smooth surrogate's temperature sweep (in units of each channel's std), sharpest last; the suites run BPDA at
# each of them (audit/plan/suites.py) and the ensemble averages over all of them and identity.
SMOOTH_TEMPERATURES = (1.0, 0.3, 0.1, 0.03)
# The surrogates an ensemble needs; a defense offering both also offers the ensemble.
MEMBER_SURROGATES = ("identity", "smooth")


class _Surrogated(Protocol):
    """What the ensemble needs of a defense (defenses/protocol.py's Defense has it): typed structurally, so this
    module does not import the protocol that dispatches to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def _surrogate_context(self, name: str, temperature: float | None) -> AbstractContextManager[Any]: ...


D = TypeVar("D", bound=_Surrogated)


def with_ensemble(surrogates: tuple[str, ...]) -> tuple[str, ...]:
    """`surrogates`, plus `ensemble` when they include both identity and smooth."""
    if set(MEMBER_SURROGATES) <= set(surrogates) and ENSEMBLE not in surrogates:
        return (*surrogates, ENSEMBLE)
    return surrogates


def members(temperatures: tuple[float, ...] = SMOOTH_TEMPERATURES) -> list[tuple[str, float | None]]:
    """The ensemble's members: (surrogate, temperature), identity first (its forward carries the value)."""
    return [("identity", None)] + [("smooth", t) for t in temperatures]


def combine(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Member 1's values, with the mean of every member's gradient (see the module docstring)."""
    if not outputs:
        raise ValueError("an ensemble needs at least one member")
    k = len(outputs)
    return outputs[0].detach() + sum(out - out.detach() for out in outputs) / k


@contextmanager
def ensemble_forward(defense: D, member_list: list[tuple[str, float | None]] | None = None) -> Iterator[D]:
    """Inside the block, `defense(x)` runs one forward per member under the member's surrogate and combines them.

    The defense's forward is shadowed by an instance attribute for the block's duration (restored after), so any
    Defense subclass gets the ensemble without knowing about it.
    """
    chosen = members() if member_list is None else list(member_list)
    exact_forward: Callable[..., Any] = defense.forward  # the bound forward of the defense's own class

    def forward(x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for name, temperature in chosen:
            with defense._surrogate_context(name, temperature):
                outputs.append(exact_forward(x))
        return combine(outputs)

    shadowed = defense.__dict__.get("forward")  # an enclosing block's shadow, if any
    defense.forward = forward  # type: ignore[method-assign]  # shadowed for the block only
    try:
        yield defense
    finally:
        if shadowed is None:
            del defense.forward
        else:
            defense.forward = shadowed  # type: ignore[method-assign]


__all__ = [
    "ENSEMBLE",
    "MEMBER_SURROGATES",
    "SMOOTH_TEMPERATURES",
    "combine",
    "ensemble_forward",
    "members",
    "with_ensemble",
]
