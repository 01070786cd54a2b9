"""Input gradients under the exact backward, on clean test inputs: are they there, finite, and do they describe
the loss?  Checks: `zero-gradients`, `nonfinite-gradients`, `dead-zone-occupancy`, `surrogate-disagreement`,
`finite-difference-mismatch`.

All take (defense, x, y, threat, *, seed, config) and return a list of findings.
"""
from __future__ import annotations

import logging

import torch

from attacks.threat_model import ThreatModel
from audit.diagnostics._common import (GraphInterrupted, chunks, flat_norms, generator_for, input_gradient, losses,
                                       quantiles, random_direction, reseed)
from audit.diagnostics.config import DiagnosticsConfig
from audit.diagnostics.finding import Finding, skipped, status_from
from defenses.meansparse import channel_view, meansparse_layers
from defenses.protocol import Defense

log = logging.getLogger(__name__)

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
# Both the finite difference and the directional derivative below this are "flat": no information either way.
FLAT = 1e-7
SHOWN_INDICES = 20


def _defaults(config: DiagnosticsConfig | None) -> DiagnosticsConfig:
    return config or DiagnosticsConfig()


def check_gradients(defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int = 0,
                    config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`zero-gradients` and `nonfinite-gradients`: the exact CE input gradient on clean inputs."""
    config = _defaults(config)
    try:
        grad, _ = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    except GraphInterrupted as error:
        return [
            Finding("zero-gradients", "fail", f"no gradient reaches the input ({error})",
                    {"n": len(x), "seed": seed, "graph_interrupted": True}),
            skipped("nonfinite-gradients", "no gradient reaches the input"),
        ]
    flat = grad.flatten(1)
    n = len(flat)
    finite = torch.isfinite(flat)
    zero = flat == 0
    zero_samples = zero.all(1)
    l2, linf = flat_norms(torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
    zero_count = int(zero_samples.sum())
    zero_elements = float(zero.float().mean())
    if zero_count >= ZERO_SAMPLES_FAIL:
        status = "fail"
        message = f"{zero_count} of {n} samples get an exactly-zero input gradient: gradient attacks cannot move them"
    elif zero_elements >= ZERO_ELEMENTS_WARN:
        status = "warn"
        message = f"{100 * zero_elements:.1f}% of input gradient entries are exactly zero"
    else:
        status = "pass"
        message = f"no sample has an all-zero input gradient ({100 * zero_elements:.2f}% of entries are zero)"
    zero_finding = Finding(
        "zero-gradients", status, message,
        {"n": n, "seed": seed, "zero_sample_count": zero_count, "zero_sample_fraction": zero_count / max(n, 1),
         "zero_sample_indices": zero_samples.nonzero().flatten()[:SHOWN_INDICES].tolist(),
         "zero_element_fraction": zero_elements, "l2_norm_quantiles": quantiles(l2),
         "linf_norm_quantiles": quantiles(linf)},
        data={"l2_norms": l2.tolist(), "linf_norms": linf.tolist()},
    )
    nan_elements = float(torch.isnan(flat).float().mean())
    inf_elements = float(torch.isinf(flat).float().mean())
    bad_samples = (~finite).any(1)
    bad_count = int(bad_samples.sum())
    nonfinite = Finding(
        "nonfinite-gradients", "fail" if bad_count else "pass",
        f"{bad_count} of {n} samples have NaN or Inf in their input gradient" if bad_count
        else "all input gradients are finite",
        {"n": n, "seed": seed, "nonfinite_sample_count": bad_count, "nan_element_fraction": nan_elements,
         "inf_element_fraction": inf_elements, "nonfinite_sample_indices": bad_samples.nonzero().flatten()[:SHOWN_INDICES].tolist()},
    )
    return [zero_finding, nonfinite]


@torch.no_grad()
def check_dead_zone(defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int = 0,
                    config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`dead-zone-occupancy`: per MeanSparse layer, the fraction of features inside |x - mean| < alpha * std."""
    config = _defaults(config)
    # Named as in the wrapped model, i.e. as in its checkpoint's keys.
    layers = meansparse_layers(getattr(defense, "model", defense))
    if not layers:
        return [skipped("dead-zone-occupancy", "the model has no MeanSparse layers")]
    inside = {name: 0 for name, _ in layers}
    total = {name: 0 for name, _ in layers}

    def hook_for(name: str):  # noqa: ANN202 - returns a torch hook
        def hook(module, inputs):  # noqa: ANN001 - torch hook
            features = inputs[0]
            total[name] += features.numel()
            if module.alpha == 0:
                return
            mean = channel_view(module.running_mean, features, module.layout)
            std = torch.sqrt(channel_view(module.running_var, features, module.layout))
            inside[name] += int((torch.abs(features - mean) < module.threshold * std).sum())
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(name)) for name, layer in layers]
    try:
        reseed(defense, seed)
        for s in chunks(len(x), config.batch_size):
            defense(x[s])
    finally:
        for handle in handles:
            handle.remove()
    names = [name for name, _ in layers]
    occupancy = [inside[name] / max(total[name], 1) for name in names]
    mean_occupancy = sum(occupancy) / len(occupancy)
    status = status_from(mean_occupancy, DEAD_ZONE_WARN, DEAD_ZONE_FAIL)
    alphas = sorted({layer.alpha for _, layer in layers})
    worst = names[max(range(len(names)), key=occupancy.__getitem__)]
    message = (f"{100 * mean_occupancy:.1f}% of MeanSparse features (mean over {len(names)} layers; max "
               f"{100 * max(occupancy):.1f}% in {worst}) sit in the dead zone, where the exact gradient is 0")
    return [Finding("dead-zone-occupancy", status, message,
                    {"n": len(x), "seed": seed, "alphas": alphas, "mean_occupancy": mean_occupancy,
                     "max_occupancy": max(occupancy), "max_layer": worst,
                     "per_layer": dict(zip(names, occupancy))},
                    data={"layers": names, "occupancy": occupancy})]


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine; 0 when exactly one is zero, NaN when both are (no direction to compare)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(1e-300)
    cos = torch.where((na == 0) ^ (nb == 0), torch.zeros_like(cos), cos)
    return torch.where((na == 0) & (nb == 0), torch.full_like(cos, float("nan")), cos)


