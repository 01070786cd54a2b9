"""Thresholds derived from the fitting models only, then scored on the evaluation models (benchmarks/calibration.py).

Each tunable check is one number per model (`Statistic.read` takes it from the stored finding's evidence) and a
direction. The rule, for a statistic where higher is worse (the others are mirrored):

    let s_max be the highest value on the fitting set's sound models, and m_min the lowest value on its masked
    models above s_max; the threshold is halfway between them (fail when value >= threshold).

It is the choice with no false alarm on the fitting sound models and the most catches on the fitting masked
ones, with equal margin to both (any value in (s_max, m_min] makes the same calls on the fitting set). When no
masked model lies above every sound one, the check cannot be fitted (`threshold` None) and the code's value stands.

Rates on the evaluation set come with exact Clopper-Pearson 95% intervals (audit/stats.py, scipy's beta).
Pure over rows: nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit.checks import gradients, ioaf, sanity
from audit.stats import clopper_pearson


@dataclass(frozen=True)
class Statistic:
    check: str  # the finding id
    name: str
    read: Callable[[dict], float | None]  # evidence -> the statistic, None when the check did not measure it
    higher_is_worse: bool
    code_threshold: float  # what audit/checks/ uses today
    inclusive: bool = True  # the code fails at value >= threshold (False: value > threshold)


def _get(key: str) -> Callable[[dict], float | None]:
    def read(evidence: dict) -> float | None:
        value = evidence.get(key)
        return None if value is None else float(value)

    return read


def _kept(evidence: dict) -> float | None:
    # eps-sweep only judges the kept share from EPS_KEPT_MIN_SAMPLES samples robust at eps
    if evidence.get("robust_at_eps", 0) < sanity.EPS_KEPT_MIN_SAMPLES:
        return None
    return float(evidence["kept_at_largest_eps"])


STATISTICS = (
    Statistic(
        "finite-difference-mismatch",
        "median relative error",
        _get("median_relative_error"),
        True,
        gradients.FD_ERROR_FAIL,
    ),
    Statistic("eps-sweep", "share robust at eps kept at the largest eps", _kept, True, sanity.EPS_KEPT_FAIL),
    Statistic(
        "unbounded-attack",
        "survivor fraction",
        _get("survivor_fraction"),
        True,
        sanity.UNBOUNDED_MAX_SURVIVORS,
        inclusive=False,
    ),
    Statistic(
        "ioaf-unconstrained-failure",
        "failure fraction",
        _get("failure_fraction"),
        True,
        ioaf.UNCONSTRAINED_MAX_FAILURES,
        inclusive=False,
    ),
    Statistic(
        "zero-gradients",
        "share of samples with an all-zero gradient",
        _get("zero_sample_fraction"),
        True,
        gradients.ZERO_SAMPLES_FAIL / 50,
        inclusive=True,
    ),  # 1 sample of the 50 diagnostics samples
    Statistic(
        "surrogate-disagreement",
        "median cosine exact vs identity",
        _get("median_cosine"),
        False,
        gradients.COSINE_FAIL,
        inclusive=False,
    ),
)


@dataclass(frozen=True)
class Row:
    """One audited model, as the derivation sees it: its truth and the statistic's value (None: not measured)."""

    key: str
    truth: str  # sound | masked
    value: float | None


def flags(value: float, threshold: float, higher_is_worse: bool, inclusive: bool = True) -> bool:
    if not higher_is_worse:
        value, threshold = -value, -threshold
    return value >= threshold if inclusive else value > threshold


def derive(rows: list[Row], higher_is_worse: bool) -> float | None:
    """The threshold by the rule above, from fitting rows only; None when no masked value lies beyond the sound."""
    sign = 1.0 if higher_is_worse else -1.0
    sound = [sign * r.value for r in rows if r.truth == "sound" and r.value is not None]
    masked = [sign * r.value for r in rows if r.truth == "masked" and r.value is not None]
    if not sound:
        return None
    highest_sound = max(sound)
    above = [m for m in masked if m > highest_sound]
    if not above:
        return None
    return sign * (highest_sound + min(above)) / 2


@dataclass(frozen=True)
class Rates:
    false_alarms: int
    sound: int  # sound models with a value
    catches: int
    masked: int  # masked models with a value

    def false_alarm_interval(self) -> tuple[float, float]:
        return clopper_pearson(self.false_alarms, self.sound)

    def miss_interval(self) -> tuple[float, float]:
        return clopper_pearson(self.masked - self.catches, self.masked)


def score(rows: list[Row], threshold: float, higher_is_worse: bool, inclusive: bool = True) -> Rates:
    """False alarms on the sound rows and catches on the masked ones at `threshold` (rows without a value skip)."""
    measured = [r for r in rows if r.value is not None]
    hit = {r.key: flags(r.value, threshold, higher_is_worse, inclusive) for r in measured}  # type: ignore[arg-type]
    sound = [r for r in measured if r.truth == "sound"]
    masked = [r for r in measured if r.truth == "masked"]
    return Rates(sum(hit[r.key] for r in sound), len(sound), sum(hit[r.key] for r in masked), len(masked))


def rate_text(k: int, n: int) -> str:
    """'k of n (low - high%)' with the Clopper-Pearson 95% interval."""
    if n == 0:
        return "none measured"
    low, high = clopper_pearson(k, n)
    return f"{k} of {n} ({100 * low:.0f} - {100 * high:.0f}%)"
