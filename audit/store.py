"""Append-only, crash-safe storage of per-sample results, so a killed run resumes where it stopped.

`records.jsonl` holds one JSON line per (attack, batch), flushed and fsynced as soon as it is produced; a line
cut short by a crash is ignored on reading. `config.json` pins the configuration: resuming with a different one
is refused, so results of different runs never mix.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit.fingerprint import MEANING
from defenses.errors import UserError

CONFIG_FILE = "config.json"
RECORDS_FILE = "records.jsonl"


class ConfigMismatch(UserError, ValueError):
    pass


class ResultStore:
    def __init__(self, directory: str | Path, config: dict[str, Any], rank: int = 0, world_size: int = 1) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        config_path = self.directory / CONFIG_FILE
        if rank != 0 and not config_path.exists():
            raise ConfigMismatch(f"{config_path} was not written by rank 0")
        if config_path.exists():
            stored = json.loads(config_path.read_text())
            if stored != json.loads(json.dumps(config)):
                changed = sorted(
                    k for k in set(stored) | set(config) if stored.get(k) != json.loads(json.dumps(config)).get(k)
                )
                named = [f"{k} ({MEANING[k]})" if k in MEANING else k for k in changed]
                raise ConfigMismatch(
                    f"{self.directory} holds results of a different configuration (differs in: {', '.join(named)}); "
                    f"use another --out directory, or the same model, data and options to resume"
                )
        else:
            _atomic_write(config_path, json.dumps(config, indent=2, sort_keys=True))
        # One file per rank when sharded, so no two processes append to the same file.
        self.path = self.directory / (RECORDS_FILE if world_size == 1 else f"records.rank{rank}.jsonl")
        self._repair()
        self._done = {(r["attack"], r["batch"]) for r in self.records() if "batch" in r}

    @classmethod
    def open_existing(cls, directory: str | Path) -> ResultStore:
        """Open a finished or interrupted run's store for reading, with the configuration it was made with."""
        config_path = Path(directory) / CONFIG_FILE
        if not config_path.exists():
            raise ConfigMismatch(f"{directory} is not an `audit run` output directory (no {CONFIG_FILE})")
        return cls(directory, json.loads(config_path.read_text()))

    def _repair(self) -> None:
        """Cut a last line left half-written by a killed process, so new lines start clean."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record in this directory, whichever process (or earlier run) wrote it."""
        for path in sorted(self.directory.glob("records*.jsonl")):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if not line.endswith("\n"):
                        break  # the last write was cut short by a crash
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        break

    def done(self, attack: str, batch: int) -> bool:
        return (attack, batch) in self._done

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._done.add((record["attack"], record["batch"]))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write(path: str | Path, text: str) -> None:
    _atomic_write(Path(path), text)
