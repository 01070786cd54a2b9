#!/usr/bin/env python3
"""Prove that an `audit run` report renders: open report.html in headless Chromium, take a screenshot, and check
the page it actually built.

    .venv/bin/python scripts/check_report_html.py /tmp/report-check/ms

Checks, each a failure (exit status 1):
- report.html is self-contained: no http(s) src/href, no <script src>, no <link> stylesheet;
- Chromium logs nothing on the console while loading it (the report has no scripts, so any console line is a
  resource failure, a CSP violation or an uncaught error);
- the DOM Chromium built has one <img> per expected plot (matched by its alt text, the plot title), and every
  <img> has a data:image/png;base64 src whose bytes are a PNG;
- the verdict comes before the first table.

The expected plots follow from results.json and samples.csv, independently of the code that draws them: a plot
is expected whenever the data behind it exists (the attack table; a non-skipped `eps-sweep`, `zero-gradients`,
`loss-landscape` or `dead-zone-occupancy` finding; black-box and exact white-box attacks on clean-correct
samples). A MeanSparse defense must have its dead-zone plot.

Prints the screenshot path. Exit status 2: no report, or Chromium is missing or does not start.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from shutil import which

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LOGGING_FLAGS = ("--enable-logging=stderr", "--v=0")
WINDOW = "1200,5000"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TITLES = {
    "robust": "Robust accuracy per attack",
    "eps": "Accuracy against eps, exact and BPDA gradients",
    "norms": "Gradient-norm histograms",
    "landscape": "Loss landscapes",
    "blackbox": "Black-box against white-box, per sample",
    "deadzone": "Dead-zone occupancy per MeanSparse layer",
    "binarization": "Binarization test, per point",
    "strength": "Attack strength curves",
    "attribution": "Per-layer attribution of the masking",
}
# Chromium prints page console messages as "...:INFO:CONSOLE:1] "message", source: ..." (older builds:
# "CONSOLE(1)"); every level looks the same, so any such line counts.
CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught ")
EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, file://, //host


class CheckError(Exception):
    """The check could not run (as opposed to finding a problem in the report)."""


def _finding(results: dict, finding_id: str) -> dict | None:
    return next((f for f in results.get("findings", []) if f.get("id") == finding_id), None)


def _ran(results: dict, finding_id: str) -> bool:
    finding = _finding(results, finding_id)
    return finding is not None and finding.get("status") != "skipped"


def expected_plots(directory: Path, results: dict) -> list[str]:
    """The plot titles the report must show, from the stored results alone."""
    expected = []
    if results.get("attacks"):
        expected.append(TITLES["robust"])
    if _ran(results, "eps-sweep"):
        expected.append(TITLES["eps"])
    zero = _finding(results, "zero-gradients")
    if _ran(results, "zero-gradients") and not (zero.get("evidence") or {}).get("graph_interrupted"):
        expected.append(TITLES["norms"])
    if _ran(results, "loss-landscape"):
        expected.append(TITLES["landscape"])
    # The black-box plot draws the paired samples of the `blackbox-beats-whitebox` comparison.
    blackbox = _finding(results, "blackbox-beats-whitebox")
    if _ran(results, "blackbox-beats-whitebox") and ((blackbox or {}).get("data") or {}).get("index"):
        expected.append(TITLES["blackbox"])
    convergence = _finding(results, "attack-convergence")
    if _ran(results, "attack-convergence") and ((convergence or {}).get("data") or {}).get("curves"):
        expected.append(TITLES["strength"])
    binarized = _finding(results, "binarization-test")
    if _ran(results, "binarization-test") and any(
        r.get("valid") for r in ((binarized or {}).get("data") or {}).get("samples", [])
    ):
        expected.append(TITLES["binarization"])
    if _ran(results, "dead-zone-occupancy"):
        expected.append(TITLES["deadzone"])
    if _ran(results, "layer-attribution") and ((_finding(results, "layer-attribution") or {}).get("data") or {}).get(
        "rows"
    ):
        expected.append(TITLES["attribution"])
    return expected


def meansparse_problems(results: dict) -> list[str]:
    if "meansparse" in str(results.get("defense", "")).lower() and not _ran(results, "dead-zone-occupancy"):
        return [
            "the defense is MeanSparse but its dead-zone-occupancy finding is missing or skipped: "
            "the report cannot show the dead-zone plot"
        ]
    return []


class _Dom(HTMLParser):
    """The <img> tags (alt, src) and where the verdict and the first table start, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value) of every src / href
        self.scripts_loaded = 0
        self.stylesheets = 0
        self.position = 0
        self.verdict_at: int | None = None
        self.table_at: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.position += 1
        attributes = {k: v or "" for k, v in attrs}
        for name in ("src", "href", "srcset", "poster", "data"):
            if name in attributes:
                self.references.append((tag, name, attributes[name]))
        if tag == "script" and "src" in attributes:
            self.scripts_loaded += 1
        if tag == "link" and "stylesheet" in attributes.get("rel", "").lower():
            self.stylesheets += 1
        if tag == "img":
            self.images.append((attributes.get("alt", ""), attributes.get("src", "")))
        elif tag == "table" and self.table_at is None:
            self.table_at = self.position
        elif "verdict" in attributes.get("class", "").split() and self.verdict_at is None:
            self.verdict_at = self.position


