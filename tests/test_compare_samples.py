"""scripts/compare_samples.py: identical audits pass, a changed outcome fails, a changed number fails unless only
outcomes are asked for, and audits of different samples cannot be compared."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_samples.py"
HEADER = (
    "index,label,clean_prediction,clean_draws_correct,fgsm:status,fgsm:distance,fgsm:margin,"
    "autoattack-standard:status,autoattack-standard:distance,autoattack-standard:margin,"
    "autoattack-standard:broken_by,worst_case_robust:lp"
)
ROWS = [
    "0,3,3,1,held,0.1,2.5,broken,0.1,-0.4,apgd-ce,0",
    "1,7,7,1,held,0.1,1.25,held,0,3.75,,1",
    "2,1,4,0,not_run:clean misclassified,,,not_run:clean misclassified,,,,0",
]


@pytest.fixture(scope="module")
def compare_samples():
    spec = importlib.util.spec_from_file_location("compare_samples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(directory: Path, rows: list[str], header: str = HEADER) -> Path:
    directory.mkdir()
    (directory / "samples.csv").write_text("\n".join([header, *rows]) + "\n")
    return directory


def test_identical_audits_pass(compare_samples, tmp_path, capsys):
    old, new = write(tmp_path / "old", ROWS), write(tmp_path / "new", list(reversed(ROWS)))  # rows matched by index
    assert compare_samples.main([str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "identical  outcome  autoattack-standard:broken_by" in out and out.rstrip().endswith("IDENTICAL")


def test_a_changed_outcome_fails(compare_samples, tmp_path, capsys):
    old = write(tmp_path / "old", ROWS)
    new = write(tmp_path / "new", [ROWS[0], ROWS[1].replace(",held,0,3.75,,1", ",broken,0.1,-1,square,0"), ROWS[2]])
    assert compare_samples.main([str(old), str(new), "--outcomes-only"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS    outcome  autoattack-standard:status: 1 of 3 rows" in out
    assert "DIFFERS    outcome  worst_case_robust:lp: 1 of 3 rows" in out
    assert "identical  outcome  fgsm:status" in out


def test_a_changed_number_fails_unless_outcomes_only(compare_samples, tmp_path, capsys):
    old = write(tmp_path / "old", ROWS)
    new = write(tmp_path / "new", [ROWS[0].replace(",2.5,", ",2.5001,"), *ROWS[1:]])
    assert compare_samples.main([str(old), str(new)]) == 1
    assert "DIFFERS    numeric  fgsm:margin: 1 of 3 rows, largest |difference| 0.0001" in capsys.readouterr().out
    assert compare_samples.main([str(old), str(new), "--outcomes-only"]) == 0


def test_columns_of_one_side_are_listed_not_compared(compare_samples, tmp_path, capsys):
    old = write(tmp_path / "old", ROWS)
    new = write(tmp_path / "new", [row + ",held" for row in ROWS], header=HEADER + ",square:status")
    assert compare_samples.main([str(old), str(new)]) == 0
    assert "only in NEW (not compared): square:status" in capsys.readouterr().out


def test_different_samples_cannot_be_compared(compare_samples, tmp_path):
    old = write(tmp_path / "old", ROWS)
    assert compare_samples.main([str(old), str(write(tmp_path / "fewer", ROWS[:2]))]) == 2
    assert compare_samples.main([str(old), str(write(tmp_path / "relabelled", ["0,5" + ROWS[0][3:], *ROWS[1:]]))]) == 2
    assert compare_samples.main([str(old), str(tmp_path / "missing")]) == 2
