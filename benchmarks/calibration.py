"""Calibration of the checks and the verdict on models whose truth is known by construction (or is the open
question), as docs/findings.md reports it:

    .venv/bin/python -m benchmarks.calibration --n 100 --diagnostics-n 50 --out runs/calibration

Each model is audited by `audit run` (through `PATH.py:FACTORY`, see benchmarks/calibration_models.py) with the
calibration attacks (FGSM, APGD-CE, Square with 1000 queries, and identity BPDA where the model offers a surrogate:
the cheap part of the full suite, so the whole set runs in minutes on a CPU), then the script prints the per-model
verdicts and, per check, its false alarms (a fail on a model that is sound by construction) and its catches
(a fail on a model masked by construction), as Markdown.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from audit import AuditConfig, derive_results, run_audit
from audit.checks.registry import CHECKS

MODELS = Path(__file__).with_name("calibration_models.py")
# (name, factory, truth, what the construction means). truth: sound | masked | open
CALIBRATION = (
    ("undefended", "undefended", "sound", "standard training, no defense"),
    ("adversarially trained", "adversarial", "sound", "FGSM-RS adversarial training (demo-adversarial)"),
    ("MeanSparse alpha 0.1", "meansparse_alpha_01", "open", "published range (0.10 - 0.30)"),
    ("MeanSparse alpha 0.3", "meansparse_alpha_03", "open", "demo-meansparse"),
    ("MeanSparse alpha 1.0", "meansparse_alpha_10", "open", "far above the published range"),
    ("input quantization (3 bits)", "quantized_input", "masked", "zero gradient almost everywhere"),
    ("thermometer encoding", "thermometer", "masked", "no gradient path to the input"),
    ("k-WTA (20%)", "kwta", "open", "standard-trained: falls to plain APGD here"),
    ("logits x 1e4", "logits_times_1e4", "masked", "saturated softmax: CE gradients underflow"),
    ("gradients killed", "gradients_killed", "masked", "identity forward, zero backward"),
    ("input noise, declared", "noise_declared", "sound", "randomized, says so: EOT handles it"),
    ("input noise, undeclared", "noise_undeclared", "masked", "randomized, says nothing"),
    ("gradient step in forward", "gradient_step_in_forward", "masked", "test-time optimisation inside forward"),
)


def attacks_for(factory: str) -> tuple[str, ...]:
    # Identity BPDA where the model offers it: MeanSparse and our quantizer by class, the thermometer through
    # automatic BPDA (the k-WTA toy is audited with exact gradients: the question there is whether it is masked).
    surrogate = factory.startswith("meansparse") or factory in ("quantized_input", "thermometer")
    return ("fgsm", "apgd-ce", "square@queries=1000") + (("apgd-ce+bpda-identity",) if surrogate else ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--diagnostics-n", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/calibration"))
    parser.add_argument("--only", default="", help="comma-separated factory names (default: all)")
    parser.add_argument("--rederive", action="store_true",
                        help="recompute findings and verdicts from the stored runs in --out (no model runs)")
    args = parser.parse_args()
    rows = []
    for name, factory, truth, meaning in CALIBRATION:
        if args.only and factory not in args.only.split(","):
            continue
        start = time.perf_counter()
        config = AuditConfig(model=f"{MODELS}:{factory}", n=args.n, diagnostics_n=args.diagnostics_n,
                             attacks=attacks_for(factory))
        if args.rederive:
            results = derive_results(args.out / factory)
        else:
            results = run_audit(config, args.out / factory, progress=False)
        statuses = {f["id"]: f["status"] for f in results["findings"]}
        rows.append((name, truth, meaning, results, statuses, time.perf_counter() - start))
        print(f"{name}: {results['verdict']['gradient_masking']}, claim at risk {results['verdict']['claim_at_risk']} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(render(rows, args))
    (args.out / "calibration.json").write_text(json.dumps(
        [{"model": r[0], "truth": r[1], "verdict": r[3]["verdict"]["gradient_masking"],
          "claim_at_risk": r[3]["verdict"]["claim_at_risk"], "statuses": r[4]} for r in rows], indent=1))


def render(rows: list, args: argparse.Namespace) -> str:
    lines = [f"Calibration (`python -m benchmarks.calibration --n {args.n} --diagnostics-n {args.diagnostics_n}`):",
             "", "| model | truth | clean | worst case (95% interval) | gradient masking | claim at risk | failed |",
             "|---|---|---:|---:|---|---|---|"]
    for name, truth, meaning, results, statuses, _ in rows:
        worst = results["worst_case"]["lp"]
        failed = ", ".join(i for i, s in statuses.items() if s == "fail") or "none"
        lines.append(f"| {name} ({meaning}) | {truth} | {100 * results['clean_accuracy']:.0f}% | "
                     f"{100 * worst['accuracy']:.0f}% ({100 * worst['ci95'][0]:.0f} - {100 * worst['ci95'][1]:.0f}) | "
                     f"{results['verdict']['gradient_masking']} | {results['verdict']['claim_at_risk']} | {failed} |")
    sound = [r for r in rows if r[1] == "sound"]
    masked = [r for r in rows if r[1] == "masked"]
    lines += ["", f"Per check: false alarms (fail on the {len(sound)} sound models) and catches (fail on the "
                  f"{len(masked)} masked ones; a check need not catch every kind of masking, the verdict must):", "",
              "| check | decides | false alarms | catches | skipped |", "|---|---|---:|---:|---:|"]
    for check in CHECKS:
        alarms = sum(r[4].get(check.id) == "fail" for r in sound)
        catches = sum(r[4].get(check.id) == "fail" for r in masked)
        skips = sum(r[4].get(check.id) in ("skipped", None) for r in rows)
        lines.append(f"| {check.id} | {check.decides} | {alarms} | {catches} of {len(masked)} | {skips} |")
    verdict_alarms = sum(r[3]["verdict"]["gradient_masking"] == "suspected" for r in sound)
    verdict_misses = sum(r[3]["verdict"]["gradient_masking"] != "suspected" for r in masked)
    lines += [f"| **verdict** | | {verdict_alarms} of {len(sound)} | {len(masked) - verdict_misses} of "
              f"{len(masked)} | |"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
