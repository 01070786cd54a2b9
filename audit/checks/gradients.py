"""Judging the gradient measurements (`audit/probes/gradients.py`): `zero-gradients`, `nonfinite-gradients`,
`dead-zone-occupancy`, `surrogate-disagreement`, `finite-difference-mismatch`. Pure functions of stored data."""

from __future__ import annotations

from typing import Any

import torch

from audit.checks.finding import Finding, skipped, status_from

# One sample whose whole input gradient is exactly zero is enough to fail: a gradient attack cannot move it at
# all (Pintor et al.'s "unavailable gradients"). A plain float32 network only gets there when the CE loss
# underflows, i.e. a logit margin above ~100, which trained networks do not reach on clean inputs.
ZERO_SAMPLES_FAIL = 1
# Half of the input pixels with an exactly-zero derivative is unusual for a conv net (every pixel reaches the
# logits through overlapping filters), but it may be legitimate (e.g. saturated pixels behind a clamp): warn.
ZERO_ELEMENTS_WARN = 0.5
# MeanSparse's dead zone: the fraction of features snapped to the mean, whose exact gradient is 0. The published
# alphas (0.10 - 0.30) put ~8 - 24% of roughly Gaussian features inside; we warn from 5% (the operator is
# zeroing gradients, the evaluation must use a surrogate) and fail from 50% (most of the features pass no
# gradient: exact-gradient attacks are then mostly blind).
DEAD_ZONE_WARN = 0.05
DEAD_ZONE_FAIL = 0.5
# Per-sample cosine between the exact and the surrogate input gradient, median over samples. With no masking
# the two coincide (cosine 1). Measured on the demo CNN (standard training, Fashion-MNIST): MeanSparse at
# alpha 0.15 gives a median of 0.95, at 0.35 0.91, at 1.0 0.56; a quantizer or a zero backward gives 0.
# Below 0.9 the exact gradient points elsewhere than the straight-through one (warn); below 0.7 the two are
# as often orthogonal as aligned and exact-gradient attacks follow a different landscape (fail).
COSINE_WARN = 0.9
COSINE_FAIL = 0.7
# Finite differences vs the gradient along random directions: per sample, ||fd - g.v|| / max(||fd||, ||g.v||)
# over the directions, median over samples. Measured at a step of eps/100 on the demo CNN: 0.08 undefended
# (ReLU kinks; 90th percentile 0.19), 0.05 with reseeded Gaussian noise, but 0.78 with MeanSparse at alpha 0.15
# (the forward jumps by alpha*std wherever a feature crosses the band edge, and the gradient does not see the
# jumps), and 1.0 for a quantizer or a zero backward. Warn from 0.3, fail from 0.6.
FD_ERROR_WARN = 0.3
FD_ERROR_FAIL = 0.6
# Both the finite difference and the directional derivative below this (or below the loss's own rounding noise,
# whichever is larger) are "flat": no information either way.
FLAT = 1e-7


def _quantiles(values: torch.Tensor, qs: tuple[float, ...] = (0.0, 0.1, 0.5, 0.9, 1.0)) -> dict[str, float | None]:
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return {f"q{int(q * 100)}": None for q in qs}
    return {f"q{int(q * 100)}": float(torch.quantile(values, q)) for q in qs}


def judge_gradients(m: dict[str, Any]) -> list[Finding]:
    if "graph_interrupted" in m:
        return [
            Finding(
                "zero-gradients",
                "fail",
                f"no gradient reaches the input ({m['graph_interrupted']})",
                {"n": m["n"], "seed": m["seed"], "graph_interrupted": True},
            ),
            skipped("nonfinite-gradients", "no gradient reaches the input"),
        ]
    n, zero_count, zero_elements = m["n"], m["zero_sample_count"], m["zero_element_fraction"]
    if zero_count >= ZERO_SAMPLES_FAIL:
        status = "fail"
        message = f"{zero_count} of {n} samples get an exactly-zero input gradient: gradient attacks cannot move them"
    elif zero_elements >= ZERO_ELEMENTS_WARN:
        status, message = "warn", f"{100 * zero_elements:.1f}% of input gradient entries are exactly zero"
    else:
        status = "pass"
        message = f"no sample has an all-zero input gradient ({100 * zero_elements:.2f}% of entries are zero)"
    keys = (
        "n",
        "seed",
        "zero_sample_count",
        "zero_sample_indices",
        "zero_element_fraction",
        "l2_norm_quantiles",
        "linf_norm_quantiles",
    )
    zero = Finding(
        "zero-gradients",
        status,
        message,
        {**{k: m[k] for k in keys}, "zero_sample_fraction": zero_count / max(n, 1)},
        data={"l2_norms": m["l2_norms"], "linf_norms": m["linf_norms"]},
    )
    bad = m["nonfinite_sample_count"]
    nonfinite = Finding(
        "nonfinite-gradients",
        "fail" if bad else "pass",
        f"{bad} of {n} samples have NaN or Inf in their input gradient" if bad else "all input gradients are finite",
        {
            k: m[k]
            for k in (
                "n",
                "seed",
                "nonfinite_sample_count",
                "nan_element_fraction",
                "inf_element_fraction",
                "nonfinite_sample_indices",
            )
        },
    )
    return [zero, nonfinite]


