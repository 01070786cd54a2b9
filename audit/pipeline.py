"""`audit run`, orchestrated: check the input, build the defense, plan (audit/plan/), run the plan into the store,
run the probes into the store, then derive findings, verdict and reports from the store alone (`derive_results`),
which is also what `audit report DIR` does, so a report can be rebuilt without the model."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from attacks.threat_model import ThreatModel
from audit.config import AuditConfig
from audit.data import load_dataset, num_classes
from audit.distributed import Shard
from audit.environment import environment
from audit.evidence import broken_pairs, collect_evidence, evidence_summary
from audit.fingerprint import MEANING, fingerprint
from audit.inputs import AuditInputError, check_inputs, validate_config
from audit.model_spec import resolve_model
from audit.outcomes import Outcomes
from audit.plan import Plan, make_plan
from audit.probes import PREFIX as PROBE_PREFIX
from audit.results import assemble_results, write_outputs
from audit.runner import CLEAN, failed_batches, run_plan
from audit.store import ResultStore
from defenses.protocol import Defense, Undefended, declared_random

log = logging.getLogger(__name__)
FACTS = "facts"  # the store row with what the checks need to know about the defense and the run
EXTENSION = "extension"  # a store row naming attacks `audit extend` added to a finished run (audit/extend.py)
BASE_DIR = "base"  # the base model's audit, inside the defense's output directory
# Loggers whose records also go to the run's audit.log (ours, and pyautoattack's).
LOGGERS = ("audit", "attacks", "defenses", "auto-attack")


def build_defense(config: AuditConfig, progress: bool = True) -> Defense:
    defense, _ = resolve_model(
        config.model,
        num_classes=num_classes(config.dataset),
        checkpoint=config.checkpoint,
        robustbench_dir=config.robustbench_dir,
        trust_checkpoint=config.trust_checkpoint,
        dataset=config.dataset,
        threat=config.norm,
    )  # picks among same-named zoo entries
    if config.meansparse_alpha is not None:
        from defenses import as_defense, calibrate, sparsify

        model = sparsify(defense.model, config.meansparse_alpha)
        train = load_dataset(config.dataset, "train-only" if config.dataset in ("fashion-mnist", "mnist") else "train")
        batches = [train.images[i : i + 500] for i in range(0, len(train), 500)]
        calibrate(model, batches, progress=progress)
        defense = as_defense(model, defense.num_classes, f"{config.model}+meansparse({config.meansparse_alpha:g})")
    if config.static_model is not None:
        _set_static_model(defense, config)
    return defense


def _set_static_model(defense: Defense, config: AuditConfig) -> None:
    """`--static-model`: a submodule of the user's model by dotted name, else any model spec."""
    from defenses.opaque import OpaqueModel
    from defenses.test_time import submodule

    if not isinstance(defense, OpaqueModel) or config.static_model is None:
        raise AuditInputError(
            f"--static-model applies to a user's model (PATH.py:FACTORY) whose forward optimises "
            f"its input, not to {defense.description}"
        )
    try:
        defense.static_model = submodule(defense.model, config.static_model)
    except KeyError:
        defense.static_model = resolve_model(config.static_model, trust_checkpoint=config.trust_checkpoint)[0].model


