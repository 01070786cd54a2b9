"""The question reviewers ask of a MeanSparse model, answered on the same images: how robust is the base model
under AutoAttack, how robust is the defense under AutoAttack and under the worst case over the suite, and how much
of the gain survives. The base is the same network with every threshold at 0, attacked with AutoAttack by
`audit run` itself in `<out>/base` (same images, same seed; it has nothing to bypass, so AutoAttack is its strong
evaluation, as in RobustBench's re-evaluation), or a whole finished audit of the base given with `--base-run`, whose
attacks all count towards the base's worst case. This module only reads the two stores' per-sample outcomes.
"""

from __future__ import annotations

from typing import Any

from audit.outcomes import BROKEN, HELD, Outcomes
from audit.stats import accuracy_json, paired


def paired_gain(defense: list[bool], base: list[bool]) -> dict[str, Any]:
    """Mean of (defense robust - base robust) over paired samples, with a 95% interval.

    Only the discordant pairs carry information about the difference: with b samples robust only under the defense
    and c only under the base, the gain is (b - c) / n; its interval is Tango's score interval (audit/stats.py)."""
    counts = paired(defense, base)
    n = counts.paired
    gain = (counts.b - counts.c) / n if n else 0.0
    low, high = counts.difference_interval()
    return {"gain": gain, "ci95": [low, high], "only_defense_robust": counts.b, "only_base_robust": counts.c, "n": n}


def autoattack_labels(order: list[str]) -> list[str]:
    """The attacks that give a run its AutoAttack figure: AutoAttack where it ran, else the default budget's cascade
    that stands in for it (audit/plan/suites.py `CASCADE`: at least as strong, sample for sample,
    docs/benchmarks.md)."""
    from attacks.registry import canonical_name
    from audit.plan.suites import CASCADE, GRADIENT_FREE_SQUARE

    autoattack = [a for a in order if a.startswith("autoattack")][:1]
    cascade = {canonical_name(n) for n in (*CASCADE, GRADIENT_FREE_SQUARE)}
    return autoattack or [a for a in order if a in cascade]


def autoattack_source(order: list[str]) -> str:
    """What the AutoAttack figure is: `autoattack-standard` (or -rand), or the cascade's attacks."""
    labels = autoattack_labels(order)
    return labels[0] if len(labels) == 1 and labels[0].startswith("autoattack") else "cascade: " + ", ".join(labels)


def _autoattack_robust(outcomes: Outcomes) -> list[bool] | None:
    labels = autoattack_labels(outcomes.order)
    if not labels:
        return None
    if labels[0].startswith("autoattack"):
        return [c and s == HELD for c, s in zip(outcomes.clean_correct, outcomes.status[labels[0]])]
    # The cascade's later attacks run on the survivors only: robust is clean-correct and broken by none of them.
    robust = outcomes.clean_correct
    for label in labels:
        robust = [r and s != BROKEN for r, s in zip(robust, outcomes.status[label])]
    return robust


def gain_table(defense: Outcomes, base: Outcomes) -> dict[str, Any]:
    """Base AutoAttack, defense AutoAttack, defense worst case, and the gains with paired intervals."""
    if defense.labels != base.labels:
        raise ValueError("the base audit ran on other images; the gain table needs the same images")
    base_aa, defense_aa = _autoattack_robust(base), _autoattack_robust(defense)
    if base_aa is None or defense_aa is None:
        raise ValueError("the gain table needs AutoAttack (or the cascade standing in for it) in both audits")
    worst = defense.worst_case_robust("lp")
    base_worst = base.worst_case_robust("lp")
    n = defense.n
    return {
        "autoattack_source": autoattack_source(defense.order),
        "base_autoattack_source": autoattack_source(base.order),
        "base_autoattack": accuracy_json(sum(base_aa), n),
        "base_worst_case": accuracy_json(sum(base_worst), n),
        "base_attacks": [a for a in base.order if base.info[a].threat_kind == "lp"],  # what base_worst_case is over
        "defense_autoattack": accuracy_json(sum(defense_aa), n),
        "defense_worst_case": accuracy_json(sum(worst), n),
        "claimed_gain": paired_gain(defense_aa, base_aa),
        "surviving_gain": paired_gain(worst, base_worst),
    }
