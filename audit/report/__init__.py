"""Reports only read stored results: `render_reports(dir)` writes report.md and a self-contained report.html."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit.report.html import render_html
from audit.report.markdown import render_markdown
from audit.report.plots import draw_all
from audit.store import atomic_write
from defenses.errors import UserError


class ReportError(UserError, ValueError):
    pass


# What every reader of results.json relies on; a file without them was not written by `audit run` (or is damaged).
REQUIRED = (
    "model",
    "dataset",
    "threat_model",
    "n_samples",
    "seed",
    "clean_accuracy",
    "worst_case_robust_accuracy",
    "attacks",
)


def load_results(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "results.json"
    if not path.exists():
        raise ReportError(f"{path} not found: is {directory} an `audit run` output directory?")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path} is not valid JSON ({error})") from None
    missing = [key for key in REQUIRED if key not in results] if isinstance(results, dict) else list(REQUIRED)
    if missing:
        raise ReportError(
            f"{path} lacks {', '.join(missing)}: not an `audit run` results file, or damaged; "
            f"re-run the audit's command with its --out to write it again"
        )
    return results


@contextlib.contextmanager
def reading(*paths: Path) -> Iterator[None]:
    """A results.json whose values have the wrong shape (hand-edited, or damaged) is one line, not a traceback."""
    try:
        yield
    except UserError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as error:
        raise ReportError(
            f"{' or '.join(map(str, paths))} is malformed ({type(error).__name__}: {error}); re-run "
            f"the audit's command with its --out to write it again"
        ) from None


def render_reports(directory: str | Path) -> tuple[Path, Path]:
    directory = Path(directory)
    results = load_results(directory)
    with reading(directory / "results.json"):
        figures = draw_all(results, directory)
        markdown, html = render_markdown(results, figures), render_html(results, figures)
    md_path, html_path = directory / "report.md", directory / "report.html"
    atomic_write(md_path, markdown)
    atomic_write(html_path, html)
    return md_path, html_path
