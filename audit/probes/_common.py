"""Helpers shared by the checks: losses, batched input gradients, and a small PGD loop that keeps its iterates.

The device follows the defense; every random draw comes from a `torch.Generator` seeded by the caller.
For a randomized defense with `reseed`, helpers that compare several forwards reseed it before each one, so the
comparison sees the same noise (common random numbers) and measures the model, not the dice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.threat_model import ThreatModel
from defenses.protocol import Defense


class GraphInterrupted(RuntimeError):
    """The input received no gradient at all: the forward is not connected to its input in autograd."""


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the best other logit, per sample (negative: misclassified)."""
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
    return true - others


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "margin":
        return -margin(logits, y)  # higher is better for the attacker, as for CE
    raise ValueError(f"loss must be 'ce' or 'margin', not {loss!r}")


def reseed(defense: Defense, seed: int) -> bool:
    """Reseed a randomized defense's noise if it lets us; True when the forward is now reproducible."""
    defense.reseed(seed)
    return True


def generator_for(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, max(size, 1))]


@torch.no_grad()
def losses(defense: Defense, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", batch_size: int = 100,
           seed: int | None = None) -> torch.Tensor:
    """Per-sample loss on the exact forward (one draw; with `seed`, reseeded before every batch, exactly as
    `input_gradient` does, so losses and gradients of a randomized defense see the same noise)."""
    out = []
    for s in chunks(len(x), batch_size):
        if seed is not None:
            reseed(defense, seed)
        out.append(per_sample_loss(defense(x[s]), y[s], loss))
    return torch.cat(out) if out else torch.empty(0)


def input_gradient(defense: Defense, x: torch.Tensor, y: torch.Tensor, surrogate: str = "exact",
                   temperature: float | None = None, loss: str = "ce", batch_size: int = 100,
                   seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of the per-sample loss w.r.t. the input, per-sample loss), batch by batch.

    Raises GraphInterrupted when autograd cannot reach the input (e.g. a forward that detaches it).
    """
    grads, values = [], []
    with defense.surrogate(surrogate, temperature):
        for s in chunks(len(x), batch_size):
            if seed is not None:
                reseed(defense, seed)
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


def step_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit size in `norm` (sign for Linf, normalized for L2; 0 stays 0)."""
    if norm == "Linf":
        return grad.sign()
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-20).view(-1, *([1] * (grad.dim() - 1)))
    return grad / norms


def random_direction(shape: tuple[int, ...], norm: str, generator: torch.Generator) -> torch.Tensor:
    """A random direction of unit size in `norm`: Rademacher signs for Linf, a normalized Gaussian for L2."""
    if norm == "Linf":
        return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
    d = torch.randn(shape, generator=generator)
    return d / d.flatten(1).norm(dim=1).clamp_min(1e-20).view(-1, *([1] * (len(shape) - 1)))


@dataclass
class PGDTrace:
    """What the tracking PGD loop saw: per iterate CE loss and success, and the point it returned (the last)."""

    x_last: torch.Tensor
    losses: torch.Tensor  # (steps + 1, n): CE at every iterate, the start included
    adversarial: torch.Tensor  # (steps + 1, n) bool: misclassified at that iterate (same forward as the loss)
    adversarial_last: torch.Tensor  # (n,) bool: the returned point, judged again on a fresh forward

    @property
    def adversarial_any(self) -> torch.Tensor:
        return self.adversarial.any(0)


def pgd(defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, steps: int, step_size: float,
        seed: int, surrogate: str = "exact", temperature: float | None = None, batch_size: int = 100) -> PGDTrace:
    """Plain PGD on CE from the clean point that returns its *last* iterate and records every iterate, as Pintor
    et al.'s indicators need (APGD keeps the best point, which hides exactly what they look for).

    A sample whose loss has no gradient (graph interrupted) simply does not move.
    """
    reseed(defense, seed)
    outs: list[PGDTrace] = []
    for s in chunks(len(x), batch_size):
        x0, yb = x[s], y[s]
        xa = x0.clone()
        trace_loss, trace_adv = [], []
        with defense.surrogate(surrogate, temperature):
            for _ in range(steps):
                xa = xa.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = defense(xa)
                    value = F.cross_entropy(logits, yb, reduction="none")
                    grad = None
                    if value.requires_grad:
                        (grad,) = torch.autograd.grad(value.sum(), xa, allow_unused=True)
                if grad is None:
                    grad = torch.zeros_like(xa)
                trace_loss.append(value.detach())
                trace_adv.append(logits.detach().argmax(1) != yb)
                xa = threat.project(xa.detach() + step_size * step_direction(torch.nan_to_num(grad), threat.norm), x0)
        with torch.no_grad():
            logits = defense(xa)
            trace_loss.append(F.cross_entropy(logits, yb, reduction="none"))
            trace_adv.append(logits.argmax(1) != yb)
            # A randomized defense judges the returned point on a fresh draw, as a user of the attack would.
            last = (defense(xa).argmax(1) != yb) if defense.randomized else trace_adv[-1]
        outs.append(PGDTrace(xa.detach(), torch.stack(trace_loss), torch.stack(trace_adv), last))
    return PGDTrace(torch.cat([o.x_last for o in outs]), torch.cat([o.losses for o in outs], 1),
                    torch.cat([o.adversarial for o in outs], 1), torch.cat([o.adversarial_last for o in outs]))


def clean_correct(defense: Defense, x: torch.Tensor, y: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([defense(x[s]).argmax(1) == y[s] for s in chunks(len(x), batch_size)])
