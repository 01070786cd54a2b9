"""Reports only read stored results: `render_reports(dir)` writes report.md and a self-contained report.html."""
from __future__ import annotations

import json
from pathlib import Path

from audit.report.html import render_html
from audit.report.markdown import render_markdown
from audit.report.plots import draw_all
from audit.store import atomic_write
from defenses.errors import UserError


class ReportError(UserError, ValueError):
    pass


def load_results(directory: str | Path) -> dict:
    path = Path(directory) / "results.json"
    if not path.exists():
        raise ReportError(f"{path} not found: is {directory} an `audit run` output directory?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportError(f"{path} is not valid JSON ({error})") from None


def render_reports(directory: str | Path) -> tuple[Path, Path]:
    directory = Path(directory)
    results = load_results(directory)
    figures = draw_all(results, directory)
    md_path, html_path = directory / "report.md", directory / "report.html"
    atomic_write(md_path, render_markdown(results, figures))
    atomic_write(html_path, render_html(results, figures))
    return md_path, html_path
