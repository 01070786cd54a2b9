"""MeanSparse models masked beyond doubt (issue 28), attacked on the first N test images at Linf 0.1, seed 0.

    --model pixel    demo-adversarial with one MeanSparse dead zone on its input pixels (placement `stem.0`),
                     calibrated on the first 5000 training images
    --model feature  demo-meansparse (MeanSparse at its usual placement) with every layer's alpha set to each value

Prints clean accuracy and each attack's robust accuracy (and, for the staged attacks, how many samples each stage
broke first).

    python -m benchmarks.pixel_dead_zone --model pixel --n 100 --alphas 0.5,0.6 \\
        --attacks "apgd-ce;apgd-ce+bpda-identity;apgd-continuation-linear;apgd-anneal"
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from attacks.judge import judge, score
from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.data import load_dataset
from defenses import load_shipped
from defenses.adapters import as_defense
from defenses.calibrate import calibrate, set_alpha
from defenses.sparsify import sparsify

log = logging.getLogger(__name__)


def pixel_dead_zone(alpha: float, train_images: torch.Tensor) -> torch.nn.Module:
    model = sparsify(load_shipped("demo-adversarial"), alpha, placement=["stem.0"])
    calibrate(model, [train_images[i : i + 500] for i in range(0, 5000, 500)], progress=False)
    return model.eval()


def feature_dead_zone(alpha: float) -> torch.nn.Module:
    return set_alpha(load_shipped("demo-meansparse"), alpha).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("pixel", "feature"), default="pixel")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--alphas", default="0.5,0.6")
    parser.add_argument("--attacks", default="apgd-ce;apgd-ce+bpda-identity;apgd-continuation-linear;apgd-anneal")
    args = parser.parse_args()
    test, train = load_dataset("fashion-mnist", "test"), load_dataset("fashion-mnist", "train")
    x, y = test.images[: args.n], test.labels[: args.n]
    threat = ThreatModel("Linf", 0.1)
    for alpha in map(float, args.alphas.split(",")):
        model = pixel_dead_zone(alpha, train.images) if args.model == "pixel" else feature_dead_zone(alpha)
        defense = as_defense(model)
        clean = 1 - score(defense, x, y)[0].float().mean().item()
        print(f"alpha {alpha:g}: clean {clean:.3f}")  # noqa: T201 - a command-line report
        for name in args.attacks.split(";"):
            start = time.time()
            record = judge(make_attack(name), defense, x, y, threat, 0)
            robust = 1 - record.success.float().mean().item()
            print(
                f"  {name}: robust {robust:.3f}, first broken per stage {record.extra.get('stage_broke')}, "  # noqa: T201
                f"{time.time() - start:.0f} s"
            )


if __name__ == "__main__":
    main()
