"""From findings to one plain answer: is gradient masking suspected, and which number should be reported?

Rule: masking is *suspected* iff a finding of a masking kind (`MASKING`) has status `fail`. Warnings never
decide it: their thresholds are set so that a clean adversarially trained model produces some of them by chance.
Failures of other kinds (an attack budget, a model left in train mode) are listed apart, as `other_failures`.
"""
from __future__ import annotations

from audit.diagnostics.finding import Finding

# The symptoms of gradient masking (Athalye et al. 2018; Carlini et al. 2019; Tramèr et al. 2020; Pintor et al.
# 2022; AutoAttack's own checks), each with what it means in plain words.
MASKING: dict[str, str] = {
    "zero-gradients": "some inputs get an exactly-zero gradient, so gradient attacks cannot move them",
    "nonfinite-gradients": "the gradient contains NaN or Inf, so gradient attacks step nowhere",
    "dead-zone-occupancy": "most MeanSparse features sit in the dead zone, where the exact gradient is zero",
    "surrogate-disagreement": "the exact gradient points elsewhere than the straight-through (BPDA) gradient",
    "finite-difference-mismatch": "the exact gradient does not predict how the loss actually changes (shattered gradients)",
    "blackbox-beats-whitebox": "a gradient-free attack breaks points that every gradient attack missed",
    "transfer-beats-whitebox": "points crafted on the base model break inputs that white-box attacks missed",
    "single-step-beats-iterative": "one FGSM step breaks points that the iterative attack missed",
    "adaptive-gap": "attacks with a surrogate backward (BPDA) break points that exact-gradient attacks missed",
    "unbounded-attack": "an attack allowed to change the whole image still fails on some points",
    "eps-sweep": "robust accuracy does not fall as the perturbation budget grows",
    "randomized": "the forward is random but undeclared, so attacks ran without EOT",
    "probabilities-not-logits": "the model outputs probabilities, whose CE gradients vanish",
    "gradient-in-forward": "the forward computes gradients itself, so attack gradients through it are unreliable",
    "ioaf-unavailable-gradients": "the attack loss has no usable gradient on some inputs",
    "ioaf-unconstrained-failure": "an attack with no perturbation limit still fails on some points",
}
# Failures that make the evaluation unreliable without being masking symptoms.
OTHER: dict[str, str] = {
    "train-mode": "the model is (partly) in training mode or its outputs depend on the batch",
    "loss-landscape": "the loss around the inputs is stepwise or jagged",
    "more-steps-help": "more attack iterations keep finding adversarial points: budgets have not converged",
    "ioaf-unstable-predictions": "the loss moves a lot under small random noise, so gradient steps may follow noise",
    "ioaf-silent-success": "the attack passed through adversarial points and returned a non-adversarial one",
    "ioaf-incomplete-optimization": "the attack loss was still improving when the attack stopped",
    "ioaf-transfer-failure": "points adversarial on the surrogate model are not adversarial on the defense",
}


def _claimed(suite_result) -> tuple[str, float] | None:  # noqa: ANN001 - a SuiteResult
    for label, summary in suite_result.attacks.items():
        if label.startswith("autoattack"):
            return label, summary.robust_accuracy(suite_result.clean_correct)
    return None


def verdict(findings: list[Finding], suite_result=None, defense=None) -> dict:  # noqa: ANN001
    """A JSON-able verdict: gradient_masking, randomized, trustworthy_robust_accuracy, drivers, summary."""
    drivers = [{"id": f.id, "why": f"{MASKING[f.id]} ({f.message})"} for f in findings
               if f.status == "fail" and f.id in MASKING]
    other_failures = [{"id": f.id, "why": f"{OTHER.get(f.id, 'failed')} ({f.message})"} for f in findings
                      if f.status == "fail" and f.id not in MASKING]
    warnings = [f.id for f in findings if f.status == "warn"]
    skipped = [f.id for f in findings if f.status == "skipped"]
    suspected = bool(drivers)
    observed_random = any(f.id == "randomized" and f.evidence.get("observed") for f in findings)
    randomized = bool(getattr(defense, "randomized", False)) or observed_random

    accuracy = claimed = clean = None
    if suite_result is not None:
        accuracy = suite_result.worst_case_robust_accuracy
        clean = suite_result.clean_accuracy
        claimed = _claimed(suite_result)
    checked = len(findings) - len(skipped)
    if suspected:
        first = (f"Gradient masking is suspected: {len(drivers)} of {checked} checks failed "
                 f"({', '.join(d['id'] for d in drivers)}).")
    else:
        first = (f"No sign of gradient masking in {checked} checks"
                 + (f" ({len(warnings)} warnings to read)." if warnings else "."))
    if accuracy is None:
        second = "Run the attack suite to get a robust accuracy worth reporting."
    else:
        second = f"Report the per-sample worst case over all attacks, {100 * accuracy:.1f}%"
        if claimed is not None and abs(claimed[1] - accuracy) > 1e-12:
            second += f" (not {claimed[0]} alone, {100 * claimed[1]:.1f}%)"
        second += (", and treat it as an upper bound: the true robust accuracy may be lower." if suspected
                   else "; like every empirical evaluation it is an upper bound.")
    if randomized:
        second += " The defense is randomized: attacks need EOT and scoring needs several draws."
    return {
        "gradient_masking": "suspected" if suspected else "not_detected",
        "randomized": randomized,
        "trustworthy_robust_accuracy": accuracy,
        "claimed_robust_accuracy": None if claimed is None else {"attack": claimed[0], "accuracy": claimed[1]},
        "clean_accuracy": clean,
        "drivers": drivers,
        "other_failures": other_failures,
        "warnings": warnings,
        "skipped": skipped,
        "summary": f"{first} {second}",
    }
