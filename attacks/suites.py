"""Named suites: which attacks to run against a defense, fitted to what the defense offers.

    autoattack   AutoAttack standard (rand for a randomized defense), the number papers report
    adaptive     BPDA (identity, and smooth over a temperature sweep), transfer from the base model, Square
                 with more queries, EOT for randomized defenses: attacks that fit the defense
    spatial      rotation/translation grid and stAdv (their own threat models, reported apart from Lp)
    full         both, plus single-step FGSM, which the diagnostics compare against (AutoAttack's own per-sample
                 record of which sub-attack broke each point gives plain APGD-CE and Square for free)

An attack that does not fit (BPDA on a defense with no surrogate, transfer with no base model) is listed as
skipped with its reason, never silently dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

from attacks.base import Attack
from attacks.registry import make_attack
from attacks.transfer import base_model_of
from defenses.protocol import Defense

SMOOTH_TEMPERATURES = (1.0, 0.3, 0.1, 0.03)
EOT_DRAWS = 20  # as AutoAttack-rand
SUITES = ("autoattack", "adaptive", "full", "quick", "spatial")
# How far up the strength curves a run goes (`--budget`): the strongest gradient attack family again at larger
# iteration counts, and Square at more queries, so `attack-convergence` can tell whether the worst case still falls.
BUDGETS: dict[str, dict[str, tuple[int, ...]]] = {
    "quick": {"iters": (), "queries": ()}, "standard": {"iters": (300,), "queries": ()},
    "thorough": {"iters": (300, 1000), "queries": (20000,)},
}


@dataclass
class SuitePlan:
    attacks: list[Attack]
    skipped: list[tuple[str, str]]  # (attack name, reason)


def _adaptive_names(defense: Defense, with_square: bool = True) -> list[str]:
    names = []
    if "identity" in defense.surrogates:
        names += ["apgd-ce+bpda-identity", "apgd-dlr+bpda-identity", "apgd-t+bpda-identity"]
    if "smooth" in defense.surrogates:
        names += [f"apgd-ce+bpda-smooth-T{t:g}" for t in SMOOTH_TEMPERATURES]
    names += ["transfer-base:apgd-ce"] + (["square"] if with_square else [])
    return names


def suite_names(suite: str, defense: Defense) -> list[str]:
    aa = "autoattack-rand" if defense.random_forward else "autoattack-standard"
    if suite == "autoattack":
        names = [aa]
    elif suite == "adaptive":
        names = _adaptive_names(defense)
    elif suite == "full":
        # AutoAttack already runs Square on every point its gradient attacks leave: no second Square here.
        names = ["fgsm", aa, *_adaptive_names(defense, with_square=False)]
    elif suite == "spatial":  # a different threat model: never mixed into an Lp worst case
        names = ["spatial-grid", "stadv"]
    elif suite == "quick":  # for tests and smoke runs: one exact and one adaptive gradient attack
        names = ["fgsm", "apgd-ce"] + (["apgd-ce+bpda-identity"] if "identity" in defense.surrogates else [])
    else:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if defense.random_forward:
        names = [n + f"+eot{EOT_DRAWS}" if n.startswith("apgd") else n for n in names]
    return list(dict.fromkeys(names))


def strongest_family(defense: Defense) -> str:
    """The gradient attack the strength curve extends: the sharpest smooth surrogate, else straight-through BPDA,
    else plain APGD-CE (with EOT for a randomized defense)."""
    if "smooth" in defense.surrogates:
        name = f"apgd-ce+bpda-smooth-T{min(SMOOTH_TEMPERATURES):g}"
    elif "identity" in defense.surrogates:
        name = "apgd-ce+bpda-identity"
    else:
        name = "apgd-ce"
    return name + (f"+eot{EOT_DRAWS}" if defense.random_forward else "")


def curve_names(suite: str, defense: Defense, budget: str) -> list[str]:
    """The larger-budget attacks of the strength curve, run last; the family's default budget runs first (it is in
    the suite already, or is added here)."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    if suite not in ("full", "adaptive") or not (BUDGETS[budget]["iters"] or BUDGETS[budget]["queries"]):
        return []
    family = strongest_family(defense)
    names = [family] + [f"{family}@iters={n}" for n in BUDGETS[budget]["iters"]]
    if BUDGETS[budget]["queries"]:
        names += ["square"] + [f"square@queries={q}" for q in BUDGETS[budget]["queries"]]
    return names


def plan_suite(suite: str, defense: Defense, budget: str = "standard") -> SuitePlan:
    attacks, skipped = [], []
    base = base_model_of(defense)
    names = suite_names(suite, defense)
    names += [n for n in curve_names(suite, defense, budget) if n not in names]
    for name in names:
        if name.startswith("transfer-base:") and base is None:
            skipped.append((name, "the defense has no MeanSparse layers to remove, so no base model to transfer from"))
            continue
        attacks.append(make_attack(name, transfer_source=base))
    # Hook (defenses/auto_bpda.py): gradient attacks that no gradient reaches are not applicable; Square runs harder.
    from defenses.auto_bpda import plan_gradient_free

    attacks, not_applicable, extra = plan_gradient_free(defense, attacks)
    skipped += not_applicable
    attacks += [make_attack(name) for name in extra]
    for surrogate in ("identity", "smooth"):
        if surrogate not in defense.surrogates:
            skipped.append((f"bpda-{surrogate}", f"{defense.description} offers no {surrogate} surrogate"))
    return SuitePlan(attacks, skipped)
