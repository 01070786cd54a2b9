"""report.html: self-contained (plots embedded as base64 PNG, inline CSS, no scripts, no external requests).

Order: the verdict in plain words, the key numbers, then the attack table, the findings, the plots, the setting
and the environment. Every string that comes from results.json is escaped.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from audit.report.plots import CAPTIONS
from audit.report.text import (
    ATTRIBUTION_HEADER,
    aa_vs_adaptive,
    attribution_rows,
    claim_sentence,
    failure_text,
    fingerprint_rows,
    gain_rows,
    gain_sentence,
    headline,
    pct,
    suite_text,
)

CSS = """
:root{--red:#c44e52;--green:#3f8f52;--orange:#c9702e;--grey:#777;--line:#dcdfe4}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;max-width:1040px;margin:2em auto;
padding:0 1.2em;color:#222;line-height:1.45;background:#fff}
h1{margin:.2em 0 .1em;font-size:1.7em}h2{margin-top:1.8em;border-bottom:2px solid var(--line);padding-bottom:.2em}
h3{margin:1.4em 0 .3em;font-size:1.05em}
.subtitle{color:#555;margin:0 0 1em}
.verdict{padding:1em 1.3em;border-radius:8px;font-size:1.05em;margin:1em 0}
.verdict p{margin:.5em 0}.verdict ul{margin:.5em 0 .2em;padding-left:1.3em}
.verdict .headline{font-size:1.12em;font-weight:600;margin-top:0}
.suspected{background:#fdecea;border:2px solid var(--red)}
.not_detected{background:#eaf6ec;border:2px solid var(--green)}
.numbers{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.number{flex:1 1 150px;border:1px solid var(--line);border-radius:8px;padding:.6em .9em;background:#fafbfc}
.number .value{font-size:1.6em;font-weight:600;font-variant-numeric:tabular-nums}
.number .label{color:#555;font-size:.85em}.number.key{border-color:#222;background:#fff}
table{border-collapse:collapse;margin:.8em 0;width:100%;font-size:.93em}
td,th{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:baseline}
th{background:#f1f3f6}tr:nth-child(even) td{background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.id{white-space:nowrap}td.id code{background:none;padding:0}
tr.total th{background:#e8ebf0}
.badge{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;padding:0 .4em;font-size:.85em;
font-weight:600;text-transform:uppercase;color:#fff}
.badge.fail{background:var(--red)}.badge.warn{background:var(--orange)}.badge.pass{background:var(--green)}
.badge.skipped{background:#aaa}
.kind{color:#555;font-size:.9em;white-space:nowrap}
.warning{background:#fff6e5;border-left:4px solid var(--orange);padding:.5em .8em;margin:.6em 0}
figure{margin:.6em 0 1.6em}figure img{display:block;max-width:100%;height:auto;border:1px solid #eee;margin:.3em 0}
figcaption{color:#555;font-size:.9em;max-width:60em}
code{background:#f4f4f4;padding:0 3px;border-radius:3px}
.muted{color:var(--grey)}ul.plain{padding-left:1.2em}
.columns{display:grid;grid-template-columns:1fr 1fr;gap:0 1.5em}.columns table{font-size:.85em}
.columns th{width:8.5em;white-space:nowrap}.columns td{word-break:break-word}
@media (max-width:760px){.columns{grid-template-columns:1fr}}
"""

STATUS_ORDER = {"fail": 0, "warn": 1, "skipped": 2, "pass": 3}
KIND_NAMES = {"exact": "exact gradient", "adaptive": "adaptive (BPDA)", "transfer": "transfer",
              "blackbox": "black-box", "other": "other threat model"}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(title: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(title)}" src="data:image/png;base64,{data}">'


def _kind(row: dict) -> str:
    from audit.report.text import attack_kind

    return KIND_NAMES.get(attack_kind(row), "")


def _number(label: str, value: str, key: bool = False) -> str:
    return (f"<div class='number{' key' if key else ''}'><div class='value'>{_e(value)}</div>"
            f"<div class='label'>{_e(label)}</div></div>")


def _numbers(results: dict) -> str:
    cards = [_number("clean accuracy", pct(results.get("clean_accuracy")))]
    attacks = {a["name"]: a["robust_accuracy"] for a in results.get("attacks", [])}
    aa = next((v for k, v in attacks.items() if k.startswith("autoattack")), None)
    if aa is not None:
        cards.append(_number("AutoAttack alone", pct(aa)))
    if results.get("claim"):
        cards.append(_number("claimed robust accuracy", pct(results["claim"].get("claimed_robust_accuracy"))))
    cards.append(_number("worst case over all attacks (report this)", pct(results.get("worst_case_robust_accuracy")),
                         key=True))
    return "<div class='numbers'>" + "".join(cards) + "</div>"


def render_html(results: dict, figures: list[tuple[str, Path]]) -> str:
    e = _e
    verdict = results.get("verdict", {})
    kind = "suspected" if verdict.get("claim_at_risk") == "yes" or verdict.get("gradient_masking") == "suspected" \
        else "not_detected"
    tm = results.get("threat_model", {})
    threat = f"{tm.get('norm')}, eps = {tm.get('eps', float('nan')):g}"
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Audit of {e(results.get('model', '?'))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Audit of <code>{e(results.get('model', '?'))}</code></h1>",
        f"<p class='subtitle'>{e(results.get('defense', ''))} &middot; {e(results.get('dataset', ''))} &middot; "
        f"{e(threat)} &middot; {e(results.get('n_samples', '?'))} samples</p>",
        f"<div class='verdict {kind}'><p class='headline'>{e(headline(results))}</p>",
    ]
    for sentence in (gain_sentence(results), claim_sentence(results), aa_vs_adaptive(results), verdict.get("summary")):
        if sentence:
            parts.append(f"<p>{e(sentence)}</p>")
    if verdict.get("drivers"):
        parts.append("<p>What drove the verdict:</p><ul>" + "".join(
            f"<li><code>{e(d.get('id'))}</code>: {e(d.get('why'))}</li>" for d in verdict["drivers"]) + "</ul>")
    parts.append("</div>")
    parts.append(_numbers(results))
    if gain_rows(results):
        parts.append(f"<h2>The gain, decomposed</h2><p class='muted'>Same images and seeds; base = "
                     f"{e(results['gain']['base'])}.</p><table><tbody>" + "".join(
                         f"<tr><td>{e(row)}</td><td class='num'>{e(value)}</td></tr>"
                         for row, value in gain_rows(results))
                     + "</tbody></table>")
    for warning in results.get("warnings", []):
        parts.append(f"<p class='warning'>warning: {e(warning)}</p>")
    for failed in results.get("failed_batches", []):
        parts.append(f"<p class='warning'>not run: {e(failure_text(failed))}</p>")

    parts.append("<h2>Attacks</h2><table><thead><tr><th>attack</th><th>kind</th><th class='num'>robust accuracy</th>"
                 "<th class='num'>forward</th><th class='num'>backward</th><th class='num'>seconds</th>"
                 "</tr></thead><tbody>")
    for a in results.get("attacks", []):
        parts.append(f"<tr><td><code>{e(a['name'])}</code></td><td class='kind'>{e(_kind(a))}</td>"
                     f"<td class='num'>{pct(a['robust_accuracy'])}</td><td class='num'>{a['n_forward']:.0f}</td>"
                     f"<td class='num'>{a['n_backward']:.0f}</td><td class='num'>{a['seconds']:.1f}</td></tr>")
    parts.append(f"<tr class='total'><th colspan='2'>worst case over all attacks (per sample)</th>"
                 f"<th class='num'>{pct(results.get('worst_case_robust_accuracy'))}</th><th></th><th></th><th></th>"
                 "</tr></tbody></table>")
    skipped = results.get("skipped_attacks", [])
    if skipped:
        parts.append("<p class='muted'>Not run on this defense:</p><ul class='plain muted'>" + "".join(
            f"<li><code>{e(s.get('name'))}</code>: {e(s.get('reason'))}</li>" for s in skipped) + "</ul>")
    test_time = results.get("test_time") or {}
    for label, spend in test_time.get("black_box", {}).items():  # what an evidence-first Square spent, skipped
        parts.append(f"<p class='muted'><code>{e(label)}</code> queried {spend['queried']} of the {spend['ran_on']} "
                     f"samples it ran on ({spend['queries']:.0f} queries); {spend['not_queried']} not queried.</p>")

    findings = sorted(results.get("findings", []), key=lambda f: STATUS_ORDER.get(f.get("status"), 9))
    counts = {s: sum(1 for f in findings if f.get("status") == s) for s in STATUS_ORDER}
    parts.append("<h2>Findings</h2><p>" + ", ".join(f"{n} {s}" for s, n in counts.items() if n) +
                 " (failures first).</p>")
    parts.append("<table><thead><tr><th>status</th><th>finding</th><th>message</th></tr></thead><tbody>")
    for f in findings:
        status = str(f.get("status"))
        parts.append(f"<tr><td><span class='badge {e(status)}'>{e(status)}</span></td>"
                     f"<td class='id'><code>{e(f.get('id'))}</code></td><td>{e(f.get('message'))}</td></tr>")
    parts.append("</tbody></table>")
    attribution = attribution_rows(results)
    if attribution:
        caption, rows = attribution
        parts.append("<h2>Per-layer attribution of the masking</h2>"
                     f"<p class='muted'>{e(caption)}</p><table><thead><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in ATTRIBUTION_HEADER) + "</tr></thead><tbody>"
                     + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
                     + "</tbody></table>")

    parts.append("<h2>Plots</h2>")
    if not figures:
        parts.append("<p class='muted'>No plot could be drawn from these results.</p>")
    for title, path in figures:
        caption = CAPTIONS.get(title, "")
        parts.append(f"<figure><h3>{e(title)}</h3>{_img(title, path)}"
                     + (f"<figcaption>{e(caption)}</figcaption>" if caption else "") + "</figure>")

    setting = [("model", results.get("model")), ("defense", results.get("defense")),
               ("dataset", results.get("dataset")),
               ("threat model", threat), ("samples", results.get("n_samples")), ("seed", results.get("seed")),
               ("suite", suite_text(results)),
               ("wall time", f"{results['seconds']:.0f} s"
                if isinstance(results.get("seconds"), (int, float)) else None),
               *fingerprint_rows(results)]
    env = {k: v for k, v in results.get("environment", {}).items() if v}
    parts.append("<div class='columns'><div><h2>Setting</h2><table><tbody>" +
                 "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in setting if v is not None) +
                 "</tbody></table></div><div><h2>Environment</h2><table><tbody>" +
                 "".join(f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in env.items()) +
                 "</tbody></table></div></div>")
    parts.append("</body></html>")
    return "\n".join(parts)
