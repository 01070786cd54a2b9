"""Does our `autoattack` (the cascade over pyautoattack's sub-attacks, with per-sample records) agree with
pyautoattack's own `run_standard_evaluation`? Same model, samples and seed; prints both robust accuracies.

    OMP_NUM_THREADS=1 python benchmarks/autoattack_agreement.py --model demo-adversarial --n 500
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402 - after the thread settings above

from attacks.autoattack import AutoAttack  # noqa: E402 - after the thread settings above
from attacks.judge import judge  # noqa: E402 - after the thread settings above
from attacks.threat_model import ThreatModel  # noqa: E402 - after the thread settings above
from audit.data import load_dataset  # noqa: E402 - after the thread settings above
from defenses.adapters import as_defense  # noqa: E402 - after the thread settings above
from defenses.models.registry import load_shipped  # noqa: E402 - after the thread settings above


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo-adversarial")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--which", choices=["ours", "pyautoattack"], required=True)
    args = parser.parse_args()
    model = load_shipped(args.model)
    data = load_dataset("fashion-mnist", "test").subset(args.n, args.seed)
    start = time.perf_counter()
    if args.which == "ours":
        record = judge(
            AutoAttack("standard"), as_defense(model), data.images, data.labels, ThreatModel("Linf", 0.1), args.seed
        )
        robust = (~record.success).float().mean().item()
    else:
        from pyautoattack import AutoAttack as Upstream

        attack = Upstream(model, eps=0.1, norm="Linf", seed=args.seed, version="standard", device="cpu")
        x_adv, _ = attack.run_standard_evaluation(data.images, data.labels, batch_size=args.n)
        with torch.no_grad():
            robust = (model(x_adv).argmax(1) == data.labels).float().mean().item()
    print(
        f"{args.which}: {args.model} n={args.n} seed={args.seed} AutoAttack standard robust accuracy "
        f"{100 * robust:.2f}% in {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
