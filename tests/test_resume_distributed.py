"""A killed audit resumes to exactly the uninterrupted result; torchrun with 2 processes gives the same output.

Every run here uses one thread per process (torchrun's default), so floating point sums are ordered the same way
in every process and the comparisons can be exact.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--model",
    "demo-standard",
    "--n",
    "48",
    "--attacks",
    "fgsm,apgd-ce,square",
    "--batch-size",
    "8",
    "--diagnostics-n",
    "0",
    "--seed",
    "0",
    "--quiet",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def audit(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audit.cli", "run", *ARGS, *extra, "--out", str(out)]


def keys(out: Path) -> list[tuple[str, int]]:
    rows = []
    for path in sorted(out.glob("records*.jsonl")):
        rows += [(r["attack"], r["batch"]) for r in map(json.loads, path.read_text().splitlines())]
    return rows


def same_evidence(a: Path, b: Path) -> bool:
    """The two runs kept the same adversarial examples, bit for bit, with the same metadata."""
    from safetensors import safe_open

    def read(out: Path) -> tuple[dict, dict]:
        with safe_open(str(out / "evidence.safetensors"), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()

    (ta, ma), (tb, mb) = read(a), read(b)
    return ma == mb and set(ta) == set(tb) and all(ta[k].equal(tb[k]) for k in ta) and len(ta["sample"]) > 5


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fmnist_test):
    out = tmp_path_factory.mktemp("reference") / "run"
    start = time.monotonic()
    subprocess.run(audit(out), check=True, env=ENV, cwd=ROOT, timeout=600)
    return out, time.monotonic() - start


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(reference, tmp_path):
    ref, duration = reference
    out = tmp_path / "killed"
    rng = random.Random(1234)  # recorded seed for the kill points
    for _ in range(3):
        process = subprocess.Popen(audit(out), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 0.8) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
    subprocess.run(audit(out), check=True, env=ENV, cwd=ROOT, timeout=600, stdout=subprocess.DEVNULL)
    assert (out / "samples.csv").read_text() == (ref / "samples.csv").read_text()
    stored = keys(out)
    assert len(stored) == len(set(stored)), "a batch was stored twice"
    assert sorted(stored) == sorted(keys(ref)), "a batch was lost"
    assert same_evidence(out, ref)  # a killed batch's example is written again, none is lost or doubled
    ours, theirs = json.loads((out / "results.json").read_text()), json.loads((ref / "results.json").read_text())
    assert ours["worst_case_robust_accuracy"] == theirs["worst_case_robust_accuracy"]
    assert [a["robust_accuracy"] for a in ours["attacks"]] == [a["robust_accuracy"] for a in theirs["attacks"]]


def test_torchrun_two_processes_equals_one(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "distributed"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "audit.cli",
        "--",
        "run",
        *ARGS,
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, env=ENV, cwd=ROOT, timeout=600, stdout=subprocess.DEVNULL)
    assert (out / "samples.csv").read_text() == (ref / "samples.csv").read_text()
    assert {p.name for p in out.glob("records*.jsonl")} == {"records.rank0.jsonl", "records.rank1.jsonl"}
    assert sorted(keys(out)) == sorted(keys(ref))
    assert same_evidence(out, ref)  # each rank wrote its batches' examples; rank 0 folded them all


def test_resume_with_a_different_configuration_is_refused(reference):
    ref, _ = reference
    result = subprocess.run(audit(ref, "--eps", "0.2"), env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "different configuration" in result.stderr and "Traceback" not in result.stderr


def test_torchrun_shards_the_base_audit_of_a_meansparse_model(tmp_path):
    """The gain table's base audit runs on every rank (not on rank 0 while the others wait at a barrier) and
    stores what one process stores. Two tiny batches; on demo-standard AutoAttack ends after APGD-CE."""
    args = [
        "--model",
        "demo-standard",
        "--meansparse-alpha",
        "0.3",
        "--n",
        "8",
        "--batch-size",
        "4",
        "--attacks",
        "fgsm,autoattack-standard",
        "--diagnostics-n",
        "0",
        "--seed",
        "0",
        "--quiet",
    ]
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    subprocess.run(
        [sys.executable, "-m", "audit.cli", "run", *args, "--out", str(single)],
        check=True,
        env=ENV,
        cwd=ROOT,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "audit.cli",
            "--",
            "run",
            *args,
            "--out",
            str(sharded),
        ],
        check=True,
        env=ENV,
        cwd=ROOT,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )

    def base_records(out: Path) -> list[dict]:
        rows = [
            json.loads(line)
            for path in sorted((out / "base").glob("records*.jsonl"))
            for line in path.read_text().splitlines()
        ]
        # Without the time taken, and so without the line's checksum (which covers it).
        return sorted(
            ({k: v for k, v in r.items() if k not in ("seconds", "crc")} for r in rows),
            key=lambda r: (r["attack"], r["batch"]),
        )

    assert {p.name for p in (sharded / "base").glob("records*.jsonl")} == {"records.rank0.jsonl", "records.rank1.jsonl"}
    assert [(r["attack"], r["batch"]) for r in base_records(single)] == [
        ("autoattack-standard", 0),
        ("autoattack-standard", 4),
        ("clean", 0),
        ("facts", 0),
    ]  # named by 1st sample
    assert base_records(sharded) == base_records(single)
    assert (sharded / "samples.csv").read_text() == (single / "samples.csv").read_text()