def run_audit(
    config: AuditConfig,
    out: str | Path,
    data_dir: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    shard: Shard = Shard(),  # noqa: B008 - Shard is a frozen dataclass, immutable
    audit_base: bool = True,
    base_run: str | Path | None = None,
) -> dict[str, Any] | None:
    """Run the audit and write its outputs; under torchrun only rank 0 returns the results (others None).

    `base_run`: a finished audit of the model's base (same images, seed and attack settings; its clean predictions
    are checked before any attack runs) serves as the gain table's base audit instead of attacking the base again.
    `audit_base=False` leaves the base audit to the caller (`reuse_base`, as the demo does)."""
    # Everything the user may have got wrong is checked before the output directory is touched.
    threat = validate_config(config)
    defense = build_defense(config, progress)
    defense.to(device)
    test = load_dataset(config.dataset, "test", data_dir).subset(config.n, config.seed)
    warnings = check_inputs(defense, test.images, test.labels)
    if config.batch_size_auto:  # resolved before the identity: a run is named by the batch it used
        from audit.batch_size import find_batch_size

        config = dataclasses.replace(config, batch_size=find_batch_size(defense, test.images))
    identity = config.identity(fingerprint(config, defense, test.images, test.labels))
    randomness = _randomness(defense, test.images, test.labels, threat, config.seed)
    found = randomness["observed"] and not defense.randomized
    # Undeclared randomness: the plan keeps the attacks without EOT and adds their EOT versions.
    plan = make_plan(config, defense, device, randomness_found=found)  # a refused plan stops before any warning
    for warning in warnings:
        log.warning("warning: %s", warning)
    if found:
        defense = declared_random(defense)  # every point is scored on common draws (attacks/judge.py)
        log.warning("warning: the forward is random but the model does not declare it; adding EOT attacks")
    if base_run is not None:  # refused now, not after hours of attacks
        check_base_run(identity, plan.labels, base_run, defense, test.images, config.batch_size)
    out = Path(out)
    store = open_store(out, identity, shard)
    _check_claim(config, store, out)
    with log_file(out, shard):
        start = time.perf_counter()
        run_plan(
            defense,
            test.images,
            test.labels,
            threat,
            plan,
            config.seed,
            store=store,
            mode=config.mode,
            batch_size=config.batch_size,
            progress=progress and shard.is_main,
            shard=shard,
            keep_examples=config.keep_examples != "none",
            precision=config.proposal_precision,
        )
        if base_run is None and audit_base:
            _audit_base(
                defense,
                test.images,
                test.labels,
                threat,
                plan,
                config,
                identity,
                out / BASE_DIR,
                progress and shard.is_main,
                shard,
            )
        if not shard.is_main:
            return None
        collect_evidence(
            out, config.keep_examples, test, plan.labels, config.seed, defense.randomized, broken_pairs(store.records())
        )
        if not store.done(FACTS, 0):
            store.append(_facts(config, identity, defense, plan, warnings, device, found))
        if not store.done(PROBE_PREFIX + "randomized", 0):
            measurement = {k: v for k, v in randomness.items() if k != "observed"}
            store.append(
                {"attack": PROBE_PREFIX + "randomized", "batch": 0, "seconds": 0.0, "measurement": measurement}
            )
        if base_run is not None:
            reuse_base(out, base_run)
        from audit.probes import run_probes

        run_probes(
            defense,
            test.images,
            test.labels,
            threat,
            store,
            seed=config.seed,
            n=config.diagnostics_n,
            model_spec=config.model,
            progress=progress,
        )
        results = derive_results(out)
    log.info("audit finished in %.1f s", time.perf_counter() - start)
    return results


def _check_claim(config: AuditConfig, store: ResultStore, out: Path) -> None:
    """A finished run's verdict was judged against the claim it was run with: refuse another one, rather than
    print a verdict about a claim that was silently ignored."""
    facts = facts_of(list(store.records()))
    stored = facts["config"].get("claim") if facts else config.claim
    if stored != config.claim:

        def text(claim: float | None) -> str:
            return "no --claim" if claim is None else f"--claim {claim:g}"

        raise AuditInputError(
            f"{out} was audited with {text(stored)}, not {text(config.claim)}; resume with "
            f"{text(stored)}, or audit again into a new --out to judge another claim"
        )


def open_store(out: Path, identity: dict[str, Any], shard: Shard) -> ResultStore:
    """Rank 0 creates (or checks) the directory and its config first; then every other rank opens it."""
    store = ResultStore(out, identity, shard.rank, shard.world_size) if shard.is_main else None
    shard.barrier()
    return store or ResultStore(out, identity, shard.rank, shard.world_size)


def _randomness(
    defense: Defense, images: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, seed: int
) -> dict[str, Any]:
    """The `randomized` probe (AutoAttack's check: repeated forwards of the same batch) run before any attack is
    planned, so undeclared randomness gets EOT attacks; stored as the probe's measurement, with `observed`."""
    from attacks.judge import derive_seed
    from audit.checks.sanity import judge_randomized
    from audit.probes.config import DiagnosticsConfig
    from audit.probes.sanity import measure_randomized

    config = DiagnosticsConfig()
    n = min(len(images), config.batch_size)
    measurement = measure_randomized(
        defense,
        images[:n].to(defense.device),
        labels[:n].to(defense.device),
        threat,
        seed=derive_seed(seed, "diagnostics", "randomized"),
        config=config,
    )
    return {**measurement, "observed": bool(judge_randomized(measurement)[0].evidence["observed"])}


