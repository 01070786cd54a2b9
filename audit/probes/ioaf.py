"""The measurements behind the six Indicators of Attack Failure (Pintor et al., NeurIPS 2022), judged in
`audit/checks/ioaf.py`: `ioaf-unavailable-gradients`, `ioaf-unstable-predictions`, `ioaf-silent-success`,
`ioaf-incomplete-optimization`, `ioaf-transfer-failure`, `ioaf-unconstrained-failure`.

Silent success and incomplete optimization are read off one plain PGD run on exact gradients that returns its
last iterate and keeps every iterate's loss (`_common.pgd`); as in the paper they are evaluated on the samples
where that attack failed.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from attacks.judge import score
from attacks.losses import margin
from attacks.threat_model import ThreatModel
from audit.probes._common import GraphInterrupted, chunks, clean_correct, generator_for, input_gradient, pgd
from audit.probes.config import DiagnosticsConfig
from defenses.adapters import InputQuantization
from defenses.protocol import Defense, Undefended


def measure_unavailable_gradients(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """An exception or no gradient at all when differentiating the CE loss, or an all-zero gradient per sample."""
    try:
        grad, _ = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    except GraphInterrupted as error:
        return {"n": len(x), "seed": seed, "interrupted": str(error), "exception": None}
    except Exception as error:  # noqa: BLE001 - any failure to differentiate *is* the indicator
        return {
            "n": len(x),
            "seed": seed,
            "interrupted": None,
            "exception": type(error).__name__,
            "exception_message": str(error).splitlines()[0][:160] if str(error) else "",
        }
    zero = (grad.flatten(1) == 0).all(1)
    return {
        "n": len(x),
        "seed": seed,
        "interrupted": None,
        "exception": None,
        "zero_gradient_count": int(zero.sum()),
        "zero_gradient_indices": zero.nonzero().flatten()[:20].tolist(),
    }


@torch.no_grad()
def measure_unstable_predictions(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Relative change of the margin loss under `unstable_draws` uniform perturbations of radius eps/2, each
    capped at 1. Randomness is left in on purpose: a randomized defense's own noise makes predictions unstable."""
    correct = clean_correct(defense, x, y, config.batch_size)
    index = correct.nonzero().flatten()[: config.unstable_samples]
    if len(index) == 0:
        return {"skipped": "no clean-correct sample"}
    xs, ys = x[index], y[index]
    generator = generator_for(seed)
    radius = threat.eps / 2
    low, high = threat.bounds
    reference = torch.cat([-margin(defense(xs[s]), ys[s]) for s in chunks(len(xs), config.batch_size)]).double()
    divisor = torch.where(reference == 0, torch.ones_like(reference), reference.abs())
    changes = []
    for _ in range(config.unstable_draws):
        noise = threat.random_delta(tuple(xs.shape), generator, radius)
        moved = (xs + noise.to(xs)).clamp(low, high)
        value = torch.cat([-margin(defense(moved[s]), ys[s]) for s in chunks(len(xs), config.batch_size)]).double()
        changes.append(((value - reference).abs() / divisor).clamp(max=1.0))
    per_sample = torch.stack(changes).mean(0)  # mean over draws
    return {
        "n": len(xs),
        "seed": seed,
        "draws": config.unstable_draws,
        "radius": radius,
        "per_sample": per_sample.tolist(),
    }


def measure_pgd_trace(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """One tracking PGD run (exact gradients): per iterate CE and success, and whether the returned point is
    adversarial, for the samples that were clean-correct."""
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    steps = config.pgd_steps
    trace, last = pgd(
        defense, x, y, threat, steps=steps, step_size=2.5 * threat.eps / steps, seed=seed, batch_size=config.batch_size
    )
    return {
        "n": len(x),
        "seed": seed,
        "steps": steps,
        "correct": correct.tolist(),
        "losses": trace.losses.cpu().double().tolist(),
        "adversarial": trace.adversarial.cpu().tolist(),
        "adversarial_last": last.cpu().tolist(),
    }


def surrogate_model(defense: Defense) -> tuple[torch.nn.Module | None, str]:
    """The differentiable model an attacker would substitute: MeanSparse's base model, or the model behind an
    input quantizer; None when the defense has no such part."""
    base = defense.base_model()
    if base is not None:
        return base, "base model (MeanSparse alpha = 0)"
    if isinstance(defense, InputQuantization):
        return defense.model, "model without input quantization"
    return None, ""


def measure_transfer(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Points made adversarial on the surrogate model by PGD, judged on the defense's exact forward."""
    source, description = surrogate_model(defense)
    if source is None:
        return {"skipped": "the defense has no surrogate model to transfer from"}
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    steps = config.pgd_steps
    trace, last = pgd(
        Undefended(source),
        x,
        y,
        threat,
        steps=steps,
        step_size=2.5 * threat.eps / steps,
        seed=seed,
        batch_size=config.batch_size,
    )
    on_surrogate = last.cpu() & correct
    wrong, _ = score(defense, trace.x_last, y.to(trace.x_last.device), seed=seed)
    failures = on_surrogate & ~wrong.cpu()
    return {
        "n": len(x),
        "seed": seed,
        "surrogate": description,
        "adversarial_on_surrogate": int(on_surrogate.sum()),
        "transfer_failures": int(failures.sum()),
        "indices": failures.nonzero().flatten()[:20].tolist(),
    }


def measure_unconstrained(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """PGD from the clean point (no random start) with eps = inf, on the clean-correct samples."""
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    if not correct.any():
        return {"skipped": "no clean-correct sample"}
    unbounded = ThreatModel(threat.norm, math.inf, threat.bounds)
    steps = config.unconstrained_steps
    trace, last = pgd(
        defense, x, y, unbounded, steps=steps, step_size=threat.eps, seed=seed, batch_size=config.batch_size
    )
    reached = trace.adversarial.any(0).cpu() | last.cpu()
    failures = correct & ~reached
    return {
        "n": len(x),
        "seed": seed,
        "steps": steps,
        "step_size": threat.eps,
        "correct": int(correct.sum()),
        "failures": int(failures.sum()),
        "indices": failures.nonzero().flatten()[:20].tolist(),
    }
