"""Judging the sanity probes (`audit/probes/sanity.py`): `unbounded-attack`, `eps-sweep`, `randomized`,
`probabilities-not-logits`, `gradient-in-forward`, `train-mode`, `more-steps-help`. Pure functions of stored data."""

from __future__ import annotations

from typing import Any

from audit.checks.finding import Finding, skipped

# With the whole input box allowed, a working attack misclassifies every point (Athalye et al. 2018, Carlini et
# al. 2019). Fail when more than 1% of the clean-correct points survive (on 100 points: any one of them).
UNBOUNDED_MAX_SURVIVORS = 0.01
# Robust accuracy must not rise with eps (a bigger ball contains the smaller one). Allow 2 samples and 2 points
# of noise (randomized defenses, a different random start per eps) before calling it non-monotone.
MONOTONE_TOLERANCE_SAMPLES = 2
MONOTONE_TOLERANCE_POINTS = 2.0
# Accuracy must keep falling beyond eps. Relative, because an absolute level ("< 50% left at 4 eps") fails a sound
# model audited at a small eps, whose accuracy at 4 eps can still be high. Of the samples robust at eps, a sound
# model loses a large share by 4 eps; a model whose exact gradients are masked keeps nearly all (a gradient-
# killing layer keeps every one). Fail when 90% or more survive (and at least 10 samples were robust at eps), warn
# from 75%; docs/findings.md has the calibration table behind these lines.
EPS_KEPT_WARN = 0.75
EPS_KEPT_FAIL = 0.90
EPS_KEPT_MIN_SAMPLES = 10
# Two forwards of a deterministic model on the same batch agree bit for bit on CPU; allow float noise (e.g.
# non-deterministic GPU kernels) up to 1e-5 of the logit scale before calling the forward random.
RANDOM_TOLERANCE = 1e-5
# Outputs are probabilities when every row is in [0, 1] and sums to 1 up to this tolerance.
PROBABILITY_TOLERANCE = 1e-3
# Logits of a batch and of its samples one by one must agree up to float noise; more than this (relative to
# the logit scale) means batch statistics in the forward (BatchNorm in train mode, or no running statistics).
BATCH_DEPENDENCE_TOLERANCE = 1e-3
# More iterations keep helping: APGD-CE with the larger budget breaks at least 2 samples and 2 points more than
# with the smaller one. A warning only: it says the suite's budgets may be too small, not that gradients lie.
MORE_STEPS_WARN_COUNT = 2
MORE_STEPS_WARN_POINTS = 2.0


