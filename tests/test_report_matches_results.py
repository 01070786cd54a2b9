"""A report says what its results.json says: every number report.md and report.html show is a value results.json
holds (or text it stores), the main tables show the right fields in the right rows, and changing a field in
results.json changes what the report shows.

The fixture is the results.json of `make demo`'s demo-meansparse audit (100 images, commit 2e28f68), its plot
arrays dropped: it has the gain table, a `+survivors` attack, AutoAttack's parts and the beyond-AutoAttack test.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from audit.report import render_reports

FIXTURE = Path(__file__).parent / "fixtures" / "results_demo_meansparse.json"
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _render(results: dict, directory: Path) -> tuple[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results))
    md, page = render_reports(directory)
    return Path(md).read_text(), _visible_text(Path(page).read_text())


def _visible_text(page: str) -> str:
    """What a reader of the HTML sees: no style, scripts or embedded images, tags removed, entities decoded."""
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<img\b[^>]*>", " ", page, flags=re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _leaves(value: object, strings: set[str], numbers: list[float]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            strings.add(str(key))
            if key != "data":  # plot arrays, drawn, never printed
                _leaves(item, strings, numbers)
    elif isinstance(value, list):
        numbers.append(len(value))
        statuses = [item["status"] for item in value if isinstance(item, dict) and "status" in item]
        numbers += [statuses.count(status) for status in set(statuses)]  # "1 fail, 3 warn, 23 pass"
        for item in value:
            _leaves(item, strings, numbers)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        numbers.append(float(value))
    elif isinstance(value, str):
        strings.add(value)


def _unexplained_numbers(text: str, results: dict) -> tuple[list[str], int]:
    """Numbers in `text` that are neither inside a string results.json stores nor a rendering of one of its
    numbers (as a fraction, a percentage, a count); and how many numbers there were."""
    strings: set[str] = set()
    numbers: list[float] = []
    _leaves(results, strings, numbers)
    for stored in sorted(strings, key=len, reverse=True):
        if len(stored) >= 3:
            text = text.replace(stored, " ")
    forms = set()
    for v in numbers:
        forms |= {
            f"{v:g}",
            f"{v:.0f}",
            f"{v:.1f}",
            f"{v:.2f}",
            f"{v:.2g}",
            f"{v:.3g}",
            f"{100 * v:.0f}",
            f"{100 * v:.1f}",
            f"{100 * v:.2f}",
        }
    tokens = NUMBER.findall(text)
    return [t for t in tokens if t.lstrip("+") not in forms], len(tokens)


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def rendered(results, tmp_path_factory) -> tuple[str, str]:
    return _render(results, tmp_path_factory.mktemp("report"))


def test_every_number_shown_comes_from_results_json(results, rendered):
    for text in rendered:
        unexplained, total = _unexplained_numbers(text, results)
        assert total > 60, "the report shows numbers; the oracle must see them"
        assert unexplained == [], f"numbers the report shows that results.json does not hold: {unexplained}"


def test_the_oracle_catches_a_number_results_json_does_not_hold(results, rendered):
    tampered = rendered[0].replace("66.00%", "66.40%", 1)
    assert _unexplained_numbers(tampered, results)[0] == ["66.40"]


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def test_attack_rows_show_each_attack_s_own_numbers(results, rendered):
    md = rendered[0]
    for attack in results["attacks"]:
        row = next(line for line in md.splitlines() if line.startswith(f"| {attack['name']} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == attack["gradient"]
        assert (int(cells[2]), int(cells[3])) == (attack["ran"], attack["broken"])
        robust = attack["robust"]
        assert cells[4] == (
            "n/a (ran on survivors only)"
            if robust is None
            else f"{_pct(robust['accuracy'])} ({_pct(robust['ci95'][0])} - {_pct(robust['ci95'][1])})"
        )
        assert [float(c) for c in cells[5:8]] == pytest.approx(
            [attack["n_forward"], attack["n_backward"], attack["seconds"]], abs=0.5
        )


def test_gain_table_rows_show_the_gain_fields(results, rendered):
    gain = results["gain"]
    for text in rendered:
        for key in ("base_autoattack", "base_worst_case", "defense_autoattack", "defense_worst_case"):
            a = gain[key]
            assert f"{_pct(a['accuracy'])} ({_pct(a['ci95'][0])} - {_pct(a['ci95'][1])})" in text, key
        for key in ("claimed_gain", "surviving_gain"):
            g = gain[key]
            assert (
                f"{100 * g['gain']:+.2f} points ({100 * g['ci95'][0]:+.2f} to {100 * g['ci95'][1]:+.2f}; "
                f"{g['only_defense_robust']} samples robust only with the defense, "
                f"{g['only_base_robust']} only without)"
            ) in text, key


def test_changing_a_field_changes_what_the_report_shows(results, tmp_path):
    """Unique values written into results.json come out where they belong: the report reads the fields, it does
    not recompute or hard-code them."""
    changed = json.loads(json.dumps(results))
    changed["worst_case_robust_accuracy"] = 0.4321
    changed["worst_case"]["lp"].update({"accuracy": 0.4321, "ci95": [0.3111, 0.5222]})
    changed["clean_accuracy"] = 0.8765
    changed["gain"]["surviving_gain"].update(
        {"gain": 0.0123, "ci95": [-0.0456, 0.0789], "only_defense_robust": 41, "only_base_robust": 37}
    )
    changed["attacks"][0]["broken"] = 59
    beyond = changed["verdict"]["beyond_autoattack"]
    beyond.update({"only_others_broke": 23, "p_value": 0.000417})
    md, page = _render(changed, tmp_path)
    for text in (md, page):
        assert "43.21% (95% interval 31.11% - 52.22%)" in text
        assert "87.65%" in text
        assert "+1.23 points (-4.56 to +7.89; 41 samples robust only with the defense, 37 only without)" in text
        assert "23 samples only they broke" in text and "p = 0.00042" in text
        assert "66.00% (95% interval 55.85% - 75.18%)" not in text  # the old worst case is gone everywhere
    row = next(line for line in md.splitlines() if line.startswith(f"| {changed['attacks'][0]['name']} |"))
    assert row.split("|")[4].strip() == "59"
