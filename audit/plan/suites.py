"""Named suites: which attacks to run against a defense, fitted to what the defense offers.

    autoattack   AutoAttack standard (rand for a randomized defense), the number papers report
    adaptive     BPDA (identity, and smooth over a temperature sweep), transfer from the base model, Square
                 with more queries, EOT for randomized defenses: attacks that fit the defense
    spatial      rotation/translation grid and stAdv (their own threat models, reported apart from Lp)
    full         adaptive, plus single-step FGSM, which the diagnostics compare against, plus the default budget's
                 cascade in AutoAttack's place (`thorough`, and a randomized defense, run AutoAttack itself):
                 APGD-CE (AutoAttack's settings) on every sample; targeted APGD on the 3 target classes MALT ranks
                 nearest (attacks/malt.py) on its survivors; Square at AutoAttack's 5000 queries on what is left,
                 evidence first (a seeded probe of PROBE survivors at the full 5000 queries; all survivors only if
                 the probe breaks one). FAB-T is left out (Croce & Hein 2020 found it rarely breaks what APGD-T
                 left); the side-by-side comparison with pyautoattack (benchmarks/audit_vs_autoattack.py: samples
                 AutoAttack breaks and the audit does not) is what checks that nothing is lost, docs/benchmarks.md.

`--budget` (CURVES, EXTRAS) sets how far up the strength curves the strongest gradient family goes (iterations,
restarts) and Square (queries), for `full` and `adaptive`:

    quick      no curve
    standard   the strongest family again at 300 iterations
    thorough   iterations 100 -> 300 -> 1000, restarts 1 -> 5 -> 10, Square queries 5000 -> 20000; and BPDA with
               every APGD loss (CE, DLR, targeted) on every surrogate the defense offers (identity, smooth at each
               temperature, and the ensemble of them all, defenses/ensemble.py); for a randomized defense EOT
               versions of Square and FAB, and a standalone FAB-T; last, Square with 5 restarts on the survivors
               of everything else (`square+survivors@restarts=5`).

For a MeanSparse model, attacks that follow its mechanism (attacks/adaptive.py; Tramer et al. 2020): `standard`
adds the strongest of them (threshold continuation, linear schedule), `thorough` all of them (continuation with
both schedules, the annealed surrogate, the dead-zone escape loss).

An attack that does not fit (BPDA on a defense with no surrogate, transfer with no base model) is listed as
skipped with its reason, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as replaced

from attacks.names import format_name, parse_name
from attacks.registry import make_attack
from audit.config import BUDGET_NAMES, SUITES
from audit.plan.gradient_free import plan_gradient_free
from audit.plan.roles import role
from audit.plan.test_time import EOT_DRAWS, is_test_time, plan_test_time
from audit.plan.types import Plan, Planned, Skipped
from defenses.adapters import MeanSparseDefense
from defenses.ensemble import ENSEMBLE, SMOOTH_TEMPERATURES
from defenses.protocol import Defense

# How far up the strength curves a run goes (`--budget`): the strongest gradient attack family again at larger
# iteration counts and restarts, and Square at more queries, so `attack-convergence` can tell whether the worst case
# still falls. Each key is one curve (a budget key of `attacks.names.BUDGETS`); the family's defaults start it.
CURVES: dict[str, dict[str, tuple[int, ...]]] = {
    "quick": {"iters": (), "restarts": (), "queries": ()},
    "standard": {"iters": (300,), "restarts": (), "queries": ()},
    "thorough": {"iters": (300, 1000), "restarts": (5, 10), "queries": (20000,)},
}


@dataclass(frozen=True)
class Extras:
    """What a budget runs beyond its strength curves (suites `full` and `adaptive`)."""

    bpda_losses: tuple[str, ...] = ()  # these APGD attacks, each on every surrogate the defense offers
    eot_query_attacks: bool = False  # randomized defense: EOT for Square and FAB too, and a standalone FAB-T
    last: tuple[str, ...] = ()  # run after everything else (on its survivors, with +survivors)
    mechanism: tuple[str, ...] = ()  # MeanSparse-specific attacks (attacks/adaptive.py), for a MeanSparse model
    autoattack: bool = False  # `full` runs AutoAttack verbatim; else the cheaper CASCADE in its place


# The strongest MeanSparse-specific attack: on demo-meansparse (1000 seeded images, docs/results.md) the linear
# continuation broke the most samples of the four.
STRONGEST_MECHANISM = "apgd-continuation-linear"
MECHANISM = (STRONGEST_MECHANISM, "apgd-continuation-geometric", "apgd-anneal", "apgd-escape")
# The default budget's stand-in for AutoAttack (suite `full`, deterministic defense), in run order: APGD-CE on every
# clean-correct sample (the comparisons need it there), then on what is left targeted APGD on MALT's 3 nearest
# targets (AutoAttack's APGD-T tries 9 by logit order), then Square evidence first. Its Square runs last (`last`).
PROBE = 10  # survivors the last Square tries at its full budget before it spends that budget on all of them
CASCADE_SQUARE = f"square+survivors@probe={PROBE},probe_queries=5000"
CASCADE = ("apgd-ce", "apgd-malt+survivors", CASCADE_SQUARE)
GRADIENT_FREE_SQUARE = "square+survivors@restarts=2"  # the cascade's Square where no exact gradient reaches
EXTRAS: dict[str, Extras] = {
    "quick": Extras(last=(CASCADE_SQUARE,)),
    "standard": Extras(last=(CASCADE_SQUARE,), mechanism=(STRONGEST_MECHANISM,)),
    "thorough": Extras(
        bpda_losses=("apgd-ce", "apgd-dlr", "apgd-t"),
        eot_query_attacks=True,
        last=("square+survivors@restarts=5",),
        mechanism=MECHANISM,
        autoattack=True,
    ),
}
assert set(EXTRAS) == set(CURVES) == set(BUDGET_NAMES), "every budget needs its CURVES and EXTRAS rows"


# The default budget's smooth surrogates: the two sharpest (on demo-meansparse T=0.03 and 0.1 broke 15 and 14 of 82
# samples, T=1 and 0.3 12 each, runs/demo at commit 9388429); `thorough` adds every temperature.
STANDARD_TEMPERATURES = (0.1, 0.03)


def _adaptive_names(defense: Defense, with_square: bool = True) -> list[str]:
    # APGD-T with BPDA (nine targeted runs, ~8x an untargeted one) is left to `thorough`, which runs every loss on
    # every surrogate: the default budget stays near AutoAttack's own cost (issue 14, docs/benchmarks.md).
    names = []
    if "identity" in defense.surrogates:
        names += ["apgd-ce+bpda-identity", "apgd-dlr+bpda-identity"]
    if "smooth" in defense.surrogates:
        names += [f"apgd-ce+bpda-smooth-T{t:g}" for t in STANDARD_TEMPERATURES]
    names += ["transfer-base:apgd-ce"] + (["square"] if with_square else [])
    return names


def runs_autoattack(budget: str, random: bool) -> bool:
    """Whether suite `full` runs AutoAttack verbatim at this budget (else CASCADE stands in for it). A randomized
    defense keeps AutoAttack-rand: the cascade has no EOT version of its own."""
    _check_budget(budget)
    return EXTRAS[budget].autoattack or random


def _check_budget(budget: str) -> None:
    if budget not in EXTRAS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGET_NAMES)}")


def suite_names(suite: str, defense: Defense, budget: str = "standard", random: bool = False) -> list[str]:
    """The suite's own attacks; `random`: the forward is random (declared, or found by the audit), so EOT."""
    aa = "autoattack-rand" if random else "autoattack-standard"
    if suite == "autoattack":
        names = [aa]
    elif suite == "adaptive":
        names = _adaptive_names(defense)
    elif suite == "full":
        # AutoAttack, or the cascade, already runs Square on the points the gradient attacks leave: no second one.
        # The cascade's Square runs last (EXTRAS `last`), after the budget's extras and curves.
        stand_in = [aa] if runs_autoattack(budget, random) else [n for n in CASCADE if n != CASCADE_SQUARE]
        names = ["fgsm", *stand_in, *_adaptive_names(defense, with_square=False)]
    elif suite == "spatial":  # a different threat model: never mixed into an Lp worst case
        names = ["spatial-grid", "stadv"]
    elif suite == "quick":  # for tests and smoke runs: one exact and one adaptive gradient attack
        names = ["fgsm", "apgd-ce"] + (["apgd-ce+bpda-identity"] if "identity" in defense.surrogates else [])
    else:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if random:
        names = [n + f"+eot{EOT_DRAWS}" if n.startswith("apgd") else n for n in names]
    return list(dict.fromkeys(names))


