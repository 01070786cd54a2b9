"""Sanity checks that run small extra attacks or probe the forward: `unbounded-attack`, `eps-sweep`,
`randomized`, `probabilities-not-logits`, `gradient-in-forward`, `train-mode`, `more-steps-help`.

The attacks go through `attacks.judge.judge`, so success is judged by the judge on the exact forward,
as everywhere else in the suite. Budgets are small and set in `DiagnosticsConfig`.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Iterator

import torch

from attacks.autoattack import APGD
from attacks.judge import judge
from attacks.threat_model import ThreatModel
from audit.diagnostics._common import chunks, clean_correct, reseed
from audit.diagnostics.config import DiagnosticsConfig
from audit.diagnostics.finding import Finding, skipped
from defenses.protocol import Defense

log = logging.getLogger(__name__)

# With the whole input box allowed, a working attack misclassifies every point (Athalye et al. 2018, Carlini et
# al. 2019). Fail when more than 1% of the clean-correct points survive (on 100 points: any one of them).
UNBOUNDED_MAX_SURVIVORS = 0.01
# Robust accuracy must not rise with eps (a bigger ball contains the smaller one). Allow 2 samples and 2 points
# of noise (randomized defenses, a different random start per eps) before calling it non-monotone.
MONOTONE_TOLERANCE_SAMPLES = 2
MONOTONE_TOLERANCE_POINTS = 2.0
# At the largest eps of the sweep (4 eps by default) adversarially trained models are near 0% (e.g. CIFAR-10
# Linf 32/255). Warn above 10%, fail above 50%: accuracy that does not fall as eps grows is a masking symptom.
EPS_TOP_WARN = 0.10
EPS_TOP_FAIL = 0.50
# Two forwards of a deterministic model on the same batch agree bit for bit on CPU; allow float noise (e.g.
# non-deterministic GPU kernels) up to 1e-5 of the logit scale before calling the forward random.
RANDOM_TOLERANCE = 1e-5
# Outputs are probabilities when every row is in [0, 1] and sums to 1 up to this tolerance.
PROBABILITY_TOLERANCE = 1e-3
# Logits of a batch and of its samples one by one must agree up to float noise; more than this (relative to
# the logit scale) means batch statistics in the forward (BatchNorm in train mode, or no running statistics).
BATCH_DEPENDENCE_TOLERANCE = 1e-3
BATCH_PROBE = 8
# More iterations keep helping: APGD-CE with the larger budget breaks at least 2 samples and 2 points more than
# with the smaller one. A warning only: it says the suite's budgets may be too small, not that gradients lie.
MORE_STEPS_WARN_COUNT = 2
MORE_STEPS_WARN_POINTS = 2.0


def _covering_eps(threat: ThreatModel, x: torch.Tensor) -> float:
    """The smallest eps whose ball covers the whole input box: unbounded in effect, finite for APGD."""
    low, high = threat.bounds
    width = float(high - low)
    return width if threat.norm == "Linf" else width * math.sqrt(x[0].numel())


def _robust(record, correct: torch.Tensor) -> torch.Tensor:
    return correct.cpu() & ~record.success.cpu()


def check_unbounded_attack(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                           config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`unbounded-attack`: exact APGD-CE with an eps that covers the whole input box must reach ~100%."""
    config = config or DiagnosticsConfig()
    correct = clean_correct(defense, x, y, config.batch_size)
    if not correct.any():
        return [skipped("unbounded-attack", "no clean-correct sample to attack")]
    eps = _covering_eps(threat, x)
    big = threat.with_eps(eps)
    attack = APGD(loss="ce", n_iter=config.apgd_iterations)
    index = correct.nonzero().flatten()
    record = judge(attack, defense, x[index], y[index], big, seed, index.tolist())
    survivors = int((~record.success).sum())
    fraction = survivors / len(index)
    status = "fail" if fraction > UNBOUNDED_MAX_SURVIVORS else "pass"
    message = (f"{survivors} of {len(index)} clean-correct samples survive APGD-CE with eps={eps:g} "
               f"(the whole input box): the attack, not the model, is failing" if survivors
               else f"APGD-CE with eps={eps:g} (the whole input box) misclassifies every clean-correct sample")
    return [Finding("unbounded-attack", status, message,
                    {"n": len(index), "seed": seed, "eps": eps, "iterations": config.apgd_iterations,
                     "survivors": survivors, "survivor_fraction": fraction,
                     "survivor_indices": index[~record.success.to(index.device)][:20].tolist()})]


