"""The binarization test (Zimmermann, Brendel, Tramèr, Carlini, NeurIPS 2022): is an attack strong enough for
this defense?

For one clean point x0, keep the model's feature extractor (the input of its last Linear layer, found with a
forward hook, so an opaque model works too) and replace the head by a linear binary classifier trained on
features of
    inner points     x0 and uniform draws from the ball of radius eta * eps around it (label 0), and
    boundary points  draws on the surface of the eps-ball (and its corners, for Linf) (label 1).
When the trained head classifies x0 as inner and at least one boundary point - which lies inside the eps-ball -
as boundary, an adversarial example within eps provably exists for the binarized model. An attack that does not
find one on (nearly) every such point is too weak for this defense: its failures say nothing about robustness.

Per sample the probe stores: whether the construction is valid, the attack's success (judged by the attack
judge on the exact forward), the logit gap (boundary minus inner) at x0 and at the returned point, the head's
accuracy on fresh validation draws, and whether a random attacker already succeeds (any of `n_validation` draws
inside the ball or on its surface; the ball's corners are kept apart, as they are often adversarial themselves).
Written after the reference implementation (google-research/active-adversarial-tests,
active_tests/decision_boundary_binarization.py); our own code.

    data = run_binarization_probe(defense, images, labels, ThreatModel("Linf", 0.1), attack="apgd-ce")
    (finding,) = judge_binarization(data)       # audit/checks/binarization.py: pure, needs only `data`
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.judge import judge
from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.probes.config import DiagnosticsConfig
from defenses.protocol import Defense

log = logging.getLogger(__name__)

INNER_SHRINK = 0.95  # inner points lie within eta * eps (the reference's 1 - relative_inner_boundary_gap)


class BinarizationError(ValueError):
    """The model has no Linear layer to take features from, or bad settings."""


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last nn.Linear registered in the model (the classifier head of almost every architecture)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BinarizationError(f"{type(model).__name__} has no nn.Linear layer to take penultimate features from")
    return linears[-1]


class BinarizedDefense(Defense):
    """The defense's own forward (surrogates and all) up to its last Linear layer, then a 2-class linear head."""

    def __init__(self, defense: Defense, head: nn.Linear) -> None:
        super().__init__(defense, num_classes=2, name=f"{defense.name} (binarized)")
        self.defense, self.head = defense, head
        self.surrogates = tuple(defense.surrogates)
        self.randomized = defense.randomized
        _, self._linear = last_linear(defense.model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(features(self.defense, self._linear, x))

    @contextmanager
    def _surrogate_context(self, name: str, temperature: float | None) -> Iterator[None]:
        with self.defense.surrogate(name, temperature):
            yield


def features(defense: Defense, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The input of `linear` during the defense's forward on x."""
    seen: list[torch.Tensor] = []
    handle = linear.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    try:
        defense(x)
    finally:
        handle.remove()
    if not seen:
        raise BinarizationError("the model's last Linear layer was not called in its forward")
    return seen[-1].flatten(1)


def _inner_points(x0: torch.Tensor, n: int, threat: ThreatModel, generator: torch.Generator) -> torch.Tensor:
    shape = (n, *x0.shape)
    if threat.norm == "Linf":
        delta = (2 * torch.rand(shape, generator=generator) - 1) * INNER_SHRINK * threat.eps
    else:
        delta = torch.randn(shape, generator=generator)
        radius = torch.rand(n, generator=generator) ** (1 / x0.numel()) * INNER_SHRINK * threat.eps
        delta = delta / delta.flatten(1).norm(dim=1).view(-1, *[1] * x0.dim()) * radius.view(-1, *[1] * x0.dim())
    return (x0.cpu() + delta).clamp(*threat.bounds).to(x0.device)


def _boundary_points(
    x0: torch.Tensor, n: int, threat: ThreatModel, generator: torch.Generator, corners: bool = False
) -> torch.Tensor:
    """Points at distance eps (before clipping to the input bounds, which keeps them inside the ball)."""
    shape = (n, *x0.shape)
    if threat.norm == "Linf":
        if corners:
            delta = (torch.randint(0, 2, shape, generator=generator).float() * 2 - 1) * threat.eps
        else:
            delta = (2 * torch.rand(shape, generator=generator) - 1) * threat.eps
            flat = delta.view(n, -1)
            # One coordinate per point on the surface: the Linf norm is exactly eps.
            pick = torch.randint(0, flat.shape[1], (n,), generator=generator)
            sign = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
            flat[torch.arange(n), pick] = sign * threat.eps
    else:
        delta = torch.randn(shape, generator=generator)
        delta = delta / delta.flatten(1).norm(dim=1).view(-1, *[1] * x0.dim()) * threat.eps
    return (x0.cpu() + delta).clamp(*threat.bounds).to(x0.device)


def _train_head(f_inner: torch.Tensor, f_boundary: torch.Tensor, closeness: float, steps: int = 200) -> nn.Linear:
    """Logistic regression on standardised features (torch's L-BFGS: no extra dependency, stays on the device).

    Returns a 2-class head whose logit gap (class 1 minus class 0) is the regression's score, rescaled so its
    largest magnitude on the training points is 1 (the reference's "fixed" logit rescaling): the attack sees
    neither saturated nor vanishing logits. The bias is then moved `closeness` of the way towards the most
    boundary-like training point (the reference's `decision_boundary_closeness`): that point stays on the boundary
    side, so the adversarial example still provably exists, but random points in the ball rarely find it.
    """
    feats = torch.cat([f_inner, f_boundary]).detach().double()
    target = torch.cat([torch.zeros(len(f_inner)), torch.ones(len(f_boundary))]).to(feats)
    mean, std = feats.mean(0), feats.std(0).clamp_min(1e-6)
    z = (feats - mean) / std
    w = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device, requires_grad=True)
    b = torch.zeros((), dtype=z.dtype, device=z.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, target) + 1e-4 * w.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        weight, bias = w / std, b - (w / std * mean).sum()
        top = (feats[len(f_inner) :] @ weight + bias).max()
        if top > 0:
            bias = bias - closeness * top
        scale = (feats @ weight + bias).abs().max().clamp_min(1e-12)
        weight, bias = weight / scale, bias / scale
    head = nn.Linear(feats.shape[1], 2).to(f_inner.device, f_inner.dtype)
    with torch.no_grad():
        head.weight.copy_(torch.stack([-weight / 2, weight / 2]))
        head.bias.copy_(torch.stack([-bias / 2, bias / 2]))
    return head


def _gap(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, 1] - logits[:, 0]


@torch.no_grad()
def _batched(defense: Defense, linear: nn.Linear, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([features(defense, linear, x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def run_binarization_probe(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    attack: str | Attack = "apgd-ce",
    n_samples: int = 20,
    n_inner: int = 64,
    n_boundary: int = 64,
    n_validation: int = 128,
    closeness: float = 0.9,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the binarization test with `attack` on the first `n_samples` clean-correct images; plain JSON data."""
    if threat.unbounded:
        raise BinarizationError("the binarization test needs a finite eps")
    attack = make_attack(attack) if isinstance(attack, str) else attack
    if attack.threat_kind != "lp":
        raise BinarizationError(f"{attack.label} is not an Lp attack")
    device = defense.device
    layer_name, linear = last_linear(defense.model)
    with torch.no_grad():
        correct = (defense(images.to(device)).argmax(1) == labels.to(device)).cpu()
    chosen = correct.nonzero().flatten()[:n_samples].tolist()
    rows = []
    for index in tqdm(chosen, desc=f"binarization ({attack.label})", disable=not progress, leave=False):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        x0 = images[index].to(device)
        inner = torch.cat([x0[None], _inner_points(x0, n_inner - 1, threat, generator)])
        boundary = _boundary_points(
            x0,
            n_boundary,
            threat,
            generator,
        )
        f_inner, f_boundary = _batched(defense, linear, inner), _batched(defense, linear, boundary)
        head = _train_head(f_inner, f_boundary, closeness)
        binarized = BinarizedDefense(defense, head)
        with torch.no_grad():
            gap_inner, gap_boundary = _gap(head(f_inner)), _gap(head(f_boundary))
            val_inner = _inner_points(x0, n_validation, threat, generator)
            val_surface = _boundary_points(x0, n_validation, threat, generator)
            val_gap_inner = _gap(head(_batched(defense, linear, val_inner)))
            val_gap_boundary = _gap(head(_batched(defense, linear, val_surface)))
            if threat.norm == "Linf":  # the ball's corners: a second random attacker, often a strong one
                val_gap_corners = _gap(
                    head(_batched(defense, linear, _boundary_points(x0, n_validation, threat, generator, corners=True)))
                )
            else:
                val_gap_corners = val_gap_boundary
        # Valid: x0 is inner, and some point inside the eps-ball is boundary - an adversarial example exists.
        valid = bool(gap_inner[0] < 0) and bool((gap_boundary > 0).any())
        record = judge(
            attack, binarized, x0[None], torch.zeros(1, dtype=torch.long, device=device), threat, seed, [index]
        )
        rows.append(
            {
                "index": index,
                "label": int(labels[index]),
                "valid": valid,
                "attack_success": bool(record.success[0]),
                "clean_logit_gap": float(gap_inner[0]),
                "adversarial_logit_gap": float(-record.margin[0]),
                "train_accuracy": float(torch.cat([gap_inner < 0, gap_boundary > 0]).float().mean()),
                "validation_accuracy_inner": float((val_gap_inner < 0).float().mean()),
                "validation_accuracy_boundary": float((val_gap_boundary > 0).float().mean()),
                "random_success": bool((val_gap_boundary > 0).any() or (val_gap_inner > 0).any()),
                "random_success_corners": bool((val_gap_corners > 0).any()),
                "validation_accuracy_corners": float((val_gap_corners > 0).float().mean()),
            }
        )
        log.debug("binarization sample %d: %s", index, rows[-1])
    return {
        "attack": attack.label,
        "defense": defense.description,
        "feature_layer": layer_name,
        "threat_model": {"norm": threat.norm, "eps": threat.eps},
        "seed": seed,
        "n_inner": n_inner,
        "n_boundary": n_boundary,
        "n_validation": n_validation,
        "closeness": closeness,
        "samples": rows,
    }


def measure_binarization(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    """The probe as the audit runs it: the exact-gradient APGD-CE against `binarization_samples` binarized points."""
    try:
        return run_binarization_probe(
            defense, x, y, threat, attack="apgd-ce", n_samples=config.binarization_samples, seed=seed, progress=False
        )
    except BinarizationError as error:
        return {"skipped": str(error)}


__all__ = ["BinarizationError", "BinarizedDefense", "last_linear", "measure_binarization", "run_binarization_probe"]
