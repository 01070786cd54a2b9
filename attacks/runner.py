"""The runner: runs one attack on one batch and decides, itself, what the attack achieved.

It wraps the defense for counting, sets the attack's surrogate backward, derives the seed, then projects the
proposals into the threat model (with a float tolerance; anything further out is counted as a violation and
projected) and re-scores them with the defense's exact forward. For a randomized defense a point counts as
adversarial if it is misclassified on *any* of `draws` forward passes (robust only if correct on every draw).
"""
from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import torch

from attacks.base import Attack
from attacks.counting import CountingModel
from attacks.threat_model import ThreatModel
from defenses.protocol import Defense

log = logging.getLogger(__name__)
DEFAULT_DRAWS = 10


@dataclass
class AttackRecord:
    """Per-sample results of one attack on one batch, as decided by the runner."""

    attack: str
    indices: list[int]
    success: torch.Tensor  # bool (n,)
    distance: torch.Tensor  # float (n,), in the threat model's norm (0 where the input was already wrong)
    margin: torch.Tensor  # float (n,): true logit minus best other logit on the exact forward (min over draws)
    n_forward: torch.Tensor  # float (n,): forward images spent on this batch, divided over its samples
    n_backward: torch.Tensor
    seconds: torch.Tensor
    x_adv: torch.Tensor
    violations: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def derive_seed(seed: int, *parts: object) -> int:
    """A stable per-(attack, batch) seed, so results do not depend on what ran before."""
    return (seed * 1_000_003 + zlib.crc32("/".join(map(str, parts)).encode())) % (2**31 - 1)


@torch.no_grad()
def exact_logits(defense: Defense, x: torch.Tensor, draws: int = DEFAULT_DRAWS, batch_size: int = 1000) -> torch.Tensor:
    """Exact forward; for a randomized defense, `draws` stacked passes (draws, n, classes)."""
    repeats = draws if defense.randomized else 1
    outputs = []
    for _ in range(repeats):
        outputs.append(torch.cat([defense(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]))
    return torch.stack(outputs)


def score(defense: Defense, x: torch.Tensor, y: torch.Tensor, draws: int = DEFAULT_DRAWS) -> tuple[torch.Tensor, torch.Tensor]:
    """(misclassified on any draw, worst margin over draws) for each sample."""
    return score_logits(exact_logits(defense, x, draws), y)


def score_logits(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`score` on logits already computed by `exact_logits` (draws, n, classes)."""
    true = logits.gather(2, y.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(2)
    others = logits.scatter(2, y.view(1, -1, 1).expand(logits.shape[0], -1, 1), float("-inf")).amax(2)
    margin = (true - others).amin(0)
    wrong = (logits.argmax(2) != y.view(1, -1)).any(0)
    return wrong, margin


def run_attack(
    attack: Attack,
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    seed: int,
    indices: list[int] | None = None,
    draws: int = DEFAULT_DRAWS,
) -> AttackRecord:
    """Run `attack` on (x, y) and return per-sample results judged on the exact forward."""
    device = defense.device
    x, y = x.to(device), y.to(device)
    indices = list(range(len(x))) if indices is None else list(indices)
    batch_seed = derive_seed(seed, attack.label, indices[0] if indices else 0, len(indices))
    if defense.randomized and hasattr(defense, "reseed"):
        defense.reseed(batch_seed)
    counter = CountingModel(defense, eot=1 if getattr(attack, "handles_eot", False) else attack.eot)
    start = time.perf_counter()
    with defense.surrogate(attack.surrogate, attack.temperature):
        output = attack.perturb(counter, x.clone(), y.clone(), threat, batch_seed)
    seconds = time.perf_counter() - start

    if attack.kind == "lp":
        proposed = output.x_adv.detach().to(device)
        if proposed.shape != x.shape:
            raise RuntimeError(f"{attack.label} returned shape {tuple(proposed.shape)} for inputs {tuple(x.shape)}")
        proposed = torch.nan_to_num(proposed, nan=0.0)
        inside = threat.contains(proposed, x)
        violations = int((~inside).sum())
        if violations:
            log.warning("%s proposed %d points outside %s; the runner projected them", attack.label, violations, threat)
        x_adv = threat.project(proposed, x)
        distance = threat.distance(x_adv, x)
    else:
        # Transformation attacks: the runner re-applies the recorded parameters itself. Their distance is in
        # the attack's own units (fraction of the rotation/translation limits, or pixels of flow).
        if output.params is None:
            raise RuntimeError(f"{attack.label} is a {attack.kind} attack but returned no parameters")
        params = attack.clip_params(torch.nan_to_num(output.params.detach().to(device), nan=0.0))
        x_adv = attack.apply(x, params).clamp(*threat.bounds)
        violations = int((params != output.params.to(device)).any(dim=1).sum())
        distance = attack.param_distance(params)
        output.extra.setdefault("params", params.cpu())

    if defense.randomized and hasattr(defense, "reseed"):
        defense.reseed(derive_seed(seed, "score", attack.label, indices[0] if indices else 0))
    wrong, margin = score(defense, x_adv, y, draws)
    n = max(len(x), 1)
    return AttackRecord(
        attack=attack.label,
        indices=indices,
        success=wrong.cpu(),
        distance=distance.cpu(),
        margin=margin.cpu(),
        n_forward=torch.full((len(x),), counter.forward_images / n),
        n_backward=torch.full((len(x),), counter.backward_images / n),
        seconds=torch.full((len(x),), seconds / n),
        x_adv=x_adv.detach().cpu(),
        violations=violations,
        extra=output.extra,
    )