def check_eps_sweep(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                    config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`eps-sweep`: robust accuracy at 0, eps/4 ... 4 eps with exact APGD-CE (and identity BPDA when offered)."""
    config = config or DiagnosticsConfig()
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    n = len(x)
    multipliers = sorted(set(config.eps_multipliers))
    surrogates = ["exact"] + (["identity"] if "identity" in defense.surrogates else [])
    curves: dict[str, list[float]] = {}
    for surrogate in surrogates:
        accuracy = [float(correct.float().mean())]
        for m in multipliers:
            attack = APGD(loss="ce", n_iter=config.apgd_iterations, surrogate=surrogate)
            record = judge(attack, defense, x, y, threat.with_eps(m * threat.eps), seed)
            accuracy.append(float(_robust(record, correct).float().mean()))
        curves[surrogate] = accuracy
    eps_values = [0.0] + [m * threat.eps for m in multipliers]
    tolerance = max(MONOTONE_TOLERANCE_SAMPLES / max(n, 1), MONOTONE_TOLERANCE_POINTS / 100)
    rises = {name: max((b - a for a, b in zip(c[:-1], c[1:])), default=0.0) for name, c in curves.items()}
    top = curves["exact"][-1]
    problems = []
    for name, rise in rises.items():
        if rise > tolerance:
            problems.append(f"{name}-gradient accuracy rises by {100 * rise:.1f} points as eps grows")
    if top > EPS_TOP_FAIL:
        problems.append(f"{100 * top:.0f}% accuracy remains at {multipliers[-1]:g} eps")
    if problems:
        status, message = "fail", "; ".join(problems)
    elif top > EPS_TOP_WARN:
        status = "warn"
        message = f"accuracy falls with eps but {100 * top:.0f}% remains at {multipliers[-1]:g} eps"
    else:
        status = "pass"
        message = f"accuracy falls monotonically with eps, to {100 * top:.0f}% at {multipliers[-1]:g} eps"
    return [Finding("eps-sweep", status, message,
                    {"n": n, "seed": seed, "iterations": config.apgd_iterations, "eps": eps_values,
                     "accuracy": curves, "largest_rise": rises, "accuracy_at_largest_eps": top},
                    data={"eps": eps_values, **{f"accuracy_{name}": c for name, c in curves.items()}})]


@torch.no_grad()
def check_randomized(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                     config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`randomized`: do repeated forwards of the same batch differ (AutoAttack's check, 5 passes)?"""
    config = config or DiagnosticsConfig()
    reseed(defense, seed)
    outputs = torch.stack([torch.cat([defense(x[s]) for s in chunks(len(x), config.batch_size)])
                           for _ in range(config.random_draws)]).float().cpu()
    spread = float((outputs - outputs[0]).abs().max())
    scale = float(outputs.abs().max())
    observed = spread > RANDOM_TOLERANCE * max(scale, 1.0)
    predictions = outputs.argmax(2)
    flips = (predictions != predictions[0]).any(0)
    evidence = {"n": len(x), "seed": seed, "draws": config.random_draws, "declared": bool(defense.randomized),
                "observed": observed, "max_logit_difference": spread, "mean_logit_std": float(outputs.std(0).mean()),
                "prediction_flip_count": int(flips.sum()), "prediction_flip_fraction": float(flips.float().mean())}
    if observed and not defense.randomized:
        return [Finding("randomized", "fail",
                        f"the forward is random ({int(flips.sum())} of {len(x)} predictions flip over "
                        f"{config.random_draws} passes) but the defense does not declare it: attacks ran without EOT",
                        evidence)]
    if observed:
        return [Finding("randomized", "warn",
                        f"randomized defense: {int(flips.sum())} of {len(x)} predictions flip over "
                        f"{config.random_draws} passes; attacks need EOT and scoring needs several draws", evidence)]
    if defense.randomized:
        return [Finding("randomized", "warn", f"declared randomized, yet {config.random_draws} passes agree exactly",
                        evidence)]
    return [Finding("randomized", "pass", f"{config.random_draws} forward passes agree exactly", evidence)]


@torch.no_grad()
def check_probabilities(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                        config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`probabilities-not-logits`: outputs in [0, 1] summing to 1 are a softmax, which flattens CE gradients."""
    config = config or DiagnosticsConfig()
    reseed(defense, seed)
    out = torch.cat([defense(x[s]) for s in chunks(len(x), config.batch_size)]).double().cpu()
    in_range = bool(((out >= -PROBABILITY_TOLERANCE) & (out <= 1 + PROBABILITY_TOLERANCE)).all())
    sums = out.sum(1)
    sums_to_one = bool(((sums - 1).abs() <= PROBABILITY_TOLERANCE).all())
    log_probabilities = bool((out <= PROBABILITY_TOLERANCE).all()) and bool(
        ((torch.logsumexp(out, 1)).abs() <= PROBABILITY_TOLERANCE).all())
    evidence = {"n": len(x), "outputs": out.shape[1], "num_classes": getattr(defense, "num_classes", None),
                "min": float(out.min()), "max": float(out.max()), "row_sum_quantiles": [float(sums.min()), float(sums.max())],
                "log_probabilities": log_probabilities}
    if in_range and sums_to_one:
        return [Finding("probabilities-not-logits", "fail",
                        "the model outputs probabilities (rows in [0, 1] summing to 1), not logits: CE on them "
                        "has vanishing gradients", evidence)]
    num_classes = getattr(defense, "num_classes", None)
    if num_classes is not None and out.shape[1] != num_classes:
        return [Finding("probabilities-not-logits", "warn",
                        f"the model outputs {out.shape[1]} scores but the defense declares {num_classes} classes",
                        evidence)]
    note = " (log-probabilities, which CE handles like logits)" if log_probabilities else ""
    return [Finding("probabilities-not-logits", "pass", f"outputs are unnormalised scores{note}", evidence)]


@contextmanager
def _record_autograd_calls(calls: list[str]) -> Iterator[None]:
    """Temporarily wrap torch.autograd.grad / torch.autograd.backward / Tensor.backward to record calls.

    Honest limits: code that bound `grad` before this ran (`from torch.autograd import grad`) or calls the C++
    engine directly is not seen; a forward that switches grad mode back on is caught separately.
    """
    originals = (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward)

    def wrap(name, function):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append(name)
            return function(*args, **kwargs)
        return wrapper

    torch.autograd.grad = wrap("torch.autograd.grad", originals[0])
    torch.autograd.backward = wrap("torch.autograd.backward", originals[1])
    torch.Tensor.backward = wrap("Tensor.backward", originals[2])
    try:
        yield
    finally:
        torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward = originals


def check_gradient_in_forward(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                              config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`gradient-in-forward` (AutoAttack's check_dynamic idea): does the forward itself take gradients?

    Runs one small forward under torch.no_grad with autograd's entry points recorded. A forward that computes
    gradients (test-time optimisation, purification by gradient steps) either calls them, or must switch grad
    mode back on (its output then requires grad under no_grad), or raises because it cannot.
    """
    calls: list[str] = []
    probe = x[: min(len(x), BATCH_PROBE)]
    error = None
    grad_inside = False
    reseed(defense, seed)
    with _record_autograd_calls(calls):
        try:
            with torch.no_grad():
                out = defense(probe)
            grad_inside = bool(out.requires_grad)
        except RuntimeError as caught:  # e.g. "element 0 of tensors does not require grad"
            error = f"{type(caught).__name__}: {str(caught).splitlines()[0][:200]}"
    evidence = {"n": len(probe), "autograd_calls": sorted(set(calls)), "call_count": len(calls),
                "output_requires_grad_under_no_grad": grad_inside, "error_under_no_grad": error}
    if calls or grad_inside or error:
        what = ("calls " + ", ".join(sorted(set(calls)))) if calls else (
            "re-enables gradients" if grad_inside else f"fails under torch.no_grad ({error})")
        return [Finding("gradient-in-forward", "fail",
                        f"the forward {what}: a dynamic defense, whose gradients attacks cannot trust", evidence)]
    return [Finding("gradient-in-forward", "pass", "the forward computes no gradients of its own", evidence)]


@torch.no_grad()
def check_train_mode(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                     config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`train-mode`: submodules left in training mode, or outputs that depend on the rest of the batch."""
    training = [name or "<root>" for name, module in defense.named_modules() if module.training]
    probe = x[: min(len(x), BATCH_PROBE)]
    difference = None
    if not defense.randomized and len(probe) > 1:
        together = defense(probe).float()
        alone = torch.cat([defense(probe[i : i + 1]) for i in range(len(probe))]).float()
        difference = float((together - alone).abs().max() / together.abs().max().clamp_min(1.0))
    batch_dependent = difference is not None and difference > BATCH_DEPENDENCE_TOLERANCE
    evidence = {"training_modules": training[:20], "training_module_count": len(training),
                "batch_dependence": difference, "batch_probe": len(probe)}
    if training or batch_dependent:
        parts = []
        if training:
            parts.append(f"{len(training)} modules are in training mode (e.g. {training[0]})")
        if batch_dependent:
            parts.append(f"a sample's logits change with the rest of its batch (relative {difference:.2g})")
        return [Finding("train-mode", "fail", "; ".join(parts), evidence)]
    note = "" if difference is not None else " (batch dependence not checked: randomized forward)"
    return [Finding("train-mode", "pass", f"all modules in eval mode, outputs independent of the batch{note}",
                    evidence)]


def check_more_steps(defense: Defense, x, y, threat: ThreatModel, *, seed: int = 0,
                     config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`more-steps-help`: APGD-CE with few vs many iterations on a small subset."""
    config = config or DiagnosticsConfig()
    x, y = x[: config.more_steps_samples], y[: config.more_steps_samples]
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    few, many = config.more_steps
    robust = {}
    for iterations in (few, many):
        record = judge(APGD(loss="ce", n_iter=iterations), defense, x, y, threat, seed)
        robust[iterations] = _robust(record, correct)
    gained = int((robust[few] & ~robust[many]).sum())
    lost = int((~robust[few] & robust[many]).sum())
    n = len(x)
    points = 100 * (float(robust[few].float().mean()) - float(robust[many].float().mean()))
    status = "warn" if gained >= MORE_STEPS_WARN_COUNT and points >= MORE_STEPS_WARN_POINTS else "pass"
    message = (f"APGD-CE with {many} iterations breaks {gained} more of {n} samples than with {few} "
               f"({points:.1f} points): check the suite's budgets converge" if status == "warn"
               else f"{many} APGD-CE iterations gain {points:.1f} points over {few} on {n} samples")
    return [Finding("more-steps-help", status, message,
                    {"n": n, "seed": seed, "iterations": [few, many],
                     "robust_accuracy": {str(few): float(robust[few].float().mean()),
                                         str(many): float(robust[many].float().mean())},
                     "gained_count": gained, "lost_count": lost, "gain_points": points})]