def static_problems(text: str) -> list[str]:
    """What the file itself would fetch: any src/href to another host or file, a script or stylesheet link."""
    parser = _Dom()
    parser.feed(text)
    problems = [
        f"report.html references <{tag} {name}={value[:80]!r}>: it must be self-contained"
        for tag, name, value in parser.references
        if EXTERNAL.match(value)
    ]
    if parser.scripts_loaded:
        problems.append("report.html loads a script (<script src=...>): it must be self-contained")
    if parser.stylesheets:
        problems.append("report.html links a stylesheet: CSS must be inline")
    return problems


def dom_problems(dom: str, expected: list[str]) -> tuple[list[str], int]:
    parser = _Dom()
    parser.feed(dom)
    problems = []
    good = 0
    for alt, src in parser.images:
        prefix = "data:image/png;base64,"
        if not src.startswith(prefix):
            problems.append(f"<img alt={alt!r}> has no embedded PNG (src starts {src[:40]!r})")
            continue
        try:
            data = base64.b64decode(src[len(prefix) :], validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"<img alt={alt!r}> has invalid base64 data")
            continue
        if not data.startswith(PNG_SIGNATURE) or len(data) < 100:
            problems.append(f"<img alt={alt!r}> does not hold a PNG")
            continue
        good += 1
    alts = [alt for alt, _ in parser.images]
    for title in expected:
        if title not in alts:
            problems.append(f"missing plot: {title!r}")
    if len(parser.images) < len(expected):
        problems.append(f"{len(parser.images)} <img> tags for {len(expected)} expected plots")
    if parser.verdict_at is None:
        problems.append("no verdict block (class 'verdict') in the page")
    elif parser.table_at is not None and parser.table_at < parser.verdict_at:
        problems.append("a table comes before the verdict")
    return problems, good


def run_chromium(chromium: str, page: Path, extra: list[str], timeout: float) -> tuple[str, str]:
    """(stdout, stderr) of one headless Chromium on `page`, with a fresh profile; kills its process group on timeout."""
    with tempfile.TemporaryDirectory(prefix="check-report-profile-", ignore_cleanup_errors=True) as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *LOGGING_FLAGS, *extra, page.as_uri()]
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            raise CheckError(f"cannot start {chromium}: {error}") from None
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group this call started, nothing else
            process.communicate()
            raise CheckError(f"{chromium} did not finish within {timeout:g} s") from None
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if process.returncode != 0:
        raise CheckError(f"{chromium} exited with status {process.returncode}: {stderr.strip()[-800:]}")
    return stdout, stderr


def console_errors(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if CONSOLE.search(line)]


def check(
    directory: Path,
    chromium: str = CHROMIUM,
    screenshot: Path | None = None,
    window: str = WINDOW,
    timeout: float = 180.0,
) -> tuple[list[str], Path, dict]:
    """(problems, screenshot path, facts) for the report in `directory`; raises CheckError if it cannot check."""
    directory = directory.resolve()
    page = directory / "report.html"
    results_path = directory / "results.json"
    if not page.exists() or not results_path.exists():
        raise CheckError(f"{directory} has no report.html and results.json: is it an `audit run` output directory?")
    if not (Path(chromium).exists() or which(chromium)):
        raise CheckError(f"{chromium} not found (Debian: apt-get install -y chromium)")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    expected = expected_plots(directory, results)
    problems = meansparse_problems(results) + static_problems(page.read_text(encoding="utf-8"))

    dom, dom_log = run_chromium(chromium, page, ["--dump-dom"], timeout)
    found, good_images = dom_problems(dom, expected)
    problems += found
    screenshot = (screenshot or directory / "report-screenshot.png").resolve()
    if screenshot.exists():
        screenshot.unlink()
    _, shot_log = run_chromium(chromium, page, [f"--screenshot={screenshot}", f"--window-size={window}"], timeout)
    if not screenshot.exists() or screenshot.stat().st_size == 0:
        problems.append(f"Chromium wrote no screenshot to {screenshot}")
    problems += [f"console: {line}" for line in dict.fromkeys(console_errors(dom_log) + console_errors(shot_log))]
    return problems, screenshot, {"expected": expected, "images": good_images}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="an `audit run` output directory (holds report.html)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"the browser binary (default {CHROMIUM})")
    parser.add_argument(
        "--screenshot", type=Path, help="where to write the PNG (default <directory>/report-screenshot.png)"
    )
    parser.add_argument("--window-size", default=WINDOW, help=f"WIDTH,HEIGHT of the screenshot (default {WINDOW})")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per Chromium run (default 180)")
    args = parser.parse_args(argv)
    try:
        problems, screenshot, facts = check(
            args.directory, args.chromium, args.screenshot, args.window_size, args.timeout
        )
    except CheckError as error:
        print(f"check_report_html: cannot check: {error}", file=sys.stderr)
        return 2
    print(f"expected plots ({len(facts['expected'])}): " + ", ".join(facts["expected"]))
    print(f"embedded PNG images in the rendered DOM: {facts['images']}")
    print(f"screenshot: {screenshot}")
    if problems:
        for problem in problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        return 1
    print("OK: report.html renders in Chromium with every expected plot and no console errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
