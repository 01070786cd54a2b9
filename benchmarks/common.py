"""Shared timing helpers: best-of-k wall time, so ratios measured side by side in one run are stable."""
from __future__ import annotations

import time
from typing import Callable


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