def check_surrogate_agreement(defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                              seed: int = 0, config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`surrogate-disagreement`: cosine of the exact input gradient with each surrogate's (BPDA) gradient."""
    config = _defaults(config)
    others = [name for name in defense.surrogates if name != "exact"]
    if not others:
        return [skipped("surrogate-disagreement", f"{defense.description} offers no surrogate gradient")]
    exact, _ = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    per_surrogate, data = {}, {}
    for name in others:
        grad, _ = input_gradient(defense, x, y, surrogate=name, batch_size=config.batch_size, seed=seed)
        cos = _cosines(exact, grad)
        defined = cos[~torch.isnan(cos)]
        per_surrogate[name] = {
            "median_cosine": float(defined.median()) if defined.numel() else float("nan"),
            "cosine_quantiles": quantiles(defined), "undefined_count": int(torch.isnan(cos).sum()),
        }
        data[f"cosine_{name}"] = cos.tolist()
    # Judge on the straight-through surrogate when there is one: it is the standard BPDA choice, and with no
    # masking it coincides with the exact gradient; the smooth surrogate is reported alongside.
    judged = "identity" if "identity" in per_surrogate else others[0]
    median = per_surrogate[judged]["median_cosine"]
    if median != median:  # NaN: neither gradient has a direction on any sample
        status, message = "warn", f"neither the exact nor the {judged} gradient is non-zero on any sample"
    else:
        status = status_from(median, COSINE_WARN, COSINE_FAIL, higher_is_worse=False)
        message = f"median cosine between the exact and the {judged} (BPDA) input gradient is {median:.2f}"
    return [Finding("surrogate-disagreement", status, message,
                    {"n": len(x), "seed": seed, "judged_on": judged, "median_cosine": median,
                     "surrogates": per_surrogate}, data=data)]


def check_finite_differences(defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                             seed: int = 0, config: DiagnosticsConfig | None = None) -> list[Finding]:
    """`finite-difference-mismatch`: does the exact gradient predict how the loss changes along random directions?

    Central differences (L(x + h v) - L(x - h v)) / 2h against g.v, for a few random unit directions v per sample
    (signs for Linf, Gaussian for L2), h = fd_step * eps. Coordinates where x +- h v would leave the input bounds
    are left out of v, so clipping does not fake a mismatch.
    """
    config = _defaults(config)
    generator = generator_for(seed)
    h = config.fd_step * threat.eps
    grad, base = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    low, high = threat.bounds
    fd_all, gv_all = [], []
    for _ in range(config.fd_directions):
        v = random_direction(tuple(x.shape), threat.norm, generator).to(x)
        scale = h * v.abs()
        v = torch.where((x - scale < low) | (x + scale > high), torch.zeros_like(v), v)
        plus = losses(defense, x + h * v, y, batch_size=config.batch_size, seed=seed)
        minus = losses(defense, x - h * v, y, batch_size=config.batch_size, seed=seed)
        fd_all.append(((plus.double() - minus.double()) / (2 * h)).cpu())
        gv_all.append((grad.double() * v.double()).flatten(1).sum(1).cpu())
    fd, gv = torch.stack(fd_all, 1), torch.stack(gv_all, 1)  # (n, directions)
    fd_norm, gv_norm = fd.norm(dim=1), gv.norm(dim=1)
    scale = torch.maximum(fd_norm, gv_norm)
    flat = scale < FLAT
    error = torch.where(flat, torch.zeros_like(scale), (fd - gv).norm(dim=1) / scale.clamp_min(FLAT))
    informative = error[~flat]
    median = float(informative.median()) if informative.numel() else 0.0
    zero_predicted = int(((gv_norm < FLAT) & (fd_norm >= FLAT)).sum())
    status = status_from(median, FD_ERROR_WARN, FD_ERROR_FAIL) if informative.numel() else "warn"
    if informative.numel():
        message = (f"the exact gradient mispredicts the loss change along random directions by a median "
                   f"{100 * median:.0f}% (step {h:g})")
    else:
        message = "the loss does not change along any random direction at this step: no information"
    return [Finding("finite-difference-mismatch", status, message,
                    {"n": len(x), "seed": seed, "step": h, "directions": config.fd_directions,
                     "median_relative_error": median, "relative_error_quantiles": quantiles(informative),
                     "flat_samples": int(flat.sum()), "gradient_zero_loss_moves": zero_predicted},
                    data={"relative_error": error.tolist(), "finite_difference": fd.flatten().tolist(),
                          "directional_derivative": gv.flatten().tolist()})]
