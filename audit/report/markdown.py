"""report.md: the verdict in plain words first, then numbers, findings and plots (linked PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.report.plots import CAPTIONS
from audit.report.text import (
    ATTRIBUTION_HEADER,
    STATUS_MARK,
    aa_vs_adaptive,
    attribution_rows,
    claim_sentence,
    failure_text,
    fingerprint_rows,
    gain_rows,
    gain_sentence,
    headline,
    interval,
    pct,
    suite_text,
)


def _cell(value: object) -> str:
    """A Markdown table cell: pipes and newlines would break the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(results: dict[str, Any], figures: list[tuple[str, Path]]) -> str:
    lines = [f"# Audit of `{results['model']}`", ""]
    if results.get("defense"):
        lines += [f"_{results['defense']}_", ""]
    lines += [f"**{headline(results)}**", ""]
    for sentence in (gain_sentence(results), claim_sentence(results), aa_vs_adaptive(results)):
        if sentence:
            lines += [sentence, ""]
    if gain_rows(results):
        lines += [
            f"## The gain, decomposed (same images, base = {results['gain']['base']})",
            "",
            "| | robust accuracy (95% interval) |",
            "|---|---|",
        ]
        lines += [f"| {row} | {value} |" for row, value in gain_rows(results)]
        lines.append("")
    lines += _test_time_lines(results.get("test_time"), results)
    verdict = results.get("verdict", {})
    if verdict.get("summary"):
        lines += [verdict["summary"], ""]
    for driver in verdict.get("drivers", []):
        lines.append(f"- **{driver.get('id')}**: {driver.get('why')}")
    tm = results["threat_model"]
    lines += [
        "",
        "## Setting",
        "",
        f"- defense: {results.get('defense', '')}",
        f"- dataset: {results['dataset']}, {results['n_samples']} samples, seed {results['seed']}",
        f"- threat model: {tm['norm']}, eps = {tm['eps']:g}",
        f"- suite: {suite_text(results)}",
        f"- clean accuracy: {pct(results['clean_accuracy'])}",
        f"- worst-case robust accuracy: {pct(results['worst_case_robust_accuracy'])}{interval(results)}",
        f"- gradient masking: {verdict.get('gradient_masking')}; claim at risk: {verdict.get('claim_at_risk')}",
        f"- rule: {results.get('worst_case_rule', '')}",
        *(f"- {key}: {value}" for key, value in fingerprint_rows(results)),
        "",
    ]
    for warning in results.get("warnings", []):
        lines.append(f"> warning: {warning}")
    for failed in results.get("failed_batches", []):
        lines.append(f"> not run: {failure_text(failed)}")
    lines += [
        "## Attacks",
        "",
        "| attack | gradient | ran on | broke | robust accuracy alone (95% interval) | forward | backward | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for a in results.get("attacks", []):
        alone = (
            "n/a (ran on survivors only)"
            if a.get("robust") is None
            else (f"{pct(a['robust']['accuracy'])} ({pct(a['robust']['ci95'][0])} - {pct(a['robust']['ci95'][1])})")
        )
        lines.append(
            f"| {_cell(a['name'])} | {a.get('gradient', '')} | {a.get('ran', '')} | {a.get('broken', '')} | "
            f"{alone} | {a['n_forward']:.0f} | {a['n_backward']:.0f} | {a['seconds']:.1f} |"
        )
    for kind, case in results.get("worst_case", {}).items():
        lines.append(
            f"| **worst case ({kind})** | | | | **{pct(case['accuracy'])}** ({pct(case['ci95'][0])} - "
            f"{pct(case['ci95'][1])}) | | | |"
        )
    for skipped in results.get("skipped_attacks", []):
        lines.append(f"\n- skipped {skipped['name']}: {skipped['reason']}")
    planned = [a for a in results.get("attacks", []) if a.get("why")]
    if planned:
        lines += [
            "",
            "<details><summary>Why each attack is in the plan</summary>",
            "",
            *(f"- `{a['name']}`: {a['why']}" for a in planned),
            "",
            "</details>",
        ]
    lines += ["", "## Findings", "", "| status | finding | message |", "|---|---|---|"]
    for f in results.get("findings", []):
        mark = STATUS_MARK.get(f["status"], f["status"])
        lines.append(f"| {mark} | [{f['id']}]({f.get('anchor', '')}) | {_cell(f['message'])} |")
    attribution = attribution_rows(results)
    if attribution:
        caption, rows = attribution
        lines += [
            "",
            "## Per-layer attribution of the masking",
            "",
            caption,
            "",
            "| " + " | ".join(ATTRIBUTION_HEADER) + " |",
            "|---" * len(ATTRIBUTION_HEADER) + "|",
        ]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    lines += ["", "## Plots", ""]
    for title, path in figures:
        lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
        if CAPTIONS.get(title):
            lines += [CAPTIONS[title], ""]
    env = results.get("environment", {})
    lines += ["## Environment", "", ", ".join(f"{k} {v}" for k, v in env.items() if v), ""]
    return "\n".join(lines)


def _test_time_lines(test_time: dict[str, Any] | None, results: dict[str, Any]) -> list[str]:
    """A test-time defense: its kind, the static model inside, what applies and what the black box spent."""
    if not test_time:
        return []
    lines = [
        f"## Defense kind: {test_time['kind']}",
        "",
        f"The forward calls autograd {test_time['autograd_calls']} times and costs about "
        f"{test_time['passes_per_forward']:g} passes of its static model "
        f"(`{test_time.get('static_model') or 'not found'}`). What applies (Croce et al., ICML 2022): the "
        f"standard attacks on the static model, transferred (`transfer-base:`), and the full gradient through "
        f"the unrolled steps (`+unrolled`); ran: "
        + ", ".join(f"`{a['name']}`" for a in results.get("attacks", []))
        + ".",
        "",
    ]
    for label, spend in test_time.get("black_box", {}).items():
        lines.append(
            f"- `{label}`: queried {spend['queried']} of the {spend['ran_on']} samples it ran on "
            f"({spend['queries']:.0f} queries); {spend['not_queried']} not queried (its probe broke none)"
        )
    return lines + [""]