def bpda_modifiers(defense: Defense) -> list[str]:
    """Every surrogate the defense offers, as name modifiers: identity, smooth at each temperature, the ensemble."""
    modifiers = ["+bpda-identity"] if "identity" in defense.surrogates else []
    if "smooth" in defense.surrogates:
        modifiers += [f"+bpda-smooth-T{t:g}" for t in SMOOTH_TEMPERATURES]
    if ENSEMBLE in defense.surrogates:
        modifiers.append("+bpda-" + ENSEMBLE)
    return modifiers


def _with_eot(name: str) -> str:
    """`name` with EOT_DRAWS draws (kept when it has its own), for the attacks that query the model."""
    parsed = parse_name(name)
    if parsed.inner is not None or parsed.eot != 1 or parsed.base.split("-")[0] not in ("apgd", "square", "fab"):
        return name
    return format_name(replaced(parsed, eot=EOT_DRAWS))


def extra_names(suite: str, defense: Defense, budget: str, random: bool = False) -> tuple[list[str], list[str]]:
    """(attacks the budget adds after the suite's own, attacks it runs last), per EXTRAS."""
    _check_budget(budget)
    extras = EXTRAS[budget]
    if suite not in ("full", "adaptive"):
        return [], []
    names = [loss + modifier for modifier in bpda_modifiers(defense) for loss in extras.bpda_losses]
    if isinstance(defense, MeanSparseDefense):  # they act on MeanSparse's thresholds, features and surrogate
        names += [n + (f"+eot{EOT_DRAWS}" if random else "") for n in extras.mechanism]
    # The cascade's Square stands in for AutoAttack's in `full`; `adaptive` has its own Square, AutoAttack its own.
    last = [n for n in extras.last if n != CASCADE_SQUARE or (suite == "full" and not runs_autoattack(budget, random))]
    if extras.eot_query_attacks and random:
        names = [_with_eot(n) for n in [*names, "fab-t"]]
        last = [_with_eot(n) for n in last]
    return names, last


