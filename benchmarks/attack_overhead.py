"""An attack through our judge against the same attack called directly in its library, with the same calls and
the same seed (the judge's per-batch seed is handed to the direct call), target <= 1.0. The two must propose the
same points (checked), so the ratio is the judge's own cost: counting, projection, and re-scoring on the exact
forward. Medians of interleaved runs (benchmarks.common.interleaved_medians)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attacks.autoattack import APGD, FAB, Square
from attacks.base import Attack
from attacks.judge import derive_seed, judge
from attacks.threat_model import ThreatModel
from audit.data import load_dataset
from benchmarks.common import interleaved_medians, row
from defenses.models.registry import load_shipped
from defenses.protocol import Undefended


def _direct(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    """The library's own call, as its documentation shows it."""
    from pyautoattack.autopgd_base import APGDAttack
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    if name == "apgd-ce":
        return APGDAttack(model, n_iter=100, norm="Linf", eps=0.1, seed=seed, loss="ce", device="cpu").perturb(x, y)
    if name == "fab-t":
        return FABAttack_PT(
            model,
            norm="Linf",
            n_restarts=1,
            n_iter=100,
            eps=0.1,
            seed=seed,
            targeted=True,
            n_target_classes=2,
            device="cpu",
        ).perturb(x, y)
    square = SquareAttack(
        model,
        norm="Linf",
        n_queries=1000,
        eps=0.1,
        p_init=0.8,
        n_restarts=1,
        seed=seed,
        resc_schedule=False,
        device="cpu",
    )
    return square.perturb(x, y)


OURS: dict[str, Callable[[], Attack]] = {
    "apgd-ce": lambda: APGD(n_iter=100),
    "fab-t": lambda: FAB(targeted=True, n_target_classes=2),
    "square": lambda: Square(n_queries=1000),
}


def main(n: int = 100, repeat: int = 3) -> list[dict]:
    model = load_shipped("demo-adversarial")
    data = load_dataset("fashion-mnist", "test").subset(n, seed=0)
    x, y = data.images, data.labels
    defense, threat = Undefended(model), ThreatModel("Linf", 0.1)
    rows = []
    for name, make in OURS.items():
        attack = make()
        seed = derive_seed(0, attack.label, 0, n)  # the judge's seed for this batch
        same = torch.equal(
            judge(attack, defense, x, y, threat, seed=0).x_adv, threat.project(_direct(name, model, x, y, seed), x)
        )
        times = interleaved_medians(
            {
                "ours": lambda make=make: judge(make(), defense, x, y, threat, seed=0),
                "direct": lambda name=name, seed=seed: _direct(name, model, x, y, seed),
            },
            repeat=repeat,
            warmup=0,
        )
        rows.append(
            row(
                f"{name} through the judge / called directly",
                times["ours"] / times["direct"],
                "<= 1.0",
                f"n={n}: {times['ours']:.2f}s vs {times['direct']:.2f}s; same proposals: {same}",
            )
        )
    return rows


if __name__ == "__main__":
    for r in main():
        print(r)
