"""From findings to a plain answer to two questions a reviewer keeps apart:

1. Are the exact gradients unreliable, in a way that matters?  `gradient_masking`. A symptom
   (`meanings("symptom")`: e.g. finite differences disagree with the gradient, so the forward is not smooth) does
   not decide it alone: a straight-through quantizer whose author wrote the right backward shows the same symptom
   and hides nothing.
   What decides is whether the attacks that use the model's own gradient fall short:
   - `suspected` iff an attack gap failed (`meanings("masking")`: a paired comparison where gradient-free, transfer,
     single-step or surrogate-gradient attacks break significantly more than the exact-gradient ones, Holm-
     corrected), or a symptom failed and the binarization test failed too (the exact-gradient attack misses
     adversarial examples that provably exist), or no gradient reaches the input (`no-gradient-path`) and the
     other attacks break significantly many samples (the exact-gradient side, which could not run, broke none);
     the failed symptoms are then listed with the gaps that back them (`drivers`, `backed_by`);
   - else `inconclusive` when it could not be decided: a masking check raised or was not run (--diagnostics-n 0),
     too few clean-correct samples (fewer than MIN_SAMPLES), the strongest attack had not converged
     (`attack-convergence`), the exact-gradient attack failed the binarization test, or no gradient reaches the
     input and the other attacks broke too few samples to show a gap (only gradient-free attacks tested it);
   - else `not_detected`; a failed symptom with nothing to back it is listed in `unbacked_symptoms` and said in
     the summary, as a warning. Warnings never decide it.
2. May the reported robust accuracy be inflated (what a reviewer must act on)?  `claim_at_risk`:
   - `yes` when attacks outside AutoAttack break significantly more than AutoAttack alone (one-sided exact
     McNemar, p < 0.01 after Holm's correction with the comparisons, audit/checks/multiplicity.py), or
     masking is suspected while some samples still count as robust (the number is an upper bound of unknown
     slack);
   - `no` when masking is suspected but the worst case is already 0% (nothing left to inflate), or when no
     gap was found and the other attacks add nothing significant;
   - `unknown` when masking is inconclusive.
Failures of other kinds (an attack budget, a model left in train mode) are listed apart, as `other_failures`.
"""

from __future__ import annotations

from typing import Any

from audit.checks.comparisons import beyond_autoattack
from audit.checks.finding import Finding
from audit.checks.multiplicity import BEYOND_AUTOATTACK, deciding_tests, masking_tests
from audit.checks.registry import checks
from audit.outcomes import Outcomes
from audit.stats import holm, mcnemar_one_sided

MIN_SAMPLES = 20
P_AT_RISK = 0.01


def meanings(decides: str) -> dict[str, str]:
    """What a failure of each check that `decides` this (masking | symptom | other) means, from the check table."""
    return {c.id: c.meaning for c in checks() if c.decides == decides}


def no_path_gap(outcomes: Outcomes, family_size: int) -> dict[str, Any]:
    """When no gradient reaches the input, the exact-gradient attacks could not run and broke nothing: the gap is
    every clean-correct sample another Lp attack broke (b against c = 0, one-sided exact McNemar), Bonferroni-
    corrected with the masking family's tests (it is one more test that can decide the verdict)."""
    robust = outcomes.worst_case_robust("lp")
    broken = sum(c and not r for c, r in zip(outcomes.clean_correct, robust))
    p = mcnemar_one_sided(broken, 0)
    return {"broken": broken, "p_value": p, "significant": p * (family_size + 1) < P_AT_RISK}


