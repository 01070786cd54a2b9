"""Held-out calibration of the checks and the verdict on models whose truth is known by construction, as
docs/findings.md reports it:

    .venv/bin/python -m benchmarks.calibration --n 100 --diagnostics-n 50 --out runs/calibration
    .venv/bin/python -m benchmarks.calibration --n 100 --diagnostics-n 50 --out runs/calibration --rederive

Each model of benchmarks/calibration_set.py is audited by `audit run` (through `PATH.py:FACTORY`, see
benchmarks/calibration_models.py) with the calibration attacks (FGSM, APGD-CE, Square with 1000 queries, and
identity BPDA where the forward rounds or compares: the cheap part of the full suite). Then, per tunable check,
the threshold is derived from the FITTING families only (benchmarks/calibration_thresholds.py states the rule)
and scored on the EVALUATION families, which the fitting set has none of; and the verdict's false `suspected`
on sound models and `not_detected` on masked ones are counted on the evaluation set, with Clopper-Pearson
intervals. `--rederive` recomputes findings and verdicts from the stored runs with the current checks (no model
runs; about half a minute a model, the reports included), so a change to a check or the verdict is re-scored
without attacking again; `--stored` only re-tabulates the results.json files already there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from audit import AuditConfig, derive_results, run_audit
from audit.checks.registry import checks
from benchmarks.calibration_set import EVALUATE, FAMILIES, FIT, MODELS, CalibrationModel, split_of
from benchmarks.calibration_thresholds import STATISTICS, Row, derive, rate_text, score

FACTORIES = Path(__file__).with_name("calibration_models.py")
# Identity BPDA where the forward applies an operation automatic BPDA replaces (rounding, comparisons) or a
# MeanSparse layer; the k-WTA toy is audited with exact gradients (the question there is whether it is masked),
# and the straight-through models' own backward already is the identity.
SURROGATE_PREFIXES = ("meansparse", "quantized", "thermometer", "noisy_quantized")


def attacks_for(model: CalibrationModel) -> tuple[str, ...]:
    surrogate = model.factory.startswith(SURROGATE_PREFIXES)
    return ("fgsm", "apgd-ce", "square@queries=1000") + (("apgd-ce+bpda-identity",) if surrogate else ())


def audit_one(model: CalibrationModel, args: argparse.Namespace) -> dict:
    if args.stored:
        return json.loads((args.out / model.key / "results.json").read_text())
    if args.rederive:
        return derive_results(args.out / model.key)
    config = AuditConfig(
        model=f"{FACTORIES}:{model.factory}",
        norm=model.norm,
        eps=model.eps,
        n=args.n,
        diagnostics_n=args.diagnostics_n,
        attacks=attacks_for(model),
    )
    return run_audit(config, args.out / model.key, progress=False)  # type: ignore[return-value]  # not torchrun


def summarise(model: CalibrationModel, results: dict, seconds: float) -> dict:
    """What the tables need from one run: truth, split, verdict, each finding's status and tunable statistics."""
    by_id = {f["id"]: f for f in results["findings"]}
    worst = results["worst_case"]["lp"]
    return {
        "key": model.key,
        "family": model.family,
        "split": split_of(model),
        "truth": model.truth,
        "meaning": model.meaning,
        "norm": model.norm,
        "eps": model.eps,
        "clean": results["clean_accuracy"],
        "worst": worst["accuracy"],
        "worst_ci95": worst["ci95"],
        "verdict": results["verdict"]["gradient_masking"],
        "claim_at_risk": results["verdict"]["claim_at_risk"],
        "backed_by": results["verdict"].get("backed_by", []),
        "symptoms": results["verdict"].get("unbacked_symptoms", []),
        "statuses": {i: f["status"] for i, f in by_id.items()},
        "statistics": {
            s.check: (
                s.read(by_id[s.check]["evidence"])
                if s.check in by_id and by_id[s.check]["status"] != "skipped"
                else None
            )
            for s in STATISTICS
        },
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--diagnostics-n", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/calibration"))
    parser.add_argument("--only", default="", help="comma-separated model keys (default: all)")
    parser.add_argument(
        "--rederive",
        action="store_true",
        help="recompute findings and verdicts from the stored runs in --out (no model runs)",
    )
    parser.add_argument(
        "--stored",
        action="store_true",
        help="only re-tabulate the results.json files already in --out (no recomputation)",
    )
    args = parser.parse_args()
    rows = []
    for model in MODELS:
        if args.only and model.key not in args.only.split(","):
            continue
        start = time.perf_counter()
        results = audit_one(model, args)
        rows.append(summarise(model, results, time.perf_counter() - start))
        print(
            f"{model.key}: {rows[-1]['verdict']}, claim at risk {rows[-1]['claim_at_risk']} "
            f"({rows[-1]['seconds']:.0f} s)",
            flush=True,
        )
    print(render(rows, args))
    (args.out / "calibration.json").write_text(json.dumps(rows, indent=1))


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def render(rows: list[dict], args: argparse.Namespace) -> str:
    command = f"python -m benchmarks.calibration --n {args.n} --diagnostics-n {args.diagnostics_n}"
    lines = [
        f"Held-out calibration (`{command}`).",
        "",
        "Fitting families: " + ", ".join(f.name for f in FAMILIES if f.split == FIT) + ".",
        "Evaluation families (none of them in the fitting set): "
        + ", ".join(f.name for f in FAMILIES if f.split == EVALUATE)
        + ".",
        "",
        "| model | family | split | truth | threat | clean | worst case (95%) | gradient masking | backed by "
        "| unbacked symptoms | claim at risk |",
        "|---|---|---|---|---|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['key']} ({r['meaning']}) | {r['family']} | {r['split']} | {r['truth']} | "
            f"{r['norm']} {r['eps']:g} | {_pct(r['clean'])} | {_pct(r['worst'])} "
            f"({_pct(r['worst_ci95'][0])} - {_pct(r['worst_ci95'][1])}) | {r['verdict']} | "
            f"{', '.join(r['backed_by']) or '-'} | {', '.join(r['symptoms']) or '-'} | "
            f"{r['claim_at_risk']} |"
        )
    fit = [r for r in rows if r["split"] == FIT]
    held = [r for r in rows if r["split"] == EVALUATE]
    lines += [
        "",
        "Thresholds fitted on the fitting families only, scored on the evaluation families (false alarms: "
        "sound models flagged; misses: masked models not flagged; a symptom check need not catch every kind "
        "of masking, and decides nothing alone, see the rule above):",
        "",
        "| check | statistic | code's threshold | fitted threshold | evaluation false alarms (95%) at the "
        "fitted / code's | evaluation misses (95%) at the fitted / code's |",
        "|---|---|---:|---:|---|---|",
    ]
    for s in STATISTICS:
        fitted = derive([Row(r["key"], r["truth"], r["statistics"][s.check]) for r in fit], s.higher_is_worse)
        held_rows = [Row(r["key"], r["truth"], r["statistics"][s.check]) for r in held]
        code = score(held_rows, s.code_threshold, s.higher_is_worse, s.inclusive)
        side = ">=" if s.higher_is_worse else "<="
        if fitted is None:
            fitted_text, alarms, misses = "cannot be fitted", "-", "-"
        else:
            ours = score(held_rows, fitted, s.higher_is_worse)
            fitted_text = f"{side} {fitted:.3g}"
            alarms = rate_text(ours.false_alarms, ours.sound)
            misses = rate_text(ours.masked - ours.catches, ours.masked)
        code_side = side if s.inclusive else side.rstrip("=")
        lines.append(
            f"| {s.check} | {s.name} | {code_side} {s.code_threshold:g} | {fitted_text} | {alarms} / "
            f"{rate_text(code.false_alarms, code.sound)} | {misses} / "
            f"{rate_text(code.masked - code.catches, code.masked)} |"
        )
    lines += [
        "",
        "Per check, as the code stands: fails on sound / masked models, fitting and evaluation sets apart:",
        "",
        "| check | decides | fit: false alarms | fit: catches | evaluation: false alarms | evaluation: catches |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for check in checks():
        cells = []
        for part in (fit, held):
            for truth in ("sound", "masked"):
                group = [r for r in part if r["truth"] == truth]
                cells.append(f"{sum(r['statuses'].get(check.id) == 'fail' for r in group)} of {len(group)}")
        lines.append(f"| {check.id} | {check.decides} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The verdict (a false alarm: `suspected` on a sound model; a miss: `not_detected` on a masked one):",
        "",
        "| set | false alarms (95%) | misses (95%) | inconclusive |",
        "|---|---|---|---:|",
    ]
    for name, part in (("fitting", fit), ("evaluation", held)):
        sound = [r for r in part if r["truth"] == "sound"]
        masked = [r for r in part if r["truth"] == "masked"]
        alarms = sum(r["verdict"] == "suspected" for r in sound)
        misses = sum(r["verdict"] == "not_detected" for r in masked)
        inconclusive = sum(r["verdict"] == "inconclusive" for r in sound + masked)
        lines.append(
            f"| {name} | {rate_text(alarms, len(sound))} | {rate_text(misses, len(masked))} | "
            f"{inconclusive} of {len(sound) + len(masked)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
