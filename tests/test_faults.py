"""Fault injection: each fault below is made on purpose, and afterwards either the run resumes to the same per-sample
results as an uninterrupted run (samples.csv compared byte for byte), or the command refuses in one line that says
what to do. Nothing written before the fault is lost. docs/faults.md lists the faults and what survives each.

Runs are tiny (16 images, FGSM and a 2-iteration APGD-CE, batches of 4, no probes) and in-process, so the whole
file takes seconds per test.
"""

from __future__ import annotations

import csv
import errno
import json
import shutil
from pathlib import Path

import pytest
import torch

from audit.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
FAULTY = FIXTURES / "fault_models.py"
ATTACKS = "fgsm,apgd-ce@iters=2"


def argv(out: Path, *extra: str, model: str = "demo-adversarial", attacks: str = ATTACKS) -> list[str]:
    return [
        "run",
        "--model",
        model,
        "--n",
        "16",
        "--attacks",
        attacks,
        "--batch-size",
        "4",
        "--diagnostics-n",
        "0",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def lines(out: Path) -> list[str]:
    return (out / "records.jsonl").read_text().splitlines(keepends=True)


def keys(out: Path) -> list[tuple[str, int]]:
    return [(r["attack"], r["batch"]) for r in map(json.loads, lines(out))]


def statuses(out: Path, attack: str) -> list[str]:
    return [row[f"{attack}:status"] for row in csv.DictReader(open(out / "samples.csv"))]


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fmnist_test) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(argv(out)) == 0
    return out


@pytest.fixture(scope="module")
def cascade(tmp_path_factory, fmnist_test) -> Path:
    out = tmp_path_factory.mktemp("cascade") / "run"
    assert main(argv(out, "--mode", "cascade")) == 0
    return out


def copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_the_reference_run_is_a_real_test_bed(reference):
    """Both attacks ran on every clean-correct sample in 4 batches, and some samples held (else a damaged batch
    could be re-run to anything and still read the same)."""
    stored = keys(reference)
    assert [b for a, b in stored if a == "fgsm"] == [b for a, b in stored if a == "apgd-ce@iters=2"]
    assert len([a for a, _ in stored if a == "fgsm"]) == 4
    held = statuses(reference, "fgsm").count("held")
    assert 2 <= held <= 14, held


