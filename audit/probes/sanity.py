"""Sanity probes that run small extra attacks or look at the forward: the measurements behind `unbounded-attack`,
`eps-sweep`, `randomized`, `probabilities-not-logits`, `gradient-in-forward`, `train-mode`, `more-steps-help`
(judged in `audit/checks/sanity.py`).

The attacks go through `attacks.judge.judge`, so success is decided on the exact forward, as everywhere else in
the suite. Budgets are small and set in `DiagnosticsConfig`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from attacks.autoattack import APGD
from attacks.judge import judge
from attacks.threat_model import ThreatModel
from audit.probes._common import chunks, clean_correct
from audit.probes.config import DiagnosticsConfig
from defenses.protocol import Defense

# A forward on this many samples, together and one by one, tells whether outputs depend on the batch.
BATCH_PROBE = 8


def measure_unbounded(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Exact APGD-CE with an eps that covers the whole input box, on the clean-correct samples."""
    correct = clean_correct(defense, x, y, config.batch_size)
    if not correct.any():
        return {"skipped": "no clean-correct sample to attack"}
    eps = threat.covering_eps(x)
    index = correct.nonzero().flatten()
    record = judge(
        APGD(loss="ce", n_iter=config.apgd_iterations),
        defense,
        x[index],
        y[index],
        threat.with_eps(eps),
        seed,
        index.tolist(),
    )
    survived = index[~record.success.to(index.device)]
    return {
        "n": len(index),
        "seed": seed,
        "eps": eps,
        "iterations": config.apgd_iterations,
        "survivors": len(survived),
        "survivor_indices": survived.tolist(),
    }


def measure_eps_sweep(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Per-sample robustness at 0, eps/4 ... 4 eps with exact APGD-CE (and identity BPDA when offered)."""
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    multipliers = sorted(set(config.eps_multipliers))
    surrogates = ["exact"] + (["identity"] if "identity" in defense.surrogates else [])
    robust: dict[str, list[list[bool]]] = {}
    for surrogate in surrogates:
        rows = [correct.tolist()]
        for m in multipliers:
            attack = APGD(loss="ce", n_iter=config.apgd_iterations, surrogate=surrogate)
            record = judge(attack, defense, x, y, threat.with_eps(m * threat.eps), seed)
            rows.append((correct & ~record.success.cpu()).tolist())
        robust[surrogate] = rows
    return {
        "n": len(x),
        "seed": seed,
        "iterations": config.apgd_iterations,
        "multipliers": multipliers,
        "eps": [0.0] + [m * threat.eps for m in multipliers],
        "robust": robust,
    }


@torch.no_grad()
def measure_randomized(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Repeated forwards of the same batch (AutoAttack's check uses 5): how far apart are they?"""
    defense.reseed(seed)
    outputs = (
        torch.stack(
            [torch.cat([defense(x[s]) for s in chunks(len(x), config.batch_size)]) for _ in range(config.random_draws)]
        )
        .float()
        .cpu()
    )
    predictions = outputs.argmax(2)
    flips = (predictions != predictions[0]).any(0)
    return {
        "n": len(x),
        "seed": seed,
        "draws": config.random_draws,
        "declared": bool(defense.randomized),
        "max_logit_difference": float((outputs - outputs[0]).abs().max()),
        "logit_scale": float(outputs.abs().max()),
        "mean_logit_std": float(outputs.std(0).mean()),
        "prediction_flip_count": int(flips.sum()),
    }


@torch.no_grad()
def measure_probabilities(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """The range and row sums of the outputs: probabilities sum to one, log-probabilities log-sum-exp to zero."""
    defense.reseed(seed)
    out = torch.cat([defense(x[s]) for s in chunks(len(x), config.batch_size)]).double().cpu()
    sums = out.sum(1)
    return {
        "n": len(x),
        "outputs": out.shape[1],
        "num_classes": getattr(defense, "num_classes", None),
        "min": float(out.min()),
        "max": float(out.max()),
        "row_sum_range": [float(sums.min()), float(sums.max())],
        "max_row_sum_error": float((sums - 1).abs().max()),
        "max_logsumexp": float(torch.logsumexp(out, 1).abs().max()),
    }


@contextmanager
def _record_autograd_calls(calls: list[str]) -> Iterator[None]:
    """Temporarily wrap torch.autograd.grad / torch.autograd.backward / Tensor.backward to record calls.

    Honest limits: code that bound `grad` before this ran (`from torch.autograd import grad`) or calls the C++
    engine directly is not seen; a forward that switches grad mode back on is caught separately.
    """
    originals = (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward)

    def wrap(name: str, function: Any) -> Any:  # wraps torch callables of any signature
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # passes any arguments through
            calls.append(name)
            return function(*args, **kwargs)

        return wrapper

    # patched on purpose, restored below; mypy forbids assigning to a method
    torch.autograd.grad = wrap("torch.autograd.grad", originals[0])
    torch.autograd.backward = wrap("torch.autograd.backward", originals[1])
    torch.Tensor.backward = wrap("Tensor.backward", originals[2])  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward = originals  # type: ignore[method-assign]


def measure_gradient_in_forward(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """One small forward under torch.no_grad with autograd's entry points recorded (AutoAttack's check_dynamic
    idea). A forward that computes gradients (test-time optimisation, purification by gradient steps) either calls
    them, or must switch grad mode back on (its output then requires grad under no_grad), or raises."""
    calls: list[str] = []
    probe = x[: min(len(x), BATCH_PROBE)]
    error = None
    grad_inside = False
    defense.reseed(seed)
    with _record_autograd_calls(calls):
        try:
            with torch.no_grad():
                out = defense(probe)
            grad_inside = bool(out.requires_grad)
        except RuntimeError as caught:  # e.g. "element 0 of tensors does not require grad"
            error = f"{type(caught).__name__}: {str(caught).splitlines()[0][:200]}"
    return {
        "n": len(probe),
        "autograd_calls": sorted(set(calls)),
        "call_count": len(calls),
        "output_requires_grad_under_no_grad": grad_inside,
        "error_under_no_grad": error,
    }


@torch.no_grad()
def measure_train_mode(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Submodules left in training mode, and how much a sample's logits change with the rest of its batch."""
    training = [name or "<root>" for name, module in defense.named_modules() if module.training]
    probe = x[: min(len(x), BATCH_PROBE)]
    difference = None
    if not defense.randomized and len(probe) > 1:
        together = defense(probe).float()
        alone = torch.cat([defense(probe[i : i + 1]) for i in range(len(probe))]).float()
        difference = float((together - alone).abs().max() / together.abs().max().clamp_min(1.0))
    return {
        "training_modules": training[:20],
        "training_module_count": len(training),
        "batch_dependence": difference,
        "batch_probe": len(probe),
    }


def measure_more_steps(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Per-sample robustness under APGD-CE with few and with many iterations, on a small subset."""
    x, y = x[: config.more_steps_samples], y[: config.more_steps_samples]
    correct = clean_correct(defense, x, y, config.batch_size).cpu()
    few, many = config.more_steps
    robust = {}
    for iterations in (few, many):
        record = judge(APGD(loss="ce", n_iter=iterations), defense, x, y, threat, seed)
        robust[str(iterations)] = (correct & ~record.success.cpu()).tolist()
    return {"n": len(x), "seed": seed, "iterations": [few, many], "robust": robust}