def strongest_family(defense: Defense, random: bool = False) -> str:
    """The gradient attack the strength curve extends: the sharpest smooth surrogate, else straight-through BPDA,
    else plain APGD-CE (with EOT for a randomized defense)."""
    if "smooth" in defense.surrogates:
        name = f"apgd-ce+bpda-smooth-T{min(SMOOTH_TEMPERATURES):g}"
    elif "identity" in defense.surrogates:
        name = "apgd-ce+bpda-identity"
    else:
        name = "apgd-ce"
    return name + (f"+eot{EOT_DRAWS}" if random else "")


def curve_names(suite: str, defense: Defense, budget: str, random: bool = False) -> list[str]:
    """The larger-budget attacks of the strength curve, run last; the family's default budget runs first (it is in
    the suite already, or is added here)."""
    _check_budget(budget)
    curves = CURVES[budget]
    if suite not in ("full", "adaptive") or not any(curves.values()):
        return []
    # The larger budgets run on the survivors of everything else (`+survivors`, last): what the convergence check
    # reads is only what they break that nothing else did, so the samples already broken need not be attacked again.
    family = strongest_family(defense, random)
    names = [family] + [f"{family}+survivors@{key}={n}" for key in ("iters", "restarts") for n in curves[key]]
    if curves["queries"]:
        square = "square" + (f"+eot{EOT_DRAWS}" if random and EXTRAS[budget].eot_query_attacks else "")
        names += [square] + [f"{square}+survivors@queries={q}" for q in curves["queries"]]
    # A curve's first point may be one of AutoAttack's parts (its APGD-CE, its Square: same family, same budget);
    # the outcomes keep parts' families and budgets, so it is not run a second time.
    covered = _autoattack_parts(suite_names(suite, defense, budget, random))
    return [n for n in names if _family_and_budget(n) not in covered]


