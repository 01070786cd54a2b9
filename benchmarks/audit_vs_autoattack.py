"""`audit run --suite full` against pyautoattack's `run_standard_evaluation`, side by side on the same images,
seed and threads, on three models: the demo adversarially trained model, the demo MeanSparse model, and an opaque
masked model (an input quantizer around the adversarial one, benchmarks/speed_models.py).

Per model it prints the wall-time ratio (target <= 1.0), the per-sample check (every sample AutoAttack breaks,
the audit breaks), and a profile: seconds, forward and backward images per attack and per probe, for the audit
and for AutoAttack. For a MeanSparse model the audit also attacks its base for the gain table; that part is timed
apart (it is not what the verdict needs), and the ratio is given with and without it.
"""
from __future__ import annotations

import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from attacks.counting import count_calls
from audit.config import AuditConfig
from audit.data import load_dataset
from audit.model_spec import resolve_model
from audit.pipeline import BASE_DIR, run_audit
from audit.store import ResultStore
from benchmarks.common import row

SPEED_MODELS = Path(__file__).with_name("speed_models.py")
MODELS = {
    "demo-adversarial": "demo-adversarial",
    "demo-meansparse": "demo-meansparse",
    "opaque quantizer": f"{SPEED_MODELS}:quantized_adversarial",
}


def autoattack_standard(spec: str, n: int, seed: int, eps: float = 0.1, checkpoint: str | None = None) -> dict:
    """pyautoattack's own evaluation of the model's exact forward: wall time, calls, robust per sample."""
    from pyautoattack import AutoAttack

    defense, _ = resolve_model(spec, checkpoint=checkpoint)
    data = load_dataset("fashion-mnist", "test").subset(n, seed)
    attack = AutoAttack(defense, eps=eps, norm="Linf", seed=seed, version="standard", device="cpu")
    with count_calls(defense) as calls:
        start = time.perf_counter()
        x_adv, _ = attack.run_standard_evaluation(data.images, data.labels, batch_size=250)
        seconds = time.perf_counter() - start
    with torch.no_grad():
        robust = (defense(x_adv).argmax(1) == data.labels).tolist()
    return {"seconds": seconds, "n_forward": calls.forward_images, "n_backward": calls.backward_images,
            "robust": robust}


def audit_full(spec: str, n: int, seed: int, out: Path, **settings: Any) -> dict:
    """`audit run --suite full` (default budget): wall time, the base audit's share, the per-sample worst case,
    and the profile rows read back from results.json. `settings`: other AuditConfig fields (eps, checkpoint...)."""
    start = time.perf_counter()
    results = run_audit(AuditConfig(model=spec, n=n, seed=seed, **settings), out, progress=False)
    seconds = time.perf_counter() - start
    assert results is not None
    base_seconds = 0.0
    if (out / BASE_DIR / "config.json").exists():
        base_seconds = sum(float(r.get("seconds", 0.0)) for r in ResultStore.open_existing(out / BASE_DIR).records())
    with open(out / "samples.csv", newline="") as handle:  # attack labels with budgets hold commas: csv quotes them
        robust = [row["worst_case_robust:lp"] == "1" for row in csv.DictReader(handle)]
    profile = [(a["name"], a["seconds"], a["n_forward"], a["n_backward"]) for a in results["attacks"]]
    profile += [("probe " + p["name"], p["seconds"], p["n_forward"], p["n_backward"]) for p in results["probes"]]
    return {"seconds": seconds, "base_seconds": base_seconds, "robust": robust, "profile": profile,
            "verdict": results["verdict"]["gradient_masking"], "worst": results["worst_case_robust_accuracy"]}


def compare(name: str, spec: str, n: int, seed: int) -> tuple[list[dict], list[str]]:
    aa = autoattack_standard(spec, n, seed)
    with tempfile.TemporaryDirectory() as tmp:
        audit = audit_full(spec, n, seed, Path(tmp) / "run")
    missed = [i for i, (a, b) in enumerate(zip(aa["robust"], audit["robust"])) if not a and b]
    accuracy_aa, accuracy_audit = sum(aa["robust"]) / n, sum(audit["robust"]) / n
    verdict_seconds = audit["seconds"] - audit["base_seconds"]
    rows = [row(f"{name}: audit --suite full / AutoAttack", audit["seconds"] / aa["seconds"], "<= 1.0",
                f"n={n}: {audit['seconds']:.0f}s vs {aa['seconds']:.0f}s; worst case {100 * accuracy_audit:.0f}% vs "
                f"AutoAttack {100 * accuracy_aa:.0f}%; samples AutoAttack broke and the audit did not: "
                f"{missed or 'none'}; verdict {audit['verdict']}")]
    if audit["base_seconds"]:
        rows.append(row(f"{name}: the same without the gain table's base audit", verdict_seconds / aa["seconds"],
                        "<= 1.0", f"{verdict_seconds:.0f}s (base audit {audit['base_seconds']:.0f}s)"))
    profile = [f"| {name} | AutoAttack (pyautoattack `run_standard_evaluation`) | {aa['seconds']:.1f} | "
               f"{aa['n_forward']:,} | {aa['n_backward']:,} |"]
    profile += [f"| {name} | audit: {label} | {seconds:.1f} | {_count(fwd)} | {_count(bwd)} |"
                for label, seconds, fwd, bwd in audit["profile"]]
    if audit["base_seconds"]:
        profile.append(f"| {name} | audit: base audit (gain table) | {audit['base_seconds']:.1f} | | |")
    profile.append(f"| {name} | audit: total wall time (incl. model load, planning, reports) | "
                   f"{audit['seconds']:.1f} | | |")
    return rows, profile


def _count(value: float | None) -> str:
    return "" if value is None else f"{int(round(value)):,}"


def main(n: int = 100, seed: int = 0, models: tuple[str, ...] = tuple(MODELS)) -> list[dict]:
    rows, profile = [], ["| model | what | seconds | forward images | backward images |", "|---|---|---:|---:|---:|"]
    for name in models:
        model_rows, model_profile = compare(name, MODELS[name], n, seed)
        rows += model_rows
        profile += model_profile
    print("\n".join(profile))
    return rows


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