def verdict(
    findings: list[Finding], outcomes: Outcomes | None = None, facts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-able verdict: gradient_masking, claim_at_risk, randomized, the number to report, drivers, summary."""
    facts = facts or {}
    gap_meaning, symptom_meaning, other_meaning = meanings("masking"), meanings("symptom"), meanings("other")
    gaps = [
        {"id": f.id, "why": f"{gap_meaning[f.id]} ({f.message})"}
        for f in findings
        if f.status == "fail" and f.id in gap_meaning
    ]
    symptoms = [
        {"id": f.id, "why": f"{symptom_meaning[f.id]} ({f.message})"}
        for f in findings
        if f.status == "fail" and f.id in symptom_meaning
    ]
    binarization_failed = any(f.id == "binarization-test" and f.status == "fail" for f in findings)
    no_path = any(f.id == "no-gradient-path" and f.status == "fail" for f in findings)
    other_failures = [
        {"id": f.id, "why": f"{other_meaning[f.id]} ({f.message})"}
        for f in findings
        if f.status == "fail" and f.id in other_meaning
    ]
    warnings = [f.id for f in findings if f.status == "warn"]
    skipped = [f.id for f in findings if f.status == "skipped"]
    deciding = {**gap_meaning, **symptom_meaning}
    undecided = [
        f"{f.id} could not run ({f.message})"
        for f in findings
        if f.status == "skipped" and f.id in deciding and f.evidence.get("error")
    ]
    not_run = [f.id for f in findings if f.status == "skipped" and f.id in deciding and f.evidence.get("not_run")]
    if not_run:
        undecided.append(f"{len(not_run)} masking checks were not run (--diagnostics-n 0)")
    # Convergence is judged on the suite's own budgets (`attack-convergence`), not on `more-steps-help`, whose
    # 10-against-100-iteration probe says little about an audit that already spends 100 and more.
    undecided += [
        f"the attacks had not converged ({f.message})"
        for f in findings
        if f.id == "attack-convergence" and f.status == "fail"
    ]
    if binarization_failed and not symptoms:
        undecided += [
            f"the exact-gradient attack failed the binarization test ({f.message})"
            for f in findings
            if f.id == "binarization-test" and f.status == "fail"
        ]
    observed_random = any(f.id == "randomized" and f.evidence.get("observed") for f in findings)
    randomized = bool(facts.get("randomized")) or observed_random

    accuracy = clean = None
    robust_count = 0
    beyond = None
    if outcomes is not None:
        robust = outcomes.worst_case_robust("lp")
        robust_count, accuracy = sum(robust), sum(robust) / max(outcomes.n, 1)
        clean = sum(outcomes.clean_correct) / max(outcomes.n, 1)
        if sum(outcomes.clean_correct) < MIN_SAMPLES:
            undecided.append(f"only {sum(outcomes.clean_correct)} clean-correct samples (fewer than {MIN_SAMPLES})")
        beyond = beyond_autoattack(outcomes)
        if beyond is not None:  # one of the masking family's tests: corrected with the comparisons (Holm)
            beyond["p_holm"] = holm(masking_tests(findings, beyond["p_value"]))[BEYOND_AUTOATTACK]

    backed_by = [g["id"] for g in gaps]
    if symptoms and binarization_failed:
        backed_by.append("binarization-test")
    if no_path and outcomes is not None:
        gap = no_path_gap(outcomes, len(masking_tests(findings, beyond["p_value"] if beyond else None)))
        if gap["significant"]:
            backed_by.append("no-gradient-path")
        elif not backed_by:
            undecided.append(
                f"no gradient reaches the input and the other attacks broke only {gap['broken']} "
                f"samples (p = {gap['p_value']:.2g}): too few to show what exact gradients miss"
            )
    if symptoms and not backed_by and outcomes is None:
        undecided.append(
            f"{', '.join(x['id'] for x in symptoms)} failed, but there are no attack outcomes to "
            f"tell whether that masks anything"
        )
    drivers = (gaps + symptoms) if backed_by else []
    unbacked = [] if backed_by else [s["id"] for s in symptoms]
    if drivers:
        masking = "suspected"
    elif undecided:
        masking = "inconclusive"
    else:
        masking = "not_detected"
    others_beat_aa = beyond is not None and beyond["p_holm"] < P_AT_RISK
    if masking == "suspected":
        at_risk = "yes" if robust_count > 0 else "no"
    elif others_beat_aa:
        at_risk = "yes"
    elif masking == "inconclusive":
        at_risk = "unknown"
    else:
        at_risk = "no"

    checked = len(findings) - len(skipped)
    backing = ", ".join(backed_by)
    shown = ", ".join(x["id"] for x in symptoms)
    if masking == "suspected" and at_risk == "yes":
        first = (
            f"The reported robust accuracy may be inflated: the attacks that use the model's own gradient fall "
            f"short ({backing})"
            + (f", with the symptoms {shown}" if symptoms else "")
            + ", so attacks that follow them may miss points."
        )
    elif masking == "suspected":
        first = (
            f"The attacks that use the model's own gradient fall short ({backing})"
            + (f", with the symptoms {shown}" if symptoms else "")
            + ", but the claim is not at risk: the worst case is already 0%."
        )
    elif at_risk == "yes":
        first = (
            f"The reported robust accuracy is inflated: attacks beyond AutoAttack break "
            f"{beyond['only_others_broke']} samples AutoAttack missed (p = {beyond['p_value']:.2g}), though no "  # type: ignore[index]  # set when at risk
            f"masking test failed."
        )
    elif masking == "inconclusive":
        first = f"Gradient masking could not be ruled out: {'; '.join(undecided)}."
    else:
        first = (
            f"No sign of gradient masking in {checked} checks, and no attack beyond AutoAttack breaks "
            f"significantly more" + (f" ({len(warnings)} warnings to read)." if warnings else ".")
        )
        if unbacked:
            first += (
                f" The symptoms {', '.join(unbacked)} failed, but no attack gap or binarization failure backs "
                f"them: the forward is not smooth, yet the attacks that follow its gradient lose nothing."
            )
    if accuracy is None:
        second = "Run the attack suite to get a robust accuracy worth reporting."
    else:
        second = f"Report the per-sample worst case over all attacks, {100 * accuracy:.1f}%"
        second += (
            ", and treat it as an upper bound: the true robust accuracy may be lower."
            if at_risk != "no"
            else "; like every empirical evaluation it is an upper bound."
        )
    if randomized:
        second += " The defense is randomized: attacks need EOT and scoring uses several common draws."
    return {
        "gradient_masking": masking,
        "claim_at_risk": at_risk,
        "randomized": randomized,
        "trustworthy_robust_accuracy": accuracy,
        "beyond_autoattack": beyond,
        "tests": deciding_tests(findings, beyond["p_value"] if beyond else None),
        "clean_accuracy": clean,
        "drivers": drivers,
        "backed_by": backed_by if drivers else [],
        "unbacked_symptoms": unbacked,
        "undecided": undecided,
        "other_failures": other_failures,
        "warnings": warnings,
        "skipped": skipped,
        "summary": f"{first} {second}",
    }
