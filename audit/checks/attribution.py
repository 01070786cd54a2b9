"""Judging the per-layer attribution (`audit/probes/attribution.py`): `layer-attribution`. Pure.

In samples, over the probe's n samples (robust = clean-correct and not broken):
    gap        robust under exact APGD-CE - robust under APGD-CE with every layer straight-through
    share_g    robust under exact APGD-CE - robust with group g alone straight-through (what g alone closes)
    kept_g     robust with all but g straight-through - robust with every layer straight-through (the masking g
               keeps when it is the only exact one)
    residual   gap - sum of the shares: what the layers do only together (positive: masking that no single layer
               carries; negative: layers that overlap)
so the shares and the residual add up to the gap exactly. Informational (decides nothing): it says where the
masking sits, not whether there is any (that is `adaptive-gap` and the finite differences).
"""

from __future__ import annotations

from typing import Any

from audit.checks.finding import Finding, skipped

FINDING_ID = "layer-attribution"
# A gap of this many samples and this share of them is worth attributing (warn); a smaller one is noise (pass).
MIN_GAP_SAMPLES = 3
MIN_GAP_FRACTION = 0.02


def attribution_table(m: dict[str, Any]) -> dict[str, Any]:
    """The account in samples and points: rows per group, the gap and the residual."""
    n = max(int(m["n"]), 1)
    exact, straight = sum(m["robust_exact"]), sum(m["robust_straight_through"])
    gap = exact - straight
    rows = []
    for group, alpha_layers, only, all_but in zip(m["groups"], m["groups"], m["robust_only"], m["robust_all_but"]):
        alphas = [m["alphas"][m["layers"].index(name)] for name in alpha_layers["layers"]]
        share, kept = exact - sum(only), sum(all_but) - straight
        rows.append(
            {
                "group": group["name"],
                "layers": group["layers"],
                "alphas": alphas,
                "robust_only_straight_through": sum(only),
                "robust_all_but_straight_through": sum(all_but),
                "share": share,
                "share_points": 100 * share / n,
                "share_of_gap": share / gap if gap else None,
                "kept": kept,
                "kept_points": 100 * kept / n,
            }
        )
    residual = gap - sum(r["share"] for r in rows)
    return {
        "n": int(m["n"]),
        "attack": m.get("attack"),
        "robust_exact": exact,
        "robust_straight_through": straight,
        "gap": gap,
        "gap_points": 100 * gap / n,
        "rows": rows,
        "residual": residual,
        "residual_points": 100 * residual / n,
    }


def judge_attribution(m: dict[str, Any]) -> list[Finding]:
    if "skipped" in m:
        return [skipped(FINDING_ID, m["skipped"])]
    table = attribution_table(m)
    gap, n = table["gap"], table["n"]
    evidence = {
        key: table[key]
        for key in (
            "n",
            "attack",
            "robust_exact",
            "robust_straight_through",
            "gap",
            "gap_points",
            "residual",
            "residual_points",
        )
    }
    evidence["shares"] = {r["group"]: r["share"] for r in table["rows"]}
    if abs(gap) < MIN_GAP_SAMPLES or abs(gap) < MIN_GAP_FRACTION * n:
        return [
            Finding(
                FINDING_ID,
                "pass",
                f"exact-gradient and straight-through APGD-CE differ by {gap} of {n} "
                f"samples: no gap worth attributing to a layer",
                evidence,
                data=table,
            )
        ]
    top = max(table["rows"], key=lambda r: abs(r["share"]))
    side = "above" if gap > 0 else "below"
    message = (
        f"exact-gradient APGD-CE is {abs(gap)} of {n} samples {side} straight-through; {top['group']} alone "
        f"straight-through accounts for {top['share']} of them, the residual (layers together) for "
        f"{table['residual']}"
    )
    return [Finding(FINDING_ID, "warn", message, evidence, data=table)]
