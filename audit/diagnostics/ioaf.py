"""The six Indicators of Attack Failure (Pintor et al., NeurIPS 2022), each as its own finding:
`ioaf-unavailable-gradients`, `ioaf-unstable-predictions`, `ioaf-silent-success`, `ioaf-incomplete-optimization`,
`ioaf-transfer-failure`, `ioaf-unconstrained-failure`.

Silent success and incomplete optimization are read off one plain PGD run on exact gradients that returns its
last iterate and keeps every iterate's loss (`_common.pgd`); as in the paper they are evaluated on the samples
where that attack failed.
"""
from __future__ import annotations

import logging
import math

import torch

from attacks.judge import score
from attacks.threat_model import ThreatModel
from attacks.transfer import base_model_of
from audit.diagnostics._common import (GraphInterrupted, chunks, clean_correct, generator_for, input_gradient,
                                       margin, pgd, random_direction)
from audit.diagnostics.config import DiagnosticsConfig
from audit.diagnostics.finding import Finding, skipped
from defenses.protocol import Defense, InputQuantization, Undefended

log = logging.getLogger(__name__)

# Unstable predictions: the mean relative change of the margin loss under uniform noise of radius eps/2, each
# relative change capped at 1 (Pintor et al. cap the mean at 1). We use the logit margin rather than CE because
# CE of a confidently classified point is ~0, so any change is relatively huge. The metric mixes two things: the
# defense's own randomness and how far a *non-robust* model's margins move under noise. Measured at Linf 0.1 on
# Fashion-MNIST: well-trained standard CNN 0.24 (0.62 with Gaussian input noise sigma 0.2); a weakly trained
# one 0.30 (0.35 / 0.48 with sigma 0.1 / 0.2). Because it cannot tell a weak model from a noisy one, it only
# warns, from 0.4; `randomized` is the check that decides whether the forward is random.
UNSTABLE_WARN = 0.4
# Silent success (an iterate was adversarial, the returned last point is not) and incomplete optimization
# (normalised running-best loss still moving > 0.05 over the last 10 steps) flag the *attack*, not the model:
# warn when they concern at least 10% of the samples the PGD run failed on, and at least 2 of them.
SILENT_WARN_FRACTION = 0.1
INCOMPLETE_WARN_FRACTION = 0.1
MIN_FLAGGED = 2
INCOMPLETE_WINDOW = 10
INCOMPLETE_DELTA = 0.05
# Transfer failure: points adversarial on the surrogate (the base model, MeanSparse off, or the model without its
# input transform) that are not adversarial on the defense. Warn from 20% of them: the surrogate's landscape is
# then far enough from the defense's that transfer and BPDA results are weak evidence either way.
TRANSFER_FAILURE_WARN = 0.2
# Unconstrained attack failure: with no eps limit, any clean-correct point the attack cannot misclassify is an
# attack failure. Fail above 1% of them (on 100 points: any one).
UNCONSTRAINED_MAX_FAILURES = 0.01


def check_unavailable_gradients(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                                config: DiagnosticsConfig | None = None) -> list[Finding]:
    """An exception or no gradient at all when differentiating the CE loss, or an all-zero gradient on any sample."""
    config = config or DiagnosticsConfig()
    try:
        grad, _ = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    except GraphInterrupted as error:
        return [Finding("ioaf-unavailable-gradients", "fail", f"the computational graph is interrupted: {error}",
                        {"n": len(x), "seed": seed, "interrupted": True, "exception": None})]
    except Exception as error:  # noqa: BLE001 - any failure to differentiate *is* the indicator
        return [Finding("ioaf-unavailable-gradients", "fail",
                        f"differentiating the loss raises {type(error).__name__}: {str(error).splitlines()[0][:160]}",
                        {"n": len(x), "seed": seed, "interrupted": False, "exception": type(error).__name__})]
    zero = (grad.flatten(1) == 0).all(1)
    count = int(zero.sum())
    status = "fail" if count else "pass"
    message = (f"{count} of {len(x)} samples have an all-zero gradient of the CE loss" if count
               else "gradients are available and non-zero on every sample")
    return [Finding("ioaf-unavailable-gradients", status, message,
                    {"n": len(x), "seed": seed, "interrupted": False, "zero_gradient_count": count,
                     "zero_gradient_indices": zero.nonzero().flatten()[:20].tolist()})]