def _audit_base(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    plan: Plan,
    config: AuditConfig,
    identity: dict[str, Any],
    out: Path,
    progress: bool,
    shard: Shard,
) -> None:
    """For a MeanSparse model, AutoAttack on its base (every threshold 0) on the same images and seeds, in
    `<out>/base`, for the gain table: the comparison RobustBench's re-evaluation makes (base AutoAttack against the
    defense's adaptive result). The base has nothing to bypass, so AutoAttack is its strong evaluation."""
    from audit.gain import autoattack_labels

    base = defense.base_model()
    # AutoAttack, or the default budget's cascade that stands in for it: the base gets the same schedule.
    stand_in = autoattack_labels(plan.labels)
    attacks = Plan([p for p in plan.planned if p.attack.label in stand_in])
    if base is None or not attacks.planned:
        return
    base_defense = Undefended(base.to(defense.device), defense.num_classes, f"{config.model} base (alpha 0)")
    store = open_store(out, identity | {"base_of": config.model}, shard)
    log.info("auditing the base model (MeanSparse off) on the same images for the gain table")
    run_plan(
        base_defense,
        images,
        labels,
        threat,
        attacks,
        config.seed,
        store=store,
        mode=config.mode,
        batch_size=config.batch_size,
        progress=progress,
        shard=shard,
        precision=config.proposal_precision,
    )
    if shard.is_main and not store.done(FACTS, 0):
        store.append(
            {
                "attack": FACTS,
                "batch": 0,
                "order": attacks.labels,
                "mode": config.mode,
                "defense": base_defense.description,
            }
        )