def judge_unbounded(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return [skipped("unbounded-attack", m["skipped"])]
    survivors, n, eps = m["survivors"], m["n"], m["eps"]
    fraction = survivors / n
    status = "fail" if fraction > UNBOUNDED_MAX_SURVIVORS else "pass"
    message = (
        f"{survivors} of {n} clean-correct samples survive APGD-CE with eps={eps:g} "
        f"(the whole input box): the attack, not the model, is failing"
        if survivors
        else f"APGD-CE with eps={eps:g} (the whole input box) misclassifies every clean-correct sample"
    )
    return [
        Finding(
            "unbounded-attack",
            status,
            message,
            {
                "n": n,
                "seed": m["seed"],
                "eps": eps,
                "iterations": m["iterations"],
                "survivors": survivors,
                "survivor_fraction": fraction,
                "survivor_indices": m["survivor_indices"][:20],
            },
        )
    ]


def judge_eps_sweep(m: dict[str, Any]) -> list[Finding]:
    n, multipliers, eps_values = m["n"], m["multipliers"], m["eps"]
    curves = {name: [sum(row) / max(n, 1) for row in rows] for name, rows in m["robust"].items()}
    tolerance = max(MONOTONE_TOLERANCE_SAMPLES / max(n, 1), MONOTONE_TOLERANCE_POINTS / 100)
    rises = {name: max((b - a for a, b in zip(c[:-1], c[1:])), default=0.0) for name, c in curves.items()}
    # Of the samples robust (exact gradients) at eps itself, the share still robust at the largest eps.
    exact = m["robust"]["exact"]
    at_eps = exact[1 + multipliers.index(1.0)] if 1.0 in multipliers else exact[1]
    at_top = exact[-1]
    robust_at_eps = sum(at_eps)
    kept = sum(a and b for a, b in zip(at_eps, at_top)) / robust_at_eps if robust_at_eps else 0.0
    top = curves["exact"][-1]
    problems = [
        f"{name}-gradient accuracy rises by {100 * rise:.1f} points as eps grows"
        for name, rise in rises.items()
        if rise > tolerance
    ]
    decided = robust_at_eps >= EPS_KEPT_MIN_SAMPLES
    if decided and kept >= EPS_KEPT_FAIL:
        problems.append(f"{100 * kept:.0f}% of the samples robust at eps are still robust at {multipliers[-1]:g} eps")
    if problems:
        status, message = "fail", "; ".join(problems)
    elif decided and kept >= EPS_KEPT_WARN:
        status = "warn"
        message = (
            f"accuracy falls with eps, but {100 * kept:.0f}% of the samples robust at eps survive "
            f"{multipliers[-1]:g} eps"
        )
    else:
        status = "pass"
        message = (
            f"accuracy falls with eps, to {100 * top:.0f}% at {multipliers[-1]:g} eps ({100 * kept:.0f}% of "
            f"the samples robust at eps survive there)"
        )
    return [
        Finding(
            "eps-sweep",
            status,
            message,
            {
                "n": n,
                "seed": m["seed"],
                "iterations": m["iterations"],
                "eps": eps_values,
                "accuracy": curves,
                "largest_rise": rises,
                "accuracy_at_largest_eps": top,
                "robust_at_eps": robust_at_eps,
                "kept_at_largest_eps": kept,
            },
            data={"eps": eps_values, **{f"accuracy_{name}": c for name, c in curves.items()}},
        )
    ]


def judge_randomized(m: dict[str, Any]) -> list[Finding]:
    observed = m["max_logit_difference"] > RANDOM_TOLERANCE * max(m["logit_scale"], 1.0)
    flips, n, draws = m["prediction_flip_count"], m["n"], m["draws"]
    evidence = {**m, "observed": observed, "prediction_flip_fraction": flips / max(n, 1)}
    if observed and not m["declared"]:
        return [
            Finding(
                "randomized",
                "fail",
                f"the forward is random ({flips} of {n} predictions flip over {draws} passes) but the "
                f"defense does not declare it: attacks ran without EOT",
                evidence,
            )
        ]
    if observed:
        return [
            Finding(
                "randomized",
                "warn",
                f"randomized defense: {flips} of {n} predictions flip over {draws} passes; attacks need EOT "
                f"and scoring needs several draws",
                evidence,
            )
        ]
    if m["declared"]:
        return [Finding("randomized", "warn", f"declared randomized, yet {draws} passes agree exactly", evidence)]
    return [Finding("randomized", "pass", f"{draws} forward passes agree exactly", evidence)]


def judge_probabilities(m: dict[str, Any]) -> list[Finding]:
    in_range = m["min"] >= -PROBABILITY_TOLERANCE and m["max"] <= 1 + PROBABILITY_TOLERANCE
    sums_to_one = m["max_row_sum_error"] <= PROBABILITY_TOLERANCE
    log_probabilities = m["max"] <= PROBABILITY_TOLERANCE and m["max_logsumexp"] <= PROBABILITY_TOLERANCE
    evidence = {
        "n": m["n"],
        "outputs": m["outputs"],
        "num_classes": m["num_classes"],
        "min": m["min"],
        "max": m["max"],
        "row_sum_quantiles": m["row_sum_range"],
        "log_probabilities": log_probabilities,
    }
    if in_range and sums_to_one:
        return [
            Finding(
                "probabilities-not-logits",
                "fail",
                "the model outputs probabilities (rows in [0, 1] summing to 1), not logits: CE on them "
                "has vanishing gradients",
                evidence,
            )
        ]
    if m["num_classes"] is not None and m["outputs"] != m["num_classes"]:
        return [
            Finding(
                "probabilities-not-logits",
                "warn",
                f"the model outputs {m['outputs']} scores but the defense declares {m['num_classes']} classes",
                evidence,
            )
        ]
    note = " (log-probabilities, which CE handles like logits)" if log_probabilities else ""
    return [Finding("probabilities-not-logits", "pass", f"outputs are unnormalised scores{note}", evidence)]


def judge_gradient_in_forward(m: dict[str, Any]) -> list[Finding]:
    calls, grad_inside, error = m["autograd_calls"], m["output_requires_grad_under_no_grad"], m["error_under_no_grad"]
    if calls or grad_inside or error:
        what = (
            ("calls " + ", ".join(calls))
            if calls
            else ("re-enables gradients" if grad_inside else f"fails under torch.no_grad ({error})")
        )
        return [
            Finding(
                "gradient-in-forward",
                "fail",
                f"the forward {what}: a dynamic defense, whose gradients attacks cannot trust",
                m,
            )
        ]
    return [Finding("gradient-in-forward", "pass", "the forward computes no gradients of its own", m)]


def judge_train_mode(m: dict[str, Any]) -> list[Finding]:
    training, difference = m["training_modules"], m["batch_dependence"]
    batch_dependent = difference is not None and difference > BATCH_DEPENDENCE_TOLERANCE
    if training or batch_dependent:
        parts = []
        if training:
            parts.append(f"{m['training_module_count']} modules are in training mode (e.g. {training[0]})")
        if batch_dependent:
            parts.append(f"a sample's logits change with the rest of its batch (relative {difference:.2g})")
        return [Finding("train-mode", "fail", "; ".join(parts), m)]
    note = "" if difference is not None else " (batch dependence not checked: randomized forward)"
    return [Finding("train-mode", "pass", f"all modules in eval mode, outputs independent of the batch{note}", m)]


def judge_more_steps(m: dict[str, Any]) -> list[Finding]:
    few, many = m["iterations"]
    robust_few, robust_many = m["robust"][str(few)], m["robust"][str(many)]
    n = m["n"]
    gained = sum(a and not b for a, b in zip(robust_few, robust_many))
    lost = sum(b and not a for a, b in zip(robust_few, robust_many))
    accuracy = {str(few): sum(robust_few) / max(n, 1), str(many): sum(robust_many) / max(n, 1)}
    points = 100 * (accuracy[str(few)] - accuracy[str(many)])
    status = "warn" if gained >= MORE_STEPS_WARN_COUNT and points >= MORE_STEPS_WARN_POINTS else "pass"
    message = (
        f"APGD-CE with {many} iterations breaks {gained} more of {n} samples than with {few} "
        f"({points:.1f} points): check the suite's budgets converge"
        if status == "warn"
        else f"{many} APGD-CE iterations gain {points:.1f} points over {few} on {n} samples"
    )
    return [
        Finding(
            "more-steps-help",
            status,
            message,
            {
                "n": n,
                "seed": m["seed"],
                "iterations": [few, many],
                "robust_accuracy": accuracy,
                "gained_count": gained,
                "lost_count": lost,
                "gain_points": points,
            },
        )
    ]
