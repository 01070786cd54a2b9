"""Plain-words pieces shared by the Markdown and HTML reports (read-only over results.json)."""

from __future__ import annotations

from typing import Any


def attack_kind(row: dict[str, Any]) -> str:
    """How a report groups an attack, from the attributes stored with it in results.json: `exact`, `adaptive`
    (BPDA), `transfer`, `blackbox` (no gradients) or `other` (a different threat model)."""
    gradient = row.get("gradient", "exact")
    if row.get("threat_kind", "lp") != "lp":
        return "other"
    if gradient == "none":
        return "blackbox"
    if gradient.startswith("transfer:"):
        return "transfer"
    if gradient.startswith(("bpda-", "adaptive-")) or gradient == "unrolled":  # a surrogate backward, a
        # MeanSparse-specific attack, or the full gradient through a test-time defense's steps
        return "adaptive"
    return "exact"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def interval(results: dict[str, Any]) -> str:
    ci = results.get("worst_case", {}).get("lp", {}).get("ci95")
    return "" if not ci else f" (95% interval {pct(ci[0])} - {pct(ci[1])})"


def headline(results: dict[str, Any]) -> str:
    verdict = results.get("verdict", {})
    worst = f"{pct(results['worst_case_robust_accuracy'])}{interval(results)}"
    masking, at_risk = verdict.get("gradient_masking"), verdict.get("claim_at_risk")
    if at_risk == "yes":
        text = (
            f"The reported robust accuracy may be inflated (gradient masking: {masking}). Report {worst}, the "
            f"per-sample worst case over all attacks, as an upper bound on the true robust accuracy, not the "
            f"AutoAttack number."
        )
    elif masking == "suspected":
        text = f"Gradient masking is suspected, but the claim is not at risk: the worst case is {worst}."
    elif masking == "inconclusive":
        text = (
            f"Gradient masking is INCONCLUSIVE: the audit could not decide (see below). The worst case over all "
            f"attacks is {worst}; treat it as an upper bound."
        )
    else:
        text = (
            f"No gradient masking detected. The per-sample worst case over all attacks is {worst}; report that number."
        )
    if results.get("verdict", {}).get("randomized"):
        text += (
            " The model is randomized: results use EOT, and a sample counts as robust only if it is correct "
            "on every draw."
        )
    return text


def claim_sentence(results: dict[str, Any]) -> str | None:
    claim = results.get("claim")
    if not claim:
        return None
    ci = claim.get("worst_case_ci95") or [claim["worst_case_robust_accuracy"]] * 2
    where = f"the worst case {pct(claim['worst_case_robust_accuracy'])} (95% interval {pct(ci[0])} - {pct(ci[1])})"
    position = claim.get("position", "inside" if claim.get("survives") else "above")
    if position == "above":
        return (
            f"The claimed robust accuracy {pct(claim['claimed_robust_accuracy'])} does NOT survive: it lies above "
            f"{where}, {claim['shortfall_points']:.2f} points short."
        )
    if position == "below":
        return f"The claimed robust accuracy {pct(claim['claimed_robust_accuracy'])} lies below {where}: it survives."
    return (
        f"The claimed robust accuracy {pct(claim['claimed_robust_accuracy'])} lies inside the 95% interval of "
        f"{where}: these samples cannot tell them apart."
    )


def aa_vs_adaptive(results: dict[str, Any]) -> str | None:
    beyond = results.get("verdict", {}).get("beyond_autoattack")
    attacks = {a["name"]: a["robust_accuracy"] for a in results.get("attacks", [])}
    aa = next((v for k, v in attacks.items() if k.startswith("autoattack")), None)
    if aa is None or beyond is None:
        return None
    worst = results["worst_case_robust_accuracy"]
    return (
        f"AutoAttack alone gives {pct(aa)}; adding the other attacks gives {pct(worst)} "
        f"({100 * (aa - worst):.2f} points lower: {beyond['only_others_broke']} samples only they broke, "
        f"{beyond['only_autoattack_broke']} only AutoAttack broke; one-sided McNemar p = {beyond['p_value']:.2g})."
    )


STATUS_MARK = {"fail": "FAIL", "warn": "warn", "pass": "pass", "skipped": "skipped"}


