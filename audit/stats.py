"""The statistics every number and comparison of an audit carries: exact binomial intervals and paired tests.

scipy has both; these wrappers only fix the conventions the suite uses everywhere (95%, one-sided McNemar).
"""
from __future__ import annotations

from scipy.stats import binomtest

LEVEL = 0.95


def clopper_pearson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a proportion; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(interval.low), float(interval.high)


def mcnemar_one_sided(b: int, c: int) -> float:
    """Exact one-sided McNemar p-value that A beats B, from the discordant pairs of paired per-sample outcomes:
    b samples where only A succeeded, c where only B did. Under H0 (equally strong) b ~ Binomial(b + c, 1/2)."""
    if b + c == 0:
        return 1.0
    return float(binomtest(int(b), int(b + c), 0.5, alternative="greater").pvalue)


def accuracy_json(robust: int, n: int) -> dict:
    """An accuracy as stored in results.json: the value, its 95% interval and how many samples it rests on."""
    low, high = clopper_pearson(robust, n)
    return {"accuracy": robust / n if n else None, "robust": robust, "n": n, "ci95": [low, high]}
