"""The runner: every attack of a plan (audit/plan/) over the samples, batch by batch, stored as it goes; the result
is read back from the store as `Outcomes`, so a resumed, sharded or re-rendered run sees exactly what was stored.

Modes: `full` runs every attack on every clean-correct sample (what the comparisons need); `cascade` sends only
the samples still robust to the next attack (the fast path to the worst-case number). An attack with
`on_survivors` runs on the samples still robust in either mode (a last search on what the others left). Samples an
attack did not run on are `not_run` with their reason, never counted as robust or as missed.

A batch whose attack fails (it raises, runs out of memory even in smaller pieces, or the model returns NaN/Inf
logits on the attacked points) is stored as `not_run:error` for its samples, with the message in the row's `error`;
the run goes on, the report lists it, and a resume runs it again (`audit run --strict` exits non-zero on it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.judge import DEFAULT_DRAWS, AttackRecord, exact_logits, judge, score_logits
from attacks.threat_model import ThreatModel
from audit.distributed import Shard
from audit.evidence import write_batch
from audit.outcomes import BROKEN, HELD, NotRun, Outcomes
from audit.plan.types import Plan
from audit.store import ResultStore
from defenses.protocol import Defense

log = logging.getLogger(__name__)
CLEAN = "clean"
MODES = ("full", "cascade")
PER_SAMPLE = ("indices", "status", "distance", "margin", "draws_correct")
COSTS = ("n_forward", "n_backward", "seconds", "violations")


def record_row(record: AttackRecord, batch: int, attack: Attack) -> dict[str, Any]:
    """One store row: a batch of one attack, with what the attack is and per-sample outcomes."""
    extra = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in record.extra.items()}
    # An attack that left some samples alone (an evidence-first Square whose probe broke none) says so in
    # `queried`: those samples were not attacked, so they are not_run, never `held`.
    queried = extra.get("queried") or [True] * len(record.indices)
    return {
        "attack": record.attack,
        "batch": batch,
        "indices": record.indices,
        "attributes": attack.attributes(),
        "status": [
            BROKEN if s else HELD if q else NotRun.NOT_QUERIED for s, q in zip(record.success.tolist(), queried)
        ],
        "distance": record.distance.tolist(),
        "margin": record.margin.tolist(),
        "draws_correct": record.draws_correct.tolist(),
        "draws": record.draws,
        "n_forward": float(record.n_forward.sum()),
        "n_backward": float(record.n_backward.sum()),
        "seconds": float(record.seconds.sum()),
        "violations": record.violations,
        "extra": extra,
    }


def empty_row(attack: Attack) -> dict[str, Any]:
    """The row of an attack that had no sample to run on (all broken before it), so its attributes are stored."""
    return {
        "attack": attack.label,
        "batch": 0,
        "indices": [],
        "attributes": attack.attributes(),
        "status": [],
        "distance": [],
        "margin": [],
        "draws_correct": [],
        "draws": 1,
        "n_forward": 0.0,
        "n_backward": 0.0,
        "seconds": 0.0,
        "violations": 0,
        "extra": {},
    }


def error_row(attack: Attack, batch: int, indices: list[int], message: str) -> dict[str, Any]:
    """The row of a batch the attack failed on: its samples are `not_run:error`, and a resume retries it."""
    n = len(indices)
    return {
        **empty_row(attack),
        "batch": batch,
        "indices": indices,
        "status": [NotRun.ERROR] * n,
        "distance": [None] * n,
        "margin": [None] * n,
        "draws_correct": [None] * n,
        "error": message,
    }


def judge_batch(
    attack: Attack,
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    seed: int,
    index: torch.Tensor,
    batch: int,
    evidence: Path | None = None,
    precision: str = "float32",
) -> dict[str, Any]:
    """The store row of one batch: judged, or, when the attack fails on it, an error row. Out of memory is retried
    on the two halves of the batch (each judged on its own, down to one sample) before it counts as a failure.
    With `evidence` (the store's directory), the judged points of the broken samples are written there first
    (audit/evidence.py), so a stored "broken" always has its adversarial example."""
    indices = index.tolist()
    try:
        record = judge(attack, defense, images[index], labels[index], threat, seed, indices, precision=precision)
    except Exception as error:  # noqa: BLE001 - one failed batch must not lose the run (stored, retried on resume)
        if _out_of_memory(error) and len(indices) > 1:
            if defense.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(indices) // 2
            log.warning(
                "%s ran out of memory on %d samples (batch %d); trying %d and %d",
                attack.label,
                len(indices),
                batch,
                half,
                len(indices) - half,
            )
            return merge_rows(
                [
                    judge_batch(attack, defense, images, labels, threat, seed, part, batch, evidence, precision)
                    for part in (index[:half], index[half:])
                ]
            )
        log.warning(
            "warning: %s failed on batch %d (%d samples): %s: %s; stored as %s, a resume retries it",
            attack.label,
            batch,
            len(indices),
            type(error).__name__,
            error,
            NotRun.ERROR,
            exc_info=True,
        )
        first = (str(error).splitlines() or [""])[0][:200]
        return error_row(attack, batch, indices, f"{type(error).__name__}: {first}")
    row = record_row(record, batch, attack)
    unscored = int((~torch.isfinite(record.margin)).sum())
    if unscored:  # NaN/Inf logits on the attacked points: broken or held would be made up
        log.warning(
            "warning: %s: the model returned NaN or Inf logits on %d of the %d attacked points of batch %d; "
            "stored as %s",
            attack.label,
            unscored,
            len(indices),
            batch,
            NotRun.ERROR,
        )
        return {
            **error_row(
                attack,
                batch,
                indices,
                f"the model returned NaN or Inf logits on {unscored} of the {len(indices)} attacked points",
            ),
            **{k: row[k] for k in COSTS},
        }
    if evidence is not None:  # named by its first sample, as the batch is: the pieces of a split batch differ
        write_batch(evidence, attack, indices[0], record)
    return row


def _out_of_memory(error: Exception) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in str(error) or "can't allocate memory" in str(error))
    )


def merge_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rows of the pieces of a batch (in order); an error in any piece marks the whole row."""
    merged = {
        **rows[0],
        **{k: [v for r in rows for v in r[k]] for k in PER_SAMPLE},
        **{k: sum(r[k] for r in rows) for k in COSTS},
    }
    merged["extra"] = {
        key: [v for r in rows for v in r["extra"][key]]
        for key in rows[0]["extra"]
        if all(isinstance(r["extra"].get(key), list) for r in rows)
    }  # per-sample extras only
    errors = [r["error"] for r in rows if "error" in r]
    merged.pop("error", None)
    if errors:
        merged["error"] = "; ".join(dict.fromkeys(errors))
    return merged


def failed_batches(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failed batches no later row has replaced: attack, batch, samples not run, and the error."""
    covered = {(r["attack"], i) for r in rows if "error" not in r and "indices" in r for i in r["indices"]}
    failed = []
    for r in rows:
        if "error" in r and "status" in r:  # an attack's row (a probe's error is its measurement's)
            left = [
                i for i, s in zip(r["indices"], r["status"]) if s == NotRun.ERROR and (r["attack"], i) not in covered
            ]
            if left:
                failed.append({"attack": r["attack"], "batch": r["batch"], "samples": len(left), "error": r["error"]})
    return failed


def clean_row(
    defense: Defense, images: torch.Tensor, labels: torch.Tensor, seed: int, draws: int = DEFAULT_DRAWS
) -> dict[str, Any]:
    """The clean inputs scored once, on the same common draws as every attack."""
    logits = exact_logits(defense, images.to(defense.device), list(range(len(labels))), seed, draws)
    correct, _ = score_logits(logits, labels.to(defense.device))
    return {
        "attack": CLEAN,
        "batch": 0,
        "labels": labels.tolist(),
        "prediction": logits[0].argmax(1).tolist(),
        "draws_correct": correct.tolist(),
        "draws": draws if defense.randomized else 1,
    }


def run_plan(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    plan: Plan,
    seed: int,
    store: ResultStore,
    mode: str = "full",
    batch_size: int = 250,
    progress: bool = True,
    shard: Shard = Shard(),  # noqa: B008 - Shard is a frozen dataclass, immutable
    keep_examples: bool = False,
    precision: str = "float32",
) -> Outcomes:
    """Run `plan.planned` in order, after reading back `plan.finished` from the store. `keep_examples`: write each
    batch's broken points to the store's evidence (audit/evidence.py) before its record, so a stored "broken" always
    has its adversarial example. `precision`: of the attacks' proposals (attacks/precision.py); the judge scores in
    float32."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not store.done(CLEAN, 0) and shard.is_main:
        store.append(clean_row(defense, images, labels, seed))
    shard.barrier()
    stored = list(store.records())
    shard.barrier()  # every rank has read the same store before any rank writes to it
    clean = next(r for r in stored if r["attack"] == CLEAN)
    robust = torch.tensor([c == clean["draws"] for c in clean["draws_correct"]])
    clean_correct = robust.clone()
    order = list(plan.finished)  # `audit extend`: what the run did, read back, so `+survivors` sees what it left
    if order:
        finished = Outcomes.from_rows(clean, stored, order, mode)
        for label in order:
            robust &= _not_broken(finished, label)
    for attack in plan.attacks:
        # Full mode attacks every clean-correct sample, cascade mode only those still robust. Samples with a
        # stored result are not attacked again, and a batch is named by its first sample: what an earlier attack
        # left robust may differ on resume (its damaged or failed batches re-run on another device), so batch
        # positions would name other samples than they did.
        candidates = (robust if mode == "cascade" or attack.on_survivors else clean_correct).nonzero().flatten()
        covered = {i for r in stored if r["attack"] == attack.label and "error" not in r for i in r["indices"]}
        todo = torch.tensor([i for i in candidates.tolist() if i not in covered], dtype=torch.long)
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        if not len(candidates) and shard.owns(0) and not store.done(attack.label, 0):
            store.append(empty_row(attack))  # nothing left to attack: the row still records what the attack is
        bar = tqdm(total=len(candidates), desc=attack.label, unit="img", disable=not progress, leave=False)
        bar.update(len(candidates) - len(todo))
        for position, index in enumerate(batches):
            if shard.owns(position):  # every rank forms the same batches from the same stored rows
                store.append(
                    judge_batch(
                        attack,
                        defense,
                        images,
                        labels,
                        threat,
                        seed,
                        index,
                        int(index[0]),
                        store.directory if keep_examples else None,
                        precision,
                    )
                )
            bar.update(len(index))
        bar.close()
        shard.barrier()  # all ranks have written this attack; everyone reads everything
        order.append(attack.label)
        outcomes = Outcomes.from_rows(clean, store.records(), order, mode)
        robust &= _not_broken(outcomes, attack.label)
        counts = outcomes.counts(attack.label)
        log.info(
            "%-32s broke %d of the %d samples it ran on (worst case so far %.2f%%) in %.1f s",
            attack.label,
            counts["broken"],
            counts["ran"],
            100 * robust.float().mean(),
            outcomes.cost[attack.label]["seconds"],
        )
    return Outcomes.from_rows(clean, store.records(), order, mode)


def _not_broken(outcomes: Outcomes, label: str) -> torch.Tensor:
    """Per sample, whether `label` left it unbroken; every sample must have a stored result."""
    missing = outcomes.status[label].count(NotRun.MISSING)
    if missing:
        raise RuntimeError(f"{label}: {missing} samples have no results")
    return torch.tensor([s != BROKEN for s in outcomes.status[label]])
