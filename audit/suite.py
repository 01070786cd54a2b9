"""The suite: every attack of a plan over the samples, batch by batch, stored as it goes; the result is read back
from the store as `Outcomes`, so a resumed, sharded or re-rendered run sees exactly what was stored.

Modes: `full` runs every attack on every clean-correct sample (what the comparisons need); `cascade` sends only
the samples still robust to the next attack (the fast path to the worst-case number). An attack with
`on_survivors` runs on the samples still robust in either mode (a last search on what the others left). Samples an
attack did not run on are `not_run` with their reason, never counted as robust or as missed.
"""
from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.judge import DEFAULT_DRAWS, AttackRecord, exact_logits, judge, score_logits
from attacks.threat_model import ThreatModel
from audit.distributed import Shard
from audit.evidence import write_batch
from audit.outcomes import BROKEN, HELD, Outcomes
from audit.store import ResultStore
from defenses.protocol import Defense

log = logging.getLogger(__name__)
CLEAN = "clean"
NOT_QUERIED = "not_run:not-queried"
MODES = ("full", "cascade")


def record_row(record: AttackRecord, batch: int, attack: Attack) -> dict:
    """One store row: a batch of one attack, with what the attack is and per-sample outcomes."""
    extra = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in record.extra.items()}
    # An attack that left some samples alone (an evidence-first Square whose probe broke none) says so in
    # `queried`: those samples were not attacked, so they are not_run, never `held`.
    queried = extra.get("queried") or [True] * len(record.indices)
    return {
        "attack": record.attack, "batch": batch, "indices": record.indices, "attributes": attack.attributes(),
        "status": [BROKEN if s else HELD if q else NOT_QUERIED for s, q in zip(record.success.tolist(), queried)],
        "distance": record.distance.tolist(), "margin": record.margin.tolist(),
        "draws_correct": record.draws_correct.tolist(), "draws": record.draws,
        "n_forward": float(record.n_forward.sum()), "n_backward": float(record.n_backward.sum()),
        "seconds": float(record.seconds.sum()), "violations": record.violations, "extra": extra,
    }


def empty_row(attack: Attack) -> dict:
    """The row of an attack that had no sample to run on (all broken before it), so its attributes are stored."""
    return {"attack": attack.label, "batch": 0, "indices": [], "attributes": attack.attributes(), "status": [],
            "distance": [], "margin": [], "draws_correct": [], "draws": 1, "n_forward": 0.0, "n_backward": 0.0,
            "seconds": 0.0, "violations": 0, "extra": {}}


def clean_row(defense: Defense, images: torch.Tensor, labels: torch.Tensor, seed: int,
              draws: int = DEFAULT_DRAWS) -> dict:
    """The clean inputs scored once, on the same common draws as every attack."""
    logits = exact_logits(defense, images.to(defense.device), list(range(len(labels))), seed, draws)
    correct, _ = score_logits(logits, labels.to(defense.device))
    return {"attack": CLEAN, "batch": 0, "labels": labels.tolist(), "prediction": logits[0].argmax(1).tolist(),
            "draws_correct": correct.tolist(), "draws": draws if defense.random_forward else 1}


def run_suite(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    attacks: list[Attack],
    seed: int,
    store: ResultStore,
    mode: str = "full",
    batch_size: int = 250,
    progress: bool = True,
    shard: Shard = Shard(),  # noqa: B008 - Shard is a frozen dataclass, immutable
    keep_examples: bool = False,
) -> Outcomes:
    """`keep_examples`: write each batch's broken points to the store's evidence (audit/evidence.py) before its
    record, so a stored "broken" always has its adversarial example."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not store.done(CLEAN, 0) and shard.is_main:
        store.append(clean_row(defense, images, labels, seed))
    shard.barrier()
    clean = next(r for r in store.records() if r["attack"] == CLEAN)
    robust = torch.tensor([c == clean["draws"] for c in clean["draws_correct"]])
    clean_correct = robust.clone()
    order: list[str] = []
    for attack in attacks:
        # Full mode attacks every clean-correct sample, cascade mode only those still robust. Batch ids are
        # positions in this sequence, so a resumed run forms the same batches.
        candidates = (robust if mode == "cascade" or attack.on_survivors else clean_correct).nonzero().flatten()
        batches = [candidates[i : i + batch_size] for i in range(0, len(candidates), batch_size)]
        if not batches and shard.owns(0) and not store.done(attack.label, 0):
            store.append(empty_row(attack))  # nothing left to attack: the row still records what the attack is
        bar = tqdm(total=len(candidates), desc=attack.label, unit="img", disable=not progress, leave=False)
        for batch_id, index in enumerate(batches):
            if shard.owns(batch_id) and not store.done(attack.label, batch_id):
                record = judge(attack, defense, images[index], labels[index], threat, seed, index.tolist())
                if keep_examples:
                    write_batch(store.directory, attack, batch_id, record)
                store.append(record_row(record, batch_id, attack))
            bar.update(len(index))
        bar.close()
        shard.barrier()  # all ranks have written this attack; everyone reads everything
        order.append(attack.label)
        outcomes = Outcomes.from_rows(clean, store.records(), order, mode)
        missing = outcomes.status[attack.label].count("not_run:missing")
        if missing:
            raise RuntimeError(f"{attack.label}: {missing} samples have no results")
        robust &= torch.tensor([s != BROKEN for s in outcomes.status[attack.label]])
        counts = outcomes.counts(attack.label)
        log.info("%-32s broke %d of the %d samples it ran on (worst case so far %.2f%%) in %.1f s", attack.label,
                 counts["broken"], counts["ran"], 100 * robust.float().mean(), outcomes.cost[attack.label]["seconds"])
    return Outcomes.from_rows(clean, store.records(), order, mode)
