"""`audit run`: one checkpoint, one threat model, a suite of attacks, the diagnostics, the verdict, the report."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch

from attacks.suites import SUITES, SuitePlan, plan_suite
from attacks.threat_model import ThreatModel
from audit.data import load_dataset
from audit.distributed import Shard
from audit.environment import environment
from audit.model_spec import resolve_model
from audit.runner import SuiteResult, run_suite
from audit.store import ResultStore, atomic_write
from defenses.protocol import Defense

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


class AuditInputError(ValueError):
    """Bad input the user can fix."""


@dataclass(frozen=True)
class AuditConfig:
    model: str
    dataset: str = "fashion-mnist"
    norm: str = "Linf"
    eps: float = 0.1
    n: int = 1000
    suite: str = "full"
    seed: int = 0
    mode: str = "full"
    batch_size: int = 250
    diagnostics_n: int = 100
    checkpoint: str | None = None
    robustbench_dir: str | None = None
    meansparse_alpha: float | None = None
    claim: float | None = None
    trust_checkpoint: bool = False
    attacks: tuple[str, ...] | None = None  # an explicit attack list instead of the suite

    def identity(self) -> dict:
        """What must match for a resumed run to reuse stored results."""
        keep = ("model", "dataset", "norm", "eps", "n", "suite", "seed", "mode", "batch_size", "checkpoint",
                "robustbench_dir", "meansparse_alpha", "attacks")
        return {k: v for k, v in asdict(self).items() if k in keep}


def validate_config(config: AuditConfig) -> ThreatModel:
    if config.norm not in ("Linf", "L2"):
        raise AuditInputError(f"--norm must be Linf or L2, not {config.norm!r}")
    if not (config.eps > 0) or not math.isfinite(config.eps):
        raise AuditInputError(f"--eps must be a positive number, not {config.eps}")
    limit = 1.0 if config.norm == "Linf" else 100.0
    if config.eps >= limit:
        raise AuditInputError(f"--eps {config.eps} is absurd for {config.norm} on [0, 1] images (eps is a fraction, "
                              f"e.g. 8/255 = 0.031 for Linf); use a value below {limit:g}")
    if config.suite not in SUITES:
        raise AuditInputError(f"unknown suite {config.suite!r}; choose one of {', '.join(SUITES)}")
    if config.n <= 0:
        raise AuditInputError(f"--n must be positive, not {config.n}")
    if config.claim is not None and not 0 <= config.claim <= 1:
        raise AuditInputError(f"--claim is a fraction in [0, 1] (e.g. 0.7528), not {config.claim}")
    return ThreatModel(config.norm, config.eps)


def check_inputs(defense: Defense, images: torch.Tensor, labels: torch.Tensor) -> list[str]:
    """Refuse what cannot be audited; return warnings for what is suspicious."""
    warnings = []
    if images.dim() != 4:
        raise AuditInputError(f"inputs must be NCHW images, got shape {tuple(images.shape)}")
    if images.min() < 0 or images.max() > 1:
        raise AuditInputError(f"inputs must lie in [0, 1] (found {images.min():.3g}..{images.max():.3g}); "
                              f"put normalisation inside the model")
    with torch.no_grad():
        out = defense(images[:8].to(defense.device))
    if out.dim() != 2 or out.shape[0] != min(8, len(images)):
        raise AuditInputError(f"the model must return (N, classes) logits, got shape {tuple(out.shape)}")
    if not torch.isfinite(out).all():
        raise AuditInputError("the model returned NaN or Inf logits on clean inputs")
    if labels.min() < 0 or labels.max() >= out.shape[1]:
        raise AuditInputError(f"labels range {int(labels.min())}..{int(labels.max())} does not fit the model's "
                              f"{out.shape[1]} outputs")
    if ((out >= 0) & (out <= 1)).all() and torch.allclose(out.sum(1), torch.ones(len(out), device=out.device), atol=1e-4):
        warnings.append("the model outputs probabilities, not logits: gradients of the usual losses vanish; "
                        "remove the final softmax")
    return warnings


def plan_attacks(config: AuditConfig, defense: Defense) -> SuitePlan:
    if not config.attacks:
        return plan_suite(config.suite, defense)
    from attacks.registry import make_attack
    from attacks.transfer import base_model_of

    base = base_model_of(defense)
    attacks = [make_attack(name, transfer_source=base) for name in config.attacks]
    unsupported = [a.label for a in attacks if a.surrogate not in defense.surrogates]
    if unsupported:
        # Refused up front, not after hours of other attacks: BPDA needs a known non-differentiable part to bypass.
        raise AuditInputError(
            f"{', '.join(unsupported)} need(s) a surrogate gradient, but {defense.description} has no layer to "
            f"bypass (it offers only {', '.join(defense.surrogates)}); drop the +bpda attacks for this model")
    return SuitePlan(attacks, [])


def build_defense(config: AuditConfig) -> Defense:
    defense, _ = resolve_model(config.model, checkpoint=config.checkpoint, robustbench_dir=config.robustbench_dir,
                                trust_checkpoint=config.trust_checkpoint)
    if config.meansparse_alpha is not None:
        from defenses import as_defense, calibrate, sparsify

        model = sparsify(defense.model, config.meansparse_alpha)
        train = load_dataset(config.dataset, "train-only" if config.dataset in ("fashion-mnist", "mnist") else "train")
        batches = [train.images[i : i + 500] for i in range(0, len(train), 500)]
        calibrate(model, batches)
        defense = as_defense(model, defense.num_classes, f"{config.model}+meansparse({config.meansparse_alpha:g})")
    return defense


def run_audit(config: AuditConfig, out: str | Path, data_dir: str | None = None, device: str = "cpu",
              progress: bool = True, shard: Shard = Shard()) -> dict | None:
    """Run the audit and write its outputs; under torchrun only rank 0 returns the results (others None)."""
    # Everything the user may have got wrong is checked before the output directory is touched.
    threat = validate_config(config)
    defense = build_defense(config)
    defense.to(device)
    test = load_dataset(config.dataset, "test", data_dir).subset(config.n, config.seed)
    warnings = check_inputs(defense, test.images, test.labels)
    for warning in warnings:
        log.warning("warning: %s", warning)
    plan = plan_attacks(config, defense)
    out = Path(out)
    if shard.is_main:
        store = ResultStore(out, config.identity(), shard.rank, shard.world_size)
    shard.barrier()
    if not shard.is_main:
        store = ResultStore(out, config.identity(), shard.rank, shard.world_size)
    with _log_file(out / "audit.log" if shard.world_size == 1 else out / f"audit.rank{shard.rank}.log"):
        return _run(config, out, store, defense, test, threat, plan, warnings, device, progress, shard)


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """Everything logged during the run, pyautoattack's `auto-attack` logger included, also goes to a file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root, autoattack = logging.getLogger(), logging.getLogger("auto-attack")
    old_levels = root.level, autoattack.level
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    autoattack.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_levels[0])
        autoattack.setLevel(old_levels[1])


