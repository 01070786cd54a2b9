"""Attack overhead: our APGD-CE (100 steps, through the judge) / (100 x one forward+backward of the same batch),
next to the same ratio for pyautoattack's APGD called directly. Target <= 1.10 for ours."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.autoattack import APGD
from attacks.judge import judge
from attacks.threat_model import ThreatModel
from audit.data import load_dataset
from benchmarks.common import best_time, row
from defenses.models.registry import load_shipped
from defenses.protocol import Undefended


def main(n: int = 250, steps: int = 100) -> list[dict]:
    model = load_shipped("demo-adversarial")
    data = load_dataset("fashion-mnist", "test").subset(n, seed=0)
    x, y = data.images, data.labels

    def forward_backward() -> None:
        xr = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y)
        torch.autograd.grad(loss, xr)

    unit = best_time(forward_backward, repeat=10) * steps
    threat = ThreatModel("Linf", 0.1)
    ours = best_time(lambda: judge(APGD(n_iter=steps), Undefended(model), x, y, threat, seed=0), repeat=2)

    def direct() -> None:
        from pyautoattack.autopgd_base import APGDAttack

        APGDAttack(model, n_iter=steps, norm="Linf", eps=0.1, seed=0, loss="ce", device="cpu").perturb(x, y)

    theirs = best_time(direct, repeat=2)
    detail = f"n={n}, {steps} steps; 100 x fwd+bwd {unit:.2f}s, ours {ours:.2f}s, pyautoattack {theirs:.2f}s"
    return [row("APGD-CE ours / (100 x fwd+bwd)", ours / unit, "<= 1.10", detail),
            row("APGD-CE pyautoattack / (100 x fwd+bwd)", theirs / unit, "(reference)", detail)]


if __name__ == "__main__":
    for r in main():
        print(r)
