"""Append-only, crash-safe storage of per-sample results, so a killed run resumes where it stopped.

`records.jsonl` holds one JSON line per (attack, batch), flushed and fsynced as soon as it is produced. Each line
ends in a checksum of the rest of it (`"crc"`), so damage anywhere in the file (a line cut short by a crash, a
flipped byte, a line overwritten by another program) is found per line: the damaged line is reported (file and
line) and skipped, never the lines after it; the process that writes the file moves it to `<file>.damaged` (so
nothing written is thrown away) and runs again only what it held; every other line is kept. `config.json` pins
the configuration: resuming with a different one is refused, so results of different runs never mix.

A row with an `error` key is an (attack, batch) that failed (audit/runner.py): it is kept and shown, but not `done`,
so a resume runs it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit.fingerprint import MEANING
from defenses.errors import UserError

log = logging.getLogger(__name__)
CONFIG_FILE = "config.json"
RECORDS_FILE = "records.jsonl"
DAMAGED_SUFFIX = ".damaged"  # damaged lines are moved to records*.jsonl.damaged (not read as records)
_CHECKED = re.compile(r'(\{.*),"crc":"([0-9a-f]{16})"\}\n', re.DOTALL)


class ConfigMismatch(UserError, ValueError):
    pass


class ResultStore:
    def __init__(
        self, directory: str | Path, config: dict[str, Any], rank: int = 0, world_size: int = 1, repair: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        config_path = self.directory / CONFIG_FILE
        if rank != 0 and not config_path.exists():
            raise ConfigMismatch(f"{config_path} was not written by rank 0")
        if config_path.exists():
            stored = read_config(config_path)
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
        self._reported: set[tuple[Path, int]] = set()  # damaged lines of other files, warned about once
        if repair:  # only a writer repairs: a reader rewriting the file could lose a running writer's next line
            self._repair()
        self._done = {(r["attack"], r["batch"]) for r in self.records() if "batch" in r and "error" not in r}

    @classmethod
    def open_existing(cls, directory: str | Path) -> ResultStore:
        """Open a finished or interrupted run's store for reading, with the configuration it was made with."""
        config_path = Path(directory) / CONFIG_FILE
        if not config_path.exists():
            raise ConfigMismatch(f"{directory} is not an `audit run` output directory (no {CONFIG_FILE})")
        return cls(directory, read_config(config_path), repair=False)

    def _repair(self) -> None:
        """Move this process's damaged lines (a last line left half-written by a killed process, or damage
        anywhere) to `<file>.damaged`, so new lines start clean and what they held is run again."""
        if not self.path.exists():
            return
        lines = self.path.read_bytes().splitlines(keepends=True)
        damaged = {number for number, record in _read(lines) if record is None}
        if not damaged:
            return
        for number in sorted(damaged):
            cut = number == len(lines) and not lines[-1].endswith(b"\n")
            log.warning(
                "warning: %s line %d is %s; moved to %s%s, and what it held will be run again",
                self.path,
                number,
                "cut short (its writer was killed)" if cut else "damaged (checksum)",
                self.path.name,
                DAMAGED_SUFFIX,
            )
        with open(self.path.with_name(self.path.name + DAMAGED_SUFFIX), "ab") as handle:
            handle.writelines(
                line if line.endswith(b"\n") else line + b"\n"
                for number, line in enumerate(lines, 1)
                if number in damaged
            )
        _atomic_write_bytes(self.path, b"".join(line for number, line in enumerate(lines, 1) if number not in damaged))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every intact record in this directory, whichever process (or earlier run) wrote it. A damaged line
        (in another process's file, or a store opened only to read) is reported with its file and line and
        skipped; the lines after it are read."""
        for path in sorted(self.directory.glob("records*.jsonl")):
            lines = path.read_bytes().splitlines(keepends=True)
            for number, record in _read(lines):
                if record is not None:
                    yield record
                # A cut last line is a write still going (another rank), or killed; anything else is damage.
                elif (number < len(lines) or lines[-1].endswith(b"\n")) and (path, number) not in self._reported:
                    self._reported.add((path, number))
                    log.warning("warning: %s line %d is damaged (checksum); skipped", path, number)

    def done(self, attack: str, batch: int) -> bool:
        return (attack, batch) in self._done

    def append(self, record: dict[str, Any]) -> None:
        line = checksummed(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        if "error" not in record:  # a failed batch stays to do, so a resume retries it
            self._done.add((record["attack"], record["batch"]))


def checksummed(record: dict[str, Any]) -> str:
    """The record as one store line: its JSON with a checksum of that JSON as the last key."""
    body = json.dumps(record, separators=(",", ":"))
    return f'{body[:-1]},"crc":"{_digest(body)}"}}\n'


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def _read(lines: list[bytes]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, its record, or None when the line is damaged) for each line of a records file."""
    checked = False
    for number, line in enumerate(lines, 1):
        checked = checked or _CHECKED.fullmatch(line.decode("utf-8", "replace")) is not None
        yield number, _parse(line, checked)


def _parse(raw: bytes, checked: bool) -> dict[str, Any] | None:
    """The record on one line, or None when the line is damaged (or cut short). `checked`: a line with a checksum
    came at or before this one, so this one must have one too (lines before the first are from a store written
    before lines had checksums, and are read as such)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not line.endswith("\n"):
        return None
    if checked:
        match = _CHECKED.fullmatch(line)
        if match is None or _digest(match[1] + "}") != match[2]:
            return None
        line = match[1] + "}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "attack" in record else None


def read_config(path: Path) -> dict[str, Any]:
    """A run's config.json; a damaged one is refused in one line that says what to do."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigMismatch(
            f"{path} is damaged ({error}); its records cannot be matched to a configuration: "
            f"restore it from a copy, or audit again into a new --out"
        ) from None
    if not isinstance(config, dict):
        raise ConfigMismatch(
            f"{path} is damaged (not a JSON object); restore it from a copy, or audit again into a new --out"
        )
    return config


def _atomic_write(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write(path: str | Path, text: str) -> None:
    _atomic_write(Path(path), text)
