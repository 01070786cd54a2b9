"""The loss around clean inputs, along the gradient sign and random directions: the measurement behind
`loss-landscape` (judged in `audit/checks/landscape.py`). The 1-D profiles and a small 2-D surface are kept for
plots.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.threat_model import ThreatModel
from audit.probes._common import GraphInterrupted, clean_correct, generator_for, input_gradient, losses
from audit.probes.config import DiagnosticsConfig
from defenses.protocol import Defense


def _loss_along(
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: torch.Tensor,
    ts: torch.Tensor,
    threat: ThreatModel,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """Loss at x + t * d (clipped to the bounds) for every t: (n, len(ts))."""
    low, high = threat.bounds
    out = []
    for t in ts.tolist():
        out.append(losses(defense, (x + t * directions).clamp(low, high), y, batch_size=batch_size, seed=seed))
    return torch.stack(out, 1).double().cpu()


def measure_landscape(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """1-D CE profiles over [-span*eps, span*eps] and a surface_points^2 surface around one input."""
    correct = clean_correct(defense, x, y, config.batch_size)
    order = torch.cat([correct.nonzero().flatten(), (~correct).nonzero().flatten()])[: config.landscape_samples]
    xs, ys = x[order], y[order]
    generator = generator_for(seed)
    defense.reseed(seed)
    try:
        grad, _ = input_gradient(defense, xs, ys, batch_size=config.batch_size, seed=seed)
    except GraphInterrupted:
        grad = torch.zeros_like(xs)
    directions = {"gradient": threat.steepest_step(grad)}
    for k in range(config.landscape_random_directions):
        directions[f"random{k + 1}"] = threat.random_direction(tuple(xs.shape), generator).to(xs)
    span = config.landscape_span * threat.eps
    ts = torch.linspace(-span, span, config.landscape_points)
    profiles = {
        name: _loss_along(defense, xs, ys, d, ts, threat, seed, config.batch_size) for name, d in directions.items()
    }
    # The 2-D surface: the first selected input, along its gradient sign and the first random direction.
    grid = torch.linspace(-span, span, config.surface_points)
    low, high = threat.bounds
    x0, y0 = xs[:1], ys[:1]
    d1 = directions["gradient"][:1]
    d2 = directions["random1"][:1] if "random1" in directions else d1
    points = torch.cat([(x0 + a * d1 + b * d2).clamp(low, high) for a in grid.tolist() for b in grid.tolist()])
    surface = losses(defense, points, y0.repeat(len(points)), batch_size=config.batch_size, seed=seed)
    surface = surface.view(len(grid), len(grid)).double().cpu()
    return {
        "n": len(xs),
        "seed": seed,
        "span_eps": config.landscape_span,
        "points": config.landscape_points,
        "t_over_eps": (ts / threat.eps).tolist(),
        "profiles": {name: p.tolist() for name, p in profiles.items()},
        "surface": {
            "axis_over_eps": (grid / threat.eps).tolist(),
            "directions": ["gradient", "random1"],
            "loss": surface.tolist(),
        },
    }
