"""Would a faster way of running the same network lower AutoAttack's floor (issue 14)? The model's forward (what
Square's queries cost) and forward+backward (what APGD's and FAB's steps cost), eager against the usual speed-ups:
`torch.inference_mode`, `torch.compile` (inductor), and BatchNorm folded into the convolutions
(`torch.fx.experimental.optimization.fuse`). Ratios are option / eager; below 1 is faster. Medians of interleaved
calls on demo-adversarial at the current thread count, with the largest logit difference from eager (none of
them is bit for bit, so adopting one would change per-sample results against pyautoattack's).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.fx.experimental.optimization import fuse

from audit.data import load_dataset
from benchmarks.common import interleaved_medians, row
from defenses.models.registry import load_shipped


def main(n: int = 250) -> list[dict]:
    model = load_shipped("demo-adversarial").eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    test = load_dataset("fashion-mnist", "test").subset(n, seed=0)
    x, y = test.images, test.labels
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "eager": model,
        "compiled": torch.compile(model),
        "bn folded": fuse(model),
    }

    def forward(net: Callable[[torch.Tensor], torch.Tensor], mode: type = torch.no_grad) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with mode():
                return net(x)

        return call

    def forward_backward(net: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            xr = x.clone().requires_grad_(True)
            return torch.autograd.grad(F.cross_entropy(net(xr), y), xr)[0]

        return call

    reference = forward(model)()
    differences = {name: (forward(net)() - reference).abs().max().item() for name, net in variants.items()}
    forwards = interleaved_medians(
        {
            "inference mode": forward(model, torch.inference_mode),
            **{name: forward(net) for name, net in variants.items()},
        },
        repeat=20,
    )
    steps = interleaved_medians({name: forward_backward(net) for name, net in variants.items()}, repeat=10)
    threads = f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}"
    rows = [
        row(
            f"forward, {name} / eager ({threads})",
            seconds / forwards["eager"],
            "< 1 helps",
            f"n={n}: {seconds:.4f}s vs {forwards['eager']:.4f}s; max logit difference {differences.get(name, 0.0):.1e}",
        )
        for name, seconds in forwards.items()
        if name != "eager"
    ]
    rows += [
        row(
            f"forward+backward, {name} / eager ({threads})",
            seconds / steps["eager"],
            "< 1 helps",
            f"n={n}: {seconds:.4f}s vs {steps['eager']:.4f}s",
        )
        for name, seconds in steps.items()
        if name != "eager"
    ]
    return rows


def autoattack_compiled(n: int = 100, seed: int = 0) -> list[dict]:
    """pyautoattack `run_standard_evaluation` on demo-adversarial, eager against `torch.compile`d, compilation
    included (what a user would pay): does the step-level gain survive the recompilations for each batch shape
    (APGD-T and FAB-T on the survivors, Square's shrinking batches)? Also whether the per-sample results agree."""
    import torch._dynamo
    from pyautoattack import AutoAttack

    model = load_shipped("demo-adversarial").eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    test = load_dataset("fashion-mnist", "test").subset(n, seed)
    seconds, robust = {}, {}
    for name, net in (("eager", model), ("compiled", torch.compile(model))):
        torch._dynamo.reset()
        start = time.perf_counter()
        attack = AutoAttack(net, eps=0.1, norm="Linf", seed=seed, version="standard", device="cpu")
        x_adv, _ = attack.run_standard_evaluation(test.images, test.labels, batch_size=250)
        seconds[name] = time.perf_counter() - start
        with torch.no_grad():
            robust[name] = (model(x_adv).argmax(1) == test.labels).tolist()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]  # reset before the compiled run: its graphs
    same = robust["eager"] == robust["compiled"]
    return [
        row(
            "AutoAttack standard, compiled / eager",
            seconds["compiled"] / seconds["eager"],
            "< 1 helps",
            f"n={n}: {seconds['compiled']:.0f}s (compilation included, {graphs} graphs) vs "
            f"{seconds['eager']:.0f}s; robust {sum(robust['compiled'])} vs {sum(robust['eager'])}; "
            f"same per-sample results: {same}",
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--autoattack",
        type=int,
        metavar="N",
        default=0,
        help="also run pyautoattack standard eager and compiled on N images (minutes)",
    )
    args = parser.parse_args()
    rows = main() + (autoattack_compiled(args.autoattack) if args.autoattack else [])
    for r in rows:
        print(f"{r['benchmark']:45}  {r['ratio']:5.2f}  {r['detail']}")
