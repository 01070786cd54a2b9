"""The statistics every number and comparison of an audit carries: exact binomial intervals and paired tests.

scipy has both; these wrappers only fix the conventions the suite uses everywhere (95%, one-sided McNemar). The
paired difference's interval (Tango's score interval) is in no library we use, so it is written here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scipy.optimize import brentq
from scipy.stats import binomtest, norm

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


@dataclass(frozen=True)
class Paired:
    """Two conditions' per-sample outcomes, paired: the samples only A succeeded on, those only B did, and how many
    pairs had an outcome on both sides. Every paired comparison of the suite (the checks, the gain table,
    `audit compare`, the benchmarks) is counted here, so that they all count the same way."""

    only_a: list[int]
    only_b: list[int]
    paired: int

    @property
    def b(self) -> int:
        return len(self.only_a)

    @property
    def c(self) -> int:
        return len(self.only_b)

    def p_a_beats_b(self) -> float:
        """Exact one-sided McNemar p-value that A succeeds more often than B."""
        return mcnemar_one_sided(self.b, self.c)

    def p_two_sided(self) -> float:
        """Exact two-sided McNemar p-value (twice the smaller one-sided one, at most 1)."""
        return min(1.0, 2 * min(mcnemar_one_sided(self.b, self.c), mcnemar_one_sided(self.c, self.b)))

    def difference_interval(self, n: int | None = None, level: float = LEVEL) -> tuple[float, float]:
        """Tango's interval for (b - c) / n; n defaults to the pairs counted."""
        return paired_difference_interval(self.b, self.c, self.paired if n is None else n, level)


def paired(a: Iterable[bool | None], b: Iterable[bool | None]) -> Paired:
    """Count paired outcomes (True: the condition succeeded on the sample; None: no outcome there, so the pair is
    left out). Both sequences are indexed by sample."""
    only_a, only_b, count = [], [], 0
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x is None or y is None:
            continue
        count += 1
        if x and not y:
            only_a.append(i)
        elif y and not x:
            only_b.append(i)
    return Paired(only_a, only_b, count)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (Holm 1979): reject test i at family-wise level a iff its adjusted p < a.
    Controls the chance of any false rejection in the family at a, with no assumption on how the tests depend
    on each other (ours share samples). By hand: scipy has no Holm (statsmodels, which has, is not a dependency).
    """
    order = sorted(p_values, key=lambda k: (p_values[k], k))
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[key]))
        adjusted[key] = running
    return {key: adjusted[key] for key in p_values}


def accuracy_json(robust: int, n: int) -> dict[str, Any]:
    """An accuracy as stored in results.json: the value, its 95% interval and how many samples it rests on."""
    low, high = clopper_pearson(robust, n)
    return {"accuracy": robust / n if n else None, "robust": robust, "n": n, "ci95": [low, high]}


def paired_difference_interval(b: int, c: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Tango's (1998) asymptotic score interval for the difference of two paired proportions, (b - c) / n, where
    b samples succeed only under the first condition and c only under the second.

    Recommended for paired proportions by Fagerland, Lydersen and Laake (2014, Stat Methods Med Res 23:147); its
    test at 0 is McNemar's score test, and it stays informative with no discordant pair (about +-3.8/n at 95%,
    where an interval conditional on b + c collapses to a point). The limits solve T(delta) = -+z, with
        T(delta) = (b - c - n delta) / sqrt(n (2 q + delta (1 - delta))),
    q the maximum-likelihood P(only the second succeeds) given the difference delta (a quadratic's root)."""
    if n <= 0:
        return -1.0, 1.0
    z = float(norm.ppf(0.5 + level / 2))

    def score(delta: float) -> float:
        quad_b = -b - c + (2 * n - b + c) * delta
        quad_c = -c * delta * (1 - delta)
        q = (math.sqrt(max(quad_b * quad_b - 8 * n * quad_c, 0.0)) - quad_b) / (4 * n)
        variance, numerator = n * (2 * q + delta * (1 - delta)), b - c - n * delta
        if numerator == 0 or variance <= 0:  # at the estimate itself; or no variance left: T is 0 or infinite
            return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
        return numerator / math.sqrt(variance)

    estimate, edge = (b - c) / n, 1 - 1e-12  # T is infinite at +-1; T decreases in delta
    low = -1.0 if score(-edge) <= z else brentq(lambda d: score(d) - z, -edge, estimate)
    high = 1.0 if score(edge) >= -z else brentq(lambda d: score(d) + z, estimate, edge)
    return float(low), float(high)
