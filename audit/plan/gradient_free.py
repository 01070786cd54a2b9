"""The planner's answer to a defense no gradient reaches through: drop the gradient attacks, run Square harder."""

from __future__ import annotations

import logging

from attacks.base import Attack
from audit.plan.types import Skipped
from defenses.gradient_path import gradient_reaches_input
from defenses.protocol import Defense

log = logging.getLogger(__name__)

STRONG_SQUARE = "square@queries=10000,restarts=3"


def plan_gradient_free(
    defense: Defense,
    attacks: list[Attack],
    harder_square: bool = True,
) -> tuple[list[Attack], list[Skipped], list[str]]:
    """The suite planner's hook: drop gradient attacks no gradient reaches through, and run Square harder
    (`harder_square=False`: the plan has its own Square for that, as the default budget's cascade).

    Returns (attacks kept, the attacks not applicable with why, extra attack names to add). A defense that has not
    seen an input yet (no `example_input`) is left as planned.
    """
    example = getattr(defense, "example_input", None)
    if example is None:
        return attacks, [], []
    reach: dict[tuple[str, float | None], bool] = {}
    kept, skipped = [], []
    for attack in attacks:
        # Gradient-free attacks, and transfer attacks (their gradients come from another model), always apply.
        if attack.gradient == "none" or attack.gradient.startswith("transfer:"):
            kept.append(attack)
            continue
        key = (attack.surrogate, attack.temperature)
        if key not in reach:
            reach[key] = attack.surrogate in defense.surrogates and gradient_reaches_input(
                defense, example, attack.surrogate, attack.temperature
            )
        if reach[key]:
            kept.append(attack)
        else:
            how = "the exact backward" if attack.surrogate == "exact" else f"the {attack.surrogate} surrogate"
            skipped.append(Skipped(attack.label, f"not applicable: no gradient reaches the input through {how}"))
    extra = [STRONG_SQUARE] if skipped and harder_square else []
    if extra:
        log.warning(
            "%d gradient attacks are not applicable (no gradient reaches the input); adding %s",
            len(skipped),
            STRONG_SQUARE,
        )
    return kept, skipped, extra
