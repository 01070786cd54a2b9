"""`attack-convergence`: has the strongest attack converged, or does spending more still break points?

The plan runs one attack family at increasing budgets (`--budget`: iterations 100 -> 300 -> 1000, Square queries
5000 -> 20000; see `attacks/suites.py`). Attacks of one family differ only in their budget (stored with each
result). Per family, the largest budget is compared, paired, with every other attack of the run: b samples only
it broke (every other attack ran on them and held). If b is significant (exact one-sided McNemar against 0: the
other attacks cannot break what they already held, so c is 0), the worst case is still falling where the audit
stopped: the verdict is `inconclusive` and the finding says how much more to spend. Pure over stored outcomes.
"""
from __future__ import annotations

from audit.checks.finding import Finding, skipped
from audit.outcomes import BROKEN, HELD, Outcomes
from audit.stats import mcnemar_one_sided

FINDING_ID = "attack-convergence"
# Significant at 5% (b >= 5 discordant samples, all one way) and at least 1% of the samples it ran on.
P_FAIL = 0.05
MIN_FRACTION = 0.01
# A budget multiplies this much per level of the curve; "how much more to spend" repeats the last step.
GROWTH_HINT = 3


def _cost(outcomes: Outcomes, label: str) -> float:
    value = 1.0
    for amount in outcomes.info[label].budget.values():
        value *= float(amount)
    return value


def curves(outcomes: Outcomes) -> dict[str, list[str]]:
    """Families with attacks at two or more budgets, each sorted by budget (the product of its counts)."""
    families: dict[str, list[str]] = {}
    for label in outcomes.order:
        info = outcomes.info[label]
        if info.threat_kind == "lp" and info.budget:
            families.setdefault(info.family, []).append(label)
    return {family: sorted(labels, key=lambda a: _cost(outcomes, a)) for family, labels in families.items()
            if len({_cost(outcomes, a) for a in labels}) > 1}


def check_convergence(outcomes: Outcomes) -> list[Finding]:
    found = curves(outcomes)
    if not found:
        return [skipped(FINDING_ID,
                        "no attack ran at two or more budgets (--budget quick, or an explicit attack list)")]
    evidence, data, failing = {}, {}, []
    for family, labels in found.items():
        largest, others = labels[-1], [a for a in outcomes.order if a != labels[-1]
                                       and outcomes.info[a].threat_kind == "lp"]
        only = [i for i in range(outcomes.n) if outcomes.status[largest][i] == BROKEN
                and all(outcomes.status[a][i] == HELD for a in others)]
        ran = outcomes.counts(largest)["ran"]
        p = mcnemar_one_sided(len(only), 0)
        still_falling = p < P_FAIL and len(only) >= MIN_FRACTION * max(ran, 1)
        # The curve: robust accuracy after the family's attacks up to each budget, everything else included.
        rest = [a for a in others if a not in labels]
        curve = []
        for k in range(len(labels)):
            robust = [c and all(outcomes.status[a][i] != BROKEN for a in rest + labels[: k + 1])
                      for i, c in enumerate(outcomes.clean_correct)]
            curve.append(sum(robust) / max(outcomes.n, 1))
        evidence[family] = {"largest": largest, "only_largest_broke": len(only), "ran": ran, "p_value": p,
                            "indices": only[:20]}
        data[family] = {"attacks": labels, "budget": [outcomes.info[a].budget for a in labels],
                        "worst_case": curve}
        if still_falling:
            failing.append(family)
    if failing:
        family = failing[0]
        e = evidence[family]
        message = (f"{e['largest']} still broke {e['only_largest_broke']} samples no other attack did "
                   f"(p = {e['p_value']:.2g}): the worst case is still falling; spend about {GROWTH_HINT}x more on "
                   f"{family} (e.g. --budget thorough)")
        status = "fail"
    else:
        status = "pass"
        message = "; ".join(f"{v['largest']} breaks {v['only_largest_broke']} samples no other attack did "
                            f"(p = {v['p_value']:.2g})" for v in evidence.values())
        message = f"the strongest attacks have converged: {message}"
    return [Finding(FINDING_ID, status, message, {"families": evidence, "p_fail": P_FAIL}, data={"curves": data})]
