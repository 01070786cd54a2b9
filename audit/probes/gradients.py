"""Input gradients under the exact backward, on clean test inputs: are they there, finite, and do they describe
the loss? Measurements behind `zero-gradients`, `nonfinite-gradients`, `dead-zone-occupancy`,
`surrogate-disagreement`, `finite-difference-mismatch` (judged in `audit/checks/gradients.py`).

All take (defense, x, y, threat, *, seed, config) and return a plain-JSON measurement.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.threat_model import ThreatModel
from audit.checks.finding import plain
from audit.probes._common import (
    GraphInterrupted,
    chunks,
    flat_norms,
    generator_for,
    input_gradient,
    losses,
    quantiles,
)
from audit.probes.config import DiagnosticsConfig
from defenses.ensemble import ENSEMBLE
from defenses.meansparse import MeanSparse, channel_view, meansparse_layers
from defenses.protocol import Defense

SHOWN_INDICES = 20
# Both the finite difference and the directional derivative below this are "flat": no information either way.
FLAT = 1e-7


def measure_gradients(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """The exact CE input gradient on clean inputs: all-zero and non-finite samples, norms."""
    try:
        grad, _ = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    except GraphInterrupted as error:
        return {"n": len(x), "seed": seed, "graph_interrupted": str(error)}
    flat = grad.flatten(1)
    zero_samples = (flat == 0).all(1)
    bad_samples = (~torch.isfinite(flat)).any(1)
    l2, linf = flat_norms(torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
    return plain(
        {
            "n": len(flat),
            "seed": seed,
            "zero_sample_count": int(zero_samples.sum()),
            "zero_sample_indices": zero_samples.nonzero().flatten()[:SHOWN_INDICES],
            "zero_element_fraction": float((flat == 0).float().mean()),
            "l2_norm_quantiles": quantiles(l2),
            "linf_norm_quantiles": quantiles(linf),
            "l2_norms": l2,
            "linf_norms": linf,
            "nonfinite_sample_count": int(bad_samples.sum()),
            "nan_element_fraction": float(torch.isnan(flat).float().mean()),
            "inf_element_fraction": float(torch.isinf(flat).float().mean()),
            "nonfinite_sample_indices": bad_samples.nonzero().flatten()[:SHOWN_INDICES],
        }
    )


@torch.no_grad()
def measure_dead_zone(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Per MeanSparse layer, the fraction of features inside |x - mean| < alpha * std."""
    # Named as in the wrapped model, i.e. as in its checkpoint's keys.
    layers = meansparse_layers(getattr(defense, "model", defense))
    if not layers:
        return {"skipped": "the model has no MeanSparse layers"}
    inside = {name: 0 for name, _ in layers}
    total = {name: 0 for name, _ in layers}

    def hook_for(name: str) -> Any:  # returns a torch hook
        def hook(module: MeanSparse, inputs: tuple[torch.Tensor, ...]) -> None:
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
        defense.reseed(seed)
        for s in chunks(len(x), config.batch_size):
            defense(x[s])
    finally:
        for handle in handles:
            handle.remove()
    names = [name for name, _ in layers]
    return {
        "n": len(x),
        "seed": seed,
        "alphas": sorted({float(layer.alpha) for _, layer in layers}),
        "layers": names,
        "occupancy": [inside[name] / max(total[name], 1) for name in names],
    }


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine; 0 when exactly one is zero, NaN when both are (no direction to compare)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(1e-300)
    cos = torch.where((na == 0) ^ (nb == 0), torch.zeros_like(cos), cos)
    return torch.where((na == 0) & (nb == 0), torch.full_like(cos, float("nan")), cos)


def measure_surrogates(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Cosine of the exact input gradient with each surrogate's (BPDA) gradient, per sample."""
    # The ensemble is the mean of the other surrogates' gradients: its cosine says nothing theirs do not.
    others = [name for name in defense.surrogates if name not in ("exact", ENSEMBLE)]
    if not others:
        return {"skipped": f"{defense.description} offers no surrogate gradient"}
    exact, _ = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    cosines = {}
    for name in others:
        grad, _ = input_gradient(defense, x, y, surrogate=name, batch_size=config.batch_size, seed=seed)
        cosines[name] = _cosines(exact, grad)
    return plain({"n": len(x), "seed": seed, "cosines": cosines})


def measure_finite_differences(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """Central differences (L(x + h v) - L(x - h v)) / 2h against g.v, for a few random unit directions v per
    sample (signs for Linf, Gaussian for L2), h = fd_step * eps. Coordinates where x +- h v would leave the input
    bounds are left out of v, so clipping does not fake a mismatch. Also the loss's own rounding noise at x (the
    same forward twice, and the loss in float64 against the model's dtype), the floor below which a finite
    difference says nothing."""
    generator = generator_for(seed)
    h = config.fd_step * threat.eps
    grad, base = input_gradient(defense, x, y, batch_size=config.batch_size, seed=seed)
    low, high = threat.bounds
    fd_all, gv_all = [], []
    for _ in range(config.fd_directions):
        v = threat.random_direction(tuple(x.shape), generator).to(x)
        scale = h * v.abs()
        v = torch.where((x - scale < low) | (x + scale > high), torch.zeros_like(v), v)
        plus = losses(defense, x + h * v, y, batch_size=config.batch_size, seed=seed)
        minus = losses(defense, x - h * v, y, batch_size=config.batch_size, seed=seed)
        fd_all.append(((plus.double() - minus.double()) / (2 * h)).cpu())
        gv_all.append((grad.double() * v.double()).flatten(1).sum(1).cpu())
    fd, gv = torch.stack(fd_all, 1), torch.stack(gv_all, 1)  # (n, directions)
    # The noise floor: a finite difference cannot resolve loss changes below the loss's float resolution
    # (float32 ~1e-7 relative, bfloat16 ~1e-2), divided by the step 2h.
    resolution = torch.finfo(base.dtype).eps * base.abs().double().clamp_min(1e-12).cpu() / (2 * h)
    return plain(
        {
            "n": len(x),
            "seed": seed,
            "step": h,
            "directions": config.fd_directions,
            "finite_difference": fd,
            "directional_derivative": gv,
            "noise_floor": resolution,
            "loss_dtype": str(base.dtype).replace("torch.", ""),
        }
    )
