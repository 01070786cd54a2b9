"""Why an attack is in a plan, in words for the report: the stage that asked for it (suite, budget, found
randomness, ...) and what the attack is for, read from its name (attacks/names.py)."""
from __future__ import annotations

from attacks.names import TRANSFER_PREFIX, parse_name

MECHANISM_BASES = ("apgd-continuation", "apgd-anneal", "apgd-escape")


def role(name: str) -> str:
    """What the attack named `name` contributes, in a few words."""
    parsed = parse_name(name)
    if parsed.inner is not None:
        what = f"{role(name[len(TRANSFER_PREFIX):])}, crafted on the base model (MeanSparse off) and judged here"
    elif parsed.base.startswith("autoattack"):
        what = "AutoAttack verbatim, the figure papers report"
    elif parsed.base.startswith(MECHANISM_BASES):
        what = "follows MeanSparse's mechanism (attacks/adaptive.py)"
    elif parsed.base in ("spatial-grid", "stadv"):
        what = "a spatial threat model, reported apart from Lp"
    elif parsed.base == "fgsm":
        what = "the single step the diagnostics compare with"
    elif parsed.base == "square" or parsed.library is not None and not parsed.base.startswith("apgd"):
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
