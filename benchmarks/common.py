"""Shared timing helpers: best-of-k wall time, and interleaved medians for close comparisons."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, ratio: float, target: str, detail: str) -> dict:
    return {"benchmark": name, "ratio": ratio, "target": target, "detail": detail}


def interleaved_medians(fns: dict[str, Callable[[], object]], repeat: int = 30, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each function, the functions called in turn: on a noisy (virtual) machine drift hits
    them alike, where timing one after the other let a slow spell fall on one side (ratios moved by +-0.2)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
