"""Fuzzing the command line: generated command lines of every subcommand and generated broken models never end in a
traceback, and an invalid value is refused.

Each case calls `audit.cli.main` in-process (a subprocess costs seconds; the CLI's handling is the same) and must
either succeed (exit 0; for `run`, results.json written) or exit 2 with exactly one line on stderr and no
traceback. The generators know which values are invalid (each option's table lists valid and invalid values), and
that is the oracle: a line holding an invalid value must exit 2, not merely not crash. Anything else fails the test
with the command line to reproduce it. `run`, `report`, `compare`, `extend`, `verify`, `export`, `train` and `sparsify`
are fuzzed. Hypothesis generates the cases with `derandomize=True`,
so a run is seeded and repeatable (no example database is written). The default run tries a few hundred cases
with cheap options (n <= 4, attack budgets of a few steps); `-m slow` tries thousands.

Bugs found while this fuzzer was being written (all fixed; each has a row in tests/test_bad_input.py or
tests/test_attack_names.py). By its slow run: `transfer-base:spatial-grid` (and `transfer-base:stadv`) ran the
earlier attacks, then died with an AttributeError in the runner (a Transfer of a transformation attack has no
`clip_params`); the grammar now refuses it. By the first generated command lines, tried by hand before the
test existed: `spatial-grid+bpda-identity` was a TypeError from the constructor (now refused by the grammar:
spatial-grid takes no gradients); `--batch-size 0` was a traceback from `range()`; `--meansparse-alpha` on a float16
model was a dtype RuntimeError from the calibration pass (and on a model with no activations, a ValueError
traceback); argparse printed its multi-line usage; torch's pickle-protocol warning added a second stderr line to the
untrusted-checkpoint
refusal; a RobustBench name with a missing checkpoint built a WRN-94-16 (seconds, gigabytes) before saying
"not found". By the oracle and the other subcommands (each now covered here or in tests/test_faults.py):
`--checkpoint` with a shipped model was accepted and ignored; `sparsify --alphas -1 --eps 0 --n 0` was a traceback,
not a refusal; `train`/`sparsify`/`compare --out` into a missing folder failed only after the work, in a traceback;
`report`/`compare` on a results.json without its keys was a KeyError.
"""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
import sys
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from audit.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from contract_models import violates  # noqa: E402 - after the sys.path / thread setup above

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BAD = FIXTURES / "bad_models.py"
CONTRACT = FIXTURES / "contract_models.py"
DEFAULT_EXAMPLES = 200
SLOW_EXAMPLES = 3000
DEFAULT_MODELS = 50
SLOW_MODELS = 1000

# --- attack names: cheap valid ones, and mutations of them --------------------------------------------------------
small = st.integers(1, 3)
VALID_ATTACKS = st.one_of(
    st.just("fgsm"),
    st.builds("apgd-ce@iters={}".format, small),
    st.builds("apgd-dlr+eot2@iters={}".format, small),
    st.builds("apgd-t@iters={},targets={}".format, st.integers(1, 2), st.integers(1, 3)),
    st.builds("square@queries={},restarts={}".format, st.integers(1, 20), st.integers(1, 2)),
    st.builds("fab@iters={}".format, st.integers(1, 2)),
    st.builds("fab-t@iters={},targets=1".format, st.integers(1, 2)),
    st.just("spatial-grid@angles=3,translations=1"),
    st.builds("torchattacks:PGD@steps={}".format, st.integers(1, 2)),
    st.builds("foolbox:LinfPGD@steps={}".format, st.integers(1, 2)),
    # Only a MeanSparse model has a surrogate and a base model; on others these are refused before the run.
    st.builds("apgd-ce+bpda-identity@iters={}".format, small),
    st.builds("apgd-ce+bpda-smooth-T{}@iters={}".format, st.sampled_from(["0.03", "1", "10", "1e-3"]), small),
    st.just("transfer-base:fgsm"),
)
MODIFIERS = [
    "+eot0",
    "+eot",
    "+eot-1",
    "+eot2",
    "+bpda-identity",
    "+bpda-smooth",
    "+bpda-smooth-T0",
    "+bpda-smooth-T-1",
    "+bpda-smooth-Tnan",
    "+bpda-smooth-Tinf",
    "+bdpa",
    "+",
    "++eot2",
    "+eot1.5",
]
BUDGETS = [
    "@",
    "@iters",
    "@iters=0",
    "@iters=-1",
    "@iters=1.5",
    "@iters=x",
    "@foo=1",
    "@=1",
    "@iters=1,iters=2",
    "@queries=5",
    "@restarts=0",
    "@steps=1",
    "@targets=99",
    "@iters=1,",
    "@,",
    "@iters=1e3",
]
PREFIXES = ["transfer-base:", "torchattacks:", "foolbox:", "autoattack-", "transfer-base:transfer-base:", ":"]
ALPHABET = "apgdcefltsqur-+@=,.:T0123456789 "