def _run(config, out, store, defense, test, threat, plan, warnings, device, progress, shard):  # noqa: ANN001, ANN202
    start = time.perf_counter()
    suite = run_suite(defense, test.images, test.labels, threat, plan.attacks, config.seed, store=store,
                      mode=config.mode, batch_size=config.batch_size, progress=progress and shard.is_main,
                      shard=shard)
    if not shard.is_main:
        return None
    findings, verdict = _diagnose(defense, test.images, test.labels, threat, suite, config, progress)
    results = assemble_results(config, defense, threat, suite, plan.skipped, findings, verdict, warnings, device,
                               time.perf_counter() - start)
    write_outputs(out, results, suite)
    return results


def _diagnose(defense, images, labels, threat, suite, config, progress):  # noqa: ANN001, ANN202
    from audit.diagnostics import run_diagnostics, verdict

    # --diagnostics-n 0 runs only the comparisons over the stored attack results (no extra model calls).
    findings = run_diagnostics(defense, images, labels, threat, suite, seed=config.seed, n=config.diagnostics_n,
                               progress=progress)
    from audit.alpha_provenance import alpha_finding

    provenance = alpha_finding(defense, config.model)
    if provenance is not None:
        findings.append(provenance)
    return findings, verdict(findings, suite, defense)


def assemble_results(config: AuditConfig, defense: Defense, threat: ThreatModel, suite: SuiteResult,
                     skipped: list, findings: list, verdict: dict, warnings: list[str], device: str,
                     seconds: float) -> dict:
    attacks = []
    for summary in suite.attacks.values():
        attacks.append({"name": summary.name, "robust_accuracy": summary.robust_accuracy(suite.clean_correct),
                        "n_forward": summary.n_forward, "n_backward": summary.n_backward,
                        "seconds": summary.seconds, "violations": summary.violations})
    worst = suite.worst_case_robust_accuracy
    results = {
        "schema_version": SCHEMA_VERSION,
        "model": config.model,
        "defense": defense.description,
        "dataset": config.dataset,
        "threat_model": {"norm": threat.norm, "eps": threat.eps},
        "n_samples": len(suite.labels),
        "seed": config.seed,
        "suite": config.suite,
        "mode": config.mode,
        "clean_accuracy": suite.clean_accuracy,
        "attacks": attacks,
        "skipped_attacks": [{"name": n, "reason": r} for n, r in skipped],
        "worst_case_robust_accuracy": worst,
        "findings": [f.to_json() if hasattr(f, "to_json") else f for f in findings],
        "verdict": verdict,
        "warnings": warnings,
        "seconds": seconds,
        "environment": environment(device),
    }
    if config.claim is not None:
        results["claim"] = {"claimed_robust_accuracy": config.claim, "worst_case_robust_accuracy": worst,
                            "survives": worst >= config.claim - 1e-9, "shortfall_points": max(0.0, 100 * (config.claim - worst))}
    return results


def samples_csv(suite: SuiteResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = list(suite.attacks)
    # AutoAttack keeps which of its parts broke each sample; that column lets reports tell Square apart.
    parts = {name for name in names if isinstance(suite.attacks[name].extra.get("broken_by"), dict)}
    header = ["index", "label", "clean_prediction"]
    for name in names:
        header += [f"{name}:success", f"{name}:distance"] + ([f"{name}:broken_by"] if name in parts else [])
    writer.writerow(header + ["worst_case_robust"])
    worst = suite.worst_case_robust
    for i, label in enumerate(suite.labels):
        row = [i, label, suite.clean_prediction[i]]
        for name in names:
            s = suite.attacks[name]
            row += ["" if s.success[i] is None else int(s.success[i]),
                    "" if s.distance[i] is None else f"{s.distance[i]:.6g}"]
            if name in parts:
                row.append(s.extra["broken_by"].get(i, ""))
        writer.writerow(row + [int(worst[i])])
    return buffer.getvalue()


def write_outputs(out: Path, results: dict, suite: SuiteResult) -> None:
    from audit.report import render_reports

    atomic_write(out / "results.json", json.dumps(results, indent=2))
    atomic_write(out / "samples.csv", samples_csv(suite))
    render_reports(out)
