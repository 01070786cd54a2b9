"""The one table of checks: every finding id, where its data comes from, whether it can decide the verdict, its
statistic, its threshold, and why. `verdict.py` reads the `decides` column; docs/findings.md shows this table (a
test keeps the two in step).

decides: `masking` (an attack gap: attacks that use the model's own gradient fall short of gradient-free, transfer,
single-step or surrogate-gradient ones on paired samples; a fail makes gradient masking `suspected`), `symptom`
(a fail says the gradient or the forward is odd, e.g. not smooth; it is supporting evidence, and makes masking
`suspected` only when an attack gap or a failed binarization test backs it, else a warning: verdict.py), `other`
(a fail makes the evaluation unreliable without being a masking symptom) or `none` (informational: it describes
the mechanism, and a sound model at published settings can sit on either side of any line we could draw).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audit.checks import attribution, convergence, ioaf, sanity
from audit.checks import comparisons as cmp
from audit.checks import gradient_path as path
from audit.checks import gradients as grad
from audit.checks import landscape as land
from audit.checks.alpha import judge_alpha
from audit.checks.binarization import FAIL_RATE as BINARIZATION_FAIL
from audit.checks.binarization import PASS_RATE as BINARIZATION_PASS
from audit.checks.binarization import judge_binarization
from audit.checks.finding import Finding

OUTCOMES = "outcomes"  # the comparisons read the stored attack outcomes, not a probe


@dataclass(frozen=True)
class Check:
    id: str
    source: str  # the probe whose measurement it judges, or OUTCOMES
    decides: str  # masking | symptom | other | none
    meaning: str  # what a failure means, in plain words
    statistic: str
    threshold: str
    why: str


def _p(value: float) -> str:
    return f"{value:g}"


CHECKS: tuple[Check, ...] = (
    Check(
        "no-gradient-path",
        "gradient-path",
        "symptom",
        "no gradient reaches the input through the exact backward, so exact-gradient attacks cannot run",
        "any non-zero input gradient of a fixed random projection of the logits, exact and per surrogate",
        "fail when the exact one has none",
        "a cut graph (comparisons, rounding, detach) crashes or stalls "
        "gradient attacks; the audit then marks them not applicable and runs Square harder",
    ),
    Check(
        "zero-gradients",
        "gradients",
        "symptom",
        "some inputs get an exactly-zero gradient, so gradient attacks cannot move them",
        "samples whose whole CE input gradient is exactly 0",
        f"fail >= {grad.ZERO_SAMPLES_FAIL} sample",
        "a float32 network only gets there when the loss underflows (margin > ~100)",
    ),
    Check(
        "nonfinite-gradients",
        "gradients",
        "symptom",
        "the gradient contains NaN or Inf, so attacks step nowhere",
        "samples with NaN/Inf in the input gradient",
        "fail >= 1 sample",
        "never legitimate",
    ),
    Check(
        "dead-zone-occupancy",
        "dead-zone",
        "none",
        "many MeanSparse features sit in the dead zone, where the exact gradient is zero",
        "mean fraction of MeanSparse features inside |x - mean| < alpha std",
        f"warn >= {_p(grad.DEAD_ZONE_WARN)}, fail >= {_p(grad.DEAD_ZONE_FAIL)}",
        "the mechanism, not the symptom: published alphas put 8-24% of features inside; whether that masks the "
        "gradient is decided by finite differences and the attack comparisons",
    ),
    Check(
        "surrogate-disagreement",
        "surrogates",
        "none",
        "the exact gradient points elsewhere than the straight-through (BPDA) gradient",
        "median cosine(exact, identity-surrogate input gradient)",
        f"warn < {_p(grad.COSINE_WARN)}, fail < {_p(grad.COSINE_FAIL)}",
        "a disagreement says the gradients differ, not which is right; at published alphas the cosine stays high "
        "while finite differences show the exact gradient is wrong",
    ),
    Check(
        "finite-difference-mismatch",
        "finite-differences",
        "symptom",
        "the exact gradient does not predict how the loss actually changes (shattered gradients)",
        "median relative error |fd - g.v| / max(|fd|, |g.v|) over random directions, above the loss's rounding noise",
        f"warn >= {_p(grad.FD_ERROR_WARN)}, fail >= {_p(grad.FD_ERROR_FAIL)}",
        "ReLU kinks give ~0.1 on sound models; jumps in the forward give ~1",
    ),
    Check(
        "loss-landscape",
        "landscape",
        "other",
        "the loss around the inputs is stepwise or jagged",
        "worst direction's flat-step fraction and sign changes per profile",
        f"warn: flat >= {_p(land.FLAT_WARN)} or sign changes >= {_p(land.SIGN_CHANGES_WARN)}",
        "plateaus and jaggedness at the scale of eps",
    ),
    Check(
        "randomized",
        "randomized",
        "symptom",
        "the forward is random but undeclared, so attacks ran without EOT",
        "max logit difference over repeated forwards, relative to the logit scale",
        f"observed > {_p(sanity.RANDOM_TOLERANCE)}; fail when observed and undeclared",
        "AutoAttack's own check; undeclared noise defeats single-draw attacks",
    ),
    Check(
        "probabilities-not-logits",
        "probabilities",
        "symptom",
        "the model outputs probabilities, whose CE gradients vanish",
        "outputs in [0, 1] with rows summing to 1",
        f"fail within {_p(sanity.PROBABILITY_TOLERANCE)}",
        "AutoAttack's own check",
    ),
    Check(
        "gradient-in-forward",
        "gradient-in-forward",
        "symptom",
        "the forward computes gradients itself, so attack gradients through it are unreliable",
        "autograd calls or grad mode inside forward under no_grad",
        "fail on any",
        "AutoAttack's check_dynamic",
    ),
    Check(
        "train-mode",
        "train-mode",
        "other",
        "the model is (partly) in training mode or its outputs depend on the batch",
        "modules in training mode; relative logit change batch vs one by one",
        f"fail on any module, or > {_p(sanity.BATCH_DEPENDENCE_TOLERANCE)}",
        "BatchNorm statistics leak the batch",
    ),
    Check(
        "unbounded-attack",
        "unbounded",
        "symptom",
        "an attack allowed to change the whole image still fails",
        "clean-correct samples surviving APGD-CE with an eps covering the input box",
        f"fail > {_p(sanity.UNBOUNDED_MAX_SURVIVORS)} of them",
        "Athalye et al. 2018; Carlini et al. 2019",
    ),
    Check(
        "eps-sweep",
        "eps-sweep",
        "symptom",
        "robust accuracy does not fall as the perturbation budget grows",
        "rise of accuracy with eps; share of the samples robust at eps still robust at the largest eps",
        f"fail on a rise > {sanity.MONOTONE_TOLERANCE_SAMPLES} samples and {_p(sanity.MONOTONE_TOLERANCE_POINTS)} "
        f"points, or kept >= {_p(sanity.EPS_KEPT_FAIL)} (warn >= {_p(sanity.EPS_KEPT_WARN)}), from "
        f"{sanity.EPS_KEPT_MIN_SAMPLES} samples",
        "relative, so a sound model audited at a small eps passes",
    ),
    Check(
        "more-steps-help",
        "more-steps",
        "other",
        "more attack iterations keep finding adversarial points: budgets have not converged",
        "samples APGD-CE breaks with many iterations but not with few",
        f"warn >= {sanity.MORE_STEPS_WARN_COUNT} samples and {_p(sanity.MORE_STEPS_WARN_POINTS)} points",
        "10 against 100 iterations on a few samples: a hint only; convergence of the suite itself is "
        "attack-convergence",
    ),
    Check(
        "ioaf-unavailable-gradients",
        "ioaf-gradients",
        "symptom",
        "the attack loss has no usable gradient on some inputs",
        "exception, interrupted graph, or an all-zero gradient on any sample",
        "fail on any",
        "Pintor et al. 2022",
    ),
    Check(
        "ioaf-unstable-predictions",
        "ioaf-unstable",
        "other",
        "the loss moves a lot under small random noise, so gradient steps may follow noise",
        "mean relative margin change under uniform noise of radius eps/2 (capped at 1)",
        f"warn >= {_p(ioaf.UNSTABLE_WARN)}",
        "cannot tell a weak model from a noisy one: warns only",
    ),
    Check(
        "ioaf-silent-success",
        "ioaf-pgd",
        "other",
        "the attack passed through adversarial points and returned a non-adversarial one",
        "failed samples with an adversarial earlier iterate",
        f"warn >= {ioaf.MIN_FLAGGED} samples and {_p(ioaf.SILENT_WARN_FRACTION)} of the failed",
        "Pintor et al.",
    ),
    Check(
        "ioaf-incomplete-optimization",
        "ioaf-pgd",
        "other",
        "the attack loss was still improving when the attack stopped",
        f"failed samples whose running-best normalised loss moved > {_p(ioaf.INCOMPLETE_DELTA)} over the last "
        f"{ioaf.INCOMPLETE_WINDOW} steps",
        f"warn >= {ioaf.MIN_FLAGGED} samples and {_p(ioaf.INCOMPLETE_WARN_FRACTION)} of the failed",
        "Pintor et al.",
    ),
    Check(
        "ioaf-transfer-failure",
        "ioaf-transfer",
        "other",
        "points adversarial on the surrogate model are not adversarial on the defense",
        "share of surrogate-adversarial points that fail on the defense",
        f"warn >= {_p(ioaf.TRANSFER_FAILURE_WARN)}",
        "Pintor et al.",
    ),
    Check(
        "ioaf-unconstrained-failure",
        "ioaf-unconstrained",
        "symptom",
        "an attack with no perturbation limit still fails on some points",
        "clean-correct samples PGD with eps = inf cannot misclassify",
        f"fail > {_p(ioaf.UNCONSTRAINED_MAX_FAILURES)} of them",
        "Pintor et al.",
    ),
    Check(
        "binarization-test",
        "binarization",
        "other",
        "the exact-gradient attack misses adversarial examples that provably exist: it is too weak for this defense",
        "share of binarized points (Zimmermann et al. 2022) where APGD-CE finds the guaranteed example",
        f"warn < {_p(BINARIZATION_PASS)}, fail < {_p(BINARIZATION_FAIL)}",
        "a fail backs a failed symptom (masking suspected); alone it makes the verdict inconclusive: the attack's "
        "misses are no evidence of robustness",
    ),
    Check(
        "layer-attribution",
        "layer-attribution",
        "none",
        "the gradient masking sits in these MeanSparse layers",
        "per layer: robust-accuracy gap between exact and straight-through APGD-CE that making it alone "
        "straight-through closes; the residual is what the layers do together",
        f"warn when the gap is >= {attribution.MIN_GAP_SAMPLES} samples and {_p(attribution.MIN_GAP_FRACTION)} of them",
        "where the masking is, not whether: that is adaptive-gap and the finite differences",
    ),
    Check(
        "alpha-selection",
        "alpha",
        "none",
        "alpha was tuned on the test set against the attack it masks",
        "the split alpha was chosen on",
        "warn when the test set",
        "the paper's own protocol (Amini et al., MeanSparse, OpenReview 2024: alpha swept against APGD-CE on the "
        "test set)",
    ),
    Check(
        "blackbox-beats-whitebox",
        OUTCOMES,
        "masking",
        "a gradient-free attack breaks points that every gradient attack missed",
        "paired samples only gradient-free attacks broke (b) vs only exact-gradient ones (c); exact one-sided McNemar",
        f"fail Holm-corrected p < {_p(cmp.P_FAIL)} (the masking family: the paired comparisons and the "
        f"beyond-AutoAttack test) and b >= {_p(cmp.MIN_FRACTION)} of the paired; warn b >= 1",
        "AutoAttack's Square check, made a paired test",
    ),
    Check(
        "transfer-beats-whitebox",
        OUTCOMES,
        "masking",
        "points crafted on the base model break inputs that white-box attacks missed",
        "as above, transfer vs exact",
        f"fail Holm-corrected p < {_p(cmp.P_FAIL)}",
        "RobustBench's re-evaluation of Kang2021Stable",
    ),
    Check(
        "single-step-beats-iterative",
        OUTCOMES,
        "masking",
        "one FGSM step breaks points that the iterative attack missed",
        "as above, single-step vs iterative exact",
        f"fail Holm-corrected p < {_p(cmp.P_FAIL)}",
        "Athalye et al. 2018",
    ),
    Check(
        "adaptive-gap",
        OUTCOMES,
        "masking",
        "attacks with a surrogate backward (BPDA) break points that exact-gradient attacks missed",
        "as above, BPDA vs exact (AutoAttack whole on the exact side)",
        f"fail Holm-corrected p < {_p(cmp.P_FAIL)}",
        "BPDA re-evaluations of MeanSparse (RobustBench)",
    ),
    Check(
        "attack-convergence",
        OUTCOMES,
        "other",
        "the strongest attack still breaks points at its largest budget: the worst case has not converged",
        "samples only the tops of the strength curves (iterations, restarts, queries) broke; exact one-sided McNemar",
        f"fail p < {_p(convergence.P_FAIL)}, Holm-corrected over the curves, and >= "
        f"{_p(convergence.MIN_FRACTION)} of the samples it ran on",
        "an attack that has not converged cannot clear a model: the verdict becomes inconclusive",
    ),
    Check(
        "static-model-gain",
        OUTCOMES,
        "masking",
        "a test-time defense holds more samples under attacks on itself than its static model does under "
        "transfer: the gain is the attacks' blind spot until an adaptive attack closes it",
        "paired samples held only on the defense (b) vs only on the static model (c); exact one-sided McNemar; "
        "and the claimed robust accuracy against the static model's",
        f"fail Holm-corrected p < {_p(cmp.P_FAIL)} (the masking family), or the claim above the static model's",
        "Croce et al. 2022: no test-time defense beat its static model",
    ),
)
JUDGES = {
    "gradient-path": path.judge_gradient_path,
    "gradients": grad.judge_gradients,
    "dead-zone": grad.judge_dead_zone,
    "surrogates": grad.judge_surrogates,
    "finite-differences": grad.judge_finite_differences,
    "landscape": land.judge_landscape,
    "randomized": sanity.judge_randomized,
    "probabilities": sanity.judge_probabilities,
    "gradient-in-forward": sanity.judge_gradient_in_forward,
    "train-mode": sanity.judge_train_mode,
    "unbounded": sanity.judge_unbounded,
    "eps-sweep": sanity.judge_eps_sweep,
    "more-steps": sanity.judge_more_steps,
    "ioaf-gradients": ioaf.judge_unavailable_gradients,
    "ioaf-unstable": ioaf.judge_unstable_predictions,
    "ioaf-pgd": ioaf.judge_pgd_trace,
    "ioaf-transfer": ioaf.judge_transfer,
    "ioaf-unconstrained": ioaf.judge_unconstrained,
    "alpha": judge_alpha,
    "binarization": judge_binarization,
    "layer-attribution": attribution.judge_attribution,
}


@dataclass(frozen=True)
class Diagnostic:
    """A diagnostic in one module of `audit/diagnostics/`: the probe that measures the model (stored as the row
    `probe:<probe>`), the function that judges its measurement, and the rows it adds to the check table."""

    probe: str
    measure: Callable[..., dict[str, Any]]  # (defense, x, y, threat, *, seed, config) -> plain-JSON measurement
    judge: Callable[[dict[str, Any]], list[Finding]]
    checks: tuple[Check, ...]


_REGISTERED: dict[str, Diagnostic] = {}
_discovered = False


def register(diagnostic: Diagnostic) -> Diagnostic:
    """Add a diagnostic; its module calls this at import (see `diagnostics`)."""
    taken = {c.source for c in CHECKS} | {c.id for c in CHECKS}
    if diagnostic.probe in taken or {c.id for c in diagnostic.checks} & taken:
        raise ValueError(f"diagnostic {diagnostic.probe!r} reuses a probe name or check id of the built-in table")
    if any(c.source != diagnostic.probe for c in diagnostic.checks):
        raise ValueError(f"diagnostic {diagnostic.probe!r}: each of its checks must have it as source")
    _REGISTERED[diagnostic.probe] = diagnostic
    return diagnostic


def diagnostics() -> tuple[Diagnostic, ...]:
    """The diagnostics of `audit/diagnostics/`: every module there is imported once, and registers itself by being
    there, so adding a diagnostic is one file (plus its test and its docs section). By probe name."""
    global _discovered
    if not _discovered:
        # A plugin lookup, by name: the registry needs no diagnostic module's contents, they need its `register`.
        package = importlib.import_module("audit.diagnostics")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"audit.diagnostics.{module.name}")
        _discovered = True
    return tuple(_REGISTERED[name] for name in sorted(_REGISTERED))


def checks() -> tuple[Check, ...]:
    """Every check: the built-in table with the registered diagnostics' rows before the comparisons'."""
    added = [c for d in diagnostics() for c in d.checks]
    first_comparison = next(i for i, c in enumerate(CHECKS) if c.source == OUTCOMES)
    return (*CHECKS[:first_comparison], *added, *CHECKS[first_comparison:])


def judges() -> dict[str, Callable[[dict[str, Any]], list[Finding]]]:
    """Probe name -> the function that judges its measurement."""
    return {**JUDGES, **{d.probe: d.judge for d in diagnostics()}}


def markdown_table() -> str:
    """The table as docs/findings.md shows it (a test keeps the two identical)."""
    rows = ["| id | decides | statistic | threshold | why |", "|---|---|---|---|---|"]
    for c in checks():
        cells = [f"[`{c.id}`](#{c.id})", c.decides, c.statistic, c.threshold, c.why]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)