def judge_dead_zone(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return [skipped("dead-zone-occupancy", m["skipped"])]
    names, occupancy = m["layers"], m["occupancy"]
    mean_occupancy = sum(occupancy) / len(occupancy)
    status = status_from(mean_occupancy, DEAD_ZONE_WARN, DEAD_ZONE_FAIL)
    worst = names[max(range(len(names)), key=occupancy.__getitem__)]
    message = (
        f"{100 * mean_occupancy:.1f}% of MeanSparse features (mean over {len(names)} layers; max "
        f"{100 * max(occupancy):.1f}% in {worst}) sit in the dead zone, where the exact gradient is 0"
    )
    return [
        Finding(
            "dead-zone-occupancy",
            status,
            message,
            {
                "n": m["n"],
                "seed": m["seed"],
                "alphas": m["alphas"],
                "mean_occupancy": mean_occupancy,
                "max_occupancy": max(occupancy),
                "max_layer": worst,
                "per_layer": dict(zip(names, occupancy)),
            },
            data={"layers": names, "occupancy": occupancy},
        )
    ]


def judge_surrogates(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return [skipped("surrogate-disagreement", m["skipped"])]
    per_surrogate: dict[str, dict[str, Any]] = {}
    data: dict[str, Any] = {}
    for name, values in m["cosines"].items():
        cos = torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float64)
        defined = cos[~torch.isnan(cos)]
        per_surrogate[name] = {
            "median_cosine": float(defined.median()) if defined.numel() else None,
            "cosine_quantiles": _quantiles(defined),
            "undefined_count": int(torch.isnan(cos).sum()),
        }
        data[f"cosine_{name}"] = values
    # Judge on the straight-through surrogate when there is one: it is the standard BPDA choice, and with no
    # masking it coincides with the exact gradient; the smooth surrogate is reported alongside.
    judged = "identity" if "identity" in per_surrogate else next(iter(per_surrogate))
    median = per_surrogate[judged]["median_cosine"]
    if median is None:  # neither gradient has a direction on any sample
        status, message = "warn", f"neither the exact nor the {judged} gradient is non-zero on any sample"
    else:
        status = status_from(median, COSINE_WARN, COSINE_FAIL, higher_is_worse=False)
        message = f"median cosine between the exact and the {judged} (BPDA) input gradient is {median:.2f}"
    return [
        Finding(
            "surrogate-disagreement",
            status,
            message,
            {"n": m["n"], "seed": m["seed"], "judged_on": judged, "median_cosine": median, "surrogates": per_surrogate},
            data=data,
        )
    ]


def judge_finite_differences(m: dict[str, Any]) -> list[Finding]:
    fd = torch.tensor(m["finite_difference"], dtype=torch.float64)
    gv = torch.tensor(m["directional_derivative"], dtype=torch.float64)
    floor = torch.tensor(m["noise_floor"], dtype=torch.float64).clamp_min(FLAT)
    fd_norm, gv_norm = fd.norm(dim=1), gv.norm(dim=1)
    scale = torch.maximum(fd_norm, gv_norm)
    flat = scale < floor
    error = torch.where(flat, torch.zeros_like(scale), (fd - gv).norm(dim=1) / scale.clamp_min(FLAT))
    informative = error[~flat]
    median = float(informative.median()) if informative.numel() else 0.0
    zero_predicted = int(((gv_norm < floor) & (fd_norm >= floor)).sum())
    h = m["step"]
    if informative.numel():
        status = status_from(median, FD_ERROR_WARN, FD_ERROR_FAIL)
        message = (
            f"the exact gradient mispredicts the loss change along random directions by a median "
            f"{100 * median:.0f}% (step {h:g})"
        )
    else:
        status = "warn"
        message = "the loss does not change along any random direction beyond its rounding noise: no information"
    return [
        Finding(
            "finite-difference-mismatch",
            status,
            message,
            {
                "n": m["n"],
                "seed": m["seed"],
                "step": h,
                "directions": m["directions"],
                "median_relative_error": median,
                "relative_error_quantiles": _quantiles(informative),
                "flat_samples": int(flat.sum()),
                "gradient_zero_loss_moves": zero_predicted,
                "loss_dtype": m["loss_dtype"],
            },
            data={
                "relative_error": error.tolist(),
                "finite_difference": fd.flatten().tolist(),
                "directional_derivative": gv.flatten().tolist(),
            },
        )
    ]
