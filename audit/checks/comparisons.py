"""Pure comparisons over stored outcomes: did a weaker, gradient-free, transferred or surrogate-gradient attack
find what the exact-gradient attacks missed?  `blackbox-beats-whitebox`, `transfer-beats-whitebox`,
`single-step-beats-iterative`, `adaptive-gap`. Nothing here runs a model.

Attacks are grouped by the attributes stored with their results (`gradient`, `single_step`, `threat_kind`),
never by their names; AutoAttack counts by its parts, so its Square part is a gradient-free attack.

Each comparison is paired: it uses only the samples on which both sides have a known outcome (one side broke
the sample, or every attack of that side ran and held), so a sample an attack never saw (cascade mode, or
AutoAttack's later parts after an earlier part broke it) is neither a success nor a miss. The statistic is the
exact one-sided McNemar test on the discordant pairs: b samples only the challenger broke, c samples only the
exact-gradient side broke. (When the challenger only ever runs on what the other side left, as AutoAttack's
Square does, c is 0 by construction and the test asks whether b is more than chance near the boundary.)
"""

from __future__ import annotations

from typing import Any

from audit.checks.finding import Finding, skipped
from audit.outcomes import BROKEN, HELD, Outcomes
from audit.stats import mcnemar_one_sided, paired

# Fail when the challenger's extra successes are significant at 1% (one-sided exact McNemar) *and* at least 0.2%
# of the paired samples (AutoAttack's own Square check fires from 0.2 points); warn on any extra success that
# is not. On 100 samples a fail needs 7 discordant samples all one way; a clean model's 1-2 boundary samples
# (measured: 1 in 1000 on demo-adversarial) stay a warning.
P_FAIL = 0.01
MIN_FRACTION = 0.002
SHOWN_INDICES = 50


def _is_lp(threat_kind: str) -> bool:
    return threat_kind == "lp"


def _paired(
    outcomes: Outcomes,
    challengers: list[str],
    reference: list[str],
) -> tuple[list[int], list[int], dict[str, Any]]:
    """(indices only the challengers broke, indices only the reference broke, the paired outcomes per sample)."""
    a = [_broke(outcomes.group_outcome(challengers, i)) for i in range(outcomes.n)]
    b = [_broke(outcomes.group_outcome(reference, i)) for i in range(outcomes.n)]
    counts = paired(a, b)
    index = [i for i in range(outcomes.n) if a[i] is not None and b[i] is not None]
    data: dict[str, list[Any]] = {
        "index": index,
        "challenger_broke": [a[i] for i in index],
        "reference_broke": [b[i] for i in index],
    }
    return counts.only_a, counts.only_b, data


def _broke(outcome: str | None) -> bool | None:
    """A group's outcome as a paired test reads it: broken, held, or no outcome (left out of the pair)."""
    return None if outcome is None else outcome == BROKEN


def _beats(outcomes: Outcomes, finding_id: str, challengers: list[str], reference: list[str], what: str) -> Finding:
    won, lost, data = _paired(outcomes, challengers, reference)
    paired = len(data["index"])
    p = mcnemar_one_sided(len(won), len(lost))
    fraction = len(won) / max(paired, 1)
    if p < P_FAIL and fraction >= MIN_FRACTION:
        status = "fail"
    elif won:
        status = "warn"
    else:
        status = "pass"
    message = (
        f"{what} on {len(won)} of {paired} paired samples ({100 * fraction:.1f}%; the reverse on "
        f"{len(lost)}; one-sided McNemar p = {p:.2g})"
        if won
        else f"no sample where {what} ({paired} paired samples)"
    )
    return Finding(
        finding_id,
        status,
        message,
        {
            "n": outcomes.n,
            "paired": paired,
            "count": len(won),
            "reverse_count": len(lost),
            "fraction": fraction,
            "points": 100 * fraction,
            "p_value": p,
            "p_fail": P_FAIL,
            "indices": won[:SHOWN_INDICES],
            "challengers": challengers,
            "reference": reference,
        },
        data=data,
    )


def _exact(outcomes: Outcomes) -> list[str]:
    return outcomes.attacks_where(gradient="exact", threat_kind=_is_lp)


def check_blackbox_beats_whitebox(outcomes: Outcomes) -> list[Finding]:
    challengers, reference = outcomes.attacks_where(gradient="none", threat_kind=_is_lp), _exact(outcomes)
    if not challengers:
        return [skipped("blackbox-beats-whitebox", "no gradient-free Lp attack (e.g. square) in the suite")]
    if not reference:
        return [skipped("blackbox-beats-whitebox", "no exact-gradient Lp attack in the suite")]
    return [
        _beats(
            outcomes,
            "blackbox-beats-whitebox",
            challengers,
            reference,
            "a gradient-free attack succeeds where every exact-gradient attack failed",
        )
    ]


