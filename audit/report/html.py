"""report.html: self-contained (plots embedded as base64 PNG, inline CSS, no scripts, no external requests)."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from audit.report.text import aa_vs_adaptive, claim_sentence, headline, pct

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
.verdict{padding:1em 1.2em;border-radius:8px;font-size:1.1em}
.suspected{background:#fdecea;border:2px solid #c44e52}.not_detected{background:#eaf6ec;border:2px solid #55a868}
table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
td.num{text-align:right}.fail{color:#c44e52;font-weight:bold}.warn{color:#dd8452}.pass{color:#55a868}.skipped{color:#888}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}code{background:#f4f4f4;padding:0 3px}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_html(results: dict, figures: list[tuple[str, Path]]) -> str:
    e = html.escape
    verdict = results.get("verdict", {})
    kind = "suspected" if verdict.get("gradient_masking") == "suspected" else "not_detected"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Audit of {e(results['model'])}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>Audit of <code>{e(results['model'])}</code></h1>",
             f"<div class='verdict {kind}'><strong>{e(headline(results))}</strong>"]
    for sentence in (claim_sentence(results), aa_vs_adaptive(results), verdict.get("summary")):
        if sentence:
            parts.append(f"<p>{e(sentence)}</p>")
    if verdict.get("drivers"):
        parts.append("<ul>" + "".join(f"<li><b>{e(str(d.get('id')))}</b>: {e(str(d.get('why')))}</li>"
                                      for d in verdict["drivers"]) + "</ul>")
    parts.append("</div>")
    tm = results["threat_model"]
    parts.append("<h2>Setting</h2><ul>"
                 f"<li>defense: {e(results.get('defense', ''))}</li>"
                 f"<li>dataset: {e(results['dataset'])}, {results['n_samples']} samples, seed {results['seed']}</li>"
                 f"<li>threat model: {e(tm['norm'])}, eps = {tm['eps']:g}</li>"
                 f"<li>clean accuracy: {pct(results['clean_accuracy'])}; worst-case robust accuracy: "
                 f"<b>{pct(results['worst_case_robust_accuracy'])}</b></li></ul>")
    for warning in results.get("warnings", []):
        parts.append(f"<p class='warn'>warning: {e(warning)}</p>")
    parts.append("<h2>Attacks</h2><table><tr><th>attack</th><th>robust accuracy</th><th>forward</th><th>backward</th><th>seconds</th></tr>")
    for a in results.get("attacks", []):
        parts.append(f"<tr><td>{e(a['name'])}</td><td class='num'>{pct(a['robust_accuracy'])}</td>"
                     f"<td class='num'>{a['n_forward']:.0f}</td><td class='num'>{a['n_backward']:.0f}</td>"
                     f"<td class='num'>{a['seconds']:.1f}</td></tr>")
    parts.append(f"<tr><th>worst case</th><th class='num'>{pct(results['worst_case_robust_accuracy'])}</th><td></td><td></td><td></td></tr></table>")
    parts.append("<h2>Findings</h2><table><tr><th>status</th><th>finding</th><th>message</th></tr>")
    for f in results.get("findings", []):
        parts.append(f"<tr><td class='{e(f['status'])}'>{e(f['status'])}</td><td>{e(f['id'])}</td><td>{e(f['message'])}</td></tr>")
    parts.append("</table><h2>Plots</h2>")
    for title, path in figures:
        parts.append(f"<h3>{e(title)}</h3>{_img(path)}")
    env = results.get("environment", {})
    parts.append("<h2>Environment</h2><p>" + e(", ".join(f"{k} {v}" for k, v in env.items() if v)) + "</p></body></html>")
    return "\n".join(parts)
