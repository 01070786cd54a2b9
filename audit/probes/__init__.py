"""Probes: everything the diagnostics need from the model (gradients, landscapes, finite differences, small extra
attacks), run once and stored with the attack records, resumable like them. The checks in `audit.checks` then
read only the store, so `audit report DIR` rebuilds every finding without the model.

Each probe is run on the first `diagnostics_n` test images with its own seed (derived from the run's seed and
its name). What a probe stores today is its measurements together with the status its thresholds give
(`audit/diagnostics/*`); a probe that raises is stored as `skipped` findings marked `error`, which makes the
verdict `inconclusive` rather than a clean bill of health.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from attacks.judge import derive_seed
from attacks.threat_model import ThreatModel
from audit.config import AuditConfig
from audit.diagnostics import gradients, ioaf, landscape, sanity
from audit.diagnostics.config import DiagnosticsConfig
from audit.diagnostics.finding import Finding, skipped
from audit.store import ResultStore
from defenses.protocol import Defense

log = logging.getLogger(__name__)
PREFIX = "probe:"


@dataclass(frozen=True)
class Probe:
    """One probe: its name, the finding ids it measures, and the function that measures them."""

    name: str
    ids: tuple[str, ...]
    function: Callable[..., list[Finding]]


PROBES: tuple[Probe, ...] = (
    Probe("gradients", ("zero-gradients", "nonfinite-gradients"), gradients.check_gradients),
    Probe("dead-zone", ("dead-zone-occupancy",), gradients.check_dead_zone),
    Probe("surrogates", ("surrogate-disagreement",), gradients.check_surrogate_agreement),
    Probe("finite-differences", ("finite-difference-mismatch",), gradients.check_finite_differences),
    Probe("landscape", ("loss-landscape",), landscape.check_landscape),
    Probe("randomized", ("randomized",), sanity.check_randomized),
    Probe("probabilities", ("probabilities-not-logits",), sanity.check_probabilities),
    Probe("gradient-in-forward", ("gradient-in-forward",), sanity.check_gradient_in_forward),
    Probe("train-mode", ("train-mode",), sanity.check_train_mode),
    Probe("unbounded", ("unbounded-attack",), sanity.check_unbounded_attack),
    Probe("eps-sweep", ("eps-sweep",), sanity.check_eps_sweep),
    Probe("more-steps", ("more-steps-help",), sanity.check_more_steps),
    Probe("ioaf-gradients", ("ioaf-unavailable-gradients",), ioaf.check_unavailable_gradients),
    Probe("ioaf-unstable", ("ioaf-unstable-predictions",), ioaf.check_unstable_predictions),
    Probe("ioaf-pgd", ("ioaf-silent-success", "ioaf-incomplete-optimization"), ioaf.check_pgd_indicators),
    Probe("ioaf-transfer", ("ioaf-transfer-failure",), ioaf.check_transfer_failure),
    Probe("ioaf-unconstrained", ("ioaf-unconstrained-failure",), ioaf.check_unconstrained_failure),
)


def probe_one(probe: Probe, defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int,
              config: DiagnosticsConfig) -> list[Finding]:
    """Run one probe; one that raises yields `skipped` findings marked as errors, never lost findings."""
    if len(x) == 0:
        return [skipped(i, "no samples given (--diagnostics-n 0): only the comparisons over stored results ran")
                for i in probe.ids]
    try:
        return probe.function(defense, x, y, threat, seed=derive_seed(seed, "diagnostics", probe.name),
                              config=config)
    except Exception as error:  # noqa: BLE001 - one broken probe must not lose the others
        log.warning("probe %s raised %s: %s", probe.name, type(error).__name__, error, exc_info=True)
        first = (str(error).splitlines() or [""])[0][:200]
        return [skipped(i, f"the {probe.name} probe raised {type(error).__name__}: {first}", error=True)
                for i in probe.ids]


def run_probes(defense: Defense, images: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
               store: ResultStore, config: AuditConfig, *, diagnostics: DiagnosticsConfig | None = None,
               progress: bool = True) -> None:
    """Run every probe not yet stored, and store its findings (one row per probe)."""
    diagnostics = diagnostics or DiagnosticsConfig()
    x, y = images[: config.diagnostics_n].to(defense.device), labels[: config.diagnostics_n].to(defense.device)
    todo = [p for p in PROBES if not store.done(PREFIX + p.name, 0)]
    bar = tqdm(todo, desc="probes", unit="probe", disable=not progress, leave=False)
    for probe in bar:
        bar.set_postfix_str(probe.name)
        start = time.perf_counter()
        found = probe_one(probe, defense, x, y, threat, config.seed, diagnostics)
        store.append({"attack": PREFIX + probe.name, "batch": 0, "seconds": time.perf_counter() - start,
                      "findings": [f.to_json() for f in found]})
        log.info("%s: %s in %.1f s", probe.name, ", ".join(f"{f.id}={f.status}" for f in found),
                 time.perf_counter() - start)
    bar.close()
    if not store.done(PREFIX + "alpha-selection", 0):
        from audit.alpha_provenance import alpha_finding

        finding = alpha_finding(defense, config.model)
        store.append({"attack": PREFIX + "alpha-selection", "batch": 0, "seconds": 0.0,
                      "findings": [] if finding is None else [finding.to_json()]})


def run_diagnostics(defense: Defense, images: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
                    outcomes=None, seed: int = 0, n: int = 100, *,  # noqa: ANN001 - audit.outcomes.Outcomes
                    config: DiagnosticsConfig | None = None, progress: bool = False,
                    only: tuple[str, ...] | None = None) -> list[Finding]:
    """Every probe (or the `only` ones, by name) on the first `n` images, then the comparisons over `outcomes`
    when given: the findings of an audit without a store, for notebooks and tests."""
    from audit.checks import COMPARISONS

    config = config or DiagnosticsConfig()
    x, y = images[:n].to(defense.device), labels[:n].to(defense.device)
    findings = []
    for probe in PROBES:
        if only is None or probe.name in only:
            findings.extend(probe_one(probe, defense, x, y, threat, seed, config))
    if outcomes is not None and only is None:
        for comparison in COMPARISONS:
            findings.extend(comparison(outcomes))
    return findings
