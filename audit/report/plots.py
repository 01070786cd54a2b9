"""Plots for the report, drawn only from stored results (results.json, samples.csv). PNG files, matplotlib Agg."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Figure = Callable[[dict, list[dict], Path], Path | None]


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_samples(directory: Path) -> list[dict]:
    path = directory / "samples.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def robust_accuracy_per_attack(results: dict, samples: list[dict], path: Path) -> Path | None:
    attacks = results.get("attacks", [])
    if not attacks:
        return None
    names = [a["name"] for a in attacks] + ["worst case"]
    values = [100 * a["robust_accuracy"] for a in attacks] + [100 * results["worst_case_robust_accuracy"]]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    colors = ["#c44e52" if "bpda" in n or n.startswith("transfer") else "#4c72b0" for n in names[:-1]] + ["#222222"]
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    ax.axvline(100 * results["clean_accuracy"], color="#55a868", ls="--", label="clean accuracy")
    if "claim" in results:
        ax.axvline(100 * results["claim"]["claimed_robust_accuracy"], color="#dd8452", ls=":", label="claimed")
    ax.set_xlabel("robust accuracy (%)")
    ax.set_xlim(0, 100)
    ax.set_title(f"Robust accuracy per attack ({results['threat_model']['norm']} eps={results['threat_model']['eps']:g})")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def blackbox_vs_whitebox(results: dict, samples: list[dict], path: Path) -> Path | None:
    """Per sample: did the best white-box attack succeed, did Square? Off-diagonal cells are the story."""
    if not samples:
        return None
    columns = [c[: -len(":success")] for c in samples[0] if c.endswith(":success")]
    black = [c for c in columns if c.startswith("square")]
    white = [c for c in columns if c.startswith(("apgd", "autoattack", "fgsm", "fab")) and "bpda" not in c]
    if not black or not white:
        return None

    def any_success(row: dict, names: list[str]) -> bool:
        return any(row.get(f"{n}:success") == "1" for n in names)

    counts = {(w, b): 0 for w in (False, True) for b in (False, True)}
    for row in samples:
        if row.get("clean_prediction") != row.get("label"):
            continue
        counts[(any_success(row, white), any_success(row, black))] += 1
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    grid = [[counts[(False, False)], counts[(False, True)]], [counts[(True, False)], counts[(True, True)]]]
    ax.imshow(grid, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(grid[i][j]), ha="center", va="center", fontsize=14,
                    color="#c44e52" if (i, j) == (0, 1) else "black")
    ax.set_xticks([0, 1], ["Square failed", "Square succeeded"])
    ax.set_yticks([0, 1], ["white-box failed", "white-box succeeded"])
    ax.set_title("Black-box vs white-box, per sample\n(red: black-box found what gradients missed)", fontsize=9)
    return _save(fig, path)


def _finding_data(results: dict, finding_id: str) -> dict:
    for finding in results.get("findings", []):
        if finding.get("id") == finding_id:
            return finding.get("data") or {}
    return {}


def eps_sweep(results: dict, samples: list[dict], path: Path) -> Path | None:
    data = _finding_data(results, "eps-sweep")
    eps, curves = data.get("eps"), data.get("curves") or {}
    if not eps or not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, values in curves.items():
        ax.plot(eps, [100 * v for v in values], marker="o", label=name)
    ax.axvline(results["threat_model"]["eps"], color="gray", ls=":", label="audited eps")
    ax.set_xlabel("eps")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy against eps: exact vs BPDA gradients")
    ax.legend(fontsize=8)
    return _save(fig, path)


def gradient_norms(results: dict, samples: list[dict], path: Path) -> Path | None:
    data = _finding_data(results, "zero-gradients")
    norms = data.get("norms") or data.get("gradient_norms")
    if not norms:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.hist([max(v, 1e-30) for v in norms], bins=30, color="#4c72b0")
    ax.set_xscale("log")
    ax.set_xlabel("input-gradient L2 norm (log scale; exact zeros shown at 1e-30)")
    ax.set_ylabel("samples")
    ax.set_title("Gradient norms of the loss at clean inputs")
    return _save(fig, path)


def loss_landscape(results: dict, samples: list[dict], path: Path) -> Path | None:
    data = _finding_data(results, "loss-landscape")
    steps, profiles = data.get("steps"), data.get("profiles") or {}
    if not steps or not profiles:
        return None
    surface = data.get("surface")
    fig, axes = plt.subplots(1, 2 if surface else 1, figsize=(10 if surface else 5.5, 3.8))
    axes = axes if surface else [axes]
    for name, values in profiles.items():
        axes[0].plot(steps, values, label=name)
    axes[0].set_xlabel("step along direction (in units of eps)")
    axes[0].set_ylabel("loss")
    axes[0].set_title("1-D loss profiles")
    axes[0].legend(fontsize=7)
    if surface:
        image = axes[1].imshow(surface, origin="lower", cmap="viridis", aspect="auto")
        axes[1].set_title("2-D loss surface (gradient sign x random)")
        fig.colorbar(image, ax=axes[1])
    return _save(fig, path)


def dead_zone_occupancy(results: dict, samples: list[dict], path: Path) -> Path | None:
    data = _finding_data(results, "dead-zone-occupancy")
    layers, fractions = data.get("layers"), data.get("fractions")
    if not layers or not fractions:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(layers) + 1.5))
    ax.barh(layers[::-1], [100 * f for f in fractions[::-1]], color="#8172b2")
    ax.set_xlabel("elements inside the dead zone (%) - their gradient is exactly 0")
    ax.set_title("MeanSparse dead-zone occupancy per layer")
    return _save(fig, path)


FIGURES: dict[str, tuple[str, Figure]] = {
    "robust_accuracy.png": ("Robust accuracy per attack", robust_accuracy_per_attack),
    "eps_sweep.png": ("Accuracy against eps, exact and BPDA gradients", eps_sweep),
    "gradient_norms.png": ("Gradient-norm histogram", gradient_norms),
    "loss_landscape.png": ("Loss landscapes", loss_landscape),
    "blackbox_vs_whitebox.png": ("Black-box against white-box, per sample", blackbox_vs_whitebox),
    "dead_zone.png": ("Dead-zone occupancy per MeanSparse layer", dead_zone_occupancy),
}


def draw_all(results: dict, directory: Path) -> list[tuple[str, Path]]:
    samples = read_samples(directory)
    drawn = []
    for filename, (title, draw) in FIGURES.items():
        path = draw(results, samples, directory / filename)
        if path is not None:
            drawn.append((title, path))
    return drawn
