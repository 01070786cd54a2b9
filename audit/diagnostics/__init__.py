"""Diagnostics: does a defense's robustness survive scrutiny, or is it gradient masking?

`run_diagnostics` runs every check on a few clean test inputs (and, when given, over a stored `SuiteResult`),
and returns a list of `Finding`s: a stable id, pass | warn | fail | skipped, one line, the evidence, and an
anchor into docs/findings.md. A check that raises becomes `skipped` findings with the reason; the others still
run. `verdict(findings, suite_result, defense)` turns them into one plain answer.

    findings = run_diagnostics(defense, images, labels, ThreatModel("Linf", 8 / 255), suite_result, seed=0)
    summary = verdict(findings, suite_result, defense)["summary"]  # one plain sentence
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from attacks.runner import derive_seed
from attacks.threat_model import ThreatModel
from audit.diagnostics import comparisons, gradients, ioaf, landscape, sanity
from audit.diagnostics.config import DiagnosticsConfig
from audit.diagnostics.finding import Finding, skipped
from audit.diagnostics.verdict import MASKING, OTHER, verdict
from defenses.protocol import Defense

__all__ = ["Check", "CHECKS", "DiagnosticsConfig", "Finding", "MASKING", "OTHER", "run_diagnostics", "verdict"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One diagnostic: its name, the finding ids it produces, and the function that produces them."""

    name: str
    ids: tuple[str, ...]
    function: Callable[..., list[Finding]]
    needs_suite: bool = False


CHECKS: tuple[Check, ...] = (
    Check("gradients", ("zero-gradients", "nonfinite-gradients"), gradients.check_gradients),
    Check("dead-zone", ("dead-zone-occupancy",), gradients.check_dead_zone),
    Check("surrogates", ("surrogate-disagreement",), gradients.check_surrogate_agreement),
    Check("finite-differences", ("finite-difference-mismatch",), gradients.check_finite_differences),
    Check("landscape", ("loss-landscape",), landscape.check_landscape),
    Check("blackbox", ("blackbox-beats-whitebox",), comparisons.check_blackbox_beats_whitebox, True),
    Check("transfer", ("transfer-beats-whitebox",), comparisons.check_transfer_beats_whitebox, True),
    Check("single-step", ("single-step-beats-iterative",), comparisons.check_single_step_beats_iterative, True),
    Check("adaptive-gap", ("adaptive-gap",), comparisons.check_adaptive_gap, True),
    Check("randomized", ("randomized",), sanity.check_randomized),
    Check("probabilities", ("probabilities-not-logits",), sanity.check_probabilities),
    Check("gradient-in-forward", ("gradient-in-forward",), sanity.check_gradient_in_forward),
    Check("train-mode", ("train-mode",), sanity.check_train_mode),
    Check("unbounded", ("unbounded-attack",), sanity.check_unbounded_attack),
    Check("eps-sweep", ("eps-sweep",), sanity.check_eps_sweep),
    Check("more-steps", ("more-steps-help",), sanity.check_more_steps),
    Check("ioaf-gradients", ("ioaf-unavailable-gradients",), ioaf.check_unavailable_gradients),
    Check("ioaf-unstable", ("ioaf-unstable-predictions",), ioaf.check_unstable_predictions),
    Check("ioaf-pgd", ("ioaf-silent-success", "ioaf-incomplete-optimization"), ioaf.check_pgd_indicators),
    Check("ioaf-transfer", ("ioaf-transfer-failure",), ioaf.check_transfer_failure),
    Check("ioaf-unconstrained", ("ioaf-unconstrained-failure",), ioaf.check_unconstrained_failure),
)


def run_diagnostics(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    suite_result=None,  # noqa: ANN001 - an audit.runner.SuiteResult, or None
    seed: int = 0,
    n: int = 100,
    *,
    config: DiagnosticsConfig | None = None,
    progress: bool = True,
    only: tuple[str, ...] | None = None,
) -> list[Finding]:
    """Run every check (or the `only` ones, by check name) on the first `n` images; never lose a finding.

    Each check gets its own seed, derived from `seed` and its name, and records it in its evidence. The
    comparisons need `suite_result` (the per-sample results of the attack suite on the same images) and are
    skipped without it; with n = 0 they are the only checks that run.
    """
    config = config or DiagnosticsConfig()
    device = defense.device
    x = images[:n].to(device)
    y = labels[:n].to(device)
    # No defense.eval() here: `train-mode` must see the model as it was handed over.
    checks = [check for check in CHECKS if only is None or check.name in only]
    findings: list[Finding] = []
    bar = tqdm(checks, desc="diagnostics", unit="check", disable=not progress, leave=False)
    for check in bar:
        bar.set_postfix_str(check.name)
        start = time.perf_counter()
        try:
            if check.needs_suite:
                if suite_result is None:
                    produced = [skipped(i, "no attack-suite results given (run the suite first)") for i in check.ids]
                else:
                    produced = check.function(suite_result)
            elif len(x) == 0:
                produced = [skipped(i, "no samples given (n = 0): only the comparisons over stored results ran")
                            for i in check.ids]
            else:
                produced = check.function(defense, x, y, threat, seed=derive_seed(seed, "diagnostics", check.name),
                                          config=config)
        except Exception as error:  # noqa: BLE001 - one broken check must not lose the others
            log.warning("diagnostic %s raised %s: %s", check.name, type(error).__name__, error, exc_info=True)
            first = (str(error).splitlines() or [""])[0][:200]
            produced = [skipped(i, f"the {check.name} check raised {type(error).__name__}: {first}") for i in check.ids]
        log.info("%s: %s in %.1f s", check.name, ", ".join(f"{f.id}={f.status}" for f in produced),
                 time.perf_counter() - start)
        findings.extend(produced)
    bar.close()
    return findings
