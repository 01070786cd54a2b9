"""Judging the loss landscape (`audit/probes/landscape.py`): `loss-landscape`.

A healthy landscape is smooth at the scale of eps: the loss rises along the gradient direction and varies
slowly along random ones. Masking shows up as flat plateaus (many exactly equal consecutive losses: quantized or
saturated outputs) or as rough, jagged profiles (shattered gradients).
"""

from __future__ import annotations

from typing import Any

import torch

from audit.checks.finding import Finding

# A profile step counts as "flat" when two consecutive losses are bit-for-bit equal. A continuous network almost
# never gives equal float32 losses at different inputs, so a mean fraction of 0.3 or more along any direction
# means plateaus (quantized inputs, saturated softmax, or a zero gradient whose sign is no direction at all).
FLAT_WARN = 0.3
# Sign changes of the first difference along one profile: a smooth 1-D slice of a CE loss over [-2eps, 2eps]
# goes down then up at most a couple of times; 4 or more on average along any direction means a jagged,
# shattered landscape. Measured on the demo CNN: 1.5 undefended, 2.5 with MeanSparse at alpha 0.35, 3.5 with
# (reseeded) Gaussian input noise, 6.6 with 3-bit input quantization, 8.6 with MeanSparse at alpha 1.0.
SIGN_CHANGES_WARN = 4.0
# Differences smaller than this fraction of the profile's range are treated as zero when counting sign changes,
# so float rounding on a nearly flat profile does not count as roughness.
RELATIVE_NOISE = 1e-4


def _profile_statistics(profiles: torch.Tensor) -> dict[str, torch.Tensor]:
    """profiles: (k, points). Flat-step fraction, sign changes of the first difference, normalised roughness."""
    diff = profiles[:, 1:] - profiles[:, :-1]
    span = (profiles.amax(1) - profiles.amin(1)).unsqueeze(1)
    flat = (diff == 0).float().mean(1)
    significant = diff.abs() > RELATIVE_NOISE * span.clamp_min(1e-30)
    signs = torch.where(significant, diff.sign(), torch.zeros_like(diff))
    changes = []
    for row in signs:
        nonzero = row[row != 0]
        changes.append(float((nonzero[1:] != nonzero[:-1]).sum()) if nonzero.numel() > 1 else 0.0)
    second = (diff[:, 1:] - diff[:, :-1]).abs().mean(1)
    roughness = torch.where(span.squeeze(1) > 0, second / span.squeeze(1).clamp_min(1e-30), torch.zeros_like(second))
    return {"flat_fraction": flat, "sign_changes": torch.tensor(changes), "roughness": roughness}


def judge_landscape(m: dict[str, Any]) -> list[Finding]:
    profiles = {name: torch.tensor(p, dtype=torch.float64) for name, p in m["profiles"].items()}
    stats = {name: _profile_statistics(p) for name, p in profiles.items()}
    per_direction = {name: {key: float(v.mean()) for key, v in s.items()} for name, s in stats.items()}
    # Judged on the worst direction: a zero gradient makes the gradient-sign profile flat while random
    # profiles look normal, and a quantizer may do the opposite; averaging would hide either.
    flat = max(d["flat_fraction"] for d in per_direction.values())
    changes = max(d["sign_changes"] for d in per_direction.values())
    roughness = max(d["roughness"] for d in per_direction.values())
    reasons = []
    if flat >= FLAT_WARN:
        reasons.append(f"{100 * flat:.0f}% of profile steps are exactly flat along some direction")
    if changes >= SIGN_CHANGES_WARN:
        reasons.append(f"profiles change direction {changes:.1f} times on average along some direction")
    status = "warn" if reasons else "pass"
    message = "loss landscape is " + (
        "stepwise or rough: " + "; ".join(reasons)
        if reasons
        else f"smooth around the inputs ({changes:.1f} direction changes per profile, {100 * flat:.0f}% flat steps)"
    )
    return [
        Finding(
            "loss-landscape",
            status,
            message,
            {
                "n": m["n"],
                "seed": m["seed"],
                "span_eps": m["span_eps"],
                "points": m["points"],
                "flat_fraction": flat,
                "sign_changes": changes,
                "roughness": roughness,
                "per_direction": per_direction,
            },
            data={"t_over_eps": m["t_over_eps"], "profiles": m["profiles"], "surface": m["surface"]},
        )
    ]
