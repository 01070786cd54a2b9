"""The plan for a test-time defense (a forward that runs its own optimisation, defenses/test_time.py).

Croce et al. (ICML 2022, "Evaluating the adversarial robustness of adaptive test-time defenses") found that no
such defense they studied was more robust than its static model once attacked properly, and that the attacks that
showed it were (1) the standard attacks on the static model, transferred, and (2) gradients through the defense's
own steps. What the suite's plan runs on such a defense instead of the static plan:

    transfer-base:autoattack-standard   AutoAttack on the static model inside, its points judged on the defense
    fgsm+unrolled                       (suite full) the single step, through the unrolled forward
    apgd-ce+unrolled, apgd-dlr+unrolled the full gradient through every purification step
    apgd-ce+bpda-identity               straight-through BPDA over the forward's detaches (what the suite ran
                                        before; kept so the report shows how far it falls short)
    apgd-ce+unrolled+survivors@iters=N  the strength curve of the budget, on what is left
    square+survivors@probe=10
                                        Square last, evidence first: a probe of 500 queries on 10 survivors; the
                                        full budget only if the probe breaks one (attacks.autoattack.Square)

Every query of the defense runs its whole optimisation (`passes_per_forward` passes of the static model), so the
static plan's AutoAttack on the defense (its exact gradient is the defense's own detached one) and Square at
10000 queries x 3 restarts are listed as skipped, with what each would have cost.
"""

from __future__ import annotations

import logging

from attacks.registry import make_attack
from audit.plan.gradient_free import plan_gradient_free
from audit.plan.roles import role
from audit.plan.types import Plan, Planned, Skipped
from defenses.opaque import OpaqueModel
from defenses.protocol import Defense

log = logging.getLogger(__name__)

PROBE = 10  # survivors Square tries first (attacks.autoattack.Square.n_probe)
SQUARE = f"square+survivors@probe={PROBE}"  # at Square's default 5000 queries
EOT_DRAWS = 20  # as AutoAttack-rand


def is_test_time(defense: Defense) -> bool:
    return bool(getattr(defense, "test_time", False))


def test_time_names(
    suite: str, defense: Defense, iters: tuple[int, ...], random: bool = False
) -> tuple[list[str], list[Skipped]]:
    """(attack names, skipped attacks) for a test-time defense under `suite`; `iters` is the budget's iteration
    curve (audit/plan/suites.py CURVES); `random`: the forward is random, so EOT."""
    trace = defense.trace() if isinstance(defense, OpaqueModel) else None  # the only test-time adapter
    passes = trace.passes_per_forward if trace is not None else 1.0
    names: list[str] = []
    skipped: list[Skipped] = []
    if defense.base_model() is not None:
        names.append("transfer-base:autoattack-standard")
    else:
        skipped.append(
            Skipped(
                "transfer-base:autoattack-standard",
                "no static model found in the forward (no "
                "submodule's output is the final output); give it with --static-model",
            )
        )
    if suite == "full":
        names.append("fgsm+unrolled")
    names += ["apgd-ce+unrolled"]
    if suite != "quick":
        names += ["apgd-dlr+unrolled"]
        if "identity" in defense.surrogates:
            names.append("apgd-ce+bpda-identity")
        names += [f"apgd-ce+unrolled+survivors@iters={n}" for n in iters]
        names.append(SQUARE)
    if random:
        names = [
            n.replace("+unrolled", f"+unrolled+eot{EOT_DRAWS}").replace(
                "+bpda-identity", f"+bpda-identity+eot{EOT_DRAWS}"
            )
            for n in names
        ]
    why = (
        f"test-time optimisation inside forward: each query runs the whole optimisation (~{passes:g} passes of "
        f"the static model)"
    )
    if suite != "quick":
        skipped += [
            Skipped(
                "autoattack-standard",
                f"{why}; its exact gradient is the defense's own (detached) one, so "
                f"AutoAttack runs on the static model and transfers instead",
            ),
            Skipped(
                "square@queries=10000,restarts=3",
                f"{why}; Square runs last on the survivors, evidence first "
                f"({SQUARE}: the full budget only if a {PROBE}-sample probe breaks one)",
            ),
            Skipped(
                "bpda-smooth",
                "test-time optimisation inside forward: its detaches have no smooth surrogate "
                "(smooth = identity there); +unrolled takes the exact gradient through the steps instead",
            ),
        ]
    return list(dict.fromkeys(names)), skipped


def plan_test_time(suite: str, defense: Defense, iters: tuple[int, ...], random: bool = False) -> Plan:
    """The plan for a test-time defense (gradient attacks no gradient reaches are dropped with their reason, as
    for any defense)."""
    names, skipped = test_time_names(suite, defense, iters, random)
    unrolled_problem = _unrolled_problem(defense)
    if unrolled_problem is not None:
        skipped += [Skipped(name, f"not applicable: {unrolled_problem}") for name in names if "+unrolled" in name]
        names = [name for name in names if "+unrolled" not in name]
    attacks = [make_attack(name, transfer_source=defense.base_model()) for name in names]
    attacks, not_applicable, _ = plan_gradient_free(defense, attacks)  # its harder Square is replaced by SQUARE
    log.info("test-time defense: planned %s", ", ".join(a.label for a in attacks))
    why = f"test-time defense (Croce et al. 2022), suite {suite}"
    return Plan([Planned(a, f"{why}: {role(a.label)}") for a in attacks], skipped + not_applicable)


def _unrolled_problem(defense: Defense) -> str | None:
    """Why the unrolled forward cannot give a gradient (it raised, or none reaches the input), or None if it can.
    A forward that calls `loss.backward()` and reads `.grad` is the usual case: its inner gradient lands on a leaf
    the mode cannot see (defenses/test_time.py)."""
    from defenses.gradient_path import gradient_reaches_input
    from defenses.test_time import UNROLLED

    example = getattr(defense, "example_input", None)
    if example is None:
        return "the defense has not seen an input yet"
    try:
        if gradient_reaches_input(defense, example, UNROLLED):
            return None
        return "no gradient reaches the input through the unrolled forward"
    except Exception as error:  # noqa: BLE001 - the user's forward may raise anything under the mode
        log.warning("the unrolled forward of %s raised %s: %s", defense.description, type(error).__name__, error)
        return f"the unrolled forward raised {type(error).__name__}: {str(error).splitlines()[0][:160]}"


__all__ = ["PROBE", "SQUARE", "is_test_time", "plan_test_time", "test_time_names"]
