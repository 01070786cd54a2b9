"""`static-model-gain`: is a test-time defense more robust than the static model inside it?

Croce et al. (ICML 2022, "Evaluating the adversarial robustness of adaptive test-time defenses") found that none
of the test-time defenses they studied improved robustness over its static model once attacked properly; a
defense whose number under attacks through its own forward (its gradient, BPDA, queries) exceeds the static
model's robust accuracy on the same images owes that gap to those attacks until an adaptive attack closes it.

The static model's robustness is read from the transfer attack crafted on it (`source_robust`, stored per sample
by attacks/transfer.py: the point also fails on the static model); the defense's number from every Lp attack that
ran on the defense itself. Paired over the samples both sides saw: b samples held by the defense's own attacks but
broken on the static model, c the reverse; fail on a significant b (one-sided exact McNemar, as the comparisons),
or when the claimed robust accuracy (`--claim`) exceeds the static model's. Pure function of the store.
"""

from __future__ import annotations

from typing import Any

from audit.checks.comparisons import P_FAIL
from audit.checks.finding import Finding, skipped
from audit.outcomes import BROKEN, HELD, Outcomes
from audit.stats import mcnemar_one_sided

ID = "static-model-gain"


def _static(outcomes: Outcomes) -> str | None:
    """The transfer attack that recorded its source's robustness (the static model's)."""
    return next(
        (
            a
            for a in outcomes.order
            if outcomes.info[a].gradient.startswith("transfer:")
            and outcomes.info[a].threat_kind == "lp"
            and outcomes.extra[a].get("source_robust")
        ),
        None,
    )


def _own_outcome(outcomes: Outcomes, own: list[str], i: int) -> str | None:
    """Broken if any attack on the defense broke sample i, held if one ran and none broke it (attacks run on the
    survivors only did not see the samples others broke: not a miss), else None."""
    statuses = [outcomes.status[a][i] for a in own]
    return BROKEN if BROKEN in statuses else HELD if HELD in statuses else None


def check_static_model_gain(outcomes: Outcomes, facts: dict[str, Any] | None = None) -> list[Finding]:
    facts = facts or {}
    if not (facts.get("test_time") or {}).get("kind"):
        return [skipped(ID, "not a test-time defense")]
    static = _static(outcomes)
    own = [
        a
        for a in outcomes.order
        if outcomes.info[a].threat_kind == "lp" and not outcomes.info[a].gradient.startswith("transfer:")
    ]
    if static is None or not own:
        return [skipped(ID, "needs a transfer attack from the static model and an attack on the defense itself")]
    source = outcomes.extra[static]["source_robust"]
    b = c = paired = 0
    static_robust = defense_robust = 0
    for i in range(outcomes.n):
        mine = _own_outcome(outcomes, own, i)
        if i not in source or mine is None:  # clean-wrong on the defense, or unseen: not robust on either side
            continue
        paired += 1
        static_held, defense_held = bool(source[i]), mine == HELD
        static_robust += static_held
        defense_robust += defense_held
        b += defense_held and not static_held
        c += static_held and mine == BROKEN
    p = mcnemar_one_sided(b, c)
    claim = facts.get("config", {}).get("claim")
    static_accuracy = static_robust / max(outcomes.n, 1)
    evidence = {
        "n": outcomes.n,
        "paired": paired,
        "static_robust": static_robust,
        "defense_robust": defense_robust,
        "static_accuracy": static_accuracy,
        "defense_accuracy": defense_robust / max(outcomes.n, 1),
        "only_defense_held": b,
        "only_static_held": c,
        "p_value": p,
        "p_fail": P_FAIL,
        "claim": claim,
        "static_attack": static,
        "defense_attacks": own,
    }
    numbers = (
        f"{defense_robust} of {outcomes.n} samples hold under the attacks on the defense itself, "
        f"{static_robust} on its static model under {static} ({b} only on the defense, {c} only on the "
        f"static model; one-sided McNemar p = {p:.2g})"
    )
    if claim is not None and claim > static_accuracy:  # a comparison of numbers, not a test: Holm leaves it be
        return [
            Finding(
                ID,
                "fail",
                f"the claimed {100 * claim:.1f}% exceeds the static model's robust accuracy "
                f"{100 * static_accuracy:.1f}%: {numbers}",
                evidence | {"decided_by": "claim"},
            )
        ]
    if p < P_FAIL and b > 0:
        return [
            Finding(
                ID, "fail", f"the defense's own attacks leave it more robust than its static model: {numbers}", evidence
            )
        ]
    status = "warn" if b > c else "pass"
    return [Finding(ID, status, numbers, evidence)]


__all__ = ["ID", "check_static_model_gain"]