def gain_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The gain table (base vs defense on the same images) as (row, value with its 95% interval); empty when the
    audit has no base model to compare with."""
    gain = results.get("gain")
    if not gain:
        return []

    def acc(key: str) -> str:
        a = gain[key]
        return f"{pct(a['accuracy'])} ({pct(a['ci95'][0])} - {pct(a['ci95'][1])})"

    def diff(key: str) -> str:
        g = gain[key]
        return (
            f"{100 * g['gain']:+.2f} points ({100 * g['ci95'][0]:+.2f} to {100 * g['ci95'][1]:+.2f}; "
            f"{g['only_defense_robust']} samples robust only with the defense, "
            f"{g['only_base_robust']} only without)"
        )

    attacks = gain.get("base_attacks", [])  # absent in results.json written before it was recorded
    # Where AutoAttack was not re-run, the default budget's cascade stands in for it (audit/gain.py); say which ran.
    source = {key: gain.get(key, "AutoAttack") for key in ("autoattack_source", "base_autoattack_source")}
    rows = [(f"base model, AutoAttack ({source['base_autoattack_source']})", acc("base_autoattack"))]
    if len(attacks) > 1:
        rows.append((f"base model, worst case over its audit's {len(attacks)} attacks", acc("base_worst_case")))
    against = "its worst case" if len(attacks) > 1 else "AutoAttack"
    return rows + [
        (f"defense, AutoAttack ({source['autoattack_source']})", acc("defense_autoattack")),
        ("defense, worst case over the suite", acc("defense_worst_case")),
        ("gain under AutoAttack", diff("claimed_gain")),
        (f"gain that survives the worst case (against the base under {against})", diff("surviving_gain")),
    ]


def gain_sentence(results: dict[str, Any]) -> str | None:
    gain = results.get("gain")
    if not gain:
        return None
    low, high = gain["surviving_gain"]["ci95"]
    if high <= 0:
        what = "does not survive: the defense is no more robust than its base under the worst case"
    elif low > 0:
        what = "survives: the worst case stays significantly above the base"
    else:
        what = "is not settled: its 95% interval contains 0 on these images"
    return (
        f"The gain over the base model {what} ({100 * gain['surviving_gain']['gain']:+.2f} points, 95% interval "
        f"{100 * low:+.2f} to {100 * high:+.2f}; "
        f"under AutoAttack alone {100 * gain['claimed_gain']['gain']:+.2f})."
    )


def suite_text(results: dict[str, Any]) -> str:
    """The plan in a few words: suite, budget, mode, and what `audit extend` added after the run."""
    text = f"{results.get('suite')}, budget {results.get('budget')} ({results.get('mode')} mode)"
    if results.get("extended_with"):
        text += "; then added by `audit extend`: " + ", ".join(results["extended_with"])
    return text


def fingerprint_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """What was audited, by content, and the evidence kept: so two reviewers can tell they audited the same thing
    and anyone can check the broken samples (`audit verify`)."""
    fingerprint = {k: v for k, v in (results.get("fingerprint") or {}).items() if v}
    rows = []
    if fingerprint:
        rows.append(("audited", ", ".join(f"{k} {v}" for k, v in fingerprint.items())))
    evidence = results.get("evidence")
    if evidence:
        rows.append(
            (
                "evidence",
                f"{evidence['examples']} adversarial examples of {evidence['samples']} samples "
                f"({evidence['keep']}) in {evidence['file']} ({evidence['bytes'] / 1e6:.1f} MB); "
                f"check them with: {evidence['verify']}",
            )
        )
    return rows


def failure_text(failed: dict[str, Any]) -> str:
    """One failed batch of results.json's `failed_batches`, in words."""
    return (
        f"{failed['attack']} failed on batch {failed['batch']} ({failed['samples']} samples not run): "
        f"{failed['error']}; re-run the same command to retry it"
    )


ATTRIBUTION_HEADER = (
    "layer",
    "alpha",
    "robust, it alone straight-through",
    "share of the gap (points)",
    "robust, it alone exact",
    "kept (points)",
)


def attribution_rows(results: dict[str, Any]) -> tuple[str, list[tuple[str, ...]]] | None:
    """(caption, rows) of the per-layer attribution table (the `layer-attribution` finding's data), or None."""
    finding: dict[str, Any] = next((f for f in results.get("findings", []) if f.get("id") == "layer-attribution"), {})
    data = finding.get("data") or {}
    if not data.get("rows"):
        return None
    n = max(int(data["n"]), 1)
    rows: list[tuple[str, ...]] = [
        (
            str(r["group"]),
            ", ".join(f"{a:g}" for a in r["alphas"]),
            f"{r['robust_only_straight_through']} / {n}",
            f"{r['share_points']:+.1f} ({r['share']:+d})",
            f"{r['robust_all_but_straight_through']} / {n}",
            f"{r['kept_points']:+.1f} ({r['kept']:+d})",
        )
        for r in data["rows"]
    ]
    rows.append(
        ("residual (the layers together)", "", "", f"{data['residual_points']:+.1f} ({data['residual']:+d})", "", "")
    )
    rows.append(("gap: exact minus straight-through", "", "", f"{data['gap_points']:+.1f} ({data['gap']:+d})", "", ""))
    caption = (
        f"{data.get('attack')} on {n} samples: robust {data['robust_exact']} with exact gradients, "
        f"{data['robust_straight_through']} with every MeanSparse layer straight-through; the shares and the "
        f"residual add up to the gap (samples in brackets)."
    )
    return caption, rows