def facts_of(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run's facts, with `order` extended by the attacks `audit extend` added to it since (audit/extend.py)."""
    facts = next((r for r in rows if r["attack"] == FACTS), None)
    if facts is None:
        return None
    extensions = [r for r in rows if r["attack"] == EXTENSION]
    added = [label for r in extensions for label in r["order"]]
    skipped = facts.get("skipped", []) + [s for r in extensions for s in r.get("skipped", [])]  # a base audit has none
    why = facts.get("why", {}) | {k: v for r in extensions for k, v in r.get("why", {}).items()}  # older: none
    return {**facts, "order": facts["order"] + added, "extended_with": added, "skipped": skipped, "why": why}


def stored_config(facts: dict[str, Any]) -> AuditConfig:
    """The AuditConfig a finished run was made with (its identity's content hashes aside)."""
    fields = {f.name for f in dataclasses.fields(AuditConfig)}
    stored = {k: v for k, v in facts["config"].items() if k in fields}
    return AuditConfig(
        **stored
        | {
            "attacks": tuple(stored["attacks"]) if stored.get("attacks") else None,
            "transfer_from": tuple(stored.get("transfer_from", ())),
        }
    )


def finished_facts(run: str | Path) -> dict[str, Any]:
    facts = facts_of(list(ResultStore.open_existing(run).records()))
    if facts is None:
        raise AuditInputError(f"{run} is not a finished audit (no facts record); finish it first (re-run its command)")
    return facts


def _base_run_problems(config: dict[str, Any], attacks: list[str], facts: dict[str, Any]) -> list[str]:
    """How the base audit with these facts differs from one made with `config` and `attacks` in what the gain table
    compares: images, seed, threat, batches, mode, and the AutoAttack run."""
    same = (
        "n",
        "seed",
        "dataset",
        "norm",
        "eps",
        "batch_size",
        "mode",
        "data_sha256",
        "torch_version",
        "pyautoattack_version",
        "suite_version",
    )
    problems = [key for key in same if config.get(key) != facts["config"].get(key)]
    from audit.gain import autoattack_labels

    return problems + [f"attack {a} not run" for a in autoattack_labels(attacks) if a not in facts["order"]]


def check_base_run(
    identity: dict[str, Any],
    attacks: list[str],
    base_run: str | Path,
    defense: Defense,
    images: torch.Tensor,
    batch_size: int,
) -> None:
    """Refuse a `base_run` that cannot be this defense's base audit: different settings, or a model whose clean
    predictions on these images are not those of the defense with MeanSparse off."""
    base = defense.base_model()
    if base is None:
        raise AuditInputError(f"{defense.description} has no MeanSparse layers, so no base for {base_run} to stand for")
    problems = _base_run_problems(identity, attacks, finished_facts(base_run))
    clean = next(r for r in ResultStore.open_existing(base_run).records() if r["attack"] == CLEAN)
    predictions = clean_predictions(base.to(defense.device), images, batch_size, defense.device)
    same_images = not any(key in problems for key in ("n", "seed", "dataset", "data_sha256"))
    if same_images and predictions != clean["prediction"]:
        problems.append("its clean predictions (not the same model as this one with MeanSparse off)")
    if problems:
        raise AuditInputError(f"{base_run} cannot serve as the base audit: it differs in {', '.join(problems)}")


def clean_predictions(model: torch.nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> list[int]:
    """The model's predicted classes, in the audit's batches (all images at once may not fit on a GPU)."""
    with torch.no_grad():
        return [
            p
            for start in range(0, len(images), batch_size)
            for p in model(images[start : start + batch_size].to(device)).argmax(1).tolist()
        ]


def reuse_base(out: str | Path, base_run: str | Path) -> None:
    """Use the finished audit in `base_run` as the gain table's base audit of the run in `out`, instead of attacking
    the base a second time. The caller vouches that `base_run` audited the same network without MeanSparse (the
    demo checks the logits bit for bit, `check_base_run` the clean predictions); this checks that it is the same
    images, seed and attack settings, and copies its attacks' rows into `<out>/base`: all of them, not only
    AutoAttack, so the base's worst case is as strong as that audit made it (the surviving gain compares worst case
    with worst case)."""
    defense_rows = list(ResultStore.open_existing(out).records())
    base_rows = list(ResultStore.open_existing(base_run).records())
    from audit.gain import autoattack_labels

    ours, theirs = finished_facts(out), finished_facts(base_run)
    attacks = autoattack_labels(ours["order"])
    if not attacks:  # as `_audit_base`: the gain table compares AutoAttack, so with none there is no base audit
        return
    problems = _base_run_problems(ours["config"], attacks, theirs)
    clean = {
        name: next(r for r in rows if r["attack"] == CLEAN)
        for name, rows in (("audit", defense_rows), ("base", base_rows))
    }
    if clean["audit"]["labels"] != clean["base"]["labels"]:
        problems.append("images (labels differ)")
    if problems:
        raise AuditInputError(f"{base_run} cannot serve as the base of {out}: it differs in {', '.join(problems)}")
    config = ours["config"]
    store = ResultStore(Path(out) / BASE_DIR, config | {"base_of": config["model"], "base_run": str(base_run)})
    for row in base_rows:
        if (row["attack"] == CLEAN or row["attack"] in theirs["order"]) and not store.done(row["attack"], row["batch"]):
            store.append(row)
    if not store.done(FACTS, 0):
        store.append(
            {
                "attack": FACTS,
                "batch": 0,
                "order": theirs["order"],
                "mode": config["mode"],
                "defense": f"{theirs['defense']} (the audit in {base_run})",
            }
        )


def _facts(
    config: AuditConfig,
    identity: dict[str, Any],
    defense: Defense,
    plan: Plan,
    warnings: list[str],
    device: str,
    randomness_found: bool,
) -> dict[str, Any]:
    # Where to load the model from again (extend, verify) is recorded beside the identity, not part of it.
    where = {"claim": config.claim, "checkpoint": config.checkpoint, "robustbench_dir": config.robustbench_dir}
    return {
        "attack": FACTS,
        "batch": 0,
        "config": identity | where,
        "defense": defense.description,
        "randomized": bool(defense.randomized),
        "randomness_found": randomness_found,
        "surrogates": list(defense.surrogates),
        "order": plan.labels,
        "why": plan.why(),
        "skipped": [list(s) for s in plan.skipped],
        "warnings": warnings,
        "environment": environment(device),
        "test_time": _test_time_facts(defense),
    }


def _test_time_facts(defense: Defense) -> dict[str, Any] | None:
    """What the audit found of a forward that runs its own optimisation (defenses/test_time.py), for the report."""
    trace = getattr(defense, "trace", lambda: None)()
    if trace is None or not trace.test_time:
        return None
    static = getattr(defense, "static_model", None)
    return {**trace.to_json(), "static_model": "given (--static-model)" if static is not None else trace.static_path}


def derive_results(out: str | Path) -> dict[str, Any]:
    """Findings, verdict, results.json, samples.csv and the reports, from the store alone (no model)."""
    from audit.checks import run_checks, verdict

    out = Path(out)
    store = ResultStore.open_existing(out)
    rows = list(store.records())
    facts = facts_of(rows)
    clean = next((r for r in rows if r["attack"] == CLEAN), None)
    if facts is None or clean is None:
        raise AuditInputError(f"{out} holds no finished audit (run `audit run` with the same --out to finish it)")
    config = stored_config(facts)
    outcomes = Outcomes.from_rows(clean, rows, facts["order"], config.mode)
    # One row per probe: a probe that raised and was retried by a resume is read from its retry.
    probes: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = r["attack"][len(PROBE_PREFIX) :]
        if r["attack"].startswith(PROBE_PREFIX) and "error" in probes.get(name, {"error": True}):
            probes[name] = r
    measurements = {name: r["measurement"] for name, r in probes.items()}
    findings = run_checks(outcomes, measurements, facts)
    threat = ThreatModel(config.norm, config.eps)
    result_verdict = verdict(findings, outcomes, facts)
    gain = _gain(out / BASE_DIR, outcomes)
    # Time spent in attacks and probes, summed from the store (a resumed run adds up its pieces).
    seconds = sum(float(r.get("seconds", 0.0)) for r in rows)
    results = assemble_results(
        config,
        facts["defense"],
        threat,
        outcomes,
        [tuple(s) for s in facts["skipped"]],
        [f.to_json() for f in findings],
        result_verdict,
        facts["warnings"],
        facts["environment"],
        seconds,
    )
    # What each probe cost, like the attacks' rows (calls through the defense itself; null in older stores).
    results["probes"] = [
        {
            "name": name,
            "seconds": float(r.get("seconds", 0.0)),
            "n_forward": r.get("n_forward"),
            "n_backward": r.get("n_backward"),
        }
        for name, r in probes.items()
    ]
    # The defense kind and its static model, and what the black-box attacks spent and skipped, when test-time.
    results["test_time"] = (
        {**facts["test_time"], "black_box": _black_box_spend(outcomes)} if facts.get("test_time") else None
    )
    for row in results["attacks"]:  # why the planner chose it (audit/plan/roles.py); null in older stores
        row["why"] = facts["why"].get(row["name"])
    results["extended_with"] = facts["extended_with"]  # attacks `audit extend` added after the run (in `attacks`)
    results["failed_batches"] = failed_batches(rows)  # not_run:error batches, retried by a resume
    # What was audited, by content (audit/fingerprint.py), and the evidence kept (audit/evidence.py).
    results["fingerprint"] = {key: facts["config"].get(key) for key in MEANING}
    results["evidence"] = evidence_summary(out)
    if gain is not None:
        results["gain"] = gain
    write_outputs(out, results, outcomes)
    return results


def _black_box_spend(outcomes: Outcomes) -> dict[str, Any]:
    """Per gradient-free attack: samples it ran on, how many it queried (an evidence-first Square leaves the rest
    unqueried when its probe breaks nothing) and the queries spent."""
    spend = {}
    for label in outcomes.order:
        if outcomes.info[label].gradient != "none" or "queries" not in outcomes.extra[label]:
            continue
        queries = outcomes.extra[label]["queries"]
        queried = outcomes.extra[label].get("queried", {i: True for i in queries})
        spend[label] = {
            "ran_on": len(queries),
            "queried": sum(bool(q) for q in queried.values()),
            "not_queried": sum(not q for q in queried.values()),
            "queries": float(sum(queries.values())),
            "forward_images": outcomes.cost[label]["n_forward"],
        }
    return spend


def _gain(directory: Path, outcomes: Outcomes) -> dict[str, Any] | None:
    """The gain table against the base audit in `directory`, when there is one (see audit/gain.py)."""
    from audit.gain import gain_table

    if not (directory / "config.json").exists():
        return None
    rows = list(ResultStore.open_existing(directory).records())
    facts = facts_of(rows)
    clean = next((r for r in rows if r["attack"] == CLEAN), None)
    if facts is None or clean is None:
        return None
    base = Outcomes.from_rows(clean, rows, facts["order"], facts["mode"])
    return {"base": facts["defense"], **gain_table(outcomes, base)}


@contextlib.contextmanager
def log_file(out: Path, shard: Shard) -> Iterator[None]:
    """Everything our packages and pyautoattack log during the run also goes to `out/audit.log` (one file per rank
    under torchrun; the root logger, which belongs to the application, is left alone)."""
    path = out / "audit.log" if shard.world_size == 1 else out / f"audit.rank{shard.rank}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(
            logging.DEBUG if logger.name == "auto-attack" else min(logger.level or logging.INFO, logging.INFO)
        )
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()
