"""The report: plots drawn from the data the diagnostics really store, a self-contained escaped HTML page, and a
Markdown file that links its PNGs. Fast (no model, no attack); the Chromium check runs only where Chromium is.

The synthetic results below have the shapes of a real `audit run --model demo-standard --meansparse-alpha 0.3`
results.json, trimmed: the `data` keys are exactly those audit/checks/ writes.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from audit.report import render_reports
from audit.report.plots import PLOTS

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "scripts" / "check_report_html.py"
CHROMIUM = Path("/usr/bin/chromium")
ALL_TITLES = [plot.title for plot in PLOTS]
DEAD_ZONE_TITLE = "Dead-zone occupancy per MeanSparse layer"
ATTRIBUTION_TITLE = "Per-layer attribution of the masking"
HOSTILE_MODEL = "<script>alert('x')</script>demo"
IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


def _checker():
    spec = importlib.util.spec_from_file_location("check_report_html", CHECKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finding(
    finding_id: str, status: str, message: str, evidence: dict | None = None, data: dict | None = None
) -> dict:
    return {
        "id": finding_id,
        "status": status,
        "message": message,
        "evidence": evidence or {},
        "anchor": f"docs/findings.md#{finding_id}",
        "data": data or {},
    }


def _profiles(n: int, points: int, sharp: bool) -> list[list[float]]:
    ts = [-2 + 4 * i / (points - 1) for i in range(points)]
    return [[(0.0 if t < 0 and sharp else 10 ** (-3 + 1.5 * t + 0.1 * k)) for t in ts] for k in range(n)]


def _attribution_finding(layers: list[str]) -> dict:
    """`layer-attribution` as its check writes it, from a small made-up measurement (6 samples)."""
    from audit.checks.attribution import judge_attribution

    def robust(k: int) -> list[bool]:
        return [True] * k + [False] * (6 - k)

    measurement = {
        "attack": "apgd-ce@iters=50",
        "n": 6,
        "layers": layers,
        "alphas": [0.3] * len(layers),
        "groups": [{"name": name, "layers": [name]} for name in layers],
        "robust_exact": robust(4),
        "robust_straight_through": robust(1),
        "robust_only": [robust(k) for k in (2, 4, 4, 3, 4)],
        "robust_all_but": [robust(k) for k in (3, 1, 1, 2, 1)],
    }
    (finding,) = judge_attribution(measurement)
    return finding.to_json()


def synthetic_results(meansparse: bool = True, model: str = "demo-standard") -> dict:
    eps = 0.1
    points, surface_points = 21, 11
    axis = [-2 + 4 * i / (surface_points - 1) for i in range(surface_points)]
    findings = [
        _finding(
            "zero-gradients",
            "pass",
            "no sample has an all-zero input gradient (0.00% of entries are zero)",
            {"n": 12, "seed": 1, "zero_sample_count": 1, "zero_element_fraction": 0.0},
            {
                "l2_norms": [2.2e-05, 0.00022, 0.0005, 0.05, 0.5, 1.2, 5.7, 16.7, 0.0, None, 0.01, 0.002],
                "linf_norms": [4.3e-06, 0.0001, 0.0003, 0.01, 0.1, 0.3, 1.05, 2.9, 0.0, None, 0.001, 0.0004],
            },
        ),
        _finding("nonfinite-gradients", "fail", "1 of 12 samples have NaN or Inf in their input gradient"),
        _finding(
            "surrogate-disagreement",
            "pass",
            "median cosine between the exact and the identity (BPDA) input gradient is 0.93",
            {"n": 12, "judged_on": "identity", "median_cosine": 0.93},
            {"cosine_identity": [0.9] * 12, "cosine_smooth": [0.95] * 12},
        ),
        _finding(
            "finite-difference-mismatch",
            "fail",
            "the exact gradient mispredicts the loss change along random directions by a median 98% (step 0.001)",
            {"n": 12, "median_relative_error": 0.98},
            {"relative_error": [0.98] * 12, "finite_difference": [0.1] * 48, "directional_derivative": [0.0] * 48},
        ),
        _finding(
            "loss-landscape",
            "pass",
            "loss landscape is smooth around the inputs (2.9 direction changes per profile, 4% flat steps)",
            {"n": 4, "span_eps": 2.0, "points": points},
            {
                "t_over_eps": [-2 + 4 * i / (points - 1) for i in range(points)],
                "profiles": {
                    "gradient": _profiles(4, points, sharp=True),
                    "random1": _profiles(4, points, sharp=False),
                    "random2": _profiles(4, points, sharp=False),
                },
                "surface": {
                    "axis_over_eps": axis,
                    "directions": ["gradient", "random1"],
                    "loss": [[abs(a) + 0.5 * b * b for b in axis] for a in axis],
                },
            },
        ),
        _finding(
            "blackbox-beats-whitebox",
            "warn",
            "a gradient-free attack succeeds where every exact-gradient attack failed on 1 of 5 paired samples (20.0%)",
            {
                "n": 6,
                "paired": 5,
                "count": 1,
                "indices": [3],
                "p_value": 0.5,
                "challengers": ["square"],
                "reference": ["fgsm", "autoattack-standard/apgd-ce"],
            },
            {
                "index": [0, 1, 2, 3, 4],
                "challenger_broke": [True, True, False, True, False],
                "reference_broke": [True, True, False, False, False],
            },
        ),
        _finding(
            "adaptive-gap",
            "pass",
            "adaptive (BPDA) attacks find nothing the exact-gradient attacks missed",
            {"n": 6},
            {"attacks": ["fgsm", "autoattack-standard"], "accuracy": [0.5, 0.33]},
        ),
        _finding("randomized", "pass", "5 forward passes agree exactly", {"n": 12, "draws": 5}),
        _finding(
            "transfer-beats-whitebox",
            "skipped",
            "skipped: no transfer attack in the suite",
            {"reason": "no transfer attack in the suite"},
        ),
        _finding(
            "eps-sweep",
            "pass",
            "accuracy falls monotonically with eps, to 0% at 4 eps",
            {"n": 12, "seed": 3, "iterations": 20, "eps": [0.0, 0.025, 0.05, 0.1, 0.2, 0.4]},
            {
                "eps": [0.0, 0.025, 0.05, 0.1, 0.2, 0.4],
                "accuracy_exact": [0.9, 0.55, 0.4, 0.3, 0.1, 0.0],
                **({"accuracy_identity": [0.9, 0.3, 0.1, 0.0, 0.0, 0.0]} if meansparse else {}),
            },
        ),
        _finding(
            "attack-convergence",
            "pass",
            "the strongest attacks have converged",
            {"families": {}},
            {
                "curves": {
                    "apgd-ce+bpda-identity": {
                        "attacks": ["apgd-ce+bpda-identity", "apgd-ce+bpda-identity@iters=300"],
                        "budget": [{"iters": 100, "restarts": 1}, {"iters": 300, "restarts": 1}],
                        "worst_case": [0.2, 0.1667],
                    }
                }
            },
        ),
        _finding(
            "binarization-test",
            "pass",
            "apgd-ce passes the binarization test",
            {"attack": "apgd-ce", "success_rate": 1.0, "n_valid": 3},
            {
                "attack": "apgd-ce",
                "samples": [
                    {"valid": True, "clean_logit_gap": -2.0, "adversarial_logit_gap": 0.5, "attack_success": True},
                    {"valid": True, "clean_logit_gap": -1.5, "adversarial_logit_gap": 0.2, "attack_success": True},
                    {"valid": False, "clean_logit_gap": 0.1, "adversarial_logit_gap": 0.3, "attack_success": True},
                ],
            },
        ),
        _finding("finding-with-markup", "warn", "a message with <b>markup</b> & an ampersand"),
    ]
    if meansparse:
        layers = [
            "stem.2.meansparse",
            "block1.act1.meansparse",
            "block1.act2.meansparse",
            "block2.act1.meansparse",
            "block2.act2.meansparse",
        ]
        occupancy = [0.2608, 0.2735, 0.2934, 0.2545, 0.2614]
        findings.insert(
            2,
            _finding(
                "dead-zone-occupancy",
                "warn",
                "26.9% of MeanSparse features (mean over 5 layers; max 29.3% in "
                "block1.act2.meansparse) sit in the dead zone, where the exact gradient is 0",
                {"n": 12, "alphas": [0.3], "mean_occupancy": 0.2687, "per_layer": dict(zip(layers, occupancy))},
                {"layers": layers, "occupancy": occupancy},
            ),
        )
        findings.append(_attribution_finding(layers))
    else:
        findings.insert(
            2,
            _finding(
                "dead-zone-occupancy",
                "skipped",
                "skipped: the model has no MeanSparse layers",
                {"reason": "the model has no MeanSparse layers"},
            ),
        )
        findings.append(
            _finding(
                "layer-attribution", "skipped", "skipped: no MeanSparse layers", {"reason": "no MeanSparse layers"}
            )
        )
    attacks = [
        ("fgsm", 0.5, "exact"),
        ("autoattack-standard", 0.3333, "exact"),
        ("apgd-ce+bpda-identity", 0.1667, "bpda-identity"),
        ("square", 0.5, "none"),
    ]
    return {
        "schema_version": 2,
        "model": model,
        "defense": "MeanSparse (alpha=0.3, 5 layers) in DemoCNN" if meansparse else "Undefended around DemoCNN",
        "dataset": "fashion-mnist",
        "threat_model": {"norm": "Linf", "eps": eps},
        "n_samples": 6,
        "seed": 0,
        "suite": "full",
        "mode": "full",
        "clean_accuracy": 0.8333,
        "attacks": [
            {
                "name": n,
                "robust_accuracy": r,
                "gradient": g,
                "threat_kind": "lp",
                "n_forward": 52.0,
                "n_backward": 52.0,
                "seconds": 1.05,
                "violations": 0,
            }
            for n, r, g in attacks
        ],
        "skipped_attacks": [] if meansparse else [{"name": "bpda-identity", "reason": "no identity surrogate"}],
        "worst_case_robust_accuracy": 0.1667,
        "worst_case": {
            "lp": {"accuracy": 0.1667, "robust": 1, "n": 6, "ci95": [0.0042, 0.6412], "mean_over_draws": 0.1667}
        },
        "findings": findings,
        "verdict": {
            "gradient_masking": "suspected",
            "claim_at_risk": "yes",
            "randomized": False,
            "trustworthy_robust_accuracy": 0.1667,
            "drivers": [{"id": "finite-difference-mismatch", "why": "shattered gradients <i>really</i>"}],
            "summary": "Gradient masking is suspected: 2 of 12 checks failed.",
        },
        "warnings": ["outputs look like <probabilities>"],
        "seconds": 12.5,
        "environment": {"python": "3.11.7", "torch": "2.13.0+cpu", "device": "cpu", "git_commit": None},
    }


# index, label, clean prediction, then success per attack (fgsm, autoattack-standard, apgd-ce+bpda-identity, square)
SAMPLES = [
    (0, 4, 4, 1, 1, 1, 1),
    (1, 1, 1, 0, 1, 1, 1),
    (2, 2, 2, 0, 0, 1, 0),
    (3, 3, 3, 0, 0, 0, 1),  # black-box found what the gradients missed
    (4, 5, 5, 0, 0, 0, 0),
    (5, 7, 2, None, None, None, None),  # misclassified clean: attacks did not run
]


def write_run(directory: Path, results: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results), encoding="utf-8")
    names = [a["name"] for a in results["attacks"]]
    header = ["index", "label", "clean_prediction", "clean_draws_correct"]
    for name in names:
        header += [f"{name}:status", f"{name}:distance", f"{name}:margin"]
    header.append("worst_case_robust:lp")
    with open(directory / "samples.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, label, prediction, *success in SAMPLES:
            row = [index, label, prediction, int(label == prediction)]
            for s in success:
                row += [
                    "not_run:misclassified" if s is None else ("broken" if s else "held"),
                    "" if s is None else 0.1,
                    "" if s is None else 1.0,
                ]
            row.append(int(label == prediction and not any(s for s in success if s)))
            writer.writerow(row)
    return directory


@pytest.fixture(scope="module")
def meansparse_report(tmp_path_factory) -> Path:
    directory = write_run(tmp_path_factory.mktemp("report") / "ms", synthetic_results(model=HOSTILE_MODEL))
    render_reports(directory)
    return directory


def _images(page: str) -> list[tuple[str, str]]:
    out = []
    for tag in IMG.findall(page):
        alt = re.search(r'\balt="([^"]*)"', tag)
        src = re.search(r'\bsrc="([^"]*)"', tag)
        out.append((alt.group(1) if alt else "", src.group(1) if src else ""))
    return out


def test_html_is_self_contained(meansparse_report: Path) -> None:
    page = (meansparse_report / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page


def test_html_embeds_one_png_per_plot(meansparse_report: Path) -> None:
    page = (meansparse_report / "report.html").read_text(encoding="utf-8")
    images = _images(page)
    assert sorted(alt for alt, _ in images) == sorted(ALL_TITLES)  # every plot, once each
    for alt, src in images:
        assert src.startswith("data:image/png;base64,"), alt
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(b"\x89PNG\r\n\x1a\n"), alt
    for plot in PLOTS:
        assert (meansparse_report / plot.filename).stat().st_size > 1000, plot.filename


def test_verdict_comes_before_the_first_table(meansparse_report: Path) -> None:
    page = (meansparse_report / "report.html").read_text(encoding="utf-8")
    verdict = page.index("The reported robust accuracy may be inflated")
    assert verdict < page.index("<table")
    assert page.index("class='verdict") < page.index("<table")


def test_html_escapes_every_stored_string(meansparse_report: Path) -> None:
    page = (meansparse_report / "report.html").read_text(encoding="utf-8")
    assert HOSTILE_MODEL not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;demo" in page
    assert "<b>markup</b>" not in page and "&lt;b&gt;markup&lt;/b&gt; &amp; an ampersand" in page
    assert "<i>really</i>" not in page and "<probabilities>" not in page


def test_markdown_links_every_png(meansparse_report: Path) -> None:
    text = (meansparse_report / "report.md").read_text(encoding="utf-8")
    pngs = sorted(p.name for p in meansparse_report.glob("*.png"))
    assert pngs == sorted(plot.filename for plot in PLOTS)
    for name in pngs:
        assert f"]({name})" in text, name
    for linked in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (meansparse_report / linked).exists(), linked
    assert text.index("The reported robust accuracy may be inflated") < text.index("| attack |")


def test_plots_read_the_diagnostics_keys(tmp_path: Path) -> None:
    """Each plot is drawn from the real `data` keys alone, and only from them (no guessed keys)."""
    from audit.report import plots

    results = synthetic_results()
    samples = plots.read_samples(write_run(tmp_path, results))
    for plot in PLOTS:
        assert plot.draw(results, samples, tmp_path / plot.filename) is not None, plot.filename
    # Remove each finding's data: its plot is no longer drawn (it does not fall back on anything else).
    for finding_id, filename in (
        ("eps-sweep", "eps_sweep.png"),
        ("zero-gradients", "gradient_norms.png"),
        ("loss-landscape", "loss_landscape.png"),
        ("dead-zone-occupancy", "dead_zone.png"),
        ("layer-attribution", "layer_attribution.png"),
    ):
        stripped = json.loads(json.dumps(results))
        next(f for f in stripped["findings"] if f["id"] == finding_id)["data"] = {}
        draw = next(p.draw for p in PLOTS if p.filename == filename)
        assert draw(stripped, samples, tmp_path / "x.png") is None, finding_id


def test_standard_model_has_no_dead_zone_plot_and_stale_pngs_go(tmp_path: Path) -> None:
    directory = write_run(tmp_path / "std", synthetic_results(meansparse=False))
    (directory / "dead_zone.png").write_bytes(b"stale")
    _, html_path = render_reports(directory)
    page = html_path.read_text(encoding="utf-8")
    alts = [alt for alt, _ in _images(page)]
    assert sorted(alts) == sorted(t for t in ALL_TITLES if t not in (DEAD_ZONE_TITLE, ATTRIBUTION_TITLE))
    assert not (directory / "dead_zone.png").exists()
    assert "dead_zone.png" not in (directory / "report.md").read_text(encoding="utf-8")
    assert "no identity surrogate" in page  # skipped attacks are listed


def test_a_malformed_array_costs_one_plot_not_the_report(tmp_path: Path) -> None:
    results = synthetic_results()
    landscape = next(f for f in results["findings"] if f["id"] == "loss-landscape")
    landscape["data"]["profiles"] = {"gradient": "not a list of lists"}
    directory = write_run(tmp_path, results)
    _, html_path = render_reports(directory)
    alts = [alt for alt, _ in _images(html_path.read_text(encoding="utf-8"))]
    assert "Loss landscapes" not in alts and len(alts) == len(ALL_TITLES) - 1


def test_checker_expectations_without_a_browser(meansparse_report: Path, tmp_path: Path) -> None:
    checker = _checker()
    results = json.loads((meansparse_report / "results.json").read_text(encoding="utf-8"))
    assert checker.expected_plots(meansparse_report, results) == ALL_TITLES
    page = (meansparse_report / "report.html").read_text(encoding="utf-8")
    assert checker.static_problems(page) == []
    assert checker.dom_problems(page, ALL_TITLES) == ([], len(ALL_TITLES))
    assert checker.static_problems('<img src="https://example.org/x.png"><script src="a.js"></script>')
    without_dead_zone = re.sub(r"<figure><h3>Dead-zone.*?</figure>", "", page, flags=re.DOTALL)
    problems, _ = checker.dom_problems(without_dead_zone, ALL_TITLES)
    assert any("missing plot" in p and "Dead-zone" in p for p in problems)
    assert (
        checker.console_errors(
            '[1:1:0:INFO:CONSOLE:1] "Uncaught TypeError: x", source: file:///r.html (1)\n'
            "[1:1:0:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n"
        )
        != []
    )
    assert checker.console_errors("[1:1:0:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n") == []
    std = synthetic_results(meansparse=False)
    std["defense"] = "MeanSparse (alpha=0.3, 5 layers) in DemoCNN"  # MeanSparse, yet no dead-zone finding
    assert checker.meansparse_problems(std)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not installed")
def test_report_renders_in_chromium(meansparse_report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [sys.executable, str(CHECKER), str(meansparse_report), "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"screenshot: {shot}" in run.stdout
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    # A report that lost a plot fails the check.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("results.json", "samples.csv"):
        (broken / name).write_bytes((meansparse_report / name).read_bytes())
    page = (meansparse_report / "report.html").read_text(encoding="utf-8")
    (broken / "report.html").write_text(
        re.sub(r"<figure><h3>Dead-zone.*?</figure>", "", page, flags=re.DOTALL), encoding="utf-8"
    )
    run = subprocess.run([sys.executable, str(CHECKER), str(broken)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 1 and "missing plot" in run.stderr, run.stdout + run.stderr
