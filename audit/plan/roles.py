"""Why an attack is in a plan, in words for the report: the stage that asked for it (suite, budget, found
randomness, ...) and what the attack is for: its registered class's `role` (attacks/catalog.py), else read from
its name."""

from __future__ import annotations

from attacks.catalog import entries
from attacks.libraries import GRADIENT_FREE
from attacks.names import TRANSFER_PREFIX, parse_name


def role(name: str) -> str:
    """What the attack named `name` contributes, in a few words: its class's own `role`, else where its gradients
    come from."""
    parsed = parse_name(name)
    entry = entries().get(parsed.base)
    library, _, library_attack = parsed.base.partition(":")
    if parsed.inner is not None:
        what = f"{role(name[len(TRANSFER_PREFIX) :])}, crafted on the base model (MeanSparse off) and judged here"
    elif entry is not None and entry.role is not None:
        what = entry.role
    elif parsed.library is not None and library_attack in GRADIENT_FREE[library]:
        what = "black-box: the model's outputs only"
    elif parsed.surrogate == "unrolled":
        what = "the gradient through the forward's own optimisation steps"
    elif parsed.surrogate != "exact":
        at = f" at T={parsed.temperature:g}" if parsed.temperature is not None else ""
        what = f"BPDA: the {parsed.surrogate} surrogate{at} in the backward pass, the exact forward"
    else:
        what = "the model's own gradient"
    if parsed.eot != 1:
        what += f"; EOT over {parsed.eot} draws of the random forward"
    if parsed.survivors:
        what += "; on what every other attack left"
    if parsed.budget:
        what += "; at " + ", ".join(f"{key}={value:g}" for key, value in parsed.budget)
    return what
