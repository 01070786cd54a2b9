"""The judge: runs one attack on one batch and decides, itself, what the attack achieved.

It wraps the defense for counting, sets the attack's surrogate backward, derives the seed, then projects the
proposals into the threat model (with a float tolerance; anything further out is counted as a violation and
projected) and re-scores them with the defense's exact forward.

A randomized defense is scored on common draws: sample i's draw m always uses the seed (seed, m, i), whichever
attack proposed the point and whatever batch it came in, and the clean inputs are scored on the very same draws.
So a point an attack left unchanged is judged exactly as the clean input was, and adding an attack that does
nothing changes nothing. A sample counts as robust only when it is correct on every draw; the number of correct
draws is kept, for the mean-over-draws accuracy.
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
from attacks.eot import EOT
from attacks.losses import margin
from attacks.precision import float32_scoring, proposals_in
from attacks.threat_model import ThreatModel
from attacks.transform import TransformAttack
from defenses.protocol import Defense

log = logging.getLogger(__name__)
DEFAULT_DRAWS = 10


@dataclass
class AttackRecord:
    """Per-sample results of one attack on one batch, as decided by the judge."""

    attack: str
    indices: list[int]
    success: torch.Tensor  # bool (n,): misclassified on at least one draw
    distance: torch.Tensor  # float (n,), in the threat model's norm (or the attack's own units for transforms)
    margin: torch.Tensor  # float (n,): true logit minus best other logit on the exact forward (min over draws)
    draws_correct: torch.Tensor  # int (n,): draws (of `draws`) on which the point is classified correctly
    draws: int
    n_forward: torch.Tensor  # float (n,): forward images spent on this batch, divided over its samples
    n_backward: torch.Tensor
    seconds: torch.Tensor
    x_adv: torch.Tensor
    violations: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def derive_seed(seed: int, *parts: object) -> int:
    """A stable seed for one use (an attack on a batch, a draw of a sample), so results do not depend on what ran
    before."""
    return (seed * 1_000_003 + zlib.crc32("/".join(map(str, parts)).encode())) % (2**31 - 1)


@torch.no_grad()
def exact_logits(
    defense: Defense,
    x: torch.Tensor,
    indices: list[int] | None = None,
    seed: int = 0,
    draws: int = DEFAULT_DRAWS,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Exact forward as (draws, n, classes); one draw for a deterministic defense.

    For a randomized defense, draw m of sample `indices[i]` is computed alone after `defense.reseed(seed, m,
    index)`: the common draws described in the module docstring (one sample per forward is the price of draws that
    do not depend on how samples were batched).
    """
    if not defense.randomized:
        return torch.cat([defense(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).unsqueeze(0)
    indices = list(range(len(x))) if indices is None else list(indices)
    outputs = []
    for m in range(draws):
        row = []
        for position, index in enumerate(indices):
            defense.reseed(derive_seed(seed, "draw", m, index))
            row.append(defense(x[position : position + 1]))
        outputs.append(torch.cat(row))
    return torch.stack(outputs)


def score_logits(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct draws, worst margin over draws) per sample, from logits (draws, n, classes)."""
    correct = (logits.argmax(2) == y.view(1, -1)).sum(0)
    return correct, margin(logits, y).amin(0)


def judge(
    attack: Attack,
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    seed: int,
    indices: list[int] | None = None,
    draws: int = DEFAULT_DRAWS,
    precision: str = "float32",
) -> AttackRecord:
    """Run `attack` on (x, y) and return per-sample results judged on the exact forward.

    `indices` are the samples' positions in the audited set: they name the common draws of a randomized defense.
    `precision`: what the attack's own passes run in (attacks/precision.py); the judge scores in float32 always.
    """
    if attack.threat_kind != "lp" and not isinstance(attack, TransformAttack):  # refused before it spends anything
        raise TypeError(
            f"{attack.label} declares threat_kind {attack.threat_kind!r} but is not a TransformAttack "
            f"(attacks.transform): the judge can only score an Lp attack or a TransformAttack's params"
        )
    device = defense.device
    x, y = x.to(device), y.to(device)
    indices = list(range(len(x))) if indices is None else list(indices)
    batch_seed = (
        seed if attack.seed_as_given else derive_seed(seed, attack.label, indices[0] if indices else 0, len(indices))
    )
    defense.reseed(batch_seed)
    counter = CountingModel(defense)
    model = counter if attack.handles_eot or attack.eot == 1 else EOT(counter, attack.eot)
    start = time.perf_counter()
    with defense.surrogate(attack.surrogate, attack.temperature), defense.frozen(), proposals_in(precision, device):
        output = attack.perturb(model, x.clone(), y.clone(), threat, batch_seed)
    seconds = time.perf_counter() - start

    if isinstance(attack, TransformAttack):
        # Transformation attacks: the judge re-applies the recorded parameters itself. Their distance is in
        # the attack's own units (fraction of the rotation/translation limits, or pixels of flow).
        if output.params is None:
            raise RuntimeError(f"{attack.label} is a {attack.threat_kind} attack but returned no parameters")
        params = attack.clip_params(torch.nan_to_num(output.params.detach().to(device), nan=0.0))
        x_adv = attack.apply(x, params).clamp(*threat.bounds)
        violations = int((params != output.params.to(device)).any(dim=1).sum())
        distance = attack.param_distance(params)
        output.extra.setdefault("params", params.cpu())
    else:  # an Lp attack (a TransformAttack never declares "lp"; anything else was refused above)
        proposed = output.x_adv.detach().to(device=device, dtype=x.dtype)  # a bfloat16 proposal is scored as float32
        if proposed.shape != x.shape:
            raise RuntimeError(f"{attack.label} returned shape {tuple(proposed.shape)} for inputs {tuple(x.shape)}")
        proposed = torch.nan_to_num(proposed, nan=0.0)
        inside = threat.contains(proposed, x)
        violations = int((~inside).sum())
        if violations:
            log.warning("%s proposed %d points outside %s; the judge projected them", attack.label, violations, threat)
        x_adv = threat.project(proposed, x)
        distance = threat.distance(x_adv, x)

    with float32_scoring(device):
        correct, margin = score_logits(exact_logits(defense, x_adv, indices, seed, draws), y)
    n_draws = draws if defense.randomized else 1
    n = max(len(x), 1)
    return AttackRecord(
        attack=attack.label,
        indices=indices,
        success=(correct < n_draws).cpu(),
        distance=distance.cpu(),
        margin=margin.cpu(),
        draws_correct=correct.cpu(),
        draws=n_draws,
        n_forward=torch.full((len(x),), (counter.forward_images + output.extra.get("source_forward_images", 0)) / n),
        n_backward=torch.full((len(x),), (counter.backward_images + output.extra.get("source_backward_images", 0)) / n),
        seconds=torch.full((len(x),), seconds / n),
        x_adv=x_adv.detach().cpu(),
        violations=violations,
        extra=output.extra,
    )


def score(
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    indices: list[int] | None = None,
    seed: int = 0,
    draws: int = DEFAULT_DRAWS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(misclassified on some draw, worst margin over draws) per sample, on the common draws."""
    correct, margin = score_logits(exact_logits(defense, x, indices, seed, draws), y)
    return correct < (draws if defense.randomized else 1), margin
