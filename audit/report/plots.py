"""Plots for the report, drawn only from stored results (results.json, samples.csv). PNG files, matplotlib Agg.

Each plot reads the `data` its finding stores (see audit/checks/):

| plot | finding | `data` keys |
|---|---|---|
| robust accuracy per attack | (results.attacks) | `name`, `robust_accuracy` |
| accuracy against eps | `eps-sweep` | `eps`, `accuracy_exact`, `accuracy_<surrogate>` (e.g. `accuracy_identity`) |
| gradient norms | `zero-gradients` | `l2_norms`, `linf_norms` (None where non-finite) |
| loss landscapes | `loss-landscape` | `t_over_eps`, `profiles` {direction: n x points}, |
|  |  | `surface` {`axis_over_eps`, `directions`, `loss`} |
| black-box vs white-box | (samples.csv) | `<attack>:success` columns |
| dead-zone occupancy | `dead-zone-occupancy` | `layers`, `occupancy` (fractions) |
| per-layer attribution | `layer-attribution` | `rows` (`group`, `share_points`, `kept_points`), `gap_points`, |
|  |  | `residual_points`, `n`, `attack` |

A plot whose data is absent (a skipped check, a defense without MeanSparse layers) is not drawn; a plot that
fails to draw is logged and left out, so one bad array never costs the whole report.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after matplotlib.use('Agg')
from matplotlib.artist import Artist  # noqa: E402 - after matplotlib.use
from matplotlib.patches import Patch  # noqa: E402 - after matplotlib.use('Agg')
from matplotlib.ticker import NullFormatter  # noqa: E402 - after matplotlib.use("Agg")

from audit.report.text import attack_kind  # noqa: E402 - after matplotlib.use('Agg')

log = logging.getLogger(__name__)

Figure = Callable[[dict[str, Any], list[dict[str, Any]], Path], "Path | None"]

DPI = 100
KIND_COLORS = {
    "exact": "#4c72b0",
    "adaptive": "#c44e52",
    "transfer": "#dd8452",
    "blackbox": "#55a868",
    "other": "#8c8c8c",
}
KIND_LABELS = {
    "exact": "exact-gradient white-box",
    "adaptive": "adaptive (BPDA, MeanSparse-specific)",
    "transfer": "transfer",
    "blackbox": "black-box",
    "other": "other threat model",
}
BROKEN, HELD = "#c44e52", "#dfe6ef"


def _save(fig: Any, path: Path) -> Path:  # a matplotlib Figure
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def read_samples(directory: Path) -> list[dict[str, Any]]:
    path = directory / "samples.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _finding(results: dict[str, Any], finding_id: str) -> dict[str, Any]:
    for finding in results.get("findings", []):
        if finding.get("id") == finding_id:
            return finding
    return {}


def _finding_data(results: dict[str, Any], finding_id: str) -> dict[str, Any]:
    return _finding(results, finding_id).get("data") or {}


def _number(value: Any) -> float:  # JSON number or None (non-finite values are stored as None)
    return float("nan") if value is None else float(value)


def _threat(results: dict[str, Any]) -> str:
    tm = results.get("threat_model", {})
    return f"{tm.get('norm', '?')} eps={tm.get('eps', float('nan')):g}"


def robust_accuracy_per_attack(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    attacks = results.get("attacks", [])
    if not attacks:
        return None
    # In cascade mode an attack that ran only on the survivors has no accuracy of its own: it is left out.
    attacks = [a for a in attacks if a.get("robust_accuracy") is not None]
    names = [a["name"] for a in attacks] + ["worst case (per sample)"]
    values = [100 * a["robust_accuracy"] for a in attacks] + [100 * results["worst_case_robust_accuracy"]]
    kinds = [attack_kind(a) for a in attacks]
    colors = [KIND_COLORS[k] for k in kinds] + ["#222222"]
    fig, ax = plt.subplots(figsize=(8.5, 0.27 * len(names) + 1.5))
    rows = list(range(len(names)))[::-1]  # first attack on top
    ax.barh(rows, values, color=colors, height=0.7)
    ax.set_yticks(rows, names, fontsize=8)
    for row, value in zip(rows, values):
        ax.text(value + 1, row, f"{value:.1f}%", va="center", fontsize=7.5)
    handles: list[Artist] = [Patch(color=KIND_COLORS[k], label=KIND_LABELS[k]) for k in KIND_COLORS if k in kinds]
    handles.append(Patch(color="#222222", label="worst case over all attacks"))
    handles.append(ax.axvline(100 * results["clean_accuracy"], color="#55a868", ls="--", label="clean accuracy"))
    if results.get("claim"):
        handles.append(
            ax.axvline(100 * results["claim"]["claimed_robust_accuracy"], color="#dd8452", ls=":", label="claimed")
        )
    ax.set_xlabel("robust accuracy (%)")
    ax.set_xlim(0, 105)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_title(f"Robust accuracy per attack ({_threat(results)}, n={results.get('n_samples')})", fontsize=10)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False)
    return _save(fig, path)


def blackbox_vs_whitebox(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    """Per sample on which both sides have an outcome: did any exact-gradient white-box attack succeed, did a
    gradient-free one (Square, standalone or AutoAttack's part)? Read from the `blackbox-beats-whitebox` finding,
    so samples an attack never ran on (cascade mode, AutoAttack's Square after a gradient part broke the point)
    are left out instead of being drawn as failures.

    The interesting cells are samples a black-box attack broke while every gradient attack failed: the
    gradients are hiding adversarial examples that exist (`blackbox-beats-whitebox`).
    """
    finding = _finding(results, "blackbox-beats-whitebox")
    data = finding.get("data") or {}
    if not data.get("index"):
        return None
    white, black = finding["evidence"]["reference"], finding["evidence"]["challengers"]
    rows = list(zip(data["reference_broke"], data["challenger_broke"]))
    if not rows:
        return None
    counts = {(w, b): sum(1 for r in rows if r == (w, b)) for w in (False, True) for b in (False, True)}
    fig, (matrix, strip) = plt.subplots(1, 2, figsize=(9.5, 3.0), gridspec_kw={"width_ratios": [1, 1.6]})
    grid = [[counts[(False, False)], counts[(False, True)]], [counts[(True, False)], counts[(True, True)]]]
    matrix.imshow(grid, cmap="Blues", vmin=0, vmax=max(1, max(map(max, grid))) * 1.3)
    for i in range(2):
        for j in range(2):
            red = (i, j) == (0, 1) and grid[i][j] > 0
            matrix.text(
                j,
                i,
                str(grid[i][j]),
                ha="center",
                va="center",
                fontsize=14,
                color=BROKEN if red else "black",
                fontweight="bold" if red else "normal",
            )
    matrix.set_xticks([0, 1], ["black-box\nfailed", "black-box\nsucceeded"], fontsize=8)
    matrix.set_yticks([0, 1], ["white-box\nfailed", "white-box\nsucceeded"], fontsize=8)
    matrix.set_title(f"{len(rows)} paired samples\n(top right: black-box found what gradients missed)", fontsize=8.5)
    # The per-sample strip: one column per clean-correct sample, sorted so the disagreements stand out.
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], not rows[i][1]))
    image = [[1.0 if rows[i][0] else 0.0 for i in order], [1.0 if rows[i][1] else 0.0 for i in order]]
    strip.imshow(
        image,
        aspect="auto",
        cmap=matplotlib.colors.ListedColormap([HELD, BROKEN]),
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    strip.set_yticks([0, 1], [f"white-box\n({len(white)} attacks)", f"black-box\n({len(black)} attacks)"], fontsize=8)
    strip.set_xlabel("paired samples (sorted)", fontsize=8)
    strip.tick_params(axis="x", labelsize=7)
    strip.legend(
        handles=[Patch(color=BROKEN, label="attack succeeded"), Patch(color=HELD, label="sample held")],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
        ncol=2,
        fontsize=7.5,
        frameon=False,
    )
    note = " (cascade mode: later attacks ran only on survivors)" if results.get("mode") == "cascade" else ""
    strip.set_title("Per sample: white-box (exact gradients) vs black-box" + note, fontsize=8.5)
    return _save(fig, path)


def _surrogate_label(name: str) -> str:
    return "exact gradient" if name == "exact" else f"BPDA ({name} surrogate)"


def eps_sweep(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    data = _finding_data(results, "eps-sweep")
    eps = data.get("eps")
    curves = {
        key[len("accuracy_") :]: values
        for key, values in data.items()
        if key.startswith("accuracy_") and isinstance(values, list)
    }
    if not eps or not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    # The sweep is geometric (0, eps/4 ... 4 eps): evenly spaced positions keep the small eps readable.
    positions = list(range(len(eps)))
    styles = [("o", "-", 2.2, 8), ("s", "--", 1.6, 6), ("^", ":", 1.6, 6), ("D", "-.", 1.4, 5)]
    for (name, values), (marker, line, width, size) in zip(
        sorted(curves.items(), key=lambda c: c[0] != "exact"), styles * 4
    ):
        ax.plot(
            positions[: len(values)],
            [100 * _number(v) for v in values],
            marker=marker,
            ls=line,
            lw=width,
            ms=size,
            mfc="none" if name != "exact" else None,
            label=_surrogate_label(name),
        )
    audited = float(results["threat_model"]["eps"])
    at = next((i for i, e in enumerate(eps) if math.isclose(e, audited, rel_tol=1e-6)), None)
    if at is None:  # between two sweep points: place it by linear interpolation
        at = next(
            (
                i - 1 + (audited - eps[i - 1]) / (eps[i] - eps[i - 1])
                for i in range(1, len(eps))
                if eps[i - 1] <= audited <= eps[i] and eps[i] > eps[i - 1]
            ),
            None,
        )
    if at is not None:
        ax.axvline(at, color="gray", ls=":", label="audited eps")
    labels = [f"{e:.3g}" + (f"\n({e / audited:g} eps)" if audited > 0 else "") for e in eps]
    ax.set_xticks(positions, labels, fontsize=8)
    ax.set_xlabel("eps (sweep points evenly spaced)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-3, 103)
    evidence = _finding(results, "eps-sweep").get("evidence") or {}
    what = "exact vs BPDA gradients" if len(curves) > 1 else "exact gradients (no BPDA surrogate offered)"
    ax.set_title(
        f"Accuracy against eps: {what}\nAPGD-CE, {evidence.get('iterations', '?')} iterations, "
        f"n={evidence.get('n', '?')}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _norm_histogram(ax: Any, values: list[Any], label: str) -> None:  # matplotlib Axes
    numbers = [_number(v) for v in values]
    finite = [v for v in numbers if math.isfinite(v)]
    zeros = sum(1 for v in finite if v == 0)
    positive = [v for v in finite if v > 0]
    bad = len(numbers) - len(finite)
    if positive:
        low, high = min(positive), max(positive)
        if high / low < 10:
            low, high = low / 3, high * 3
        edges = [low * (high / low) ** (i / 30) for i in range(31)]
        ax.hist(positive, bins=edges, color="#4c72b0")
        ax.set_xscale("log")
    notes = []
    if zeros:
        notes.append(f"{zeros} exactly zero")
    if bad:
        notes.append(f"{bad} NaN/Inf")
    ax.text(
        0.02,
        0.97,
        f"n={len(numbers)}" + "".join(f"\n{n}" for n in notes),
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        color=BROKEN if notes else "black",
    )
    ax.set_xlabel(f"{label} norm of the input gradient (log scale)")
    ax.set_ylabel("samples")


def gradient_norms(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    data = _finding_data(results, "zero-gradients")
    panels = [(key, label) for key, label in (("l2_norms", "L2"), ("linf_norms", "Linf")) if data.get(key)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        _norm_histogram(ax, data[key], label)
        ax.set_title(f"{label} norms (exact CE gradient, clean inputs)", fontsize=9)
    return _save(fig, path)


def loss_landscape(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    data = _finding_data(results, "loss-landscape")
    steps, profiles = data.get("t_over_eps"), data.get("profiles") or {}
    if not steps or not profiles:
        return None
    surface = data.get("surface") or {}
    loss = surface.get("loss")
    columns = max(len(profiles), 2)
    fig = plt.figure(figsize=(3.3 * columns, 7.0 if loss else 3.6))
    grid = fig.add_gridspec(2 if loss else 1, columns, height_ratios=[1, 1.15] if loss else [1])
    values = [_number(v) for rows in profiles.values() for row in rows for v in row]
    positive = [v for v in values if math.isfinite(v) and v > 0]
    floor = max(min(positive), 1e-6) if positive else 1e-6
    first = None
    for k, (name, rows) in enumerate(profiles.items()):
        ax = fig.add_subplot(grid[0, k], sharey=first)
        first = first or ax
        for row in rows:
            ax.plot(steps, [max(_number(v), floor) for v in row], lw=1, alpha=0.75)
        ax.axvline(0, color="gray", lw=0.8, ls=":")
        for edge in (-1, 1):
            ax.axvline(edge, color="gray", lw=0.6, ls="--")
        ax.set_yscale("log")
        ax.set_title(f"along {'the gradient sign' if name == 'gradient' else name}", fontsize=9)
        ax.set_xlabel("step (units of eps)", fontsize=8)
        if k == 0:
            ax.set_ylabel("CE loss (log)", fontsize=8)
        ax.tick_params(labelsize=7)
    if loss:
        # Bottom left: the median profile per direction on one axis, so the directions compare at a glance.
        ax = fig.add_subplot(grid[1, 0])
        for name, rows in profiles.items():
            medians = []
            for i in range(len(steps)):
                column = sorted(v for v in (_number(row[i]) for row in rows) if math.isfinite(v))
                medians.append(max(column[len(column) // 2], floor) if column else float("nan"))
            ax.plot(steps, medians, lw=2, label="gradient sign" if name == "gradient" else name)
        ax.set_yscale("log")
        ax.set_title("median over inputs", fontsize=9)
        ax.set_xlabel("step (units of eps)", fontsize=8)
        ax.set_ylabel("CE loss (log)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        axis = surface.get("axis_over_eps") or list(range(len(loss)))
        directions = surface.get("directions") or ["direction 1", "direction 2"]
        ax = fig.add_subplot(grid[1, 1:])
        image = ax.imshow(
            [[_number(v) for v in row] for row in loss],
            origin="lower",
            cmap="viridis",
            extent=(axis[0], axis[-1], axis[0], axis[-1]),
            aspect="equal",
        )
        ax.plot([0], [0], marker="+", color="white", ms=12, mew=2)
        # surface[i][j] is the loss at x + axis[i] * directions[0] + axis[j] * directions[1].
        ax.set_ylabel(f"along {directions[0]} (units of eps)", fontsize=8)
        ax.set_xlabel(f"along {directions[1]} (units of eps)", fontsize=8)
        ax.set_title("2-D CE loss surface around one clean input (+)", fontsize=9)
        ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=ax, shrink=0.9, label="CE loss")
    evidence = _finding(results, "loss-landscape").get("evidence") or {}
    fig.suptitle(
        f"Loss landscapes around {evidence.get('n', len(next(iter(profiles.values()))))} clean inputs "
        f"(one line per input; dashed: +-eps)",
        fontsize=10,
    )
    return _save(fig, path)


def dead_zone_occupancy(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    data = _finding_data(results, "dead-zone-occupancy")
    layers, occupancy = data.get("layers"), data.get("occupancy")
    if not layers or not occupancy:
        return None
    percent = [100 * _number(f) for f in occupancy]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(layers) + 1.7))
    rows = list(range(len(layers)))[::-1]  # the first layer (closest to the input) on top
    ax.barh(rows, percent, color="#8172b2", height=0.7)
    ax.set_yticks(rows, layers, fontsize=8)
    for row, value in zip(rows, percent):
        ax.text(value + 0.5, row, f"{value:.1f}%", va="center", fontsize=7.5)
    try:  # the thresholds of the check, when its module imports
        from audit.checks.gradients import DEAD_ZONE_FAIL, DEAD_ZONE_WARN
    except ImportError:  # pragma: no cover - the report still draws the bars
        DEAD_ZONE_WARN = DEAD_ZONE_FAIL = None  # type: ignore[assignment]  # no thresholds to draw
    if DEAD_ZONE_WARN is not None:
        ax.axvline(100 * DEAD_ZONE_WARN, color="#dd8452", ls="--", lw=1, label=f"warn ({100 * DEAD_ZONE_WARN:g}%)")
        ax.axvline(100 * DEAD_ZONE_FAIL, color=BROKEN, ls="--", lw=1, label=f"fail ({100 * DEAD_ZONE_FAIL:g}%)")
        ax.legend(fontsize=7.5, loc="lower right")
    ax.set_xlim(0, max(55.0, 1.15 * max(percent)))
    ax.set_xlabel("features inside the dead zone (%): their exact gradient is 0")
    alphas = (_finding(results, "dead-zone-occupancy").get("evidence") or {}).get("alphas")
    alpha = f" (alpha={', '.join(f'{a:g}' for a in alphas)})" if alphas else ""
    ax.set_title(f"MeanSparse dead-zone occupancy per layer{alpha}", fontsize=10)
    return _save(fig, path)


def binarization(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    """Per binarized point: the logit gap at the clean point and at the attack's point (above 0: the attack found the
    adversarial example that provably exists)."""
    data = _finding_data(results, "binarization-test")
    rows = [r for r in data.get("samples", []) if r.get("valid")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = range(len(rows))
    ax.scatter(xs, [_number(r["clean_logit_gap"]) for r in rows], marker="o", color=HELD, label="clean point")
    ax.scatter(
        xs,
        [_number(r["adversarial_logit_gap"]) for r in rows],
        marker="x",
        c=["#55a868" if r["attack_success"] else BROKEN for r in rows],
        label=f"after {data.get('attack')}",
    )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("binarized sample")
    ax.set_ylabel("logit gap (boundary - inner)")
    ax.set_title("Binarization test: above 0 = the guaranteed adversarial example was found", fontsize=10)
    ax.legend(loc="best", fontsize=7.5)
    return _save(fig, path)


def strength_curves(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    """Worst-case robust accuracy as the strongest attack family gets more budget: one panel per budget kind
    (iterations, restarts, queries), since their scales have nothing in common; the y axis is shared."""
    curves = _finding_data(results, "attack-convergence").get("curves") or {}
    if not curves:
        return None
    families = _finding(results, "attack-convergence").get("evidence", {}).get("families", {})
    panels: dict[str, list[tuple[str, list[float], list[float]]]] = {}
    for name, curve in curves.items():
        # The budget that grows along the curve: stored with it (older results: the key whose value differs).
        keys = [k for k in curve["budget"][0] if len({b.get(k) for b in curve["budget"]}) > 1] or ["budget"]
        key = curve.get("key") or keys[0]
        xs = [_number(b.get(key, i + 1)) for i, b in enumerate(curve["budget"])]
        label = name.rpartition("@")[0] if name.endswith("@" + key) else name
        if name in families:  # what the check read off the top of this curve
            label += f"\ntop broke {families[name]['only_largest_broke']} more (p = {families[name]['p_value']:.2g})"
        panels.setdefault(key, []).append((label, xs, [100 * _number(v) for v in curve["worst_case"]]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 0.8, 3.4), sharey=True, squeeze=False)
    for ax, (key, lines) in zip(axes[0], panels.items()):
        for label, xs, ys in lines:
            ax.plot(xs, ys, marker="o", label=label)
        budgets = sorted({x for _, xs, _ in lines for x in xs})
        if budgets[-1] >= 100:
            ax.set_xscale("log")
        # Ticks at the budgets that ran, in plain numbers (log-scale minor labels overlap: 2x10^4 3x10^4 ...).
        ax.set_xticks(budgets, labels=[f"{x:g}" for x in budgets])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(key)
        ax.legend(fontsize=6.5, loc="best")
    axes[0][0].set_ylabel("worst-case robust accuracy (%)")
    fig.suptitle(
        "Attack strength curves: converged when the top of each curve breaks no significant number more", fontsize=9
    )
    return _save(fig, path)


def layer_attribution(results: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> Path | None:
    """Per MeanSparse layer: the points of the exact-vs-straight-through gap it closes alone (its share), the
    residual (the layers together), and the masking it keeps when it is the only exact layer."""
    data = _finding_data(results, "layer-attribution")
    rows = data.get("rows") or []
    if not rows:
        return None
    names = [r["group"] for r in rows] + ["residual (layers together)"]
    shares = [_number(r["share_points"]) for r in rows] + [_number(data.get("residual_points"))]
    kept = [_number(r["kept_points"]) for r in rows] + [float("nan")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.8))
    ys = list(range(len(names)))[::-1]  # the first layer on top
    ax.barh(
        [y + 0.18 for y in ys],
        shares,
        height=0.36,
        color=["#c44e52"] * len(rows) + ["#8c8c8c"],
        label="share: gap closed when it alone is straight-through",
    )
    ax.barh(
        [y - 0.18 for y in ys], kept, height=0.36, color="#4c72b0", label="kept: masking left when it alone is exact"
    )
    ax.set_yticks(ys, names, fontsize=8)
    for y, value in zip(ys, shares):
        ax.text(value, y + 0.18, f" {value:+.1f}", va="center", fontsize=7.5)
    ax.axvline(0.0, color="black", lw=0.8)
    gap = _number(data.get("gap_points"))
    ax.axvline(gap, color="#dd8452", ls="--", lw=1, label=f"whole gap ({gap:+.1f} points)")
    ax.set_xlabel("robust-accuracy points (exact-gradient minus straight-through APGD-CE)")
    ax.set_title(
        f"Per-layer attribution of the gradient masking ({data.get('attack')}, n={data.get('n')})", fontsize=10
    )
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


@dataclass(frozen=True)
class Plot:
    filename: str
    title: str
    draw: Figure
    caption: str


PLOTS: tuple[Plot, ...] = (
    Plot(
        "robust_accuracy.png",
        "Robust accuracy per attack",
        robust_accuracy_per_attack,
        "Each bar is one attack alone; the black bar counts a sample as robust only if no attack broke it. "
        "Red bars are adaptive (BPDA) attacks: when they go lower than the exact-gradient ones, the gradients "
        "were hiding adversarial examples.",
    ),
    Plot(
        "eps_sweep.png",
        "Accuracy against eps, exact and BPDA gradients",
        eps_sweep,
        "Accuracy must fall as eps grows, towards 0 at large eps. A curve that stays high, rises, or an exact "
        "curve above the BPDA one are masking symptoms.",
    ),
    Plot(
        "gradient_norms.png",
        "Gradient-norm histograms",
        gradient_norms,
        "Norms of the exact input gradient of the CE loss on clean inputs. Exact zeros or NaN/Inf mean a "
        "gradient attack cannot move those samples.",
    ),
    Plot(
        "loss_landscape.png",
        "Loss landscapes",
        loss_landscape,
        "CE loss along the gradient sign and random directions. Healthy: smooth, rising along the gradient. "
        "Plateaus (flat steps) or jagged profiles point to quantized, saturated or shattered gradients.",
    ),
    Plot(
        "blackbox_vs_whitebox.png",
        "Black-box against white-box, per sample",
        blackbox_vs_whitebox,
        "Samples a gradient-free attack broke while every exact-gradient attack failed (top right) mean the "
        "gradients are misleading.",
    ),
    Plot(
        "strength_curves.png",
        "Attack strength curves",
        strength_curves,
        "The worst case over the suite as the strongest attack gets more iterations, restarts or queries. A curve "
        "still falling at its right end means the attack had not converged: the verdict is then inconclusive.",
    ),
    Plot(
        "binarization.png",
        "Binarization test, per point",
        binarization,
        "Each point has an adversarial example inside eps by construction (Zimmermann et al. 2022). Red crosses "
        "below 0: the attack missed an example that exists, so it is too weak for this defense.",
    ),
    Plot(
        "dead_zone.png",
        "Dead-zone occupancy per MeanSparse layer",
        dead_zone_occupancy,
        "Fraction of the features each MeanSparse layer snaps to its mean: the exact gradient is zero there, "
        "so exact-gradient attacks are partly blind and BPDA is needed.",
    ),
)
PLOTS += (
    Plot(
        "layer_attribution.png",
        "Per-layer attribution of the masking",
        layer_attribution,
        "Red: how many points of the gap between exact-gradient and straight-through (BPDA) APGD-CE making that "
        "layer alone straight-through closes; grey: the residual, what the layers do only together (the red and "
        "grey bars add up to the gap). Blue: the masking a layer keeps when it alone takes exact gradients.",
    ),
)
CAPTIONS: dict[str, str] = {p.title: p.caption for p in PLOTS}


def draw_all(results: dict[str, Any], directory: Path) -> list[tuple[str, Path]]:
    """Draw every plot the stored results support; returns (title, png path) in report order.

    A PNG from an earlier rendering whose plot is not drawn now is removed, so the directory never shows a plot
    the report does not.
    """
    directory = Path(directory)
    samples = read_samples(directory)
    drawn = []
    for plot in PLOTS:
        target = directory / plot.filename
        try:
            path = plot.draw(results, samples, target)
        except Exception as error:  # noqa: BLE001 - one malformed array must not lose the whole report
            log.warning("could not draw %s: %s: %s", plot.filename, type(error).__name__, error, exc_info=True)
            plt.close("all")
            path = None
        if path is not None:
            drawn.append((plot.title, path))
        elif target.exists():
            target.unlink()
    return drawn
