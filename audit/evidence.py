"""The evidence of a run: the adversarial inputs the judge scored, so anyone can check a result without
re-running the attacks (`audit verify`), or hand it to other tools (`audit export`).

During the run each judged batch with a broken sample writes `examples/<attack>-<crc>-b<batch>.safetensors`
(the projected points the judge scored, never an attack's raw proposal), atomically and before its record line:
so a record that says "broken" always has its example, a killed batch re-runs and overwrites its file, and ranks
under torchrun never write the same file. At the end, `collect_evidence` folds them into one
`evidence.safetensors` with the clean images and labels of the audited samples, keeping every example (`all`)
or, per sample and threat kind, the one with the lowest margin on the exact forward (`worst`, the default: the
example furthest across the boundary, so float noise of another batch size cannot undo it). Folding again
(after `audit extend`, or a second run of the same command) gives the same file.

Why safetensors: no pickle (loading evidence never runs code), and every framework reads it. It cannot be
appended to, hence one file per batch until the end.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from attacks.base import Attack
from attacks.judge import DEFAULT_DRAWS, AttackRecord, derive_seed
from audit.dataset import Dataset
from defenses.errors import UserError

log = logging.getLogger(__name__)
EXAMPLES_DIR = "examples"
EVIDENCE_FILE = "evidence.safetensors"
FORMAT = "meansparse-audit evidence 1"
KEEP = ("all", "worst", "none")


class EvidenceError(UserError, ValueError):
    """The evidence file is missing or unreadable."""


@dataclass(frozen=True)
class Evidence:
    """The audited samples (clean images, labels, their index in the dataset) and the kept examples: example j is
    an adversarial input for audited sample `sample[j]`, found by `attack[j]`."""

    clean: torch.Tensor  # (n, C, H, W)
    labels: torch.Tensor  # (n,)
    dataset_index: torch.Tensor  # (n,)
    x_adv: torch.Tensor  # (k, C, H, W)
    sample: torch.Tensor  # (k,) positions in the audited set
    margin: torch.Tensor  # (k,) as the judge scored it (min over draws)
    distance: torch.Tensor  # (k,) in the threat's units
    attack: list[str]
    threat_kind: list[str]
    params: list[torch.Tensor | None]  # a transformation attack's parameters (None for Lp)
    draw_seeds: torch.Tensor  # (k, draws): the seeds of the common draws each example was judged on (randomized)
    seed: int
    draws: int
    keep: str

    @property
    def k(self) -> int:
        return len(self.attack)


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)  # evidence is for sharing (safetensors writes it private)
    os.replace(tmp, path)


def batch_file(directory: Path, label: str, batch: int) -> Path:
    # The label may hold any character (`square+survivors@queries=60000`); the crc keeps sanitised names apart.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:80]
    return directory / EXAMPLES_DIR / f"{slug}-{zlib.crc32(label.encode()):08x}-b{batch}.safetensors"


def write_batch(directory: Path, attack: Attack, batch: int, record: AttackRecord) -> None:
    """The broken samples' judged points of one (attack, batch); nothing when none broke."""
    broken = record.success.nonzero().flatten()
    if not len(broken):
        return
    tensors = {
        "x_adv": record.x_adv[broken].float(),
        "sample": torch.tensor(record.indices)[broken],
        "margin": record.margin[broken].float(),
        "distance": record.distance[broken].float(),
    }
    params = record.extra.get("params")
    if isinstance(params, torch.Tensor):
        tensors["params"] = params[broken].float()
    path = batch_file(directory, attack.label, batch)
    path.parent.mkdir(exist_ok=True)
    _atomic_save(tensors, {"attack": attack.label, "threat_kind": attack.threat_kind}, path)


