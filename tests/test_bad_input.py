"""One table of bad inputs: each gives a one-line error naming the problem and the fix, exit code 2, no traceback,
and loses no finished results."""
from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path

import pytest
import torch

from audit.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
BAD = FIXTURES / "bad_models.py"


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
    return {k: str(tmp / k) for k in ("garbage.safetensors", "evil.pt", "wrong_keys.pt", "wrong_shape.pt", "a_file", "bad_idx")}


CASES = [
    # (case, argv after `run`, words the message must contain)
    ("checkpoint missing", ["--model", f"{BAD}:linear", "--checkpoint", "/nonexistent/w.safetensors"], ["not found"]),
    ("checkpoint corrupt", ["--model", f"{BAD}:linear", "--checkpoint", "{garbage.safetensors}"], ["corrupt"]),
    ("untrusted pickle", ["--model", f"{BAD}:linear", "--checkpoint", "{evil.pt}"], ["--trust-checkpoint"]),
    ("state-dict keys", ["--model", f"{BAD}:linear", "--checkpoint", "{wrong_keys.pt}"], ["missing keys"]),
    ("state-dict shapes", ["--model", f"{BAD}:linear", "--checkpoint", "{wrong_shape.pt}"], ["shape"]),
    ("output not (N, classes)", ["--model", f"{BAD}:flat"], ["(N, classes)"]),
    ("output with NaN", ["--model", f"{BAD}:nans"], ["NaN"]),
    ("labels out of range", ["--model", f"{BAD}:five_classes"], ["labels", "5 outputs"]),
    ("eps <= 0", ["--model", "demo-standard", "--eps", "0"], ["--eps"]),
    ("eps absurd", ["--model", "demo-standard", "--eps", "3"], ["absurd"]),
    ("unknown attack", ["--model", "demo-standard", "--attacks", "apgd-ce,pgd-magic"], ["unknown attack"]),
    ("BPDA with nothing to bypass", ["--model", "demo-standard", "--attacks", "apgd-ce+bpda-identity"],
     ["apgd-ce+bpda-identity", "no layer to bypass"]),
    ("unknown suite", ["--model", "demo-standard", "--suite", "everything"], ["unknown suite"]),
    ("unknown dataset", ["--model", "demo-standard", "--dataset", "svhn"], ["unknown dataset"]),
    ("unknown model", ["--model", "resnet-9000"], ["unknown model"]),
    ("model file missing", ["--model", "/nonexistent/model.py:build"], ["not found"]),
    ("data dir missing", ["--model", "demo-standard", "--data-dir", "/nonexistent/data"], ["does not exist"]),
    ("data dir malformed", ["--model", "demo-standard", "--data-dir", "{bad_idx}"], ["truncated"]),
    ("out not writable", ["--model", "demo-standard", "--out", "{a_file}/sub"], ["not writable"]),
]


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error(case, argv, words, tmp_path, capsys, fmnist_test):
    files = _files(tmp_path)
    for key, value in files.items():
        argv = [a.replace("{" + key + "}", value) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code = main(["run", "--n", "20", "--suite", "quick", "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, f"{case}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, f"{case}: {word!r} not in {err!r}"
    assert not Path("/tmp/audit-pwned").exists(), "an untrusted pickle ran code"
    assert not (tmp_path / "out").exists(), "a run refused at its input checks must not leave an output directory"


def test_probabilities_are_a_warning_not_an_error(tmp_path, caplog, fmnist_test):
    code = main(["run", "--model", f"{BAD}:probabilities", "--n", "20", "--attacks", "fgsm", "--diagnostics-n", "8",
                 "--quiet", "--out", str(tmp_path / "out")])
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
    code = main(["run", "--model", "demo-standard", "--n", "20", "--attacks", "fgsm,apgd-ce", "--quiet",
                 "--diagnostics-n", "8", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "disk full" in err and "Traceback" not in err
    kept = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["attack"] for r in kept] == ["clean", "fgsm"], "the finished attack's results must survive"
    monkeypatch.setattr(store.ResultStore, "append", original)
    assert main(["run", "--model", "demo-standard", "--n", "20", "--attacks", "fgsm,apgd-ce", "--quiet",
                 "--diagnostics-n", "8", "--out", str(out)]) == 0
    attacks = [json.loads(line)["attack"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert attacks[:3] == ["clean", "fgsm", "apgd-ce"], "resume must not redo fgsm"
    assert attacks.count("fgsm") == 1 and attacks.count("clean") == 1
