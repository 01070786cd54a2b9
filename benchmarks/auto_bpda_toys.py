"""Automatic BPDA on toy defenses opaque to the suite, and the binarization test on the demo models (docs/models.md).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.auto_bpda_toys [--n 100] [--steps 1000]

Prints a markdown table: clean accuracy, plain APGD-CE (exact gradients), and the worst case over automatic-BPDA
APGD (CE and DLR straight-through, CE smooth at T = 1 and 0.3), Linf 0.1, on the first n Fashion-MNIST test images;
then the binarization test of APGD-CE on demo-standard, demo-adversarial and a gradient-killing wrapper.
"""

from __future__ import annotations

import argparse
import logging

import torch

from attacks.judge import judge
from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.checks.binarization import check_binarization
from audit.data import load_dataset
from audit.probes.binarization import run_binarization_probe
from defenses.adapters import as_defense
from defenses.gradient_path import gradient_reaches_input
from defenses.models.registry import load_shipped
from defenses.toys import KWTA, KillGradients, QuantizedInput, Thermometer, train_toy

BPDA = ("apgd-ce+bpda-identity", "apgd-dlr+bpda-identity", "apgd-ce+bpda-smooth-T1", "apgd-ce+bpda-smooth-T0.3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    threat = ThreatModel("Linf", 0.1)
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    x, y = test.images[: args.n], test.labels[: args.n]
    print("| toy (standard-trained) | replaced by automatic BPDA | clean | plain APGD-CE | automatic BPDA worst case |")
    print("|---|---|---:|---:|---:|")
    for name, build in (
        ("input quantizer, 8 levels", lambda: QuantizedInput(8)),
        ("thermometer, 16 levels", lambda: Thermometer(16)),
        ("k-WTA, 10%", lambda: KWTA(0.1)),
    ):
        defense = as_defense(train_toy(build(), train.images, train.labels, steps=args.steps, seed=0), opaque=True)
        with torch.no_grad():
            clean = float((defense(x).argmax(1) == y).float().mean())
        try:
            plain = f"{1 - float(judge(make_attack('apgd-ce'), defense, x, y, threat, 0).success.float().mean()):.0%}"
        except RuntimeError:  # autograd cannot reach the input at all
            plain = "cannot run (no gradient path)"
        if not gradient_reaches_input(defense, x[:8]):
            plain += ", zero gradient" if plain[0].isdigit() else ""
        broken = torch.zeros(len(y), dtype=torch.bool)
        for attack in BPDA:
            broken |= judge(make_attack(attack), defense, x, y, threat, 0).success
        robust = 1 - float(broken.float().mean())
        print(f"| {name} | {defense.scan().summary()} | {clean:.0%} | {plain} | {robust:.0%} |")
    print()
    print(
        "| binarization test, APGD-CE, 20 points | valid | attack finds the guaranteed example "
        "| random attacker | finding |"
    )
    print("|---|---:|---:|---:|---|")
    for name, model in (
        ("demo-standard", load_shipped("demo-standard")),
        ("demo-adversarial", load_shipped("demo-adversarial")),
        ("demo-adversarial behind a zero backward", KillGradients(load_shipped("demo-adversarial"))),
    ):
        defense = as_defense(model, opaque=isinstance(model, KillGradients))
        finding = check_binarization(
            run_binarization_probe(
                defense, test.images[:40], test.labels[:40], threat, "apgd-ce", n_samples=20, progress=False
            )
        )
        e = finding.evidence
        print(
            f"| {name} | {e['n_valid']} | {e['success_rate']:.0%} | {e['random_success_rate']:.0%} | {finding.status} |"
        )


if __name__ == "__main__":
    main()
