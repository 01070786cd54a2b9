"""`attack-convergence`: has the strongest attack converged, or does spending more still break points?

The plan runs one attack family at increasing budgets (`--budget`: iterations 100 -> 300 -> 1000, restarts
1 -> 5 -> 10, Square queries 5000 -> 20000; see `audit/plan/suites.py`). Attacks of one family differ only in their
budget (stored with each result). A curve is one budget key growing while the family's other keys stay at their
smallest (iterations at one restart, restarts at the default iterations): a family can have several. Per curve, the
largest budget is compared, paired, with every attack of the run below the top of any curve: b samples only the
tops broke (every such attack ran on them and held, or was never run because a top had broken them already, as a
`+survivors` attack after it is). If b is significant (exact one-sided McNemar against 0: the other attacks cannot
break what they already held, so c is 0), the worst case is still falling where the audit stopped: the verdict is
`inconclusive` and the finding names the attack one step further up the curve, for `audit extend` (audit/extend.py).
Pure over stored outcomes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from attacks.names import format_name, parse_name
from audit.checks.finding import Finding, skipped
from audit.outcomes import BROKEN, HELD, NotRun, Outcomes
from audit.stats import holm, mcnemar_one_sided

FINDING_ID = "attack-convergence"
# Significant at 5% (b >= 5 discordant samples, all one way) and at least 1% of the samples it ran on.
P_FAIL = 0.05
MIN_FRACTION = 0.01
# A budget multiplies this much per level of the curve; "how much more to spend" repeats the last step.
GROWTH_HINT = 3


def curve_keys(outcomes: Outcomes) -> dict[str, tuple[str, list[str]]]:
    """Curves: name -> (the budget key that grows, the family's attacks along it, sorted by that key).

    Along key k lie the family's attacks whose other keys are at the family's smallest values; a curve needs two
    values of k. It is named after its family, or `family@k` when the family has more than one curve."""
    families: dict[str, list[str]] = {}
    # AutoAttack's parts count as attacks of their own families (its APGD-CE starts a plain APGD-CE curve).
    for label in [name for top in outcomes.order for name in outcomes.parts(top) or [top]]:
        info = outcomes.info[label]
        if info.threat_kind == "lp" and info.budget:
            families.setdefault(info.family, []).append(label)
    found: dict[str, tuple[str, list[str]]] = {}
    for family, labels in families.items():
        budgets = {a: outcomes.info[a].budget for a in labels}
        keys = list(dict.fromkeys(k for b in budgets.values() for k in b))
        smallest = {k: min(float(b[k]) for b in budgets.values() if k in b) for k in keys}
        value = {a: {k: float(budgets[a].get(k, smallest[k])) for k in keys} for a in labels}
        along: dict[str, list[str]] = {}
        for key in keys:
            line = [a for a in labels if all(value[a][j] == smallest[j] for j in keys if j != key)]
            if len({value[a][key] for a in line}) > 1:
                along[key] = [a for _, _, a in sorted((value[a][key], i, a) for i, a in enumerate(line))]
        for key, line in along.items():
            found[family if len(along) == 1 else f"{family}@{key}"] = (key, line)
    return found


def curves(outcomes: Outcomes) -> dict[str, list[str]]:
    """Curves (see `curve_keys`), each its attacks sorted by the budget that grows."""
    return {name: labels for name, (_, labels) in curve_keys(outcomes).items()}


def next_attack(outcomes: Outcomes, largest: str, key: str) -> str:
    """The attack one step further up the curve: the top's name with `key` multiplied by GROWTH_HINT (an
    AutoAttack part is named by its family). Concrete, because "use a larger --budget" is no help once the
    budget is already thorough."""
    info = outcomes.info[largest]
    name = parse_name(info.family if "/" in largest else largest)
    budget = dict(name.budget) | {key: int(float(info.budget[key]) * GROWTH_HINT)}
    return format_name(replace(name, budget=tuple(budget.items())))


def check_convergence(outcomes: Outcomes) -> list[Finding]:
    found = curve_keys(outcomes)
    if not found:
        return [
            skipped(FINDING_ID, "no attack ran at two or more budgets (--budget quick, or an explicit attack list)")
        ]
    evidence: dict[str, dict[str, Any]] = {}
    data: dict[str, dict[str, Any]] = {}
    lp = [a for a in outcomes.order if outcomes.info[a].threat_kind == "lp"]
    tops = {labels[-1] for _, labels in found.values()}
    for family, (key, labels) in found.items():
        largest, others = labels[-1], [a for a in lp if a not in tops]
        after = set(outcomes.order[outcomes.order.index(largest) + 1 :])
        # Held, or skipped after the top because something (a top: every other attack held) had broken it already.
        only = [
            i
            for i in range(outcomes.n)
            if outcomes.status[largest][i] == BROKEN
            and all(
                outcomes.status[a][i] == HELD or (a in after and outcomes.status[a][i] == NotRun.CASCADE)
                for a in others
            )
        ]
        ran = outcomes.counts(largest)["ran"]
        p = mcnemar_one_sided(len(only), 0)
        # The curve: robust accuracy after the family's attacks up to each budget, everything else included.
        rest = [a for a in lp if a not in labels]
        curve = []
        for k in range(len(labels)):
            robust = [
                c and all(outcomes.status[a][i] != BROKEN for a in rest + labels[: k + 1])
                for i, c in enumerate(outcomes.clean_correct)
            ]
            curve.append(sum(robust) / max(outcomes.n, 1))
        evidence[family] = {
            "largest": largest,
            "only_largest_broke": len(only),
            "ran": ran,
            "p_value": p,
            "p_holm": p,
            "indices": only[:20],
            "next": next_attack(outcomes, largest, key),
        }
        data[family] = {
            "attacks": labels,
            "budget": [outcomes.info[a].budget for a in labels],
            "key": key,
            "worst_case": curve,
        }
    # One test per curve, corrected together (Holm, audit/checks/multiplicity.py): more curves, no more false calls.
    adjusted = holm({family: float(e["p_value"]) for family, e in evidence.items()})
    failing = []
    for family, e in evidence.items():
        e["p_holm"] = adjusted[family]
        if adjusted[family] < P_FAIL and e["only_largest_broke"] >= MIN_FRACTION * max(e["ran"], 1):
            failing.append(family)
    if failing:
        family = failing[0]
        e = evidence[family]
        message = (
            f"{e['largest']} still broke {e['only_largest_broke']} samples no attack below the top of a "
            f"strength curve did "
            f"(p = {e['p_value']:.2g}, {e['p_holm']:.2g} corrected for {len(evidence)} curves): the worst "
            f"case is still falling; spend about {GROWTH_HINT}x more on {family}: `audit extend` this run "
            f"with --attacks {e['next']}"
        )
        status = "fail"
    else:
        status = "pass"
        message = "; ".join(
            f"{v['largest']} breaks {v['only_largest_broke']} samples no smaller budget did (p = {v['p_value']:.2g})"
            for v in evidence.values()
        )
        message = f"the strongest attacks have converged: {message}"
    return [Finding(FINDING_ID, status, message, {"families": evidence, "p_fail": P_FAIL}, data={"curves": data})]