@st.composite
def attack_name(draw: st.DrawFn) -> str:
    name = draw(VALID_ATTACKS)
    mutation = draw(st.sampled_from(["none"] * 6 + ["modifier", "budget", "prefix", "delete", "insert", "text"]))
    if mutation == "modifier":
        head, at, budget = name.partition("@")
        name = head + draw(st.sampled_from(MODIFIERS)) + at + budget
    elif mutation == "budget":
        name += draw(st.sampled_from(BUDGETS))
    elif mutation == "prefix":
        name = draw(st.sampled_from(PREFIXES)) + name
    elif mutation == "delete":
        i = draw(st.integers(0, len(name) - 1))
        name = name[:i] + name[i + 1 :]
    elif mutation == "insert":
        i = draw(st.integers(0, len(name)))
        name = name[:i] + draw(st.sampled_from(ALPHABET)) + name[i:]
    elif mutation == "text":
        name = draw(st.text(ALPHABET, max_size=16))
    return name


# --- options ------------------------------------------------------------------------------------------------------
MODELS = [
    "demo-standard",
    "demo-standard",
    "demo-meansparse",
    "demo-meansparse",
    "demo-adversarial",
    "resnet-9000",
    "x.py:build",
    f"{BAD}:",
    f"{BAD}:missing",
    f"{BAD}:NOT_CALLABLE",
    f"{BAD}:not_a_module",
    f"{BAD}:factory_raises",
    f"{FIXTURES}/broken_import.py:build",
    f"{FIXTURES}/user_model.py:build",
    *(
        f"{BAD}:{name}"
        for name in (
            "flat",
            "nans",
            "probabilities",
            "five_classes",
            "three_channels",
            "wide_linear",
            "tuple_out",
            "dict_out",
            "raises",
            "int_out",
            "one_output",
            "trains_itself",
            "stuck_in_training",
            "counts_calls",
            "other_device",
            "inf_logits",
            "half",
            "bfloat16",
        )
    ),
]
# Each option: (values that are fine, values that are not); a drawn option is bad one time in four. No valid
# --meansparse-alpha here: it calibrates on the 55,000 training images (~45 s). No --suite without --attacks, but
# one time in twenty: the default suite (full) runs AutoAttack, seconds per case.
OPTIONS: dict[str, tuple[list[str], list[str]]] = {
    "--eps": (["0.1", "0.05", "1e-9", "0.5"], ["0", "-0.1", "nan", "inf", "1", "3", "abc", "8/255"]),
    "--norm": (["Linf", "L2"], ["L1", "linf"]),
    "--n": (["1", "2", "4"], ["0", "-1", "x", "2.5"]),
    "--seed": (["0", "1", "-1", "99999999999"], ["x", "1.5"]),
    "--batch-size": (["1", "2", "250"], ["0", "-3", "x"]),
    "--diagnostics-n": (["0"], ["-1", "x"]),
    "--mode": (["full", "cascade"], ["fast", ""]),
    "--dataset": (["fashion-mnist"], ["cifar10", "foolbox-cifar10", "svhn", "", "mnist"]),
    "--data-dir": (["/usr/share/datasets/fashion-mnist"], ["/nonexistent", "{file}", "{empty_dir}"]),
    "--device": (["cpu", "cpu:0"], ["cuda", "cuda:1", "tpu", "", "meta", "mps"]),
    "--claim": (["0.5", "0", "1"], ["1.5", "-0.1", "x", "nan"]),
    "--meansparse-alpha": ([], ["-1", "nan", "inf", "x"]),
    "--checkpoint": ([], ["/nonexistent.safetensors", "{file}", "{garbage}"]),
    "--robustbench-dir": ([], ["/nonexistent", "{empty_dir}"]),
    "--suite": (["quick"], ["nope", "Quick"]),
}
FLAGS = ["--trust-checkpoint", "--epsilon", "--bogus", "-n", "--attacks", "--name"]  # --name: a removed alias
GOOD_MODELS = [
    "demo-standard",
    "demo-meansparse",
    "demo-adversarial",
    f"{FIXTURES}/user_model.py:build",
    f"{BAD}:probabilities",
    f"{BAD}:half",
    f"{BAD}:bfloat16",
]