@torch.no_grad()
def check_unstable_predictions(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                               config: DiagnosticsConfig | None = None) -> list[Finding]:
    """Relative change of the margin loss under `unstable_draws` uniform perturbations of radius eps/2.

    Randomness is left in on purpose: a randomized defense's own noise is what makes its predictions unstable.
    """
    config = config or DiagnosticsConfig()
    correct = clean_correct(defense, x, y, config.batch_size)
    index = correct.nonzero().flatten()[: config.unstable_samples]
    if len(index) == 0:
        return [skipped("ioaf-unstable-predictions", "no clean-correct sample")]
    xs, ys = x[index], y[index]
    generator = generator_for(seed)
    radius = threat.eps / 2
    low, high = threat.bounds
    reference = torch.cat([-margin(defense(xs[s]), ys[s]) for s in chunks(len(xs), config.batch_size)]).double()
    divisor = torch.where(reference == 0, torch.ones_like(reference), reference.abs())
    changes = []
    for _ in range(config.unstable_draws):
        if threat.norm == "Linf":
            noise = (torch.rand(xs.shape, generator=generator) * 2 - 1) * radius
        else:
            u = torch.rand(len(xs), generator=generator).view(-1, *([1] * (xs.dim() - 1)))
            noise = random_direction(tuple(xs.shape), "L2", generator) * u * radius
        moved = (xs + noise.to(xs)).clamp(low, high)
        value = torch.cat([-margin(defense(moved[s]), ys[s]) for s in chunks(len(xs), config.batch_size)]).double()
        changes.append(((value - reference).abs() / divisor).clamp(max=1.0))
    relative = torch.stack(changes)  # (draws, n)
    metric = float(relative.mean())
    per_sample = relative.mean(0)
    status = "warn" if metric >= UNSTABLE_WARN else "pass"
    return [Finding("ioaf-unstable-predictions", status,
                    f"the margin loss changes by {100 * metric:.0f}% on average under random noise of radius eps/2",
                    {"n": len(xs), "seed": seed, "draws": config.unstable_draws, "radius": radius,
                     "metric": metric, "per_sample_quantiles": [float(q) for q in torch.quantile(
                         per_sample, torch.tensor([0.1, 0.5, 0.9], dtype=per_sample.dtype))]},
                    data={"per_sample": per_sample.tolist()})]