def check_transfer_beats_whitebox(outcomes: Outcomes) -> list[Finding]:
    challengers = outcomes.attacks_where(gradient=lambda g: g.startswith("transfer:"), threat_kind=_is_lp)
    reference = _exact(outcomes)
    if not challengers:
        return [skipped("transfer-beats-whitebox", "no transfer attack in the suite (no base model to transfer from?)")]
    if not reference:
        return [skipped("transfer-beats-whitebox", "no exact-gradient Lp attack in the suite")]
    return [
        _beats(
            outcomes,
            "transfer-beats-whitebox",
            challengers,
            reference,
            "points crafted on the base model succeed where every exact-gradient attack failed",
        )
    ]


def check_single_step_beats_iterative(outcomes: Outcomes) -> list[Finding]:
    exact = _exact(outcomes)
    challengers = [a for a in exact if outcomes.info[a].single_step]
    reference = [a for a in exact if not outcomes.info[a].single_step]
    if not challengers:
        return [skipped("single-step-beats-iterative", "no single-step attack (fgsm) in the suite")]
    if not reference:
        return [skipped("single-step-beats-iterative", "no iterative exact-gradient attack (apgd-ce) in the suite")]
    return [
        _beats(
            outcomes,
            "single-step-beats-iterative",
            challengers,
            reference,
            "single-step FGSM succeeds where every iterative exact-gradient attack failed",
        )
    ]


def check_adaptive_gap(outcomes: Outcomes) -> list[Finding]:
    """Surrogate-gradient (BPDA) attacks against the exact-gradient ones, paired, and the accuracies either way.

    AutoAttack counts whole (its Square part included) on the exact side: that is the number a paper reports,
    and it makes the gap conservative.
    """
    # BPDA, and the attacks that follow MeanSparse's mechanism (attacks/adaptive.py: `adaptive-continuation-*`)
    adaptive = outcomes.attacks_where(gradient=lambda g: g.startswith(("bpda-", "adaptive-")), threat_kind=_is_lp)
    exact = outcomes.attacks_where(gradient=lambda g: g in ("exact", "none"), threat_kind=_is_lp)
    if not adaptive:
        return [skipped("adaptive-gap", "no adaptive (BPDA) attack in the suite")]
    if not exact:
        return [skipped("adaptive-gap", "no exact-gradient attack in the suite to compare against")]
    finding = _beats(
        outcomes,
        "adaptive-gap",
        adaptive,
        exact,
        "attacks with a surrogate backward (BPDA) succeed where every exact-gradient attack failed",
    )
    per_attack = {a: outcomes.counts(a) for a in adaptive}
    best = max(adaptive, key=lambda a: per_attack[a]["broken"])
    finding.evidence.update({"strongest_adaptive": best, "per_attack": per_attack})
    finding.data.update({"attacks": list(per_attack), "broken": [c["broken"] for c in per_attack.values()]})
    return [finding]


def _stand_in_outcome(outcomes: Outcomes, labels: list[str], index: int) -> str | None:
    """AutoAttack's outcome, or that of the cascade standing in for it: `broken` if one of its attacks broke the
    sample, `held` if one ran on it and none broke it (its Square's unqueried samples held the gradient attacks, as
    the figure counts them, audit/gain.py), else None."""
    statuses = [outcomes.status[label][index] for label in labels]
    return BROKEN if BROKEN in statuses else HELD if HELD in statuses else None


def beyond_autoattack(outcomes: Outcomes) -> dict[str, Any] | None:
    """Paired: samples AutoAttack (or the default budget's cascade in its place) held that another Lp attack broke
    (b), and the reverse (c); None without either. The verdict's claim-at-risk test (audit/checks/verdict.py)."""
    from audit.gain import autoattack_labels, autoattack_source

    stand_in = autoattack_labels(outcomes.order)
    if not stand_in:
        return None
    autoattack = autoattack_source(outcomes.order)
    others = [a for a in outcomes.order if a not in stand_in and outcomes.info[a].threat_kind == "lp"]
    mine = [_broke(_stand_in_outcome(outcomes, stand_in, i)) for i in range(outcomes.n)]
    theirs = [_broke(outcomes.group_outcome(others, i)) if others else None for i in range(outcomes.n)]
    counts = paired(theirs, mine)
    b, c = counts.b, counts.c
    robust_aa = sum(m is False for m in mine)  # held: AutoAttack (or the cascade) ran and did not break it
    return {
        "autoattack": autoattack,
        "autoattack_robust": robust_aa,
        "only_others_broke": b,
        "only_autoattack_broke": c,
        "p_value": mcnemar_one_sided(b, c),
    }


COMPARISONS = (
    check_blackbox_beats_whitebox,
    check_transfer_beats_whitebox,
    check_single_step_beats_iterative,
    check_adaptive_gap,
)