BAD_MODELS = sorted(set(MODELS) - set(GOOD_MODELS))
REFUSED_FLAGS = ["--epsilon", "--bogus", "-n"]  # inserted anywhere, each is a usage error


def invalid_run(argv: list[str]) -> bool:
    """The oracle: does this command line hold a value known to be invalid (so it must be refused)? Attack names
    are left out (a mutation may still be a valid name), and so is a model that only some options make unusable."""
    if "--model" not in argv:
        return True
    if any(flag in argv for flag in REFUSED_FLAGS):
        return True
    values = dict(zip(argv, argv[1:]))
    if values.get("--model") in BAD_MODELS:
        return True
    for option, (_, bad) in OPTIONS.items():
        value = values.get(option)
        if option == "--eps" and values.get("--norm") == "L2" and value in ("1", "3"):
            continue  # absurd for Linf, fine for L2 (below 100)
        if value is not None and value in bad:
            return True
    return False


@st.composite
def command_line(draw: st.DrawFn) -> list[str]:
    argv: list[str] = []
    if draw(st.integers(0, 19)):  # 1 in 20: no --model at all
        argv += ["--model", draw(st.sampled_from(GOOD_MODELS if draw(st.integers(0, 2)) else MODELS))]
    for option in draw(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=4, unique=True)):
        good, bad = OPTIONS[option]
        argv += [option, draw(st.sampled_from(bad if not good or draw(st.integers(0, 3)) == 0 else good))]
    if draw(st.integers(0, 19)):
        names = draw(st.lists(attack_name(), min_size=1, max_size=3))
        argv += ["--attacks", ",".join(names)]
    elif "--suite" not in argv:
        argv += ["--suite", draw(st.sampled_from(OPTIONS["--suite"][1]))]
    if "--n" not in argv:
        argv += ["--n", "4"]
    if "--diagnostics-n" not in argv:
        argv += ["--diagnostics-n", "0"]  # the diagnostics cost seconds; they get no input of their own
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(FLAGS)))
    return argv


def _check(
    argv: list[str], tmp: Path, capsys: pytest.CaptureFixture, command_name: str = "run", invalid: bool = False
) -> tuple[int, Path]:
    """Run one command line; fail with it printed when it crashes, breaks the one-line rule, or (`invalid`: the
    oracle knows a value in it is invalid) is not refused."""
    argv = [
        a.format(
            file=tmp / "a_file",
            empty_dir=tmp / "empty",
            garbage=tmp / "garbage.safetensors",
            tmp=tmp,
            **{name: tmp / name for name in DIRS},
        )
        for a in argv
    ]
    out = tmp / f"out{next(_counter)}"
    full = ["run", "--quiet", *argv, "--out", str(out)] if command_name == "run" else [command_name, "--quiet", *argv]
    command = "audit " + shlex.join(full)
    if currently_in_test_context():
        note(command)  # hypothesis prints it with the falsifying example
    capsys.readouterr()
    try:
        code = main(full)
    except BaseException as error:  # noqa: BLE001 - any escape is the bug we are looking for
        pytest.fail(f"crash: {command}\n{''.join(traceback.format_exception(error))}")
    err = capsys.readouterr().err
    assert not (invalid and code == 0), f"an invalid value was accepted: {command}"
    if code == 0:
        if command_name == "run":
            assert (out / "results.json").is_file(), f"exit 0 without results: {command}"
        return code, out
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}: {command}\n{err}"
    assert len(lines) == 1 and "Traceback" not in err, f"not one line on stderr: {command}\n{err}"
    return code, out


