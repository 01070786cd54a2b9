"""`audit extend DIR --attacks ...`: add attacks to a finished audit, without re-running what it ran.

What `attack-convergence` asks for when a curve is still falling (e.g. `square+survivors@queries=60000`): one more
point up the curve on the same images and seeds. The finished attacks are replayed from the store, so a
`+survivors` attack runs on what all of them left, exactly as it would at the end of a run that had it in its plan;
the added attacks' labels go into an `extension` row, and the findings, verdict and reports are derived again.
Interrupted, the same command resumes (batches already stored are kept).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.data import load_dataset
from audit.distributed import Shard
from audit.evidence import broken_pairs, collect_evidence
from audit.fingerprint import fingerprint
from audit.inputs import AuditInputError, check_inputs
from audit.outcomes import NotRun, Outcomes
from audit.pipeline import (
    EXTENSION,
    build_defense,
    derive_results,
    finished_facts,
    log_file,
    open_store,
    stored_config,
)
from audit.plan import Plan, make_plan
from audit.runner import CLEAN, run_plan
from audit.store import ResultStore
from defenses.protocol import declared_random

log = logging.getLogger(__name__)


def extend_audit(
    out: str | Path,
    attacks: list[str],
    data_dir: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    trust_checkpoint: bool = False,
    shard: Shard = Shard(),  # noqa: B008 - Shard is a frozen dataclass, immutable
) -> dict[str, Any] | None:
    """Run `attacks` on the finished audit in `out` after everything it ran; under torchrun only rank 0 returns."""
    out = Path(out)
    facts = finished_facts(out)
    config = replace(stored_config(facts), trust_checkpoint=trust_checkpoint)
    added = [make_attack(name) for name in attacks]  # a bad name stops here, before the model is built
    ran = facts["order"] + [name for name, _ in facts["skipped"]]  # planned already: run, or not applicable
    rows = list(ResultStore.open_existing(out).records())
    _check_complete(rows, facts, config.mode, out)
    defense = build_defense(config, progress)
    defense.to(device)
    if facts.get("randomness_found"):  # the run found it random: attack and score on draws, as it did
        defense = declared_random(defense)
    test = load_dataset(config.dataset, "test", data_dir).subset(config.n, config.seed)
    # Other weights, images or versions than the run's are refused here, naming what changed (audit/fingerprint.py).
    store = open_store(out, config.identity(fingerprint(config, defense, test.images, test.labels)), shard)
    check_inputs(defense, test.images, test.labels)  # as `audit run`: its forwards also let automatic BPDA scan
    # As `audit run` plans an attack list: +bpda on a model with nothing to bypass is refused, and a gradient attack
    # no gradient reaches is listed as not applicable (with the stronger Square added).
    asked = make_plan(replace(config, attacks=tuple(a.label for a in added), transfer_from=()), defense, device)
    # The finished attacks are read back from the store first, so a `+survivors` attack runs on what they left.
    plan = Plan(
        [p for p in asked.planned if p.attack.label not in ran],
        [s for s in asked.skipped if s.attack not in ran],
        finished=facts["order"],
    )
    with log_file(out, shard):
        start = time.perf_counter()
        if not plan.planned and not plan.skipped:
            log.info("every attack asked for has run already (%s)", ", ".join(a.label for a in added))
        run_plan(
            defense,
            test.images,
            test.labels,
            ThreatModel(config.norm, config.eps),
            plan,
            config.seed,
            store=store,
            mode=config.mode,
            batch_size=config.batch_size,
            progress=progress and shard.is_main,
            shard=shard,
            keep_examples=config.keep_examples != "none",
        )
        if not shard.is_main:
            return None
        collect_evidence(
            out,
            config.keep_examples,
            test,
            [*facts["order"], *plan.labels],
            config.seed,
            bool(facts["randomized"]),
            broken_pairs(store.records()),
        )
        if plan.planned or plan.skipped:
            store.append(
                {
                    "attack": EXTENSION,
                    "batch": sum(r["attack"] == EXTENSION for r in rows),
                    "order": plan.labels,
                    "skipped": [list(s) for s in plan.skipped],
                    "why": plan.why(),
                    "seconds": 0.0,
                }
            )
        results = derive_results(out)
    log.info("extension finished in %.1f s", time.perf_counter() - start)
    return results


def _check_complete(rows: list[dict[str, Any]], facts: dict[str, Any], mode: str, out: Path) -> None:
    """Refuse to extend a run whose stored results lack samples (a damaged record): the finished attacks are only
    read here, so `audit run` must run what is missing first."""
    clean = next((r for r in rows if r["attack"] == CLEAN), None)
    missing = (
        []
        if clean is None
        else [
            label
            for label, status in Outcomes.from_rows(clean, rows, facts["order"], mode).status.items()
            if NotRun.MISSING in status
        ]
    )
    if clean is None or missing:
        raise AuditInputError(
            f"{out} lacks stored results of {', '.join(missing) or 'the clean inputs'} (a damaged "
            f"record?); run the audit's `audit run` command with this --out first (it re-runs only "
            f"what is missing), then extend"
        )
