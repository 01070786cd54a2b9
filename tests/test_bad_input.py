"""One table of bad inputs: each gives a one-line error naming the problem and the fix, exit code 2, no traceback,
nothing written to --out, and loses no finished results.

The table is also the source of docs/refused-inputs.md: `test_docs_list_every_refusal` renders the real messages
and compares them with the file (AUDIT_WRITE_DOCS=1 rewrites it), so the docs cannot drift from the code.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from audit.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
BAD = FIXTURES / "bad_models.py"
DOC = ROOT / "docs" / "refused-inputs.md"
REFUSALS: dict[str, str] = {}  # case -> the message, as the docs show it (filled by the table's test)


class Exploit:
    def __reduce__(self):
        return (exec, ("open('/tmp/audit-pwned', 'w').write('x')",))


def _files(tmp: Path) -> dict[str, str]:
    (tmp / "garbage.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with open(tmp / "evil.pt", "wb") as handle:
        pickle.dump({"weights": Exploit()}, handle)
    torch.save({"wrong.weight": torch.zeros(3)}, tmp / "wrong_keys.pt")
    torch.save({"linear.weight": torch.zeros(5, 3), "linear.bias": torch.zeros(5)}, tmp / "wrong_shape.pt")
    (tmp / "a_file").write_text("")
    (tmp / "bad_idx").mkdir()
    (tmp / "bad_idx" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    (tmp / "bad_idx" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x00")
    names = ("garbage.safetensors", "evil.pt", "wrong_keys.pt", "wrong_shape.pt", "a_file", "bad_idx")
    return {k: str(tmp / k) for k in names}


CASES = [
    # (case, argv after `run`, words the message must contain)
    ("checkpoint missing", ["--model", f"{BAD}:linear", "--checkpoint", "/nonexistent/w.safetensors"], ["not found"]),
    ("checkpoint corrupt", ["--model", f"{BAD}:linear", "--checkpoint", "{garbage.safetensors}"], ["corrupt"]),
    (
        "checkpoint with a shipped model",
        ["--model", "demo-standard", "--checkpoint", "{garbage.safetensors}"],
        ["--checkpoint", "demo-standard loads its own", "drop --checkpoint"],
    ),
    ("untrusted pickle", ["--model", f"{BAD}:linear", "--checkpoint", "{evil.pt}"], ["--trust-checkpoint"]),
    ("state-dict keys", ["--model", f"{BAD}:linear", "--checkpoint", "{wrong_keys.pt}"], ["missing keys"]),
    ("state-dict shapes", ["--model", f"{BAD}:linear", "--checkpoint", "{wrong_shape.pt}"], ["shape"]),
    ("output not (N, classes)", ["--model", f"{BAD}:flat"], ["(N, classes)"]),
    ("output with NaN", ["--model", f"{BAD}:nans"], ["NaN"]),
    ("labels out of range", ["--model", f"{BAD}:five_classes"], ["labels", "5 outputs"]),
    ("eps <= 0", ["--model", "demo-standard", "--eps", "0"], ["--eps"]),
    ("eps absurd", ["--model", "demo-standard", "--eps", "3"], ["absurd"]),
    ("unknown attack", ["--model", "demo-standard", "--attacks", "apgd-ce,pgd-magic"], ["unknown attack"]),
    (
        "BPDA with nothing to bypass",
        ["--model", "demo-standard", "--attacks", "apgd-ce+bpda-identity"],
        ["apgd-ce+bpda-identity", "no layer to bypass"],
    ),
    ("unknown suite", ["--model", "demo-standard", "--suite", "everything"], ["unknown suite"]),
    ("unknown dataset", ["--model", "demo-standard", "--dataset", "svhn"], ["unknown dataset"]),
    ("unknown model", ["--model", "resnet-9000"], ["unknown model"]),
    ("model file missing", ["--model", "/nonexistent/model.py:build"], ["not found"]),
    ("data dir missing", ["--model", "demo-standard", "--data-dir", "/nonexistent/data"], ["does not exist"]),
    ("data dir malformed", ["--model", "demo-standard", "--data-dir", "{bad_idx}"], ["truncated"]),
    ("out not writable", ["--model", "demo-standard", "--out", "{a_file}/sub"], ["not writable"]),
    # --- the model contract (audit/inputs.py), checked on a batch of one and of eight before anything runs -----
    (
        "first conv expects 3 channels",
        ["--model", f"{BAD}:three_channels"],
        ["Conv2d(3, 4", "expects 3-channel", "1-channel"],
    ),
    ("first linear expects other sizes", ["--model", f"{BAD}:wide_linear"], ["Linear(3072, 10)", "784"]),
    (
        "1-channel model on 3-channel data",
        ["--model", "demo-standard", "--dataset", "foolbox-cifar10"],
        ["expects 1-channel", "3-channel (3x32x32)", "--dataset"],
    ),
    ("output is a tuple", ["--model", f"{BAD}:tuple_out"], ["tuple of 2", "(1, 10)", "model(x)[0]"]),
    ("output is a dict", ["--model", f"{BAD}:dict_out"], ["dict", "'logits'", "model(x)['logits']"]),
    ("output is class indices", ["--model", f"{BAD}:int_out"], ["int64", "before argmax"]),
    ("one output per sample", ["--model", f"{BAD}:one_output"], ["1 output per sample", "at least 2 classes"]),
    ("output on another device", ["--model", f"{BAD}:other_device"], ["on meta", "input's device"]),
    ("output with Inf", ["--model", f"{BAD}:inf_logits"], ["NaN or Inf"]),
    (
        "forward raises",
        ["--model", f"{BAD}:raises"],
        ["forward raised ValueError", "expected a normalised tensor", "batch of 1", "(1, 1, 28, 28)", "--debug"],
    ),
    ("forward switches to training mode", ["--model", f"{BAD}:trains_itself"], ["training mode during forward"]),
    ("model ignores eval()", ["--model", f"{BAD}:stuck_in_training"], ["training mode after .eval()"]),
    ("forward changes the model's state", ["--model", f"{BAD}:counts_calls"], ["changed its buffer calls"]),
    ("CUDA asked for and absent", ["--model", "demo-standard", "--device", "cuda"], ["--device cuda", "--device cpu"]),
    ("device unknown", ["--model", "demo-standard", "--device", "tpu"], ["'tpu'", "cpu, cuda"]),
    # --- the model file ----------------------------------------------------------------------------------------
    (
        "model file does not import",
        ["--model", f"{FIXTURES}/broken_import.py:build"],
        ["ModuleNotFoundError", "torchvison"],
    ),
    ("factory raises", ["--model", f"{BAD}:factory_raises"], ["factory_raises() raised RuntimeError"]),
    ("factory returns no module", ["--model", f"{BAD}:not_a_module"], ["not an nn.Module"]),
    ("factory not callable", ["--model", f"{BAD}:NOT_CALLABLE"], ["no callable 'NOT_CALLABLE'"]),
    (
        "--meansparse-alpha on a model without activations",
        ["--model", f"{BAD}:five_classes", "--meansparse-alpha", "0.2"],
        ["no insertion points"],
    ),
    # --- attack names (attacks/names.py), checked before the model is even loaded --------------------------------
    ("+eot0", ["--model", "demo-standard", "--attacks", "apgd-ce+eot0"], ["+eot0", "at least one draw"]),
    (
        "temperature not positive",
        ["--model", "demo-meansparse", "--attacks", "apgd-ce+bpda-smooth-T-1"],
        ["temperature must be a positive number", "'-1'"],
    ),
    (
        "two +bpda modifiers",
        ["--model", "demo-meansparse", "--attacks", "apgd-ce+bpda-identity+bpda-smooth"],
        ["more than one +bpda"],
    ),
    ("unknown modifier", ["--model", "demo-standard", "--attacks", "apgd-ce+bdpa-identity"], ["unknown modifier"]),
    (
        "BPDA on a gradient-free attack",
        ["--model", "demo-meansparse", "--attacks", "square+bpda-identity"],
        ["takes no gradients"],
    ),
    ("unknown attack, close match", ["--model", "demo-standard", "--attacks", "apgd-cee"], ["did you mean apgd-ce"]),
    ("unknown torchattacks name", ["--model", "demo-standard", "--attacks", "torchattacks:PDG"], ["did you mean PGD"]),
    (
        "transfer of a transformation attack",
        ["--model", "demo-meansparse", "--attacks", "transfer-base:spatial-grid"],
        ["takes an Lp attack"],
    ),
    (
        "the same attack twice",
        ["--model", "demo-standard", "--attacks", "fgsm,apgd-ce@iters=100,apgd-ce"],
        ["apgd-ce more than once"],
    ),
    ("zero budget", ["--model", "demo-standard", "--attacks", "apgd-ce@iters=0"], ["iters=0", "positive"]),
    ("budget not a whole number", ["--model", "demo-standard", "--attacks", "square@queries=1.5"], ["whole number"]),
    (
        "budget the attack lacks",
        ["--model", "demo-standard", "--attacks", "apgd-ce@targets=3"],
        ["no budget 'targets'", "iters, restarts"],
    ),
    (
        "library budget the attack lacks",
        ["--model", "demo-standard", "--attacks", "torchattacks:PGD@step=5"],
        ["did you mean steps"],
    ),
    # --- options -----------------------------------------------------------------------------------------------
    ("n not positive", ["--model", "demo-standard", "--n", "0"], ["--n must be positive"]),
    ("batch size not positive", ["--model", "demo-standard", "--batch-size", "-5"], ["--batch-size"]),
    ("n not a number", ["--model", "demo-standard", "--n", "ten"], ["--n", "invalid int value"]),
    ("unknown option", ["--model", "demo-standard", "--epsilon", "0.1"], ["unrecognized arguments: --epsilon"]),
    ("norm not offered", ["--model", "demo-standard", "--norm", "L3"], ["--norm", "invalid choice"]),
]


def _refuse(case: str, argv: list[str], tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
    files = _files(tmp_path)
    for key, value in files.items():
        argv = [a.replace("{" + key + "}", value) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    # The same refusal on a machine with a GPU: CUDA is "absent" for every case.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    capsys.readouterr()
    code = main(["run", "--n", "20", "--suite", "quick", "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert not (tmp_path / "out").exists(), f"{case}: a refused run must not leave an output directory"
    REFUSALS[case] = _as_documented(err, tmp_path)
    return code, err


def _as_documented(text: str, tmp_path: Path) -> str:
    """Machine-independent: the temporary directory and this checkout's paths replaced by short names."""
    return text.replace(str(tmp_path), "TMP").replace(str(FIXTURES), "tests/fixtures").replace(str(ROOT) + "/", "")


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error(case, argv, words, tmp_path, capsys, monkeypatch, fmnist_test):
    code, err = _refuse(case, argv, tmp_path, capsys, monkeypatch)
    assert code == 2, f"{case}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, f"{case}: {word!r} not in {err!r}"
    assert not Path("/tmp/audit-pwned").exists(), "an untrusted pickle ran code"


