"""An ESTIMATE of the GPU time a full audit of each RobustBench MeanSparse model takes per 1000 images.

Nothing here runs on a GPU. Two measured inputs and one assumption:
  1. forward and backward passes per image of a `--suite full` audit, measured on the CPU: the per-attack counts
     (`n_forward`, `n_backward`, counted by the model wrapper, per image) in the `results.json` of a CPU run of the
     full suite on the shipped MeanSparse demo model (clean ~80%, robust ~65%, close to the published models'
     accuracies, which is what decides how much work AutoAttack's cascade and Square do). The probes (100 samples)
     are not in these counts;
  2. forward FLOPs per image of each full-size architecture, counted by `torch.utils.flop_counter` on the meta
     device (convolutions and matrix products; a backward pass is taken as 2x a forward);
  3. ASSUMED: a sustained GPU throughput (default 50 TFLOP/s, roughly an A100 with TF32 on large convolutions and
     matrix products). Scale the hours by 50 / your GPU's sustained TFLOP/s.

    OMP_NUM_THREADS=1 .venv/bin/audit run --model demo-meansparse --n 50 --seed 0 --suite full --out runs/full-demo
    .venv/bin/python benchmarks/zoo_gpu_estimate.py runs/full-demo/results.json [--tflops 50]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def forward_flops(entry) -> float:  # noqa: ANN001 - a ZooEntry
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from defenses.models import robustbench as rb

    size = 224 if entry.dataset == "imagenet" else 32
    with torch.device("meta"):
        # The base architecture: MeanSparse adds elementwise work only (and cannot run on meta tensors).
        model = rb.BUILDERS[entry.architecture](entry.num_classes, *entry.normalization, **dict(entry.arch_kwargs))
        with FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.json of a --suite full CPU run")
    parser.add_argument("--tflops", type=float, default=50.0, help="assumed sustained GPU throughput")
    args = parser.parse_args()
    from defenses.models import robustbench as rb

    results = json.loads(args.results.read_text())
    n = results["n_samples"]
    forwards = sum(a["n_forward"] for a in results["attacks"]) / n
    backwards = sum(a["n_backward"] for a in results["attacks"]) / n
    print(
        f"measured on the CPU ({args.results}, n={n}): {forwards:.0f} forward and {backwards:.0f} backward passes "
        f"per image; assumed GPU throughput {args.tflops:g} TFLOP/s"
    )
    print("| model | GFLOP per forward | estimated GPU hours per 1000 images |")
    print("|---|---:|---:|")
    for entry in rb.MEANSPARSE_ENTRIES:
        flops = forward_flops(entry)
        seconds = 1000 * (forwards + 2 * backwards) * flops / (args.tflops * 1e12)
        print(f"| {entry.dataset}/{entry.threat}/{entry.name} | {flops / 1e9:.1f} | {seconds / 3600:.1f} |")


if __name__ == "__main__":
    main()
