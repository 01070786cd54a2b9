"""The plan: which attacks an audit runs against a defense, in run order, each with why, and what it left out and
why. One function, `make_plan`, from the run's settings and the defense to a `Plan`; the runner (audit/runner.py)
only runs a plan, and `audit extend` builds one too.

    suites.py         the named suites and budgets (`--suite`, `--budget`): what each runs, fitted to the defense
    test_time.py      the plan for a forward that runs its own optimisation (Croce et al. 2022)
    gradient_free.py  no gradient reaches the input: the gradient attacks are not applicable, Square runs harder
    roles.py          why an attack is in the plan, in words for the report
    types.py          Plan, Planned, Skipped
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from attacks.names import format_name, parse_name
from attacks.registry import make_attack
from attacks.transfer import Transfer
from audit.config import AuditConfig
from audit.inputs import AuditInputError
from audit.model_spec import resolve_model
from audit.plan.gradient_free import plan_gradient_free
from audit.plan.roles import role
from audit.plan.suites import plan_suite
from audit.plan.test_time import EOT_DRAWS
from audit.plan.types import Plan, Planned, Skipped
from defenses.protocol import Defense

__all__ = ["Plan", "Planned", "Skipped", "make_plan"]


def make_plan(config: AuditConfig, defense: Defense, device: str = "cpu", randomness_found: bool = False) -> Plan:
    """The plan of `config` (its suite and budget, or its explicit `attacks`, plus `transfer_from`) against
    `defense`, in run order. `randomness_found`: the forward turned out random though the model does not declare it;
    the plan keeps the attacks planned without EOT (so the report shows the difference) and adds their EOT versions.
    Refuses (AuditInputError) an explicit BPDA attack on a model with nothing to bypass."""
    plan = _chosen(config, defense, random=False)  # a declared random forward is planned with EOT anyway
    plan.planned += _transfer(config, device)
    if randomness_found and not defense.randomized:
        plan = _with_eot(plan, _chosen(config, defense, random=True))
    return plan.in_run_order()


def _chosen(config: AuditConfig, defense: Defense, random: bool) -> Plan:
    """The suite's plan, or the explicit attack list's."""
    if not config.attacks:
        return plan_suite(config.suite, defense, config.budget, random)
    base = defense.base_model()
    attacks = [make_attack(name, transfer_source=base) for name in config.attacks]
    unsupported = [a.label for a in attacks if a.surrogate not in defense.surrogates]
    if unsupported:
        # Refused up front, not after hours of other attacks: BPDA needs a known non-differentiable part to bypass.
        raise AuditInputError(
            f"{', '.join(unsupported)} need(s) a surrogate gradient, but {defense.description} has no layer to "
            f"bypass (it offers only {', '.join(defense.surrogates)}); drop the +bpda attacks for this model"
        )
    # As for a suite: a gradient attack no gradient reaches is listed as not applicable, and Square runs harder.
    attacks, not_applicable, extra = plan_gradient_free(defense, attacks)
    planned = [Planned(a, f"--attacks: {role(a.label)}") for a in attacks]
    planned += [
        Planned(make_attack(name), f"no gradient reaches the input, so Square runs harder: {role(name)}")
        for name in extra
        if name not in {a.label for a in attacks}
    ]
    return Plan(planned, not_applicable)


def _transfer(config: AuditConfig, device: str) -> list[Planned]:
    """APGD-CE crafted on each `--transfer-from` model and judged on the audited one."""
    planned = []
    for spec in config.transfer_from:
        source, _ = resolve_model(spec, trust_checkpoint=config.trust_checkpoint)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(spec.split(":")[0]).stem if ".py:" in spec else spec)
        attack = Transfer(make_attack("apgd-ce"), source.to(device).eval(), source_name=name)
        planned.append(Planned(attack, f"--transfer-from {spec}: APGD-CE crafted on it, judged here"))
    return planned


def _with_eot(plain: Plan, randomized: Plan) -> Plan:
    """The plain plan, then the EOT versions of its gradient attacks (the randomized suite's, or +eot for an
    explicit attack list)."""
    why = "the forward is random though undeclared (found by the audit)"
    labels = set(plain.labels)
    extra = [Planned(p.attack, f"{why}: {p.why}") for p in randomized.planned if p.attack.label not in labels]
    if not extra:
        names = [
            format_name(replace(parse_name(a.label), eot=EOT_DRAWS))
            for a in plain.attacks
            if a.gradient == "exact" or a.gradient.startswith(("bpda-", "adaptive-"))
        ]
        extra = [Planned(make_attack(name), f"{why}: {role(name)}") for name in names]
    return Plan(plain.planned + extra, plain.skipped)
