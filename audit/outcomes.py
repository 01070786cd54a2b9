"""Outcomes: the one per-(sample, attack) view of what the store holds. Everything downstream reads this.

Every (sample, attack) pair has a status: `broken`, `held`, or `not_run:<reason>`, where the reason is
`misclassified` (the clean input is already wrong on some draw, so there is nothing to attack), `cascade` (an
earlier attack, or an earlier part of AutoAttack, already broke it: in cascade mode, or for an attack that runs on
the survivors of the others, `Attack.on_survivors`), `not-queried` (an evidence-first Square left it alone: its
probe broke nothing), `error` (the attack failed on its batch; the row's `error` says how, and a resume retries
it) or `missing` (no record: the run was cut short).
A sample that was not attacked is never counted as robust or as missed: accuracies and comparisons count only
samples the attacks ran on, and say how many that was.

AutoAttack is one attack in the store; its parts (APGD-CE, APGD-T, FAB-T, Square...) are derived here from its
per-sample `broken_by`, as attacks of their own (`autoattack-standard/square`), with the attributes of the part, so
the checks can tell its gradient-free Square from its gradient attacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

BROKEN, HELD = "broken", "held"
NOT_RUN = "not_run:"


class NotRun(str, Enum):
    """Why an attack did not run on a sample: the closed vocabulary of `not_run:<reason>` statuses (the module
    docstring says what each means). A `str`, so the store, samples.csv and results.json hold the text itself."""

    MISCLASSIFIED = NOT_RUN + "misclassified"
    CASCADE = NOT_RUN + "cascade"
    NOT_QUERIED = NOT_RUN + "not-queried"
    ERROR = NOT_RUN + "error"
    MISSING = NOT_RUN + "missing"

    def __str__(self) -> str:  # the stored text, also where str() or format() is applied
        return self.value

    @property
    def reason(self) -> str:
        return self.value[len(NOT_RUN) :]


PART_SEPARATOR = "/"


@dataclass(frozen=True)
class AttackInfo:
    """What an attack is (recorded with its results), and the AutoAttack run it is a part of, if any."""

    label: str
    threat_kind: str = "lp"
    gradient: str = "exact"
    single_step: bool = False
    part_of: str | None = None
    family: str = ""  # the attack without its budget (attacks of a family differ only in what they spend)
    budget: dict[str, float] = field(default_factory=dict)
    on_survivors: bool = False  # ran only on the samples the attacks before it left robust


@dataclass
class Outcomes:
    labels: list[int]
    clean_prediction: list[int]
    clean_draws_correct: list[int]
    draws: int
    mode: str
    order: list[str]  # whole attacks, in the order they ran
    info: dict[str, AttackInfo] = field(default_factory=dict)  # whole attacks and AutoAttack parts
    status: dict[str, list[str]] = field(default_factory=dict)
    distance: dict[str, list[float | None]] = field(default_factory=dict)
    margin: dict[str, list[float | None]] = field(default_factory=dict)
    draws_correct: dict[str, list[int | None]] = field(default_factory=dict)
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, dict[str, dict[int, Any]]] = field(default_factory=dict)

    # -- building -------------------------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, clean: dict[str, Any], rows: Iterable[dict[str, Any]], order: list[str], mode: str) -> Outcomes:
        """From the store's clean row and attack rows; `order` lists the attacks of the plan in run order."""
        n = len(clean["labels"])
        outcomes = cls(
            list(clean["labels"]),
            list(clean["prediction"]),
            list(clean["draws_correct"]),
            int(clean["draws"]),
            mode,
            list(order),
        )
        by_attack: dict[str, list[dict[str, Any]]] = {label: [] for label in order}
        for row in rows:
            if row.get("attack") in by_attack:
                by_attack[row["attack"]].append(row)
        correct = outcomes.clean_correct
        broken_before = [False] * n
        for label in order:
            status = [HELD if c else NotRun.MISCLASSIFIED for c in correct]
            distance: list[float | None] = [None] * n
            margin: list[float | None] = [None] * n
            draws_correct: list[int | None] = [None] * n
            seen = [False] * n
            cost = {"n_forward": 0.0, "n_backward": 0.0, "seconds": 0.0, "violations": 0}
            extra: dict[str, dict[int, Any]] = {}
            attributes: dict[str, Any] = {}
            # A failed batch's row first, so the rows of its retry (audit/runner.py) replace it.
            for row in sorted(by_attack[label], key=lambda r: ("error" not in r, r["batch"])):
                attributes = row.get("attributes", attributes)
                for position, index in enumerate(row["indices"]):
                    seen[index] = True
                    status[index] = row["status"][position]
                    distance[index] = row["distance"][position]
                    margin[index] = row["margin"][position]
                    draws_correct[index] = row["draws_correct"][position]
                for key in cost:
                    cost[key] += row[key]
                for key, value in row.get("extra", {}).items():
                    if isinstance(value, list) and len(value) == len(row["indices"]):
                        target = extra.setdefault(key, {})
                        for position, index in enumerate(row["indices"]):
                            target[index] = value[position]
            on_survivors = bool(attributes.get("on_survivors"))
            for i in range(n):
                if correct[i] and not seen[i]:
                    skipped = (mode == "cascade" or on_survivors) and broken_before[i]
                    status[i] = NotRun.CASCADE if skipped else NotRun.MISSING
            outcomes.info[label] = AttackInfo(
                label,
                attributes.get("threat_kind", "lp"),
                attributes.get("gradient", "exact"),
                bool(attributes.get("single_step")),
                family=attributes.get("family", label),
                budget=dict(attributes.get("budget", {})),
                on_survivors=on_survivors,
            )
            outcomes.status[label], outcomes.distance[label] = status, distance
            outcomes.margin[label], outcomes.draws_correct[label] = margin, draws_correct
            outcomes.cost[label], outcomes.extra[label] = cost, extra
            outcomes._derive_parts(label, attributes.get("parts") or {})
            broken_before = [b or s == BROKEN for b, s in zip(broken_before, status)]
        return outcomes

    def _derive_parts(self, label: str, parts: dict[str, dict[str, Any]]) -> None:
        if not parts:
            return
        names = list(parts)
        broken_by = self.extra[label].get("broken_by", {})
        for position, name in enumerate(names):
            part = f"{label}{PART_SEPARATOR}{name}"
            attributes = parts[name]
            # A part keeps its family and budget, so AutoAttack's APGD-CE is the 100-iteration point of a plain
            # APGD-CE strength curve (checks/convergence.py) without running it a second time.
            self.info[part] = AttackInfo(
                part,
                attributes.get("threat_kind", "lp"),
                attributes.get("gradient", "exact"),
                bool(attributes.get("single_step")),
                part_of=label,
                family=attributes.get("family", part),
                budget=dict(attributes.get("budget", {})),
            )
            status = []
            for i, whole in enumerate(self.status[label]):
                if whole.startswith(NOT_RUN):
                    status.append(whole)
                    continue
                by = broken_by.get(i, "")
                if by in names:  # the part that broke it, the ones before it held, the ones after never ran
                    where = names.index(by)
                    if position < where:
                        status.append(HELD)
                    elif position == where:
                        status.append(BROKEN if whole == BROKEN else HELD)
                    else:
                        status.append(NotRun.CASCADE)
                elif by == "clean":  # AutoAttack's own forward found it misclassified and attacked nothing
                    status.append(NotRun.MISCLASSIFIED)
                else:
                    status.append(HELD)
            self.status[part] = status

    # -- reading --------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def clean_correct(self) -> list[bool]:
        return [c == self.draws for c in self.clean_draws_correct]

    def parts(self, label: str) -> list[str]:
        return [name for name, info in self.info.items() if info.part_of == label]

    def attacks_where(self, **wanted: Any) -> list[str]:
        """Attacks (AutoAttack counted by its parts) whose attributes match, e.g. gradient="none"."""
        found = []
        for label in self.order:
            for name in self.parts(label) or [label]:
                info = self.info[name]
                if all(_matches(getattr(info, key), value) for key, value in wanted.items()):
                    found.append(name)
        return found

    def group_outcome(self, labels: list[str], index: int) -> str | None:
        """`broken` if any of `labels` broke the sample, `held` if all of them ran and held, else None."""
        statuses = [self.status[label][index] for label in labels]
        if BROKEN in statuses:
            return BROKEN
        if statuses and all(s == HELD for s in statuses):
            return HELD
        return None

    def counts(self, label: str) -> dict[str, int]:
        status = self.status[label]
        return {
            "ran": sum(s in (BROKEN, HELD) for s in status),
            "broken": status.count(BROKEN),
            "held": status.count(HELD),
        }

    def robust_alone(self, label: str) -> int | None:
        """Robust samples under this attack alone, or None when it did not run on every clean-correct sample
        (cascade mode): then its accuracy alone is unknown, not 100%."""
        counts = self.counts(label)
        if counts["ran"] != sum(self.clean_correct):
            return None
        return counts["held"]

    def threat_kinds(self) -> list[str]:
        return list(dict.fromkeys(self.info[label].threat_kind for label in self.order))

    def worst_case_robust(self, threat_kind: str = "lp") -> list[bool]:
        """Per sample: clean-correct on every draw, and no attack of this threat kind broke it."""
        robust = self.clean_correct
        for label in self.order:
            if self.info[label].threat_kind == threat_kind:
                robust = [r and s != BROKEN for r, s in zip(robust, self.status[label])]
        return robust

    def worst_case_mean_over_draws(self, threat_kind: str = "lp") -> float:
        """Mean over samples of the worst (over the attacks of this kind, and clean) fraction of correct draws."""
        total = 0.0
        for i in range(self.n):
            fractions = [self.clean_draws_correct[i] / self.draws]
            for label in self.order:
                value = self.draws_correct[label][i]
                if self.info[label].threat_kind == threat_kind and value is not None:
                    fractions.append(value / self.draws)
            total += min(fractions)
        return total / max(self.n, 1)


def _matches(value: Any, wanted: Any) -> bool:
    if callable(wanted):
        return bool(wanted(value))
    return value == wanted
