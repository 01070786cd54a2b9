"""Probes: everything the checks need from the model (gradients, landscapes, finite differences, small extra
attacks), measured once and stored with the attack records, resumable like them. The checks in `audit.checks`
read only the store, so `audit report DIR` rebuilds every finding without the model.

Each probe runs on the first `diagnostics_n` test images with its own seed (derived from the run's seed and its
name) and returns a plain-JSON measurement. A probe that raises is stored as an error, which its checks turn into
`skipped` findings marked `error`: the verdict is then `inconclusive`, never a clean bill of health. Its row is not
`done` (it carries `error`), so a resume runs it again, and the retry is the row that is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from attacks.counting import count_calls
from attacks.judge import derive_seed
from attacks.threat_model import ThreatModel
from audit.checks.finding import plain
from audit.checks.registry import diagnostics
from audit.probes import attribution, binarization, gradient_path, gradients, ioaf, landscape, sanity
from audit.probes.alpha import measure_alpha
from audit.probes.config import DiagnosticsConfig
from audit.store import ResultStore
from defenses.protocol import Defense

log = logging.getLogger(__name__)
PREFIX = "probe:"
ALPHA = "alpha"


@dataclass(frozen=True)
class Probe:
    name: str
    measure: Callable[..., dict[str, Any]]


PROBES: tuple[Probe, ...] = (
    Probe("gradient-path", gradient_path.measure_gradient_path),
    Probe("gradients", gradients.measure_gradients),
    Probe("dead-zone", gradients.measure_dead_zone),
    Probe("surrogates", gradients.measure_surrogates),
    Probe("finite-differences", gradients.measure_finite_differences),
    Probe("landscape", landscape.measure_landscape),
    Probe("randomized", sanity.measure_randomized),
    Probe("probabilities", sanity.measure_probabilities),
    Probe("gradient-in-forward", sanity.measure_gradient_in_forward),
    Probe("train-mode", sanity.measure_train_mode),
    Probe("unbounded", sanity.measure_unbounded),
    Probe("eps-sweep", sanity.measure_eps_sweep),
    Probe("more-steps", sanity.measure_more_steps),
    Probe("ioaf-gradients", ioaf.measure_unavailable_gradients),
    Probe("ioaf-unstable", ioaf.measure_unstable_predictions),
    Probe("ioaf-pgd", ioaf.measure_pgd_trace),
    Probe("ioaf-transfer", ioaf.measure_transfer),
    Probe("ioaf-unconstrained", ioaf.measure_unconstrained),
    Probe("binarization", binarization.measure_binarization),
    Probe("layer-attribution", attribution.measure_attribution),
)


def all_probes() -> tuple[Probe, ...]:
    """The built-in probes, then those of the one-module diagnostics (`audit.checks.registry.diagnostics`)."""
    return (*PROBES, *(Probe(d.probe, d.measure) for d in diagnostics()))


def measure(
    probe: Probe,
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    seed: int,
    config: DiagnosticsConfig,
) -> dict[str, Any]:
    """Run one probe; one that raises is recorded as an error, never lost."""
    if len(x) == 0:
        return {
            "skipped": "no samples given (--diagnostics-n 0): only the comparisons over stored results ran",
            "no_samples": True,
        }
    try:
        return plain(
            probe.measure(defense, x, y, threat, seed=derive_seed(seed, "diagnostics", probe.name), config=config)
        )
    except Exception as error:  # noqa: BLE001 - one broken probe must not lose the others
        log.warning("probe %s raised %s: %s", probe.name, type(error).__name__, error, exc_info=True)
        first = (str(error).splitlines() or [""])[0][:200]
        return {"error": f"the {probe.name} probe raised {type(error).__name__}: {first}"}


def run_probes(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    store: ResultStore,
    *,
    seed: int,
    n: int,
    model_spec: str,
    diagnostics: DiagnosticsConfig | None = None,
    progress: bool = True,
) -> None:
    """Run every probe not yet stored, and store its measurement (one row per probe)."""
    diagnostics = diagnostics or DiagnosticsConfig()
    x, y = images[:n].to(defense.device), labels[:n].to(defense.device)
    todo = [p for p in all_probes() if not store.done(PREFIX + p.name, 0)]
    bar = tqdm(todo, desc="probes", unit="probe", disable=not progress, leave=False)
    for probe in bar:
        bar.set_postfix_str(probe.name)
        start = time.perf_counter()
        with count_calls(defense) as calls, defense.frozen():
            measurement = measure(probe, defense, x, y, threat, seed, diagnostics)
        row = {
            "attack": PREFIX + probe.name,
            "batch": 0,
            "seconds": time.perf_counter() - start,
            "n_forward": calls.forward_images,
            "n_backward": calls.backward_images,
            "measurement": measurement,
        }
        if "error" in measurement:  # perhaps transient (out of memory, a busy GPU): a resume tries it again
            row["error"] = measurement["error"]
        store.append(row)
        log.info("probe %s in %.1f s", probe.name, time.perf_counter() - start)
    bar.close()
    if not store.done(PREFIX + ALPHA, 0):
        store.append(
            {
                "attack": PREFIX + ALPHA,
                "batch": 0,
                "seconds": 0.0,
                "measurement": plain(measure_alpha(defense, model_spec)),
            }
        )


def measure_all(
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    seed: int = 0,
    config: DiagnosticsConfig | None = None,
    only: tuple[str, ...] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every probe (or the `only` ones) without a store, for notebooks and tests: {probe name: measurement}."""
    config = config or DiagnosticsConfig()
    return {
        p.name: measure(p, defense, x, y, threat, seed, config) for p in all_probes() if only is None or p.name in only
    }


def diagnose(
    defense: Defense,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    outcomes: Any = None,  # Outcomes
    seed: int = 0,
    config: DiagnosticsConfig | None = None,
    only: tuple[str, ...] | None = None,
) -> list[Any]:
    """Findings without a store, for notebooks and tests: the probes (or the `only` ones, by probe name) on
    (x, y), judged by the checks, then the comparisons over `outcomes` (an `audit.outcomes.Outcomes`) if given."""
    from audit.checks import run_checks

    return run_checks(outcomes if only is None else None, measure_all(defense, x, y, threat, seed, config, only))