def _examples(evidence: Evidence | None, directory: Path) -> tuple[dict[tuple[int, str], dict[str, Any]], list[Path]]:
    """Every example on disk, keyed by (sample, attack): the folded file's, then the batch files' (newer)."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    if evidence is not None:
        for j in range(evidence.k):
            found[int(evidence.sample[j]), evidence.attack[j]] = {
                "x_adv": evidence.x_adv[j],
                "margin": float(evidence.margin[j]),
                "distance": float(evidence.distance[j]),
                "threat_kind": evidence.threat_kind[j],
                "params": evidence.params[j],
            }
    files = sorted((directory / EXAMPLES_DIR).glob("*.safetensors"))
    for path in files:
        tensors, metadata = _read(path)
        for position, sample in enumerate(tensors["sample"].tolist()):
            found[sample, metadata["attack"]] = {
                "x_adv": tensors["x_adv"][position],
                "margin": float(tensors["margin"][position]),
                "distance": float(tensors["distance"][position]),
                "threat_kind": metadata["threat_kind"],
                "params": tensors["params"][position] if "params" in tensors else None,
            }
    return found, files


def broken_pairs(rows: Iterable[dict[str, Any]]) -> set[tuple[int, str]]:
    """(sample, attack) pairs the store records as broken."""
    return {
        (i, r["attack"])
        for r in rows
        if "status" in r and "error" not in r
        for i, s in zip(r["indices"], r["status"])
        if s == "broken"
    }


def collect_evidence(
    out: str | Path,
    keep: str,
    data: Dataset,
    order: list[str],
    seed: int,
    randomized: bool,
    broken: set[tuple[int, str]],
    draws: int = DEFAULT_DRAWS,
) -> Path | None:
    """Fold the batch files into `evidence.safetensors` (see the module docstring); None with keep `none`.
    `order` (the attacks in run order) breaks ties between equal margins. Only the pairs the store records as
    `broken` are kept: a batch file of an attempt that never reached the store (killed before its record, then
    re-run in other batches) proves nothing the run reports."""
    if keep == "none":
        return None
    out = Path(out)
    old = load_evidence(out) if (out / EVIDENCE_FILE).exists() else None
    found, files = _examples(old, out)
    found = {key: value for key, value in found.items() if key in broken}
    rank = {label: i for i, label in enumerate(order)}
    chosen = sorted(found, key=lambda key: (key[0], rank.get(key[1], len(rank)), key[1]))
    if keep == "worst":
        best: dict[tuple[int, str], tuple[int, str]] = {}
        for key in chosen:  # in run order, so the earlier attack wins a tie
            slot = (key[0], found[key]["threat_kind"])
            if slot not in best or found[key]["margin"] < found[best[slot]]["margin"]:
                best[slot] = key
        chosen = sorted(best.values(), key=lambda key: (key[0], rank.get(key[1], len(rank)), key[1]))
    n_draws = draws if randomized else 1
    samples = [key[0] for key in chosen]
    tensors = {
        "clean": data.images.float(),
        "labels": data.labels.long(),
        "dataset_index": data.dataset_index,
        "x_adv": torch.stack([found[key]["x_adv"] for key in chosen]) if chosen else data.images[:0].float(),
        "sample": torch.tensor(samples, dtype=torch.long),
        "margin": torch.tensor([found[key]["margin"] for key in chosen], dtype=torch.float32),
        "distance": torch.tensor([found[key]["distance"] for key in chosen], dtype=torch.float32),
        # The common draws of attacks.judge: draw m of sample i is seeded with derive_seed(seed, "draw", m, i).
        "draw_seeds": torch.tensor(
            [[derive_seed(seed, "draw", m, i) for m in range(n_draws)] for i in samples], dtype=torch.long
        ).reshape(len(samples), n_draws),
    }
    for j, key in enumerate(chosen):
        if found[key]["params"] is not None:
            tensors[f"params/{j}"] = found[key]["params"]
    metadata = {
        "format": FORMAT,
        "attack": json.dumps([key[1] for key in chosen]),
        "threat_kind": json.dumps([found[key]["threat_kind"] for key in chosen]),
        "seed": str(seed),
        "draws": str(n_draws),
        "keep": keep,
    }
    path = out / EVIDENCE_FILE
    _atomic_save(tensors, metadata, path)
    for file in files:  # folded: the evidence file holds them now
        file.unlink()
    if (out / EXAMPLES_DIR).is_dir() and not any((out / EXAMPLES_DIR).iterdir()):
        (out / EXAMPLES_DIR).rmdir()
    log.info(
        "evidence: %d adversarial examples of %d samples kept in %s (%.1f MB)",
        len(chosen),
        len(data),
        path,
        path.stat().st_size / 1e6,
    )
    return path


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise EvidenceError(f"{path}: cannot read ({error}); the file is damaged") from None


def load_evidence(out: str | Path) -> Evidence:
    path = Path(out) / EVIDENCE_FILE
    if not path.exists():
        raise EvidenceError(
            f"{out} has no {EVIDENCE_FILE}: the run kept no adversarial examples "
            "(--keep-examples none), or has not finished; re-run its command to finish it"
        )
    tensors, metadata = _read(path)
    if metadata.get("format") != FORMAT:
        raise EvidenceError(f"{path} is not an evidence file of this suite (format {metadata.get('format')!r})")
    attack = json.loads(metadata["attack"])
    return Evidence(
        clean=tensors["clean"],
        labels=tensors["labels"],
        dataset_index=tensors["dataset_index"],
        x_adv=tensors["x_adv"],
        sample=tensors["sample"],
        margin=tensors["margin"],
        distance=tensors["distance"],
        attack=attack,
        threat_kind=json.loads(metadata["threat_kind"]),
        params=[tensors.get(f"params/{j}") for j in range(len(attack))],
        draw_seeds=tensors["draw_seeds"],
        seed=int(metadata["seed"]),
        draws=int(metadata["draws"]),
        keep=metadata["keep"],
    )


def evidence_summary(out: str | Path) -> dict[str, Any] | None:
    """For results.json: the evidence file, its size and what it holds (from its header alone), or None."""
    path = Path(out) / EVIDENCE_FILE
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            n = handle.get_slice("labels").get_shape()[0]
    except (SafetensorError, OSError) as error:
        raise EvidenceError(f"{path}: cannot read ({error}); the file is damaged") from None
    return {
        "file": EVIDENCE_FILE,
        "bytes": path.stat().st_size,
        "keep": metadata.get("keep"),
        "examples": len(json.loads(metadata.get("attack", "[]"))),
        "samples": n,
        "verify": f"audit verify {out}",
    }
