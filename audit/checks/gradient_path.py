"""Judging the gradient-path probe (`audit/probes/gradient_path.py`): `no-gradient-path`. Pure."""

from __future__ import annotations

from typing import Any

from audit.checks.finding import Finding


def judge_gradient_path(m: dict[str, Any]) -> list[Finding]:
    reach = m["reaches_input"]
    evidence = {"n": m["n"], "reaches_input": reach, "replaced": m.get("replaced")}
    if reach.get("exact", False):
        return [Finding("no-gradient-path", "pass", "the exact gradient reaches the input", evidence)]
    helped = [name for name, ok in reach.items() if ok and name != "exact"]
    if helped:
        message = (
            f"no gradient reaches the input through the exact backward; exact-gradient attacks are not "
            f"applicable; the surrogate backward ({', '.join(helped)}) supplies one"
        )
    else:
        message = (
            "no gradient reaches the input, not even through a surrogate: only gradient-free and transfer "
            "attacks apply, and the robust accuracy is an upper bound"
        )
    return [Finding("no-gradient-path", "fail", message, evidence)]
