"""The audit runner: every attack of a suite over the samples, batch by batch, stored as it goes.

Modes: `full` runs every attack on every sample (what the diagnostics need); `cascade` sends only the samples
still robust to the next attack (the fast path to the worst-case number). Either way the per-sample worst case
is: robust only if clean-correct and no attack succeeded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.runner import AttackRecord, exact_logits, run_attack, score_logits
from attacks.threat_model import ThreatModel
from audit.distributed import Shard
from audit.store import ResultStore
from defenses.protocol import Defense

log = logging.getLogger(__name__)


@dataclass
class AttackSummary:
    name: str
    success: list[bool | None]  # None: not run on this sample (cascade mode, or already misclassified)
    distance: list[float | None]
    margin: list[float | None]
    n_forward: float = 0.0
    n_backward: float = 0.0
    seconds: float = 0.0
    violations: int = 0
    extra: dict = field(default_factory=dict)

    def robust_accuracy(self, clean_correct: list[bool]) -> float:
        """Accuracy after this attack alone (samples it did not run on count as they were)."""
        robust = [c and not bool(s) for c, s in zip(clean_correct, self.success)]
        return sum(robust) / max(len(robust), 1)


@dataclass
class SuiteResult:
    labels: list[int]
    clean_prediction: list[int]
    clean_correct: list[bool]
    attacks: dict[str, AttackSummary]

    @property
    def worst_case_robust(self) -> list[bool]:
        robust = list(self.clean_correct)
        for summary in self.attacks.values():
            robust = [r and not bool(s) for r, s in zip(robust, summary.success)]
        return robust

    @property
    def worst_case_robust_accuracy(self) -> float:
        return sum(self.worst_case_robust) / max(len(self.labels), 1)

    @property
    def clean_accuracy(self) -> float:
        return sum(self.clean_correct) / max(len(self.labels), 1)


def _to_json(record: AttackRecord, batch: int) -> dict:
    extra = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in record.extra.items()}
    return {
        "attack": record.attack, "batch": batch, "indices": record.indices,
        "success": record.success.tolist(), "distance": record.distance.tolist(), "margin": record.margin.tolist(),
        "n_forward": float(record.n_forward.sum()), "n_backward": float(record.n_backward.sum()),
        "seconds": float(record.seconds.sum()), "violations": record.violations, "extra": extra,
    }


def run_suite(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    attacks: list[Attack],
    seed: int,
    store: ResultStore | None = None,
    mode: str = "full",
    batch_size: int = 250,
    progress: bool = True,
    shard: Shard = Shard(),
) -> SuiteResult:
    if mode not in ("full", "cascade"):
        raise ValueError(f"mode must be 'full' or 'cascade', not {mode!r}")
    n = len(labels)
    # One pass over the clean inputs gives both: correct on every draw, and the first draw's prediction.
    clean_logits = exact_logits(defense, images.to(defense.device))
    clean_wrong, _ = score_logits(clean_logits, labels.to(defense.device))
    clean_correct = (~clean_wrong).tolist()
    clean_prediction = clean_logits[0].argmax(1).tolist()
    summaries: dict[str, AttackSummary] = {}
    robust = torch.tensor(clean_correct)
    for attack in attacks:
        summary = AttackSummary(attack.label, [None] * n, [None] * n, [None] * n)
        # In cascade mode the batches are formed from the samples still robust; in full mode from all that are
        # clean-correct (a misclassified input needs no attack). Batch ids are positions in this sequence.
        candidates = robust.nonzero().flatten() if mode == "cascade" else torch.tensor(clean_correct).nonzero().flatten()
        batches = [candidates[i : i + batch_size] for i in range(0, len(candidates), batch_size)]
        bar = tqdm(total=len(candidates), desc=attack.label, unit="img", disable=not progress, leave=False)
        rows: dict[int, dict] = {}
        for batch_id, index in enumerate(batches):
            if not shard.owns(batch_id) or (store is not None and store.done(attack.label, batch_id)):
                continue
            record = run_attack(attack, defense, images[index], labels[index], threat, seed, index.tolist())
            rows[batch_id] = _to_json(record, batch_id)
            if store is not None:
                store.append(rows[batch_id])
            bar.update(len(index))
        bar.close()
        if store is not None:
            shard.barrier()  # all ranks have written this attack; everyone reads everything
            rows = {r["batch"]: r for r in store.records() if r["attack"] == attack.label}
        missing = [b for b in range(len(batches)) if b not in rows]
        if missing:
            raise RuntimeError(f"{attack.label}: batches {missing} have no results")
        for batch_id in range(len(batches)):
            _merge(summary, rows[batch_id])
        succeeded = torch.tensor([bool(s) for s in summary.success])
        robust &= ~succeeded
        summaries[attack.label] = summary
        log.info("%-32s robust accuracy %.2f%% (worst case so far %.2f%%) in %.1f s", attack.label,
                 100 * summary.robust_accuracy(clean_correct), 100 * robust.float().mean(), summary.seconds)
    return SuiteResult(labels.tolist(), clean_prediction, clean_correct, summaries)


def _merge(summary: AttackSummary, row: dict) -> None:
    for position, index in enumerate(row["indices"]):
        summary.success[index] = bool(row["success"][position])
        summary.distance[index] = float(row["distance"][position])
        summary.margin[index] = float(row["margin"][position])
    summary.n_forward += row["n_forward"]
    summary.n_backward += row["n_backward"]
    summary.seconds += row["seconds"]
    summary.violations += row["violations"]
    for key, value in row.get("extra", {}).items():
        if isinstance(value, list) and len(value) == len(row["indices"]):
            target = summary.extra.setdefault(key, {})
            for position, index in enumerate(row["indices"]):
                target[index] = value[position]