def _family_and_budget(name: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    attributes = make_attack(name).attributes()
    return attributes["family"], tuple(sorted(attributes["budget"].items()))


def _autoattack_parts(names: list[str]) -> set[tuple[str, tuple[tuple[str, int], ...]]]:
    parts = [
        part
        for name in names
        if name.startswith("autoattack")
        for part in make_attack(name).attributes().get("parts", {}).values()
    ]
    return {(part["family"], tuple(sorted(part["budget"].items()))) for part in parts}


def plan_suite(suite: str, defense: Defense, budget: str = "standard", random: bool = False) -> Plan:
    """The suite's plan for this defense at this budget, not yet in run order (Plan.in_run_order). `random`: plan
    for a random forward (EOT) though the defense does not declare one (the audit found it random)."""
    _check_budget(budget)
    random = random or defense.randomized
    if suite != "spatial" and is_test_time(defense):  # its own optimisation in forward: audit/plan/test_time.py
        return plan_test_time(suite, defense, CURVES[budget]["iters"], random)
    why: dict[str, str] = {}

    def stage(names: list[str], reason: str) -> list[str]:
        for name in names:
            why.setdefault(name, f"{reason}: {role(name)}")
        return names

    names = stage(suite_names(suite, defense, budget, random), f"suite {suite}")
    added, last = extra_names(suite, defense, budget, random)
    if EXTRAS[budget].eot_query_attacks and random:
        names = [_with_eot(n) for n in names]
        stage(names, f"suite {suite}, budget {budget} (EOT for a random forward)")
    stage(added, f"budget {budget}")
    names = list(
        dict.fromkeys(
            [*names, *added, *stage(curve_names(suite, defense, budget, random), f"budget {budget}, strength curve")]
        )
    )
    attacks, skipped = [], []
    base = defense.base_model()
    for name in names:
        if name.startswith("transfer-base:") and base is None:
            skipped.append(
                Skipped(name, "the defense has no MeanSparse layers to remove, so no base model to transfer from")
            )
            continue
        attacks.append(make_attack(name, transfer_source=base))
    # The cascade's Square already runs on all survivors where its probe breaks one: no harder Square on top.
    attacks, not_applicable, extra = plan_gradient_free(defense, attacks, harder_square=CASCADE_SQUARE not in last)
    if not_applicable and CASCADE_SQUARE in last:
        # No gradient reaches the input through the exact backward: Square is the attack that counts, so it runs on
        # every survivor with two restarts instead of a probe (one 5000-query run on the opaque quantizer missed 2
        # samples AutoAttack's own Square broke, docs/benchmarks.md).
        last = [GRADIENT_FREE_SQUARE if name == CASCADE_SQUARE else name for name in last]
        stage([GRADIENT_FREE_SQUARE], "no gradient reaches the input, so Square counts most")
    skipped += not_applicable
    stage(extra, "no gradient reaches the input, so Square runs harder")
    stage(last, f"budget {budget}, last")
    attacks += [make_attack(name) for name in [*extra, *last]]
    for surrogate in ("identity", "smooth"):
        if surrogate not in defense.surrogates:
            skipped.append(Skipped(f"bpda-{surrogate}", f"{defense.description} offers no {surrogate} surrogate"))
    return Plan([Planned(a, why.get(a.label, role(a.label))) for a in attacks], skipped)
