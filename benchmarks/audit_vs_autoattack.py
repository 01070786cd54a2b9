"""The demo audit (`--suite full`) / pyautoattack `standard` on the same model and samples (target <= 2, while
the audit's worst case is never higher than AutoAttack's), and cascade / full mode of the same suite."""
from __future__ import annotations

import tempfile
import time

import torch

from audit.config import AuditConfig
from audit.data import load_dataset
from audit.pipeline import run_audit
from benchmarks.common import row
from defenses.models.registry import load_shipped


def autoattack_standard(model_name: str, n: int, seed: int) -> tuple[float, float]:
    from pyautoattack import AutoAttack

    model = load_shipped(model_name)
    data = load_dataset("fashion-mnist", "test").subset(n, seed)
    attack = AutoAttack(model, eps=0.1, norm="Linf", seed=seed, version="standard", device="cpu")
    start = time.perf_counter()
    x_adv, _ = attack.run_standard_evaluation(data.images, data.labels, batch_size=250)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = (model(x_adv).argmax(1) == data.labels).float().mean().item()
    return seconds, accuracy


def audit_seconds(model_name: str, n: int, seed: int, mode: str, suite: str = "full") -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        results = run_audit(AuditConfig(model=model_name, n=n, seed=seed, mode=mode, suite=suite), out, progress=False)
        return time.perf_counter() - start, results["worst_case_robust_accuracy"]


def main(model: str = "demo-meansparse", n: int = 100, seed: int = 0) -> list[dict]:
    aa_seconds, aa_accuracy = autoattack_standard(model, n, seed)
    full_seconds, full_worst = audit_seconds(model, n, seed, "full")
    cascade_seconds, cascade_worst = audit_seconds(model, n, seed, "cascade")
    return [
        row("audit --suite full / pyautoattack standard", full_seconds / aa_seconds, "<= 2",
            f"{model}, n={n}: {full_seconds:.0f}s vs {aa_seconds:.0f}s; worst case {100 * full_worst:.1f}% vs "
            f"AutoAttack {100 * aa_accuracy:.1f}% (never higher: {full_worst <= aa_accuracy})"),
        row("cascade / full (same suite, incl. diagnostics)", cascade_seconds / full_seconds, "< 1",
            f"{cascade_seconds:.0f}s vs {full_seconds:.0f}s; worst case {100 * cascade_worst:.1f}% vs "
            f"{100 * full_worst:.1f}%"),
    ]


if __name__ == "__main__":
    for r in main():
        print(r)
