"""`audit run --suite full` against pyautoattack's `run_standard_evaluation`, side by side on the same images,
seed and threads, on three models: the demo adversarially trained model, the demo MeanSparse model, and an opaque
masked model (an input quantizer around the adversarial one, benchmarks/speed_models.py).

Per model it prints the wall-time ratio (targets in TARGETS: the default budget runs a cascade in AutoAttack's place,
audit/plan/suites.py), the per-sample check both ways (samples AutoAttack breaks and the audit does not, and the other
way), the same counts between two pyautoattack runs with different seeds (AutoAttack's own noise: the reference a
miss is compared with), and a profile: seconds, forward and backward images per attack and per probe, for the
audit and for AutoAttack. For a MeanSparse model the audit also attacks its base for the gain table; the ratio
includes it (the target is for the whole audit), and is also given without it.
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
# The wall-time targets of issue 29: audit / AutoAttack, the whole audit (base audit included).
TARGETS = {"demo-adversarial": 0.6, "demo-meansparse": 0.8, "opaque quantizer": 0.8}
MODELS = {
    "demo-adversarial": "demo-adversarial",
    "demo-meansparse": "demo-meansparse",
    "opaque quantizer": f"{SPEED_MODELS}:quantized_adversarial",
}


def autoattack_standard(
    spec: str, n: int, seed: int, eps: float = 0.1, attack_seed: int | None = None, checkpoint: str | None = None
) -> dict:
    """pyautoattack's own evaluation of the model's exact forward: wall time, calls, robust per sample. `seed`
    picks the images (as the audit's does); `attack_seed` (default: `seed`) is pyautoattack's own seed."""
    from pyautoattack import AutoAttack

    defense, _ = resolve_model(spec, checkpoint=checkpoint)
    data = load_dataset("fashion-mnist", "test").subset(n, seed)
    attack = AutoAttack(
        defense,
        eps=eps,
        norm="Linf",
        seed=seed if attack_seed is None else attack_seed,
        version="standard",
        device="cpu",
    )
    with count_calls(defense) as calls:
        start = time.perf_counter()
        x_adv, _ = attack.run_standard_evaluation(data.images, data.labels, batch_size=250)
        seconds = time.perf_counter() - start
    with torch.no_grad():
        robust = (defense(x_adv).argmax(1) == data.labels).tolist()
    return {
        "seconds": seconds,
        "n_forward": calls.forward_images,
        "n_backward": calls.backward_images,
        "robust": robust,
    }


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
    from audit.gain import autoattack_source

    return {
        "seconds": seconds,
        "base_seconds": base_seconds,
        "robust": robust,
        "profile": profile,
        "verdict": results["verdict"]["gradient_masking"],
        "worst": results["worst_case_robust_accuracy"],
        "source": autoattack_source([a["name"] for a in results["attacks"]]),
    }


def _broken_by_only(first: list[bool], second: list[bool]) -> list[int]:
    """Samples `first` broke (not robust) and `second` did not."""
    return [i for i, (a, b) in enumerate(zip(first, second)) if not a and b]


def compare(name: str, spec: str, n: int, seed: int, noise_seed: int | None = None) -> tuple[list[dict], list[str]]:
    aa = autoattack_standard(spec, n, seed)
    with tempfile.TemporaryDirectory() as tmp:
        audit = audit_full(spec, n, seed, Path(tmp) / "run")
    missed, extra = _broken_by_only(aa["robust"], audit["robust"]), _broken_by_only(audit["robust"], aa["robust"])
    accuracy_aa, accuracy_audit = sum(aa["robust"]) / n, sum(audit["robust"]) / n
    verdict_seconds = audit["seconds"] - audit["base_seconds"]
    target = TARGETS.get(name, 1.0)
    rows = [
        row(
            f"{name}: audit --suite full / AutoAttack",
            audit["seconds"] / aa["seconds"],
            f"<= {target}",
            f"n={n}: {audit['seconds']:.0f}s vs {aa['seconds']:.0f}s; worst case {100 * accuracy_audit:.0f}% vs "
            f"AutoAttack {100 * accuracy_aa:.0f}%; samples AutoAttack broke and the audit did not: "
            f"{missed or 'none'}; the audit broke and AutoAttack did not: {len(extra)}; its AutoAttack figure: "
            f"{audit['source']}; verdict {audit['verdict']}",
        )
    ]
    if audit["base_seconds"]:
        rows.append(
            row(
                f"{name}: the same without the gain table's base audit",
                verdict_seconds / aa["seconds"],
                f"<= {target}",
                f"{verdict_seconds:.0f}s (base audit {audit['base_seconds']:.0f}s)",
            )
        )
    if noise_seed is not None:  # AutoAttack against itself: how many samples a second seed alone misses
        again = autoattack_standard(spec, n, seed, attack_seed=noise_seed)  # the same images, another seed
        one, other = _broken_by_only(aa["robust"], again["robust"]), _broken_by_only(again["robust"], aa["robust"])
        rows.append(
            row(
                f"{name}: AutoAttack seed {noise_seed} / seed {seed} (noise reference)",
                again["seconds"] / aa["seconds"],
                "",
                f"samples seed {seed} broke and seed {noise_seed} did not: {one or 'none'}; the other way: "
                f"{other or 'none'}; the audit missed {len(missed)} (target: 0, and <= {len(one)})",
            )
        )
    profile = [
        f"| {name} | AutoAttack (pyautoattack `run_standard_evaluation`) | {aa['seconds']:.1f} | "
        f"{aa['n_forward']:,} | {aa['n_backward']:,} |"
    ]
    profile += [
        f"| {name} | audit: {label} | {seconds:.1f} | {_count(fwd)} | {_count(bwd)} |"
        for label, seconds, fwd, bwd in audit["profile"]
    ]
    if audit["base_seconds"]:
        profile.append(f"| {name} | audit: base audit (gain table) | {audit['base_seconds']:.1f} | | |")
    profile.append(
        f"| {name} | audit: total wall time (incl. model load, planning, reports) | {audit['seconds']:.1f} | | |"
    )
    return rows, profile


def _count(value: float | None) -> str:
    return "" if value is None else f"{int(round(value)):,}"


def main(
    n: int = 100, seed: int = 0, models: tuple[str, ...] = tuple(MODELS), noise_seed: int | None = 1
) -> list[dict]:
    rows, profile = [], ["| model | what | seconds | forward images | backward images |", "|---|---|---:|---:|---:|"]
    for name in models:
        model_rows, model_profile = compare(name, MODELS[name], n, seed, noise_seed)
        for r in model_rows:  # as each model finishes: a long run shows what it measured so far
            print(f"{r['benchmark']}  {r['ratio']:.2f}  {r['target']}  {r['detail']}", flush=True)
        rows += model_rows
        profile += model_profile
    print("\n".join(profile), flush=True)
    return rows


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