def render_refusals(refusals: dict[str, str]) -> str:
    """The generated part of docs/refused-inputs.md: one row per case of the table, with its real message."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| input | `audit run ...` | message (stderr, exit code 2) |", "|---|---|---|"]
    for case, argv, _ in CASES:
        command = " ".join(_as_documented(a, Path("/nonexistent-tmp")) for a in argv)
        command = command.replace("{", "TMP/").replace("}", "")
        # Double backticks: a message may quote a command in single ones.
        rows.append(f"| {cell(case)} | `{cell(command)}` | `` {cell(refusals[case])} `` |")
    return "\n".join(rows) + "\n"


BEGIN = (
    "<!-- BEGIN refusals: generated from tests/test_bad_input.py; "
    "AUDIT_WRITE_DOCS=1 pytest tests/test_bad_input.py rewrites it -->\n"
)
END = "<!-- END refusals -->\n"


def test_docs_list_every_refusal(tmp_path_factory, capsys, monkeypatch, fmnist_test):
    for case, argv, _ in CASES:  # the cases the table's test has not run in this session (e.g. under -k)
        if case not in REFUSALS:
            _refuse(case, argv, tmp_path_factory.mktemp("case"), capsys, monkeypatch)
    table = render_refusals(REFUSALS)
    text = DOC.read_text()
    assert BEGIN in text and END in text, f"{DOC} lost its generated-table markers"
    head, rest = text.split(BEGIN)
    documented, tail = rest.split(END)
    if os.environ.get("AUDIT_WRITE_DOCS") == "1":
        DOC.write_text(head + BEGIN + table + END + tail)
        documented = table
    assert documented == table, (
        f"{DOC} differs from the real messages; rerun with AUDIT_WRITE_DOCS=1 and review the diff"
    )


def test_float16_model_is_audited_in_float32(tmp_path, capsys, fmnist_test):
    """Issue row 6: a `.half()` model is audited in float32, says so, and scores exactly as its float32 copy."""
    from audit.data import load_dataset
    from defenses.models.registry import load_shipped

    out = tmp_path / "out"
    for model in ("half", "bfloat16"):
        code = main(
            [
                "run",
                "--model",
                f"{BAD}:{model}",
                "--n",
                "40",
                "--attacks",
                "fgsm",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out / model),
            ]
        )
        assert code == 0, capsys.readouterr().err
        results = json.loads((out / model / "results.json").read_text())
        dtype = model.replace("half", "float16")
        assert [
            w for w in results["warnings"] if w.startswith(f"the model's weights are {dtype}: audited in float32")
        ], results["warnings"]
        # The same weights, converted the same way by hand, classify the same 40 images the same way.
        reference = load_shipped("demo-standard").to(getattr(torch, model.replace("half", "float16"))).float()
        test = load_dataset("fashion-mnist", "test").subset(40, 0)
        with torch.no_grad():
            expected = (reference(test.images).argmax(1) == test.labels).float().mean().item()
        assert results["clean_accuracy"] == pytest.approx(expected, abs=1e-12)
        assert results["clean_accuracy"] >= 0.75  # demo-standard: 92% on the full test set
        assert results["attacks"][0]["robust_accuracy"] < results["clean_accuracy"] - 0.3  # FGSM breaks it


def test_probabilities_are_a_warning_not_an_error(tmp_path, caplog, fmnist_test):
    code = main(
        [
            "run",
            "--model",
            f"{BAD}:probabilities",
            "--n",
            "20",
            "--attacks",
            "fgsm",
            "--diagnostics-n",
            "8",
            "--quiet",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert "probabilities" in caplog.text
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert any("probabilities" in w for w in results["warnings"])


def test_inputs_outside_unit_range_are_refused(standard_model):
    from audit.inputs import AuditInputError, check_inputs
    from defenses.protocol import Undefended

    with pytest.raises(AuditInputError, match=r"\[0, 1\]"):
        check_inputs(Undefended(standard_model), torch.rand(4, 1, 28, 28) * 255, torch.zeros(4, dtype=torch.long))


def test_disk_full_keeps_finished_results(tmp_path, capsys, monkeypatch, fmnist_test):
    from audit import store

    calls = {"n": 0}
    original = store.ResultStore.append

    def append(self, record):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, record)

    monkeypatch.setattr(store.ResultStore, "append", append)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--model",
            "demo-standard",
            "--n",
            "20",
            "--attacks",
            "fgsm,apgd-ce",
            "--quiet",
            "--diagnostics-n",
            "8",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "disk full" in err and "Traceback" not in err
    kept = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["attack"] for r in kept] == ["clean", "fgsm"], "the finished attack's results must survive"
    monkeypatch.setattr(store.ResultStore, "append", original)
    assert (
        main(
            [
                "run",
                "--model",
                "demo-standard",
                "--n",
                "20",
                "--attacks",
                "fgsm,apgd-ce",
                "--quiet",
                "--diagnostics-n",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    attacks = [json.loads(line)["attack"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert attacks[:3] == ["clean", "fgsm", "apgd-ce"], "resume must not redo fgsm"
    assert attacks.count("fgsm") == 1 and attacks.count("clean") == 1


def test_ctrl_c_says_how_to_resume_and_keeps_records(tmp_path, fmnist_test):
    """SIGINT during `audit run`: exit 130, one line naming the same command and --out, every finished record kept,
    and the same command then resumes without redoing them (SIGKILL: tests/test_resume_distributed.py)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    args = [
        "run",
        "--model",
        "demo-standard",
        "--n",
        "40",
        "--batch-size",
        "10",
        "--attacks",
        "fgsm,apgd-ce@iters=150",
        "--diagnostics-n",
        "0",
        "--quiet",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [sys.executable, "-m", "audit.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    records = out / "records.jsonl"
    deadline = time.monotonic() + 120
    # Wait for a finished apgd-ce batch, so the interrupt lands in the middle of the run.
    while time.monotonic() < deadline and process.poll() is None:
        if records.exists() and '"attack":"apgd-ce@iters=150"' in records.read_text():
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert process.returncode == 130, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"to resume, run the same command with the same --out: audit {' '.join(args)}" in lines[0]
    kept = [json.loads(line) for line in records.read_text().splitlines()]
    assert any(r["attack"] == "apgd-ce@iters=150" for r in kept)
    apgd_batches = len([r for r in kept if r["attack"] == "apgd-ce@iters=150"])
    assert apgd_batches < 4, "the interrupt came after the last batch: nothing to resume"
    assert main(args) == 0
    stored = [(r["attack"], r.get("batch")) for r in map(json.loads, records.read_text().splitlines())]
    assert len(stored) == len(set(stored)), "resuming redid a batch that was kept"
    assert stored[: len(kept)] == [(r["attack"], r.get("batch")) for r in kept]
    attacks = [a for a, _ in stored if a in ("fgsm", "apgd-ce@iters=150")]
    assert attacks == ["fgsm"] * 4 + ["apgd-ce@iters=150"] * 4, "every batch of both attacks, once"
    assert (out / "results.json").exists()


def test_device_checks(monkeypatch):
    from audit.inputs import AuditInputError, check_device

    check_device("cpu")
    check_device("cpu:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda:1")
    with pytest.raises(AuditInputError, match=r"only 2 CUDA device\(s\) here \(cuda:0..cuda:1\)"):
        check_device("cuda:2")
    for bad in ("gpu", "", "meta", "cuda:x"):
        with pytest.raises(AuditInputError, match="--device"):
            check_device(bad)


def test_the_contract_leaves_a_good_model_untouched(fmnist_test):
    """The shipped models pass the contract with no warning, and the probes change none of their weights or
    statistics (the MeanSparse buffers included)."""
    from audit.inputs import check_inputs
    from defenses.adapters import as_defense
    from defenses.models.registry import load_shipped

    for name in ("demo-standard", "demo-meansparse"):
        defense = as_defense(load_shipped(name))
        before = {k: v.clone() for k, v in defense.state_dict().items()}
        assert check_inputs(defense, fmnist_test.images[:20], fmnist_test.labels[:20]) == []
        after = defense.state_dict()
        assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
