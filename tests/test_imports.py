"""The import graph, checked by import-linter (`.importlinter`, also run by `make test`): the audit is built on the
attacks and the attacks on the defenses, never the other way round, and no package has an import cycle between its
modules. Imports inside functions and under `if TYPE_CHECKING:` count (grimp reads every import statement): a
function-level import only delays a cycle to the first call, and a type-only one still ties two modules together.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = [str(Path(sys.executable).with_name("lint-imports"))]  # installed beside the interpreter by `make setup`


def lint(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [*LINT, "--config", str(config), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_our_contracts_are_kept():
    result = lint(ROOT, ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout  # both contracts ran


def test_a_type_only_cycle_and_a_layer_violation_are_caught(tmp_path):
    """The same contracts on a planted package: a cycle closed only by a TYPE_CHECKING import, and a lower layer
    importing the audit inside a function, must both break (or the check above could pass vacuously)."""
    for package in ("audit", "attacks", "defenses"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "defenses" / "a.py").write_text("from defenses import b\n")
    (tmp_path / "defenses" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from defenses import a\n"
    )
    (tmp_path / "attacks" / "c.py").write_text("def f():\n    from audit import d\n")
    (tmp_path / "audit" / "d.py").write_text("")
    config = tmp_path / ".importlinter"
    config.write_text((ROOT / ".importlinter").read_text())
    result = lint(tmp_path, config)
    assert result.returncode != 0
    assert "0 kept, 2 broken" in result.stdout, result.stdout
    assert "defenses" in result.stdout and "attacks.c -> audit.d" in result.stdout
