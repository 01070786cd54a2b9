"""The question reviewers ask of a MeanSparse model, answered on the same images: how robust is the base model
under AutoAttack, how robust is the defense under AutoAttack and under the worst case over the suite, and how much
of the gain survives. The base is the same network with every threshold at 0, attacked with AutoAttack by
`audit run` itself in `<out>/base` (same images, same seed; it has nothing to bypass, so AutoAttack is its strong
evaluation, as in RobustBench's re-evaluation), or a whole finished audit of the base given with `--base-run`, whose
attacks all count towards the base's worst case. This module only reads the two stores' per-sample outcomes.
"""
from __future__ import annotations

from audit.outcomes import HELD, Outcomes
from audit.stats import accuracy_json, paired


def paired_gain(defense: list[bool], base: list[bool]) -> dict:
    """Mean of (defense robust - base robust) over paired samples, with a 95% interval.

    Only the discordant pairs carry information about the difference: with b samples robust only under the defense
    and c only under the base, the gain is (b - c) / n; its interval is Tango's score interval (audit/stats.py)."""
    counts = paired(defense, base)
    n = counts.paired
    gain = (counts.b - counts.c) / n if n else 0.0
    low, high = counts.difference_interval()
    return {"gain": gain, "ci95": [low, high], "only_defense_robust": counts.b, "only_base_robust": counts.c, "n": n}


def _autoattack_robust(outcomes: Outcomes) -> list[bool] | None:
    label = next((a for a in outcomes.order if a.startswith("autoattack")), None)
    if label is None:
        return None
    return [c and s == HELD for c, s in zip(outcomes.clean_correct, outcomes.status[label])]


def gain_table(defense: Outcomes, base: Outcomes) -> dict:
    """Base AutoAttack, defense AutoAttack, defense worst case, and the gains with paired intervals."""
    if defense.labels != base.labels:
        raise ValueError("the base audit ran on other images; the gain table needs the same images")
    base_aa, defense_aa = _autoattack_robust(base), _autoattack_robust(defense)
    if base_aa is None or defense_aa is None:
        raise ValueError("the gain table needs AutoAttack in both audits")
    worst = defense.worst_case_robust("lp")
    base_worst = base.worst_case_robust("lp")
    n = defense.n
    return {
        "base_autoattack": accuracy_json(sum(base_aa), n),
        "base_worst_case": accuracy_json(sum(base_worst), n),
        "base_attacks": [a for a in base.order if base.info[a].threat_kind == "lp"],  # what base_worst_case is over
        "defense_autoattack": accuracy_json(sum(defense_aa), n),
        "defense_worst_case": accuracy_json(sum(worst), n),
        "claimed_gain": paired_gain(defense_aa, base_aa),
        "surviving_gain": paired_gain(worst, base_worst),
    }