_counter = itertools.count()


# Directories the other subcommands are given: a finished audit, and broken copies of its files.
DIRS = ("finished", "bad_results", "bad_json", "bad_config")


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory, fmnist_test) -> Path:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "a_file").write_text("")
    (tmp / "empty").mkdir()
    (tmp / "garbage.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    finished = tmp / "finished"
    assert (
        main(
            [
                "run",
                "--quiet",
                "--model",
                "demo-standard",
                "--n",
                "4",
                "--attacks",
                "fgsm",
                "--diagnostics-n",
                "0",
                "--out",
                str(finished),
            ]
        )
        == 0
    )
    for name in ("bad_results", "bad_json", "bad_config"):
        shutil.copytree(finished, tmp / name)
    (tmp / "bad_results" / "config.json").unlink()  # a copied results.json alone, without the keys
    (tmp / "bad_results" / "results.json").write_text('{"model": "x", "attacks": []}')
    (tmp / "bad_json" / "config.json").unlink()
    (tmp / "bad_json" / "results.json").write_text('{"model": ')
    text = (tmp / "bad_config" / "config.json").read_text()
    (tmp / "bad_config" / "config.json").write_text(text[: len(text) // 2])
    return tmp


FUZZ = dict(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


def _command_lines(examples: int):  # noqa: ANN202 - a test body shared by the default and slow runs
    @settings(max_examples=examples, **FUZZ)
    @given(argv=command_line())
    def run(argv: list[str], fuzz_dir: Path, capsys: pytest.CaptureFixture) -> None:
        _check(argv, fuzz_dir, capsys, invalid=invalid_run(argv))

    return run


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device cuda` is an invalid value on every machine the oracle runs on, GPU or not."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_fuzz_command_lines(fuzz_dir, capsys, fmnist_test, no_cuda):
    _command_lines(DEFAULT_EXAMPLES)(fuzz_dir=fuzz_dir, capsys=capsys)


@pytest.mark.slow
def test_fuzz_command_lines_many(fuzz_dir, capsys, fmnist_test, no_cuda):
    _command_lines(SLOW_EXAMPLES)(fuzz_dir=fuzz_dir, capsys=capsys)


# --- every other subcommand -------------------------------------------------------------------------------------
# Per subcommand: positional arguments and options, each (valid values, invalid values); None: leave it out. `train`
# and `sparsify` draw at least one invalid value (their valid runs take minutes), and their work is replaced by a
# function that fails the test: an invalid value must be refused before any training or sweep starts.
MISSING_DIRS = ["/nonexistent", "{file}", "{empty_dir}", "{bad_results}", "{bad_json}", "{bad_config}"]
DATA_DIR = (["/usr/share/datasets/fashion-mnist"], ["/nonexistent", "{file}", "{empty_dir}"])
DEVICE = (["cpu"], ["tpu", "", "cuda", "meta"])
SUBCOMMANDS: dict[str, dict[str, tuple[list, list]]] = {
    "report": {"": (["{finished}"], MISSING_DIRS)},
    "compare": {
        "": (["{finished}"], MISSING_DIRS),
        " ": (["{finished}"], MISSING_DIRS),
        "--out": ([None, "{tmp}/comparison.md"], ["{tmp}/missing/comparison.md", "{empty_dir}"]),
    },
    "extend": {
        "": (["{finished}"], MISSING_DIRS),
        "--attacks": (["fgsm"], ["pgd-magic", "apgd-ce+bpda-identity", "apgd-ce@iters=0", "fgsm+eot0"]),
        "--data-dir": ([None, *DATA_DIR[0]], DATA_DIR[1]),
        "--device": ([None, *DEVICE[0]], DEVICE[1]),
    },
    "verify": {
        "": (["{finished}"], MISSING_DIRS),
        "--model": ([None, "demo-standard"], ["nope", "/nonexistent/m.py:build"]),
        "--checkpoint": ([None], ["/nonexistent/w.safetensors", "{garbage}"]),
        "--device": ([None, *DEVICE[0]], DEVICE[1]),
    },
    "export": {
        "": (["{finished}"], MISSING_DIRS),
        "--format": (["robustbench", "npz"], ["csv", "", "pt"]),
        "--out": ([None, "{tmp}/x.npz", "{tmp}/new/x.pt"], ["{file}/x.npz", "{empty_dir}"]),
    },
    "train": {
        "--method": ([None, "fgsm"], ["sgd", ""]),
        "--epochs": ([None, "1"], ["0", "-1", "x", "1.5"]),
        "--eps": ([None, "0.1"], ["0", "-0.1", "nan", "inf", "1", "abc"]),
        "--width": ([None, "4"], ["0", "-2", "x"]),
        "--seed": ([None, "3"], ["x"]),
        "--data-dir": ([None, *DATA_DIR[0]], DATA_DIR[1]),
        "--device": ([None, *DEVICE[0]], DEVICE[1]),
        "--out": (
            ["{tmp}/model.safetensors"],
            ["{tmp}/missing/model.safetensors", "{file}/m.safetensors", "{empty_dir}"],
        ),
    },
    "sparsify": {
        "--model": ([None, "demo-adversarial"], ["nope", "demo-meansparse-x", ""]),
        "--alphas": ([None, "0.1"], ["-1", "nan", "inf", "x"]),
        "--eps": ([None, "0.1"], ["0", "nan", "2"]),
        "--n": ([None, "8"], ["0", "-1", "x"]),
        "--data-dir": ([None, *DATA_DIR[0]], DATA_DIR[1]),
        "--out": (["{tmp}/ms.safetensors"], ["{tmp}/missing/ms.safetensors", "{empty_dir}"]),
    },
}
EXPENSIVE = ("train", "sparsify")


@st.composite
def subcommand_line(draw: st.DrawFn, name: str) -> tuple[list[str], bool]:
    """(argv after the subcommand name, whether it holds an invalid value)."""
    options = SUBCOMMANDS[name]
    forced = draw(st.sampled_from(sorted(options))) if name in EXPENSIVE else None
    argv, invalid = [], False
    for option, (good, bad) in options.items():
        wrong = option == forced or draw(st.integers(0, 3)) == 0
        value = draw(st.sampled_from(bad if wrong else good))
        invalid = invalid or wrong
        if value is not None:
            argv += [value] if option.strip() == "" else [option, value]
    return argv, invalid


def _work_fails(*args, **kwargs):
    raise AssertionError("training or the sweep started on an invalid command line")


def _subcommands(examples: int):  # noqa: ANN202 - see _command_lines
    @settings(max_examples=examples, **FUZZ)
    @given(case=st.sampled_from(sorted(SUBCOMMANDS)).flatmap(lambda n: st.tuples(st.just(n), subcommand_line(n))))
    def run(case: tuple[str, tuple[list[str], bool]], fuzz_dir: Path, capsys: pytest.CaptureFixture) -> None:
        name, (argv, invalid) = case
        _check(argv, fuzz_dir, capsys, command_name=name, invalid=invalid)

    return run


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.train
    import defenses

    monkeypatch.setattr(audit.train, "train", _work_fails)
    monkeypatch.setattr(defenses, "calibrate", _work_fails)


def test_fuzz_every_subcommand(fuzz_dir, capsys, no_cuda, no_work):
    _subcommands(DEFAULT_EXAMPLES // 2)(fuzz_dir=fuzz_dir, capsys=capsys)


@pytest.mark.slow
def test_fuzz_every_subcommand_many(fuzz_dir, capsys, no_cuda, no_work):
    _subcommands(SLOW_EXAMPLES // 2)(fuzz_dir=fuzz_dir, capsys=capsys)


def test_the_subcommand_oracle_accepts_valid_lines(fuzz_dir, capsys):
    """The oracle's other side: valid lines of the cheap subcommands succeed (exit 0)."""
    for name, argv in (
        ("report", ["{finished}"]),
        ("compare", ["{finished}", "{finished}", "--out", "{tmp}/c.md"]),
        ("extend", ["{finished}", "--attacks", "fgsm", "--device", "cpu"]),
        ("verify", ["{finished}", "--model", "demo-standard"]),
        ("export", ["{finished}", "--format", "npz", "--out", "{tmp}/e.npz"]),
    ):
        code, _ = _check(argv, fuzz_dir, capsys, command_name=name)
        assert code == 0, name


# --- generated broken models ----------------------------------------------------------------------------------
# Settings the audit accepts (float16 and friends are converted), and the violations, one clause each.
BENIGN = st.fixed_dictionaries(
    {},
    optional={
        "classes": st.sampled_from([10, 12]),
        "output": st.sampled_from(["tensor", "probs"]),
        "dtype": st.sampled_from(["float32", "float16", "bfloat16", "float64"]),
    },
)
VIOLATIONS = {
    "channels": st.just(3),
    "classes": st.sampled_from([1, 5]),
    "output": st.sampled_from(["tuple", "list", "dict", "int", "flat"]),
    "poison": st.sampled_from(["nan", "inf"]),
    "mode": st.sampled_from(["forward", "override"]),
    "raises": st.sampled_from(["ValueError", "KeyError", "RuntimeError", "AssertionError", "ZeroDivisionError"]),
    "device": st.just("meta"),
    "mutate": st.just(True),
}


@st.composite
def contract_config(draw: st.DrawFn) -> dict:
    config = draw(BENIGN)
    for key in draw(st.lists(st.sampled_from(sorted(VIOLATIONS)), max_size=2, unique=True)):
        config[key] = draw(VIOLATIONS[key])
    return config


def _models(examples: int):  # noqa: ANN202 - see the line above
    @settings(max_examples=examples, **FUZZ)
    @given(config=contract_config(), attack=st.sampled_from(["fgsm", "apgd-ce@iters=2", "square@queries=10"]))
    def run(config: dict, attack: str, fuzz_dir: Path, capsys: pytest.CaptureFixture) -> None:
        path = fuzz_dir / f"model{next(_counter)}.py"
        path.write_text(f"{CONTRACT.read_text()}\n\ndef build():\n    return Configurable(**{config!r})\n")
        code, _ = _check(
            ["--model", f"{path}:build", "--attacks", attack, "--n", "4", "--diagnostics-n", "0"], fuzz_dir, capsys
        )
        # The contract is the oracle: a model that breaks it is refused, one that keeps it is audited.
        assert (code == 2) == violates(config), f"{config}: exit {code}"

    return run


def test_fuzz_broken_models(fuzz_dir, capsys, fmnist_test):
    _models(DEFAULT_MODELS)(fuzz_dir=fuzz_dir, capsys=capsys)


@pytest.mark.slow
def test_fuzz_broken_models_many(fuzz_dir, capsys, fmnist_test):
    _models(SLOW_MODELS)(fuzz_dir=fuzz_dir, capsys=capsys)


def test_the_run_oracle_has_teeth(fuzz_dir, capsys, no_cuda):
    """Each option's invalid values, alone on an otherwise valid line, are refused (two per option, to stay cheap):
    what the random lines could hide behind another invalid value. `--checkpoint` with a shipped model was
    accepted, and ignored, before the oracle existed."""
    valid = ["--model", "demo-standard", "--attacks", "fgsm", "--n", "2", "--diagnostics-n", "0"]
    for option, (_, bad) in OPTIONS.items():
        for value in bad[:2]:
            argv = [*valid, option, value]
            assert invalid_run(argv)
            code, _ = _check(argv, fuzz_dir, capsys, invalid=True)
            assert code == 2, argv


def test_a_fuzz_success_writes_real_results(fuzz_dir, capsys, fmnist_test):
    """The fuzz oracle's success branch is real: a valid generated command line audits and stores results."""
    argv = ["--model", "demo-standard", "--attacks", "apgd-ce@iters=3,fgsm", "--n", "4", "--diagnostics-n", "0"]
    code, out = _check(argv, fuzz_dir, capsys)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert [a["name"] for a in results["attacks"]] == ["apgd-ce@iters=3", "fgsm"]