# --- damaged records ------------------------------------------------------------------------------------------
def _flip_digit(line: str) -> str:
    """The same line with one digit changed past its middle: still valid JSON, so only the checksum can tell."""
    i = next(i for i in range(len(line) // 2, len(line)) if line[i].isdigit())
    return line[:i] + str((int(line[i]) + 1) % 10) + line[i + 1 :]


def _garble(line: str) -> str:
    return line[: len(line) // 2] + "\x00#@" + line[len(line) // 2 + 3 :]


@pytest.mark.parametrize(
    "where, damage",
    [("start", _flip_digit), ("middle", _garble), ("middle", _flip_digit), ("end", _flip_digit)],
    ids=["start-digit", "middle-garbled", "middle-digit", "end-digit"],
)
def test_a_damaged_line_is_found_and_only_its_batch_runs_again(reference, tmp_path, caplog, where, damage):
    out = copy(reference, tmp_path)
    stored = lines(out)
    number = {"start": 2, "middle": len(stored) // 2, "end": len(stored)}[where]
    damaged = damage(stored[number - 1])
    (out / "records.jsonl").write_text("".join(stored[: number - 1]) + damaged + "".join(stored[number:]))
    assert main(argv(out)) == 0
    assert f"{out / 'records.jsonl'} line {number} is damaged" in caplog.text  # file and line reported
    assert (out / "samples.csv").read_text() == (reference / "samples.csv").read_text()
    # Every other line kept as it was, the damaged one's (attack, batch) stored once more, at the end.
    kept = lines(out)
    assert kept[: len(stored) - 1] == stored[: number - 1] + stored[number:]
    assert sorted(keys(out)) == sorted(keys(reference))
    assert (out / "records.jsonl.damaged").read_text() == damaged, "the damaged line is kept aside, not lost"
    caplog.clear()
    assert main(argv(out)) == 0 and "damaged" not in caplog.text, "reported once, then repaired"


def test_a_store_written_before_checksums_is_read_and_resumed(reference, tmp_path, caplog):
    """Lines without a checksum before the first line with one are an older store's: read as they are."""
    out = copy(reference, tmp_path)
    rows = [json.loads(line) for line in lines(out)]
    last_apgd = max(i for i, r in enumerate(rows) if r["attack"] == "apgd-ce@iters=2")
    legacy = [
        json.dumps({k: v for k, v in r.items() if k != "crc"}, separators=(",", ":")) + "\n"
        for i, r in enumerate(rows)
        if i != last_apgd
    ]
    (out / "records.jsonl").write_text("".join(legacy))
    assert main(argv(out)) == 0
    assert "damaged" not in caplog.text
    assert lines(out)[: len(legacy)] == legacy and len(lines(out)) == len(legacy) + 1
    assert '"crc":"' in lines(out)[-1] and keys(out)[-1][0] == "apgd-ce@iters=2", "only the missing batch ran"
    assert (out / "samples.csv").read_text() == (reference / "samples.csv").read_text()


def test_a_report_skips_a_damaged_line_and_reads_the_lines_after_it(reference, tmp_path, capsys):
    out = copy(reference, tmp_path)
    stored = lines(out)
    (out / "records.jsonl").write_text("".join(stored[:3]) + _garble(stored[3]) + "".join(stored[4:]))
    damaged = (out / "records.jsonl").read_text()
    assert main(["report", str(out)]) == 0
    # A reader never rewrites the records (a run still appending to them would lose its next line).
    assert (out / "records.jsonl").read_text() == damaged and not (out / "records.jsonl.damaged").exists()
    results = json.loads((out / "results.json").read_text())
    # The batch on line 4 is missing (its 4 samples), every later line is read: apgd-ce ran on all of them.
    assert statuses(out, "fgsm").count("not_run:missing") == 4
    assert "not_run:missing" not in statuses(out, "apgd-ce@iters=2")
    assert results["n_samples"] == 16


def test_truncated_config_json_is_refused_in_one_line(reference, tmp_path, capsys):
    out = copy(reference, tmp_path)
    text = (out / "config.json").read_text()
    (out / "config.json").write_text(text[: len(text) // 2])
    records = (out / "records.jsonl").read_text()
    for command in (argv(out), ["report", str(out)], ["extend", str(out), "--attacks", "fgsm"]):
        capsys.readouterr()
        assert main(command) == 2
        err = one_line_error(capsys)
        assert "config.json is damaged" in err and "new --out" in err, err
    assert (out / "records.jsonl").read_text() == records, "a refused command must not touch the records"


def test_disk_full_in_the_middle_of_a_line_loses_nothing(reference, tmp_path, capsys, monkeypatch):
    from audit import store

    original = store.ResultStore.append
    calls = {"n": 0}

    def append(self, record):
        calls["n"] += 1
        if calls["n"] == 7:  # half of the line reaches the disk, then it is full
            with open(self.path, "a") as handle:
                handle.write(store.checksummed(record)[:40])
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, record)

    monkeypatch.setattr(store.ResultStore, "append", append)
    out = tmp_path / "run"
    assert main(argv(out)) == 2
    assert "disk full" in one_line_error(capsys)
    before = lines(out)[:-1]  # six whole lines and the half one
    assert len(before) == 6
    monkeypatch.setattr(store.ResultStore, "append", original)
    assert main(argv(out)) == 0
    assert lines(out)[:6] == before, "what was written before the fault is kept"
    assert (out / "samples.csv").read_text() == (reference / "samples.csv").read_text()
    assert sorted(keys(out)) == sorted(keys(reference))


# --- a failure inside an attack -------------------------------------------------------------------------------
def _failing_judge(monkeypatch, fail) -> list[tuple[str, list[int]]]:
    """audit.runner.judge raising what `fail(attack, indices)` returns (None: run it); returns the calls' indices."""
    from audit import runner

    calls: list[tuple[str, list[int]]] = []
    original = runner.judge

    def judge(attack, defense, x, y, threat, seed, indices, **options):
        calls.append((attack.label, list(indices)))
        error = fail(attack.label, indices)
        if error is not None:
            raise error
        return original(attack, defense, x, y, threat, seed, indices, **options)

    monkeypatch.setattr(runner, "judge", judge)
    return calls


def _second_batch(reference: Path, attack: str = "fgsm") -> list[int]:
    rows = [json.loads(line) for line in lines(reference)]
    return sorted((r for r in rows if r["attack"] == attack), key=lambda r: r["batch"])[1]["indices"]


def test_out_of_memory_at_batch_k_is_retried_on_halves(reference, tmp_path, monkeypatch, capsys):
    batch = _second_batch(reference)
    calls = _failing_judge(
        monkeypatch,
        lambda attack, indices: (
            torch.cuda.OutOfMemoryError("CUDA out of memory")
            if attack == "fgsm" and indices[0] == batch[0] and len(indices) > 2
            else None
        ),
    )
    out = tmp_path / "run"
    assert main(argv(out)) == 0
    assert [batch, batch[:2], batch[2:]] == [c for a, c in calls if a == "fgsm" and set(c) <= set(batch)]
    row = next(r for r in map(json.loads, lines(out)) if r["attack"] == "fgsm" and r["indices"] == batch)
    assert "error" not in row and "not_run:error" not in row["status"]
    # FGSM draws no randomness: the halves give the same per-sample results as the whole batch.
    assert (out / "samples.csv").read_text() == (reference / "samples.csv").read_text()
    assert json.loads((out / "results.json").read_text())["failed_batches"] == []


def test_a_failed_batch_is_not_run_shown_retried_and_strict(reference, tmp_path, monkeypatch, capsys):
    batch = _second_batch(reference, "apgd-ce@iters=2")
    _failing_judge(
        monkeypatch,
        lambda attack, indices: (
            torch.cuda.OutOfMemoryError("CUDA out of memory")
            if attack == "apgd-ce@iters=2" and set(indices) <= set(batch)
            else None
        ),
    )
    out = tmp_path / "run"
    assert main(argv(out)) == 0, capsys.readouterr().err  # the run goes on
    status = statuses(out, "apgd-ce@iters=2")
    assert [i for i, s in enumerate(status) if s == "not_run:error"] == batch
    assert status.count("not_run:missing") == 0
    assert statuses(out, "fgsm") == statuses(reference, "fgsm"), "the other attack is untouched"
    failed = json.loads((out / "results.json").read_text())["failed_batches"]
    assert [(f["attack"], f["samples"]) for f in failed] == [("apgd-ce@iters=2", len(batch))]
    assert "OutOfMemoryError" in failed[0]["error"]
    assert "not run: apgd-ce@iters=2 failed on batch" in (out / "report.md").read_text()
    assert "not run: apgd-ce@iters=2" in (out / "report.html").read_text()
    capsys.readouterr()
    assert main(argv(out, "--strict")) == 2  # still failing: --strict makes it an error
    err = one_line_error(capsys)
    assert "--strict" in err and "OutOfMemoryError" in err
    monkeypatch.undo()  # the fault is gone: a resume retries the batch, and only it
    before = keys(out)
    assert main(argv(out, "--strict")) == 0
    assert keys(out)[len(before) :] == [("apgd-ce@iters=2", batch[0])]
    assert (out / "samples.csv").read_text() == (reference / "samples.csv").read_text()
    assert json.loads((out / "results.json").read_text())["failed_batches"] == []


def test_nan_logits_only_under_perturbation_are_not_run(tmp_path, capsys, fmnist_test):
    out = tmp_path / "run"
    assert main(argv(out, model=f"{FAULTY}:nan_when_perturbed", attacks="fgsm")) == 0
    status = statuses(out, "fgsm")
    assert status.count("not_run:error") >= 12 and set(status) <= {"not_run:error", "not_run:misclassified"}
    failed = json.loads((out / "results.json").read_text())["failed_batches"]
    assert len(failed) == 4 and all("NaN or Inf logits" in f["error"] for f in failed)
    capsys.readouterr()
    assert main(argv(out, "--strict", model=f"{FAULTY}:nan_when_perturbed", attacks="fgsm")) == 2
    assert "NaN or Inf" in one_line_error(capsys)


def test_a_probe_that_raised_runs_again_on_resume(tmp_path, monkeypatch, standard_model, fmnist_test):
    import audit.probes as probes
    from attacks.threat_model import ThreatModel
    from audit.store import ResultStore
    from defenses.adapters import as_defense

    attempts = {"n": 0}

    def flaky(defense, x, y, threat, seed, config):
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("CUDA error: device busy")
        return {"value": 1.0}

    monkeypatch.setattr(probes, "all_probes", lambda: (probes.Probe("flaky", flaky),))
    defense = as_defense(standard_model, 10, "demo-standard")
    store = ResultStore(tmp_path, {"a": 1})
    x, y = fmnist_test.images[:2], fmnist_test.labels[:2]
    for _ in range(3):  # the run, then two resumes: the second finds it done
        probes.run_probes(
            defense,
            x,
            y,
            ThreatModel("Linf", 0.1),
            ResultStore(tmp_path, {"a": 1}),
            seed=0,
            n=2,
            model_spec="demo-standard",
            progress=False,
        )
    rows = [r for r in store.records() if r["attack"] == "probe:flaky"]
    assert attempts["n"] == 2
    assert [r["measurement"] for r in rows] == [
        {"error": "the flaky probe raised RuntimeError: CUDA error: device busy"},
        {"value": 1.0},
    ]


def test_derive_results_reads_a_probe_from_its_retry(reference, tmp_path):
    from audit.pipeline import derive_results
    from audit.store import ResultStore, checksummed

    out = copy(reference, tmp_path)
    rows = [json.loads(line) for line in lines(out)]
    probe = next(r for r in rows if r["attack"].startswith("probe:") and r["attack"] != "probe:alpha")
    failed = {**probe, "measurement": {"error": "raised"}, "error": "raised"}
    # The error row in a file read after the retry's (a torchrun run, resumed by one process).
    (out / "records.rank0.jsonl").write_text(checksummed(failed))
    results = derive_results(out)
    name = probe["attack"][len("probe:") :]
    assert [p["name"] for p in results["probes"]].count(name) == 1
    assert "raised" not in json.dumps([f for f in results["findings"] if name in json.dumps(f)])
    assert list(ResultStore.open_existing(out).records())  # still a readable store


# --- resume in cascade mode -----------------------------------------------------------------------------------
def test_cascade_resume_after_an_earlier_attack_changed_runs_each_sample_once(cascade, tmp_path):
    """Resumed where an earlier attack's stored result differs from the first run's (a damaged batch re-run on
    another device or thread count): the batches already stored keep their samples, and every sample still to
    attack is attacked once, however the positions moved."""
    from audit.store import checksummed

    out = copy(cascade, tmp_path)
    rows = [json.loads(line) for line in lines(out)]
    apgd = [r for r in rows if r["attack"] == "apgd-ce@iters=2"]
    assert len(apgd) >= 2, "the test needs apgd-ce batches to interrupt"
    first_apgd = apgd[0]
    # The earlier attack now breaks a held sample of apgd-ce's first batch, and apgd-ce was cut after its first.
    fgsm = next(r for r in rows if r["attack"] == "fgsm" and first_apgd["indices"][0] in r["indices"])
    fgsm["status"][fgsm["indices"].index(first_apgd["indices"][0])] = "broken"
    kept = [r for r in rows if r["attack"] != "apgd-ce@iters=2" or r is first_apgd]
    kept = [r for r in kept if not r["attack"].startswith(("facts", "probe:"))]
    (out / "records.jsonl").write_text("".join(checksummed(r) for r in kept))
    assert main(argv(out, "--mode", "cascade")) == 0
    stored = [r for r in map(json.loads, lines(out)) if r["attack"] == "apgd-ce@iters=2"]
    assert stored[0]["indices"] == first_apgd["indices"], "the stored batch is kept"
    attacked = [i for r in stored for i in r["indices"]]
    assert len(attacked) == len(set(attacked)), "a sample was attacked twice"
    held = [i for i, s in enumerate(statuses(out, "fgsm")) if s == "held"]
    assert set(held) <= set(attacked), "a sample left robust was never attacked"
    assert set(attacked) == set(held) | {first_apgd["indices"][0]}


# --- extend ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, fmnist_test) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert (
        main(
            [
                "run",
                "--model",
                "demo-standard",
                "--n",
                "8",
                "--attacks",
                "fgsm",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_extend_refuses_bpda_on_a_model_with_nothing_to_bypass(finished, tmp_path, capsys):
    out = copy(finished, tmp_path)
    records = (out / "records.jsonl").read_text()
    capsys.readouterr()
    assert main(["extend", str(out), "--attacks", "apgd-ce+bpda-identity", "--quiet"]) == 2
    assert "no layer to bypass" in one_line_error(capsys)
    assert (out / "records.jsonl").read_text() == records


def test_extend_refuses_a_run_with_a_damaged_record_until_run_repairs_it(finished, tmp_path, capsys):
    out = copy(finished, tmp_path)
    stored = lines(out)
    number = next(i for i, r in enumerate(map(json.loads, stored), 1) if r["attack"] == "fgsm")
    (out / "records.jsonl").write_text(
        "".join(stored[: number - 1]) + _flip_digit(stored[number - 1]) + "".join(stored[number:])
    )
    damaged = (out / "records.jsonl").read_text()
    extend = ["extend", str(out), "--attacks", "apgd-ce@iters=2", "--quiet"]
    capsys.readouterr()
    assert main(extend) == 2
    err = one_line_error(capsys)
    assert "lacks stored results of fgsm" in err and "`audit run`" in err
    assert (out / "records.jsonl").read_text() == damaged
    assert (
        main(
            [
                "run",
                "--model",
                "demo-standard",
                "--n",
                "8",
                "--attacks",
                "fgsm",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(extend) == 0
    assert statuses(out, "fgsm") == statuses(finished, "fgsm")


def test_extend_plans_gradient_free_like_run(tmp_path, capsys, monkeypatch, fmnist_test):
    import audit.plan.gradient_free

    monkeypatch.setattr(audit.plan.gradient_free, "STRONG_SQUARE", "square@queries=5")  # the harder Square, cheaply
    out = tmp_path / "run"
    model = f"{FAULTY}:quantized"
    assert (
        main(
            [
                "run",
                "--model",
                model,
                "--n",
                "8",
                "--attacks",
                "square@queries=3",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["extend", str(out), "--attacks", "apgd-ce@iters=2", "--quiet"]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert [a["name"] for a in results["attacks"]] == ["square@queries=3", "square@queries=5"]
    assert [s["name"] for s in results["skipped_attacks"]] == ["apgd-ce@iters=2"]
    assert "no gradient reaches the input" in results["skipped_attacks"][0]["reason"]


def test_ctrl_c_in_extend_says_how_to_resume(finished, monkeypatch, capsys):
    import audit.extend

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit.extend, "extend_audit", interrupted)
    command = ["extend", str(finished), "--attacks", "apgd-ce@iters=2", "--quiet"]
    capsys.readouterr()
    assert main(command) == 130
    err = one_line_error(capsys)
    assert f"to resume, run the same command on the same directory: audit {' '.join(command)}" in err


# --- malformed files and entry points -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, words",
    [
        ('{"model": "x"}', ["lacks dataset", "threat_model"]),
        ("[1, 2]", ["lacks model"]),
        ("{not json", ["not valid JSON"]),
    ],
)
def test_a_malformed_results_json_is_one_line_in_report_and_compare(reference, tmp_path, capsys, content, words):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text(content)
    for command in (["report", str(bad)], ["compare", str(reference), str(bad)], ["compare", str(bad), str(reference)]):
        capsys.readouterr()
        assert main(command) == 2, command
        err = one_line_error(capsys)
        assert all(word in err for word in words), err


def test_results_json_with_values_of_the_wrong_shape_is_one_line(reference, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    results = json.loads((reference / "results.json").read_text())
    (bad / "results.json").write_text(json.dumps({**results, "attacks": [{"no": "name"}], "threat_model": 3}))
    for command in (["report", str(bad)], ["compare", str(reference), str(bad)]):
        capsys.readouterr()
        assert main(command) == 2, command
        assert "is malformed" in one_line_error(capsys)


@pytest.mark.parametrize("command", ["train", "sparsify"])
def test_train_and_sparsify_refuse_a_missing_folder_before_the_work(command, tmp_path, capsys, monkeypatch):
    import audit.data

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(audit.data, "load_dataset", no_work)
    out = tmp_path / "missing" / "model.safetensors"
    capsys.readouterr()
    assert main([command, "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert "does not exist" in err and "mkdir -p" in err
    assert not out.parent.exists()


def test_a_changed_claim_on_resume_is_refused(finished, tmp_path, capsys):
    out = copy(finished, tmp_path)
    base = [
        "run",
        "--model",
        "demo-standard",
        "--n",
        "8",
        "--attacks",
        "fgsm",
        "--diagnostics-n",
        "0",
        "--quiet",
        "--out",
        str(out),
    ]
    records = (out / "records.jsonl").read_text()
    capsys.readouterr()
    assert main([*base, "--claim", "0.6"]) == 2
    err = one_line_error(capsys)
    assert "no --claim, not --claim 0.6" in err and "new --out" in err
    assert (out / "records.jsonl").read_text() == records
    assert main(base) == 0  # the same claim (none) resumes


def test_a_factory_model_is_checked_against_the_datasets_class_count():
    from audit.config import AuditConfig
    from audit.pipeline import build_defense

    defense = build_defense(AuditConfig(model=f"{FAULTY}:hundred_classes", dataset="cifar100"), progress=False)
    assert defense.num_classes == 100
    defense = build_defense(AuditConfig(model=f"{FAULTY}:hundred_classes", dataset="foolbox-imagenet"), False)
    assert defense.num_classes == 1000
    assert build_defense(AuditConfig(model="demo-standard"), progress=False).num_classes == 10


# --- a process killed part-way (simulated in-process: an exception nothing catches, raised between two writes) ----
class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of ours catches it; it stops the run where it is."""


def _kill_at_append(monkeypatch, attack_prefix: str, after: int = 0) -> None:
    """The process dies just before its `after`+1-th store write of a row whose attack starts with the prefix."""
    from audit import store

    original = store.ResultStore.append
    seen = {"n": 0}

    def append(self, record):
        if record["attack"].startswith(attack_prefix):
            seen["n"] += 1
            if seen["n"] > after:
                raise Killed
        original(self, record)

    monkeypatch.setattr(store.ResultStore, "append", append)


def test_killed_during_the_probes_resumes_to_the_same_results(tmp_path, monkeypatch, fmnist_test):
    import audit.probes as probes

    def steady(defense, x, y, threat, seed, config):
        return {"value": float(x.sum())}

    monkeypatch.setattr(probes, "all_probes", lambda: tuple(probes.Probe(n, steady) for n in ("one", "two", "three")))
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main(argv(reference, "--diagnostics-n", "2")) == 0  # the later --diagnostics-n counts
    with monkeypatch.context() as killed:
        _kill_at_append(killed, "probe:", after=2)  # the randomness probe and the first are stored, not the second
        with pytest.raises(Killed):
            main(argv(out, "--diagnostics-n", "2"))
    before = lines(out)
    assert [k for k, _ in keys(out) if k.startswith("probe:")] == ["probe:randomized", "probe:one"]
    assert main(argv(out, "--diagnostics-n", "2")) == 0
    assert lines(out)[: len(before)] == before
    assert [k for k, _ in keys(out) if k.startswith("probe:")] == [
        k for k, _ in keys(reference) if k.startswith("probe:")
    ]
    ours, theirs = (json.loads((d / "results.json").read_text()) for d in (out, reference))
    assert [p["name"] for p in ours["probes"]] == [p["name"] for p in theirs["probes"]]
    assert (out / "samples.csv").read_text() == (reference / "samples.csv").read_text()


def test_killed_while_writing_the_report_leaves_no_half_file(reference, tmp_path, monkeypatch):
    import audit.report

    out = copy(reference, tmp_path)
    (out / "report.html").unlink()
    html = (reference / "report.html").read_text()

    def dies(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as killed:
        killed.setattr(audit.report, "render_html", dies)
        with pytest.raises(Killed):
            main(["report", str(out)])
    assert not (out / "report.html").exists(), "no half-written report"
    assert (out / "samples.csv").read_text() == (reference / "samples.csv").read_text()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").read_text().count("<tr>") == html.count("<tr>")


def test_killed_during_extend_resumes_to_the_same_results(finished, tmp_path, monkeypatch):
    uninterrupted, out = copy(finished, tmp_path / "a"), copy(finished, tmp_path / "b")
    command = ["extend", "--attacks", "apgd-ce@iters=2", "--quiet"]
    assert main([command[0], str(uninterrupted), *command[1:]]) == 0
    with monkeypatch.context() as killed:
        _kill_at_append(killed, "apgd-ce")  # dies before the extension's first batch is stored
        with pytest.raises(Killed):
            main([command[0], str(out), *command[1:]])
    assert "apgd-ce" not in (out / "records.jsonl").read_text()
    assert main([command[0], str(out), *command[1:]]) == 0
    assert (out / "samples.csv").read_text() == (uninterrupted / "samples.csv").read_text()
    assert sorted(keys(out)) == sorted(keys(uninterrupted))


@pytest.mark.slow
def test_one_rank_of_torchrun_killed_then_resumed_equals_one_process(tmp_path, fmnist_test):
    """SIGKILL of rank 1 of a 2-process torchrun in the middle of an attack: torchrun stops the other rank, every
    batch either rank stored is kept, and the same torchrun command resumes to what one process gives."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    args = [
        "run",
        "--model",
        "demo-adversarial",
        "--n",
        "32",
        "--batch-size",
        "4",
        "--attacks",
        "fgsm,apgd-ce@iters=60",
        "--diagnostics-n",
        "0",
        "--quiet",
    ]
    single, out = tmp_path / "single", tmp_path / "sharded"
    subprocess.run(
        [sys.executable, "-m", "audit.cli", *args, "--out", str(single)],
        check=True,
        env=env,
        cwd=root,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "audit.cli",
        "--",
        *args,
        "--out",
        str(out),
    ]
    process = subprocess.Popen(torchrun, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rank1() -> int | None:
        for entry in Path("/proc").iterdir():
            try:
                status = (entry / "status").read_text()
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if f"PPid:\t{process.pid}\n" in status and b"RANK=1" in environ:
                return int(entry.name)
        return None

    deadline = time.monotonic() + 300
    records = out / "records.rank1.jsonl"
    while time.monotonic() < deadline and process.poll() is None:
        if records.exists() and '"attack":"apgd-ce@iters=60"' in records.read_text():
            break
        time.sleep(0.05)
    pid = rank1()
    assert process.poll() is None and pid is not None, "the run ended before rank 1 could be killed"
    os.kill(pid, signal.SIGKILL)
    assert process.wait(timeout=300) != 0
    before = {p.name: p.read_text() for p in out.glob("records*.jsonl")}
    apgd = sum(text.count('"attack":"apgd-ce@iters=60"') for text in before.values())
    assert 1 <= apgd < 7, "the kill came after the last apgd-ce batch: nothing to resume"
    subprocess.run(torchrun, check=True, env=env, cwd=root, timeout=600, stdout=subprocess.DEVNULL)
    for name, text in before.items():  # nothing stored before the kill is lost (a cut last line is moved aside)
        kept = (out / name).read_text()
        assert kept.startswith(text[: text.rfind("\n") + 1]), name
    assert (out / "samples.csv").read_text() == (single / "samples.csv").read_text()
