"""Judging the Indicators of Attack Failure (`audit/probes/ioaf.py`). Pure functions of stored data."""

from __future__ import annotations

from typing import Any

import torch

from audit.checks.finding import Finding, skipped

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


def judge_unavailable_gradients(m: dict[str, Any]) -> list[Finding]:
    evidence = {"n": m["n"], "seed": m["seed"], "interrupted": bool(m["interrupted"]), "exception": m["exception"]}
    if m["interrupted"]:
        return [
            Finding(
                "ioaf-unavailable-gradients",
                "fail",
                f"the computational graph is interrupted: {m['interrupted']}",
                evidence,
            )
        ]
    if m["exception"]:
        return [
            Finding(
                "ioaf-unavailable-gradients",
                "fail",
                f"differentiating the loss raises {m['exception']}: {m['exception_message']}",
                evidence,
            )
        ]
    count = m["zero_gradient_count"]
    message = (
        f"{count} of {m['n']} samples have an all-zero gradient of the CE loss"
        if count
        else "gradients are available and non-zero on every sample"
    )
    return [
        Finding(
            "ioaf-unavailable-gradients",
            "fail" if count else "pass",
            message,
            {**evidence, "zero_gradient_count": count, "zero_gradient_indices": m["zero_gradient_indices"]},
        )
    ]


def judge_unstable_predictions(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return [skipped("ioaf-unstable-predictions", m["skipped"])]
    per_sample = torch.tensor(m["per_sample"], dtype=torch.float64)
    metric = float(per_sample.mean())
    status = "warn" if metric >= UNSTABLE_WARN else "pass"
    return [
        Finding(
            "ioaf-unstable-predictions",
            status,
            f"the margin loss changes by {100 * metric:.0f}% on average under random noise of radius eps/2",
            {
                "n": m["n"],
                "seed": m["seed"],
                "draws": m["draws"],
                "radius": m["radius"],
                "metric": metric,
                "per_sample_quantiles": [
                    float(q) for q in torch.quantile(per_sample, torch.tensor([0.1, 0.5, 0.9], dtype=per_sample.dtype))
                ],
            },
            data={"per_sample": m["per_sample"]},
        )
    ]


def judge_pgd_trace(m: dict[str, Any]) -> list[Finding]:
    """`ioaf-silent-success` and `ioaf-incomplete-optimization`."""
    n, seed, steps = m["n"], m["seed"], m["steps"]
    correct = torch.tensor(m["correct"], dtype=torch.bool)
    adversarial = torch.tensor(m["adversarial"], dtype=torch.bool)
    failed = correct & ~torch.tensor(m["adversarial_last"], dtype=torch.bool)
    # Silent success: some earlier iterate was adversarial, the returned (last) point is not.
    silent = failed & adversarial[:-1].any(0)
    failed_count, silent_count = int(failed.sum()), int(silent.sum())
    silent_fraction = silent_count / max(failed_count, 1)
    status = "warn" if silent_count >= MIN_FLAGGED and silent_fraction >= SILENT_WARN_FRACTION else "pass"
    silent_finding = Finding(
        "ioaf-silent-success",
        status,
        f"on {silent_count} of {failed_count} samples the PGD run failed on, an earlier iterate was adversarial"
        if silent_count
        else f"no silent success among the {failed_count} samples the PGD run failed on",
        {
            "n": n,
            "seed": seed,
            "steps": steps,
            "failed_count": failed_count,
            "silent_count": silent_count,
            "silent_fraction": silent_fraction,
            "indices": silent.nonzero().flatten()[:20].tolist(),
        },
    )
    # Incomplete optimization: the attacker's loss (-CE) rescaled to [0, 1] per sample, made monotone (running
    # best), still moving by more than 0.05 over the last 10 iterates.
    attacker = -torch.tensor(m["losses"], dtype=torch.float64)  # (steps + 1, n)
    lo, hi = attacker.amin(0), attacker.amax(0)
    rescaled = torch.where(hi > lo, (attacker - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(attacker))
    best = torch.cummin(rescaled, 0).values
    window = best[-min(INCOMPLETE_WINDOW, len(best)) :]
    moving = (window.amax(0) - window.amin(0)) > INCOMPLETE_DELTA
    incomplete = failed & moving
    incomplete_count = int(incomplete.sum())
    fraction = incomplete_count / max(failed_count, 1)
    status = "warn" if incomplete_count >= MIN_FLAGGED and fraction >= INCOMPLETE_WARN_FRACTION else "pass"
    curve = (-attacker[:, failed]).mean(1) if failed_count else (-attacker).mean(1)
    incomplete_finding = Finding(
        "ioaf-incomplete-optimization",
        status,
        f"on {incomplete_count} of {failed_count} failed samples the loss was still improving after {steps} steps"
        if incomplete_count
        else f"the PGD loss had converged on all {failed_count} samples it failed on",
        {
            "n": n,
            "seed": seed,
            "steps": steps,
            "failed_count": failed_count,
            "incomplete_count": incomplete_count,
            "incomplete_fraction": fraction,
            "window": INCOMPLETE_WINDOW,
            "delta": INCOMPLETE_DELTA,
        },
        data={"mean_ce_of_failed": curve.tolist()},
    )
    return [silent_finding, incomplete_finding]


def judge_transfer(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return [skipped("ioaf-transfer-failure", m["skipped"])]
    made, failed = m["adversarial_on_surrogate"], m["transfer_failures"]
    if made == 0:
        return [
            skipped(
                "ioaf-transfer-failure", "PGD found no adversarial point on the surrogate", surrogate=m["surrogate"]
            )
        ]
    rate = failed / made
    return [
        Finding(
            "ioaf-transfer-failure",
            "warn" if rate >= TRANSFER_FAILURE_WARN else "pass",
            f"{failed} of {made} points adversarial on the {m['surrogate']} are not adversarial on the defense",
            {**m, "failure_rate": rate},
        )
    ]


def judge_unconstrained(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return [skipped("ioaf-unconstrained-failure", m["skipped"])]
    count, total = m["failures"], m["correct"]
    fraction = count / total
    return [
        Finding(
            "ioaf-unconstrained-failure",
            "fail" if fraction > UNCONSTRAINED_MAX_FAILURES else "pass",
            f"PGD with eps = inf fails on {count} of {total} clean-correct samples"
            if count
            else f"PGD with eps = inf misclassifies all {total} clean-correct samples",
            {
                "n": m["n"],
                "seed": m["seed"],
                "steps": m["steps"],
                "step_size": m["step_size"],
                "failures": count,
                "failure_fraction": fraction,
                "indices": m["indices"],
            },
        )
    ]
