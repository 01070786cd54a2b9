"""`gradient-repeatability`: does the same input give the same gradient twice?

Every gradient attack assumes that the backward pass is a function of its input. A defense whose backward is
random while its forward is not (noise injected in a custom backward, a randomly chosen surrogate, dropout in a
hand-written gradient) defeats them the way a random forward does, yet AutoAttack's `randomized` check, which
compares forwards, cannot see it (Athalye et al. 2018 call such gradients stochastic). The probe takes the input
gradient of the CE loss twice on the same inputs (reseeding a randomized defense before each, as every probe
does) and compares them on the samples whose two losses are bitwise equal, so a random forward is left to
`randomized`. On a CPU the two gradients of a deterministic backward are identical; on a GPU atomic adds leave a
relative difference around 1e-6, far below the warning line.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.threat_model import ThreatModel
from audit.checks.finding import Finding, skipped, status_from
from audit.checks.registry import Check, Diagnostic, register
from audit.probes._common import flat_norms, input_gradient
from audit.probes.config import DiagnosticsConfig
from defenses.protocol import Defense

ID = "gradient-repeatability"
WARN, FAIL = 1e-3, 0.05  # median relative difference between the two gradients of one input


def measure(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    first, loss_first = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    second, loss_second = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    same_forward = loss_first == loss_second
    norms = torch.maximum(flat_norms(first)[0], flat_norms(second)[0])
    relative = flat_norms(first - second)[0] / norms.clamp_min(torch.finfo(norms.dtype).tiny)
    relative = torch.where(norms > 0, relative, torch.zeros_like(relative))  # two zero gradients agree
    return {"n": len(x), "same_forward": int(same_forward.sum()), "relative": relative[same_forward].tolist()}


def judge(m: dict[str, Any]) -> list[Finding]:
    if m["same_forward"] == 0:
        return [
            skipped(
                ID,
                f"no sample of {m['n']} gave the same loss twice: the forward itself is random (see randomized)",
                n=m["n"],
                same_forward=0,
            )
        ]
    relative = torch.tensor(m["relative"], dtype=torch.float64)
    median = float(relative.median())
    evidence = {
        "n": m["n"],
        "same_forward": m["same_forward"],
        "median_relative_difference": median,
        "max_relative_difference": float(relative.max()),
        "differing_samples": int((relative > 0).sum()),
    }
    status = status_from(median, WARN, FAIL)
    over = f"median relative difference {median:.2g} over {m['same_forward']} samples"
    message = f"the gradient is repeatable: {over}" if status == "pass" else f"one input, other gradients: {over}"
    return [Finding(ID, status, message, evidence)]


register(
    Diagnostic(
        probe=ID,
        measure=measure,
        judge=judge,
        checks=(
            Check(
                ID,
                ID,
                "symptom",
                "the same input gets a different gradient each time: the backward is random, so attacks follow noise",
                "median over samples of ||g1 - g2|| / max(||g1||, ||g2||) for two CE input gradients of "
                "one input whose two losses are equal",
                f"warn >= {WARN:g}, fail >= {FAIL:g}",
                "a stochastic backward behind a deterministic forward, which the randomized check cannot see; "
                "GPU atomics give ~1e-6",
            ),
        ),
    )
)
