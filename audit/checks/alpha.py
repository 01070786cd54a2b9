"""Judging how alpha was chosen (`audit/probes/alpha.py`): `alpha-selection`."""

from __future__ import annotations

from typing import Any

from audit.checks.finding import Finding


def judge_alpha(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return []  # no MeanSparse: nothing to say
    alpha, split = m["alpha"], m["split"]
    evidence = {key: value for key, value in m.items() if key != "source"}
    if split is None:
        return [
            Finding(
                "alpha-selection",
                "skipped",
                "how alpha was chosen is not recorded; if it was tuned with APGD "
                "on the test set, the AutoAttack number is optimistic by construction",
                evidence,
            )
        ]
    if split == "test":
        return [
            Finding(
                "alpha-selection",
                "warn",
                f"alpha={alpha:g} was chosen by the paper's APGD-CE sweep on the "
                "test set, tuned against the attack whose gradients MeanSparse masks",
                evidence,
            )
        ]
    return [
        Finding(
            "alpha-selection", "pass", f"alpha={alpha:g} was chosen by an APGD-CE sweep on the {split} split", evidence
        )
    ]
