"""MeanSparse forward / base forward (target <= 1.10), at 1 and at 2 threads; identity and smooth backward /
exact backward (<= 1.05).

Medians of interleaved calls (benchmarks.common.interleaved_medians). MeanSparse runs fused with the ReLU after it
(defenses/fused.py), so what is left is its compare-and-select inside the activation's own pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from audit.data import load_dataset
from benchmarks.common import interleaved_medians, row
from defenses import gradient_mode
from defenses.models.registry import load_shipped


def main(n: int = 500, threads: tuple[int, ...] = (1, 2)) -> list[dict]:
    default = torch.get_num_threads()
    try:
        rows = []
        for count in threads:
            torch.set_num_threads(count)
            rows += [
                {**r, "benchmark": f"{r['benchmark']} ({count} thread{'s' if count > 1 else ''})"}
                for r in _at_current_threads(n)
            ]
        return rows
    finally:
        torch.set_num_threads(default)


def _at_current_threads(n: int) -> list[dict]:
    sparse = load_shipped("demo-meansparse")  # demo-adversarial with MeanSparse before its 5 activations
    plain = load_shipped("demo-adversarial")
    x = load_dataset("fashion-mnist", "test").subset(n, seed=0).images
    y = load_dataset("fashion-mnist", "test").subset(n, seed=0).labels

    with torch.no_grad():
        forward = interleaved_medians({"base": lambda: plain(x), "sparse": lambda: sparse(x)})
    t_base, t_sparse = forward["base"], forward["sparse"]

    def forward_backward(mode: str) -> Callable[[], None]:
        def step() -> None:
            xr = x.clone().requires_grad_(True)
            with gradient_mode(sparse, mode):
                torch.autograd.grad(F.cross_entropy(sparse(xr), y), xr)

        return step

    backward = interleaved_medians(
        {mode: forward_backward(mode) for mode in ("exact", "identity", "smooth")}, repeat=15
    )
    exact, identity, smooth = backward["exact"], backward["identity"], backward["smooth"]
    return [
        row(
            "MeanSparse forward / base forward",
            t_sparse / t_base,
            "<= 1.10",
            f"n={n}: {t_sparse:.4f}s vs {t_base:.4f}s",
        ),
        row("identity fwd+bwd / exact fwd+bwd", identity / exact, "<= 1.05", f"{identity:.4f}s vs {exact:.4f}s"),
        row("smooth fwd+bwd / exact fwd+bwd", smooth / exact, "<= 1.05", f"{smooth:.4f}s vs {exact:.4f}s"),
    ]


if __name__ == "__main__":
    for r in main():
        print(r)
