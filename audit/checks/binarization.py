"""Judging the binarization test (`audit/probes/binarization.py`): `binarization-test`. Pure."""

from __future__ import annotations

from typing import Any

from audit.checks.finding import Finding, skipped

FINDING_ID = "binarization-test"
# The paper's criterion: an attack passes when it finds the guaranteed adversarial example (nearly) always.
# Below 95% of valid points we warn, below 80% we fail: at that rate the attack misses one example in five
# that provably exists, so its robust accuracy on this defense is no evidence of robustness.
PASS_RATE = 0.95
FAIL_RATE = 0.80


def check_binarization(data: dict[str, Any]) -> Finding:
    """Pure check over the probe's data: did the attack find the adversarial example that provably exists?"""
    rows = data.get("samples", [])
    valid = [r for r in rows if r["valid"]]
    attack = data.get("attack", "the attack")
    if not valid:
        return skipped(
            FINDING_ID,
            f"no valid binarized point among {len(rows)} (the linear head could not separate "
            f"the clean point from its eps-boundary)",
            attack=attack,
            n=len(rows),
        )
    rate = sum(r["attack_success"] for r in valid) / len(valid)
    random_rate = sum(r["random_success"] for r in valid) / len(valid)
    corner_rate = sum(r.get("random_success_corners", False) for r in valid) / len(valid)
    status = "pass" if rate >= PASS_RATE else ("warn" if rate >= FAIL_RATE else "fail")
    if status == "pass":
        message = (
            f"{attack} passes the binarization test: it found the adversarial example that provably exists "
            f"on {rate:.0%} of {len(valid)} points (a random attacker: {random_rate:.0%})"
        )
    else:
        message = (
            f"{attack} fails the binarization test: it found the adversarial example that provably exists on "
            f"only {rate:.0%} of {len(valid)} points (a random attacker: {random_rate:.0%}); it is too weak for "
            f"this defense, so its robust accuracy is no evidence of robustness"
        )
    evidence = {
        "attack": attack,
        "success_rate": rate,
        "random_success_rate": random_rate,
        "random_corner_success_rate": corner_rate,
        "n_valid": len(valid),
        "n_samples": len(rows),
        "pass_rate": PASS_RATE,
        "fail_rate": FAIL_RATE,
        "mean_validation_accuracy": sum(
            (r["validation_accuracy_inner"] + r["validation_accuracy_boundary"]) / 2 for r in valid
        )
        / len(valid),
        "missed_indices": [r["index"] for r in valid if not r["attack_success"]][:20],
    }
    return Finding(FINDING_ID, status, message, evidence)


def judge_binarization(data: dict[str, Any]) -> list[Finding]:
    if "skipped" in data:
        return [skipped(FINDING_ID, data["skipped"])]
    finding = check_binarization(data)
    finding.data = {
        "samples": [
            {k: r[k] for k in ("valid", "clean_logit_gap", "adversarial_logit_gap", "attack_success")}
            for r in data.get("samples", [])
        ],
        "attack": data.get("attack"),
    }
    return [finding]
