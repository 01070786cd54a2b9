"""Helpers shared by the probes: batched losses and input gradients, and the suite's PGD run batch by batch.

The device follows the defense; every random draw comes from a `torch.Generator` seeded by the caller.
For a randomized defense with `reseed`, helpers that compare several forwards reseed it before each one, so the
comparison sees the same noise (common random numbers) and measures the model, not the dice.
"""

from __future__ import annotations

import torch

from attacks.losses import per_sample_loss
from attacks.pgd import PGDTrace
from attacks.pgd import pgd as attack_pgd
from attacks.threat_model import ThreatModel
from defenses.protocol import Defense


class GraphInterrupted(RuntimeError):
    """The input received no gradient at all: the forward is not connected to its input in autograd."""


def generator_for(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, max(size, 1))]


@torch.no_grad()
def losses(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", batch_size: int = 100, seed: int | None = None
) -> torch.Tensor:
    """Per-sample loss on the exact forward (one draw; with `seed`, reseeded before every batch, exactly as
    `input_gradient` does, so losses and gradients of a randomized defense see the same noise)."""
    out = []
    for s in chunks(len(x), batch_size):
        if seed is not None:
            defense.reseed(seed)
        out.append(per_sample_loss(defense(x[s]), y[s], loss))
    return torch.cat(out) if out else torch.empty(0)


def input_gradient(
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    surrogate: str = "exact",
    temperature: float | None = None,
    loss: str = "ce",
    batch_size: int = 100,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of the per-sample loss w.r.t. the input, per-sample loss), batch by batch.

    Raises GraphInterrupted when autograd cannot reach the input (e.g. a forward that detaches it).
    """
    grads, values = [], []
    with defense.surrogate(surrogate, temperature):
        for s in chunks(len(x), batch_size):
            if seed is not None:
                defense.reseed(seed)
            xi = x[s].detach().clone().requires_grad_(True)
            with torch.enable_grad():
                value = per_sample_loss(defense(xi), y[s], loss)
                if not value.requires_grad:
                    raise GraphInterrupted("the loss does not depend on the input in autograd (no grad_fn)")
                (grad,) = torch.autograd.grad(value.sum(), xi, allow_unused=True)
            if grad is None:
                raise GraphInterrupted("autograd returned no gradient for the input")
            grads.append(grad.detach())
            values.append(value.detach())
    return torch.cat(grads), torch.cat(values)


def flat_norms(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = t.flatten(1)
    return flat.norm(p=2, dim=1), flat.abs().amax(dim=1)


def quantiles(values: torch.Tensor, qs: tuple[float, ...] = (0.0, 0.1, 0.5, 0.9, 1.0)) -> dict[str, float]:
    values = values.detach().double().flatten().cpu()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return {f"q{int(q * 100)}": float("nan") for q in qs}
    return {f"q{int(q * 100)}": float(torch.quantile(values, q)) for q in qs}


def pgd(
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    steps: int,
    step_size: float,
    seed: int,
    batch_size: int = 100,
) -> tuple[PGDTrace, torch.Tensor]:
    """The suite's PGD (`attacks.pgd`) from the clean point on exact gradients, batch by batch, every iterate
    recorded; also whether the returned point is adversarial, judged again on a fresh draw for a randomized defense
    (as a user of the attack would)."""
    defense.reseed(seed)
    traces, last = [], []
    for s in chunks(len(x), batch_size):
        trace = attack_pgd(defense, x[s], y[s], threat, steps, step_size, record=True)
        traces.append(trace)
        with torch.no_grad():
            last.append(defense(trace.x_last).argmax(1) != y[s] if defense.randomized else trace.adversarial[-1])
    return (
        PGDTrace(
            torch.cat([t.x_last for t in traces]),
            torch.cat([t.losses for t in traces], 1),
            torch.cat([t.adversarial for t in traces], 1),
        ),
        torch.cat(last),
    )


def clean_correct(defense: Defense, x: torch.Tensor, y: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([defense(x[s]).argmax(1) == y[s] for s in chunks(len(x), batch_size)])
