"""results.json and samples.csv: views of the stored outcomes, findings and verdict (the schema is in
docs/results-schema.md). Nothing here runs a model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from attacks.threat_model import ThreatModel
from audit.config import AuditConfig
from audit.outcomes import Outcomes
from audit.stats import accuracy_json
from audit.store import atomic_write

SCHEMA_VERSION = 2


def attack_rows(outcomes: Outcomes) -> list[dict[str, Any]]:
    """Per attack: what it is, how many samples it ran on and broke, its accuracy alone (with a 95% interval)
    when it ran on every clean-correct sample, and its measured cost."""
    rows = []
    for label in outcomes.order:
        info = outcomes.info[label]
        robust = outcomes.robust_alone(label)
        row: dict[str, Any] = {
            "name": label,
            "threat_kind": info.threat_kind,
            "gradient": info.gradient,
            "single_step": info.single_step,
            "family": info.family,
            "budget": info.budget,
            "on_survivors": info.on_survivors,
            **outcomes.counts(label),
            "robust_accuracy": None if robust is None else robust / max(outcomes.n, 1),
            "robust": None if robust is None else accuracy_json(robust, outcomes.n),
            **outcomes.cost[label],
        }
        parts = outcomes.parts(label)
        if parts:
            row["parts"] = [
                {"name": part, "gradient": outcomes.info[part].gradient, **outcomes.counts(part)} for part in parts
            ]
        rows.append(row)
    return rows


def worst_cases(outcomes: Outcomes) -> dict[str, dict[str, Any]]:
    """Per threat kind (Lp, spatial, flow are never mixed): the worst case over its attacks, correct on every
    draw, with its interval, and the mean-over-draws accuracy (equal for a deterministic defense)."""
    cases = {}
    for kind in outcomes.threat_kinds() or ["lp"]:
        robust = sum(outcomes.worst_case_robust(kind))
        cases[kind] = {
            **accuracy_json(robust, outcomes.n),
            "mean_over_draws": outcomes.worst_case_mean_over_draws(kind),
        }
    return cases


def claim_position(claim: float, interval: list[float]) -> str:
    """Where a claimed accuracy lies against the worst case's 95% interval."""
    if claim > interval[1]:
        return "above"
    if claim < interval[0]:
        return "below"
    return "inside"


def assemble_results(
    config: AuditConfig,
    description: str,
    threat: ThreatModel,
    outcomes: Outcomes,
    skipped: list[tuple[str, str]],
    findings: list[dict[str, Any]],
    verdict: dict[str, Any],
    warnings: list[str],
    environment: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    cases = worst_cases(outcomes)
    headline_kind = "lp" if "lp" in cases else next(iter(cases))
    worst = cases[headline_kind]
    clean = accuracy_json(sum(outcomes.clean_correct), outcomes.n)
    results = {
        "schema_version": SCHEMA_VERSION,
        "model": config.model,
        "defense": description,
        "dataset": config.dataset,
        "threat_model": {"norm": threat.norm, "eps": threat.eps},
        "n_samples": outcomes.n,
        "seed": config.seed,
        "suite": config.suite,
        "budget": config.budget,
        "transfer_from": list(config.transfer_from),
        "mode": config.mode,
        "draws": outcomes.draws,
        "clean_accuracy": clean["accuracy"],
        "clean": clean,
        "attacks": attack_rows(outcomes),
        "skipped_attacks": [{"name": n, "reason": r} for n, r in skipped],
        "worst_case_robust_accuracy": worst["accuracy"],
        "worst_case": cases,
        "worst_case_rule": (
            "a sample is robust only if it is correct on every one of the common draws, clean and "
            "under every attack of the same threat kind"
            if outcomes.draws > 1
            else "a sample is robust only if it is clean-correct and no attack of the same threat kind broke it"
        ),
        "findings": findings,
        "verdict": verdict,
        "warnings": warnings,
        "seconds": seconds,
        "environment": environment,
    }
    if config.claim is not None:
        position = claim_position(config.claim, worst["ci95"])
        results["claim"] = {
            "claimed_robust_accuracy": config.claim,
            "worst_case_robust_accuracy": worst["accuracy"],
            "worst_case_ci95": worst["ci95"],
            "position": position,
            "survives": position != "above",
            "shortfall_points": max(0.0, 100 * (config.claim - worst["accuracy"])),
        }
    return results


def samples_csv(outcomes: Outcomes) -> str:
    """One row per sample: each attack's status (broken, held, not_run:<reason>), distance and margin, AutoAttack's
    broken_by, and the worst case per threat kind."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    kinds = outcomes.threat_kinds()
    header = ["index", "label", "clean_prediction", "clean_draws_correct"]
    for label in outcomes.order:
        header += [f"{label}:status", f"{label}:distance", f"{label}:margin"]
        if outcomes.parts(label):
            header.append(f"{label}:broken_by")
    writer.writerow(header + [f"worst_case_robust:{kind}" for kind in kinds])
    worst = {kind: outcomes.worst_case_robust(kind) for kind in kinds}
    for i, label_value in enumerate(outcomes.labels):
        row: list[Any] = [i, label_value, outcomes.clean_prediction[i], outcomes.clean_draws_correct[i]]
        for label in outcomes.order:
            distance, margin = outcomes.distance[label][i], outcomes.margin[label][i]
            row += [
                outcomes.status[label][i],
                "" if distance is None else f"{distance:.6g}",
                "" if margin is None else f"{margin:.6g}",
            ]
            if outcomes.parts(label):
                row.append(outcomes.extra[label].get("broken_by", {}).get(i, ""))
        writer.writerow(row + [int(worst[kind][i]) for kind in kinds])
    return buffer.getvalue()


def write_outputs(out: Path, results: dict[str, Any], outcomes: Outcomes) -> None:
    from audit.report import render_reports

    atomic_write(out / "results.json", json.dumps(results, indent=2))
    atomic_write(out / "samples.csv", samples_csv(outcomes))
    render_reports(out)
