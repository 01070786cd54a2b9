"""Pure comparisons over a stored `SuiteResult`: did a weaker or gradient-free attack find what the gradient
attacks missed?  `blackbox-beats-whitebox`, `transfer-beats-whitebox`, `single-step-beats-iterative`,
`adaptive-gap`. Nothing here runs a model.

Attack labels are sorted into kinds by name (see `attack_kind`). AutoAttack runs Square last, on the points its
white-box parts left: when the runner kept `broken_by`, a sample AutoAttack broke with Square counts as a
black-box success, not a white-box one (this is AutoAttack's own Square check).
"""
from __future__ import annotations

from audit.diagnostics.finding import Finding, skipped
from audit.runner import SuiteResult

# A weaker attack beating a stronger one on a sample or two happens by chance near the decision boundary
# (AutoAttack's Square check fires from 0.2 points). We fail from 1% of the evaluated samples *and* at least 2
# samples, warn from 1 sample, so a clean model evaluated on a few hundred points does not cry wolf.
BEATS_FAIL_FRACTION = 0.01
BEATS_FAIL_COUNT = 2
BEATS_WARN_COUNT = 1
# The adaptive gap (robust accuracy under exact-gradient attacks minus that under exact + BPDA attacks): fail
# from 1 point and 2 samples (RobustBench's BPDA re-evaluation put MeanSparse models 1.4 - 3.2 points below
# their AutoAttack claims, and 0.3 - 2.1 points below their base models; but 1 sample out of 100 is noise),
# warn from 1 sample.
GAP_FAIL_POINTS = 1.0
GAP_FAIL_COUNT = 2
GAP_WARN_COUNT = 1
SHOWN_INDICES = 50
BLACKBOX_NAMES = ("square", "boundary", "hopskipjump", "spsa", "nes")
OTHER_THREAT_NAMES = ("spatial", "stadv")


def attack_kind(label: str) -> str:
    """`transfer`, `adaptive` (BPDA), `blackbox`, `other` (a different threat model) or `exact` (white-box)."""
    if label.startswith("transfer-"):
        return "transfer"
    if "+bpda-" in label:
        return "adaptive"
    base = label.split("+")[0].lower()
    if any(name in base for name in OTHER_THREAT_NAMES):
        return "other"
    if any(name in base for name in BLACKBOX_NAMES):
        return "blackbox"
    return "exact"


def _is_autoattack(label: str) -> bool:
    return label.split("+")[0].startswith("autoattack")


def _successes(result: SuiteResult, label: str, kind: str) -> list[bool]:
    """Per-sample success of `label` counted as `kind` ('exact' or 'blackbox'); None (not run) is no success."""
    summary = result.attacks[label]
    success = [bool(s) for s in summary.success]
    broken_by = summary.extra.get("broken_by") if _is_autoattack(label) else None
    if broken_by is None:
        return success if kind == attack_kind(label) else [False] * len(success)

    def by(index: int) -> str:
        return str(broken_by.get(index, broken_by.get(str(index), ""))) if isinstance(broken_by, dict) else ""

    if kind == "blackbox":
        return [s and by(i) == "square" for i, s in enumerate(success)]
    return [s and by(i) != "square" for i, s in enumerate(success)]


def _labels(result: SuiteResult, kind: str) -> list[str]:
    labels = [label for label in result.attacks if attack_kind(label) == kind]
    if kind == "blackbox":  # AutoAttack's Square part, when we can tell it apart
        labels += [label for label in result.attacks if _is_autoattack(label)
                   and result.attacks[label].extra.get("broken_by") is not None]
    return labels


def _any(result: SuiteResult, labels: list[str], kind: str) -> list[bool]:
    found = [False] * len(result.labels)
    for label in labels:
        found = [a or b for a, b in zip(found, _successes(result, label, kind))]
    return found


def _beats(result: SuiteResult, finding_id: str, winners: list[str], winner_kind: str, losers: list[str],
           loser_kind: str, what: str) -> Finding:
    n = len(result.labels)
    won = _any(result, winners, winner_kind)
    lost = _any(result, losers, loser_kind)
    index = [i for i in range(n) if result.clean_correct[i] and won[i] and not lost[i]]
    count, fraction = len(index), len(index) / max(n, 1)
    if count >= BEATS_FAIL_COUNT and fraction >= BEATS_FAIL_FRACTION:
        status = "fail"
    elif count >= BEATS_WARN_COUNT:
        status = "warn"
    else:
        status = "pass"
    message = (f"{what} on {count} of {n} samples ({100 * fraction:.1f}%)" if count
               else f"no sample where {what}")
    return Finding(finding_id, status, message,
                   {"n": n, "count": count, "fraction": fraction, "points": 100 * fraction,
                    "indices": index[:SHOWN_INDICES], "winners": winners, "losers": losers})


