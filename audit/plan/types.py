"""A plan: the attacks an audit runs, in run order, each with why it is there, and what it left out and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from attacks.base import Attack


class Planned(NamedTuple):
    attack: Attack
    why: str  # why the planner put it in (audit/plan/roles.py): the stage that asked for it, and the attack's role


class Skipped(NamedTuple):
    attack: str  # an attack name
    why: str  # why it does not run (no surrogate to bypass, no gradient reaches the input, too costly...)


@dataclass
class Plan:
    """`finished`: labels of attacks already in the store (`audit extend`): the runner reads their results, in
    this order, before it runs `planned`, so a `+survivors` attack sees what they left."""

    planned: list[Planned]
    skipped: list[Skipped] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    @property
    def attacks(self) -> list[Attack]:
        return [p.attack for p in self.planned]

    @property
    def labels(self) -> list[str]:
        return [p.attack.label for p in self.planned]

    def why(self) -> dict[str, str]:
        return {p.attack.label: p.why for p in self.planned}

    @classmethod
    def of(cls, attacks: list[Attack], why: str = "given by the caller") -> Plan:
        """A plan of these attacks in this order (scripts and tests that choose their own attacks)."""
        return cls([Planned(a, why) for a in attacks])

    def in_run_order(self) -> Plan:
        """Attacks that run on the survivors of the others (`+survivors`) after all of them, else as planned."""
        first = [p for p in self.planned if not p.attack.on_survivors]
        return Plan(first + [p for p in self.planned if p.attack.on_survivors], self.skipped, self.finished)