def _silent_and_incomplete(trace, correct: torch.Tensor, n: int, seed: int, steps: int) -> list[Finding]:
    failed = correct & ~trace.adversarial_last.cpu()
    # Silent success: some earlier iterate was adversarial, the returned (last) point is not.
    earlier = trace.adversarial[:-1].cpu().any(0)
    silent = failed & earlier
    failed_count = int(failed.sum())
    silent_count = int(silent.sum())
    silent_fraction = silent_count / max(failed_count, 1)
    status = "warn" if silent_count >= MIN_FLAGGED and silent_fraction >= SILENT_WARN_FRACTION else "pass"
    silent_finding = Finding(
        "ioaf-silent-success", status,
        f"on {silent_count} of {failed_count} samples the PGD run failed on, an earlier iterate was adversarial"
        if silent_count else f"no silent success among the {failed_count} samples the PGD run failed on",
        {"n": n, "seed": seed, "steps": steps, "failed_count": failed_count, "silent_count": silent_count,
         "silent_fraction": silent_fraction, "indices": silent.nonzero().flatten()[:20].tolist()})
    # Incomplete optimization: the attacker's loss (-CE) rescaled to [0, 1] per sample, made monotone (running
    # best), still moving by more than 0.05 over the last 10 iterates.
    attacker = -trace.losses.cpu().double()  # (steps + 1, n)
    lo, hi = attacker.amin(0), attacker.amax(0)
    rescaled = torch.where(hi > lo, (attacker - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(attacker))
    best = torch.cummin(rescaled, 0).values
    window = best[-min(INCOMPLETE_WINDOW, len(best)):]
    moving = (window.amax(0) - window.amin(0)) > INCOMPLETE_DELTA
    incomplete = failed & moving
    incomplete_count = int(incomplete.sum())
    fraction = incomplete_count / max(failed_count, 1)
    status = "warn" if incomplete_count >= MIN_FLAGGED and fraction >= INCOMPLETE_WARN_FRACTION else "pass"
    curve = (-attacker[:, failed]).mean(1) if failed_count else (-attacker).mean(1)
    incomplete_finding = Finding(
        "ioaf-incomplete-optimization", status,
        f"on {incomplete_count} of {failed_count} failed samples the loss was still improving after {steps} steps"
        if incomplete_count else f"the PGD loss had converged on all {failed_count} samples it failed on",
        {"n": n, "seed": seed, "steps": steps, "failed_count": failed_count, "incomplete_count": incomplete_count,
         "incomplete_fraction": fraction, "window": INCOMPLETE_WINDOW, "delta": INCOMPLETE_DELTA},
        data={"mean_ce_of_failed": curve.tolist()})
    return [silent_finding, incomplete_finding]


def check_pgd_indicators(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                         config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`ioaf-silent-success` and `ioaf-incomplete-optimization` from one tracking PGD run (exact gradients)."""
    config = config or DiagnosticsConfig()
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    steps = config.pgd_steps
    trace = pgd(defense, x, y, threat, steps=steps, step_size=2.5 * threat.eps / steps, seed=seed,
                batch_size=config.batch_size)
    return _silent_and_incomplete(trace, correct, len(x), seed, steps)


def surrogate_model(defense: Defense) -> tuple[torch.nn.Module | None, str]:
    """The differentiable model an attacker would substitute: MeanSparse's base model, or the model behind an
    input quantizer; None when the defense has no such part."""
    base = base_model_of(defense)
    if base is not None:
        return base, "base model (MeanSparse alpha = 0)"
    if isinstance(defense, InputQuantization):
        return defense.model, "model without input quantization"
    return None, ""


def check_transfer_failure(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                           config: DiagnosticsConfig | None = None) -> list[Finding]:
    """Points made adversarial on the surrogate model by PGD, judged on the defense's exact forward."""
    config = config or DiagnosticsConfig()
    source, description = surrogate_model(defense)
    if source is None:
        return [skipped("ioaf-transfer-failure", "the defense has no surrogate model to transfer from")]
    surrogate = Undefended(source)
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    steps = config.pgd_steps
    trace = pgd(surrogate, x, y, threat, steps=steps, step_size=2.5 * threat.eps / steps, seed=seed,
                batch_size=config.batch_size)
    on_surrogate = trace.adversarial_last.cpu() & correct
    wrong, _ = score(defense, trace.x_last, y.to(trace.x_last.device))
    failures = on_surrogate & ~wrong.cpu()
    made, failed = int(on_surrogate.sum()), int(failures.sum())
    if made == 0:
        return [skipped("ioaf-transfer-failure", "PGD found no adversarial point on the surrogate",
                        surrogate=description)]
    rate = failed / made
    status = "warn" if rate >= TRANSFER_FAILURE_WARN else "pass"
    return [Finding("ioaf-transfer-failure", status,
                    f"{failed} of {made} points adversarial on the {description} are not adversarial on the defense",
                    {"n": len(x), "seed": seed, "surrogate": description, "adversarial_on_surrogate": made,
                     "transfer_failures": failed, "failure_rate": rate,
                     "indices": failures.nonzero().flatten()[:20].tolist()})]


def check_unconstrained_failure(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                                config: DiagnosticsConfig | None = None) -> list[Finding]:
    """PGD from the clean point (no random start) with eps = inf: every clean-correct point must fall."""
    config = config or DiagnosticsConfig()
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    if not correct.any():
        return [skipped("ioaf-unconstrained-failure", "no clean-correct sample")]
    unbounded = ThreatModel(threat.norm, math.inf, threat.bounds)
    steps = config.unconstrained_steps
    trace = pgd(defense, x, y, unbounded, steps=steps, step_size=threat.eps, seed=seed, batch_size=config.batch_size)
    reached = trace.adversarial_any.cpu() | trace.adversarial_last.cpu()
    failures = correct & ~reached
    count, total = int(failures.sum()), int(correct.sum())
    fraction = count / total
    status = "fail" if fraction > UNCONSTRAINED_MAX_FAILURES else "pass"
    return [Finding("ioaf-unconstrained-failure", status,
                    f"PGD with eps = inf fails on {count} of {total} clean-correct samples" if count
                    else f"PGD with eps = inf misclassifies all {total} clean-correct samples",
                    {"n": len(x), "seed": seed, "steps": steps, "step_size": threat.eps, "failures": count,
                     "failure_fraction": fraction, "indices": failures.nonzero().flatten()[:20].tolist()})]