def check_blackbox_beats_whitebox(result: SuiteResult) -> list[Finding]:
    winners, losers = _labels(result, "blackbox"), _labels(result, "exact")
    if not winners:
        return [skipped("blackbox-beats-whitebox", "no black-box attack (square) in the suite")]
    if not losers:
        return [skipped("blackbox-beats-whitebox", "no exact-gradient white-box attack in the suite")]
    return [_beats(result, "blackbox-beats-whitebox", winners, "blackbox", losers, "exact",
                   "black-box Square succeeds where every exact-gradient attack failed")]


def check_transfer_beats_whitebox(result: SuiteResult) -> list[Finding]:
    winners, losers = _labels(result, "transfer"), _labels(result, "exact")
    if not winners:
        return [skipped("transfer-beats-whitebox", "no transfer attack in the suite (no base model to transfer from?)")]
    if not losers:
        return [skipped("transfer-beats-whitebox", "no exact-gradient white-box attack in the suite")]
    return [_beats(result, "transfer-beats-whitebox", winners, "transfer", losers, "exact",
                   "points crafted on the base model succeed where every exact-gradient attack failed")]


def check_single_step_beats_iterative(result: SuiteResult) -> list[Finding]:
    exact = _labels(result, "exact")
    winners = [label for label in exact if label.split("+")[0] == "fgsm"]
    losers = [label for label in exact if label.split("+")[0] != "fgsm"]
    if not winners:
        return [skipped("single-step-beats-iterative", "no single-step attack (fgsm) in the suite")]
    if not losers:
        return [skipped("single-step-beats-iterative", "no iterative exact-gradient attack (apgd-ce) in the suite")]
    return [_beats(result, "single-step-beats-iterative", winners, "exact", losers, "exact",
                   "single-step FGSM succeeds where every iterative exact-gradient attack failed")]


def check_adaptive_gap(result: SuiteResult) -> list[Finding]:
    """Robust accuracy under exact-gradient attacks minus that under exact + BPDA attacks, in points.

    AutoAttack counts whole (its Square part included) on the exact side: that is the number a paper reports,
    and it makes the gap conservative.
    """
    exact = [label for label in result.attacks if attack_kind(label) == "exact"]
    adaptive = [label for label in result.attacks if attack_kind(label) == "adaptive"]
    if not adaptive:
        return [skipped("adaptive-gap", "no adaptive (BPDA) attack in the suite")]
    if not exact:
        return [skipped("adaptive-gap", "no exact-gradient attack in the suite to compare against")]
    n = len(result.labels)
    broken_exact = [False] * n
    for label in exact:
        broken_exact = [a or bool(s) for a, s in zip(broken_exact, result.attacks[label].success)]
    robust_exact = [c and not b for c, b in zip(result.clean_correct, broken_exact)]
    broken_adaptive = [False] * n
    for label in adaptive:
        broken_adaptive = [a or bool(s) for a, s in zip(broken_adaptive, result.attacks[label].success)]
    gained = [i for i in range(n) if robust_exact[i] and broken_adaptive[i]]
    accuracy_exact = sum(robust_exact) / max(n, 1)
    accuracy_combined = accuracy_exact - len(gained) / max(n, 1)
    gap = 100 * (accuracy_exact - accuracy_combined)
    if gap >= GAP_FAIL_POINTS and len(gained) >= GAP_FAIL_COUNT:
        status = "fail"
    elif len(gained) >= GAP_WARN_COUNT:
        status = "warn"
    else:
        status = "pass"
    per_attack = {label: summary.robust_accuracy(result.clean_correct) for label, summary in result.attacks.items()}
    best_adaptive = min(adaptive, key=per_attack.__getitem__)
    message = (f"adaptive (BPDA) attacks lower robust accuracy from {100 * accuracy_exact:.1f}% to "
               f"{100 * accuracy_combined:.1f}% ({gap:.1f} points; strongest alone: {best_adaptive})" if gained
               else f"adaptive (BPDA) attacks find nothing the exact-gradient attacks missed "
                    f"({100 * accuracy_exact:.1f}% either way)")
    return [Finding("adaptive-gap", status, message,
                    {"n": n, "gap_points": gap, "gap_count": len(gained), "exact_robust_accuracy": accuracy_exact,
                     "combined_robust_accuracy": accuracy_combined, "exact_attacks": exact,
                     "adaptive_attacks": adaptive, "per_attack_accuracy": per_attack,
                     "indices": gained[:SHOWN_INDICES]},
                    data={"attacks": list(per_attack), "accuracy": list(per_attack.values())})]


CHECKS = (check_blackbox_beats_whitebox, check_transfer_beats_whitebox, check_single_step_beats_iterative,
          check_adaptive_gap)


def check_comparisons(result: SuiteResult) -> list[Finding]:
    return [finding for check in CHECKS for finding in check(result)]
