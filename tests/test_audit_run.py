"""`audit run` end to end on small n: outputs, schema, determinism, resume, and refusing to mix configurations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from audit.cli import main
from audit.outcomes import BROKEN, HELD, NotRun

FIXTURE = Path(__file__).parent / "fixtures" / "user_model.py"
REQUIRED = {
    "schema_version",
    "model",
    "dataset",
    "threat_model",
    "n_samples",
    "seed",
    "clean_accuracy",
    "attacks",
    "worst_case_robust_accuracy",
    "findings",
    "verdict",
    "environment",
}


def run(out: Path, *extra: str, model: str = f"{FIXTURE}:build") -> int:
    return main(
        [
            "run",
            "--model",
            model,
            "--n",
            "30",
            "--suite",
            "quick",
            "--diagnostics-n",
            "16",
            "--quiet",
            "--out",
            str(out),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, fmnist_test):
    out = tmp_path_factory.mktemp("audit") / "run"
    assert run(out) == 0
    return out


def test_audits_a_users_module_and_writes_everything(first_run):
    for name in ("results.json", "samples.csv", "report.md", "report.html", "records.jsonl", "config.json"):
        assert (first_run / name).is_file(), name
    results = json.loads((first_run / "results.json").read_text())
    assert REQUIRED <= set(results)
    assert results["threat_model"] == {"norm": "Linf", "eps": 0.1}
    assert "opaque" in results["defense"]
    assert {a["name"] for a in results["attacks"]} == {"fgsm", "apgd-ce"}
    # An undefended standard model falls to ~0 at eps 0.1.
    assert results["worst_case_robust_accuracy"] <= 0.05
    # An undefended model: no symptom, and nothing left robust to inflate.
    assert results["verdict"]["gradient_masking"] == "not_detected"
    assert results["verdict"]["claim_at_risk"] == "no"
    worst = results["worst_case"]["lp"]
    assert worst["n"] == 30 and worst["ci95"][0] <= worst["accuracy"] <= worst["ci95"][1] < 0.2
    for key in ("python", "torch", "pyautoattack", "torchattacks", "foolbox", "numpy", "device"):
        assert results["environment"][key]
    rows = list(csv.DictReader(open(first_run / "samples.csv")))
    assert len(rows) == 30
    assert all(r["worst_case_robust:lp"] in ("0", "1") for r in rows)
    assert {r["apgd-ce:status"] for r in rows} <= {"broken", "held", "not_run:misclassified"}


def test_same_seed_same_per_sample_results_and_resume_adds_nothing(first_run, tmp_path):
    lines_before = (first_run / "records.jsonl").read_text()
    assert run(first_run) == 0  # resume: everything is done already
    assert (first_run / "records.jsonl").read_text() == lines_before
    fresh = tmp_path / "fresh"
    assert run(fresh) == 0
    assert (fresh / "samples.csv").read_text() == (first_run / "samples.csv").read_text()


def test_every_stored_status_is_in_the_vocabulary(first_run):
    """A per-sample status is `broken`, `held` or one of the `NotRun` reasons, stored as its text."""
    with open(first_run / "samples.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    statuses = {value for row in rows for key, value in row.items() if key.endswith(":status")}
    assert BROKEN in statuses and statuses <= {BROKEN, HELD, *(reason.value for reason in NotRun)}
    assert json.dumps([NotRun.CASCADE]) == '["not_run:cascade"]' and f"{NotRun.ERROR}" == "not_run:error"
    assert NotRun("not_run:not-queried") is NotRun.NOT_QUERIED and NotRun.NOT_QUERIED.reason == "not-queried"


def test_a_different_configuration_is_refused(first_run, capsys):
    assert run(first_run, "--eps", "0.05") == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "eps" in err and "Traceback" not in err


def test_report_re_renders_from_stored_results(first_run):
    (first_run / "report.html").unlink()
    assert main(["report", str(first_run)]) == 0
    assert "<html" in (first_run / "report.html").read_text()


def test_report_rebuilds_findings_and_verdict_without_the_model(tmp_path):
    """`audit report DIR` recomputes every finding and the verdict from the store alone: the model file is gone."""
    import shutil

    model_file = tmp_path / "gone.py"
    shutil.copy(FIXTURE, model_file)
    out = tmp_path / "run"
    assert run(out, model=f"{model_file}:build") == 0
    before = json.loads((out / "results.json").read_text())
    model_file.unlink()
    (out / "results.json").unlink()
    assert main(["report", str(out)]) == 0
    after = json.loads((out / "results.json").read_text())
    assert after["findings"] == before["findings"] and after["verdict"] == before["verdict"]
    assert after == before


def test_undeclared_randomness_is_found_and_gets_eot_attacks(tmp_path):
    """A user's model adds input noise and says nothing: the audit finds it before planning, adds the EOT versions
    of its gradient attacks and scores on common draws. The undeclared randomness is a symptom: with no attack gap
    to back it (and the diagnostics not run) masking is inconclusive, never a clean bill."""
    out = tmp_path / "noisy"
    model = f"{Path(__file__).parent / 'fixtures' / 'noisy_model.py'}:build"
    assert (
        main(
            [
                "run",
                "--model",
                model,
                "--n",
                "20",
                "--attacks",
                "apgd-ce@iters=5",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert [a["name"] for a in results["attacks"]] == ["apgd-ce@iters=5", "apgd-ce+eot20@iters=5"]
    assert results["draws"] == 10 and results["verdict"]["randomized"] is True
    randomized = next(f for f in results["findings"] if f["id"] == "randomized")
    assert randomized["status"] == "fail" and randomized["evidence"]["declared"] is False
    assert results["verdict"]["gradient_masking"] == "inconclusive"
    assert results["verdict"]["unbacked_symptoms"] == ["randomized"] and results["verdict"]["drivers"] == []
    # `audit extend` builds the model again, which does not declare its noise: the run's finding does, so the added
    # attack is scored on the same draws as the others (the model object is never marked).
    assert main(["extend", str(out), "--attacks", "fgsm", "--quiet"]) == 0
    from audit.store import ResultStore

    draws = {r["attack"]: r["draws"] for r in ResultStore.open_existing(out).records() if "draws" in r}
    assert draws["fgsm"] == draws["apgd-ce@iters=5"] == 10


@pytest.mark.slow
def test_eot_attacks_end_lower_than_plain_ones_on_undeclared_noise(tmp_path):
    out = tmp_path / "noisy"
    model = f"{Path(__file__).parent / 'fixtures' / 'noisy_model.py'}:build"
    assert (
        main(
            [
                "run",
                "--model",
                model,
                "--n",
                "200",
                "--attacks",
                "apgd-ce",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    attacks = {a["name"]: a for a in json.loads((out / "results.json").read_text())["attacks"]}
    plain, eot = attacks["apgd-ce"], attacks["apgd-ce+eot20"]
    assert plain["ran"] == eot["ran"] and eot["broken"] >= plain["broken"] + 5


def test_transfer_from_a_reviewers_own_model(tmp_path):
    """--transfer-from: points crafted on another model the reviewer has, judged on the audited one."""
    out = tmp_path / "transfer"
    assert (
        main(
            [
                "run",
                "--model",
                f"{FIXTURE}:build",
                "--n",
                "20",
                "--attacks",
                "apgd-ce@iters=5",
                "--transfer-from",
                "demo-standard",
                "--diagnostics-n",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    transfer = next(a for a in results["attacks"] if a["name"] == "transfer-demo-standard:apgd-ce")
    assert transfer["gradient"] == "transfer:demo-standard" and transfer["ran"] > 0
    assert transfer["n_forward"] > 0 and transfer["n_backward"] > 0  # the source's calls are counted
    comparison = next(f for f in results["findings"] if f["id"] == "transfer-beats-whitebox")
    # The source is the audited network itself and white-box APGD breaks every sample it runs on (measured 18 of
    # 18): the comparison is judged on all of them, and transfer finds nothing white-box missed.
    assert comparison["evidence"]["paired"] == transfer["ran"] >= 15
    assert comparison["status"] == "pass" and comparison["evidence"]["count"] == 0


def _small(model: str, out: Path, attacks: tuple[str, ...], seed: int = 0, audit_base: bool = True) -> dict:
    from audit.config import AuditConfig
    from audit.pipeline import run_audit

    config = AuditConfig(model=model, n=10, seed=seed, attacks=attacks, diagnostics_n=0)
    results = run_audit(config, out, progress=False, audit_base=audit_base)
    assert results is not None
    return results


@pytest.mark.slow
def test_reusing_the_adversarial_audit_as_base_gives_the_gain_table_of_a_fresh_base_audit(tmp_path, fmnist_test):
    """What the demo does: demo-meansparse's base audit taken from the demo-adversarial audit equals one run on
    the base itself (same logits bit for bit, same images, seeds and batches)."""
    from audit.pipeline import derive_results, reuse_base

    attacks = ("fgsm", "autoattack-standard")
    fresh = _small("demo-meansparse", tmp_path / "fresh", attacks)
    _small("demo-adversarial", tmp_path / "adversarial", attacks)
    _small("demo-meansparse", tmp_path / "reused", attacks, audit_base=False)
    reuse_base(tmp_path / "reused", tmp_path / "adversarial")
    reused = derive_results(tmp_path / "reused")
    # The AutoAttack side is the fresh base audit's; the base's worst case is over every attack of the reused one.
    same = ("base_autoattack", "defense_autoattack", "defense_worst_case", "claimed_gain")
    assert {k: reused["gain"][k] for k in same} == {k: fresh["gain"][k] for k in same}
    assert fresh["gain"]["base_attacks"] == ["autoattack-standard"] and reused["gain"]["base_attacks"] == list(attacks)
    adversarial = json.loads((tmp_path / "adversarial" / "results.json").read_text())
    base_worst = reused["gain"]["base_worst_case"]
    assert base_worst == {k: adversarial["worst_case"]["lp"][k] for k in base_worst}
    assert fresh["gain"]["base_autoattack"]["n"] == 10


def _run(out, *options: str) -> int:
    from audit.cli import main

    return main(["run", "--n", "10", "--diagnostics-n", "0", "--quiet", *options, "--out", str(out)])


AA = ("--attacks", "fgsm,autoattack-standard")


def test_base_run_from_the_command_line_is_refused_before_any_attack(tmp_path, fmnist_test, capsys):
    """`audit run --base-run DIR`: a finished base audit of other images, of another model, or without the
    AutoAttack run is refused before the run writes anything."""
    for model, seed, out in (
        ("demo-adversarial", "1", "seed1"),
        ("demo-standard", "0", "standard"),
        ("demo-adversarial", "0", "fgsm-only"),
    ):
        assert _run(tmp_path / out, "--model", model, "--seed", seed, "--attacks", "fgsm") == 0
    capsys.readouterr()
    for base, reason in (
        ("seed1", "differs in seed"),
        ("standard", "clean predictions"),
        ("fgsm-only", "attack autoattack-standard not run"),
    ):
        assert _run(tmp_path / "refused", "--model", "demo-meansparse", *AA, "--base-run", str(tmp_path / base)) != 0
        err = capsys.readouterr().err
        assert reason in err and ("clean predictions" in err) == (base == "standard")  # same model: predictions pass
        assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_base_run_from_the_command_line_gives_the_gain_table(tmp_path, fmnist_test):
    import json

    assert _run(tmp_path / "adversarial", "--model", "demo-adversarial", *AA) == 0
    assert (
        _run(tmp_path / "meansparse", "--model", "demo-meansparse", *AA, "--base-run", str(tmp_path / "adversarial"))
        == 0
    )
    config = json.loads((tmp_path / "meansparse" / "base" / "config.json").read_text())
    assert config["base_run"] == str(tmp_path / "adversarial")
    copied = (tmp_path / "meansparse" / "base" / "records.jsonl").read_text().splitlines()
    assert copied[:-1] == [
        line
        for line in (tmp_path / "adversarial" / "records.jsonl").read_text().splitlines()
        if json.loads(line)["attack"] in ("clean", "fgsm", "autoattack-standard")
    ]
    results = json.loads((tmp_path / "meansparse" / "results.json").read_text())
    assert results["gain"]["base_autoattack"]["n"] == 10


def test_extending_a_finished_audit_equals_having_planned_the_attack(tmp_path, fmnist_test, capsys):
    """`audit extend`: an attack added to a finished run gives, sample for sample, what it gives at the end of a
    run that planned it (a `+survivors` attack on what everything before it left), and the curve it extends is
    judged again; asked again, it adds nothing; a bad name or an unfinished directory is one line, no change."""
    first, extra = "fgsm,apgd-ce@iters=2", "apgd-ce+survivors@iters=20"
    assert _run(tmp_path / "planned", "--model", "demo-adversarial", "--attacks", f"{first},{extra}") == 0
    assert _run(tmp_path / "extended", "--model", "demo-adversarial", "--attacks", first) == 0
    assert main(["extend", str(tmp_path / "extended"), "--attacks", extra, "--quiet"]) == 0
    planned, extended = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("planned", "extended"))
    assert extended["extended_with"] == [extra] and planned["extended_with"] == []
    for report in ("report.md", "report.html"):  # the reader sees that the run was extended, and by what
        assert f"added by `audit extend`: {extra}" in (tmp_path / "extended" / report).read_text().replace(
            "<code>", "`"
        ).replace("</code>", "`")

    def outcome(results: dict) -> list:
        return [{k: v for k, v in a.items() if k not in ("seconds",)} for a in results["attacks"]]

    assert outcome(extended) == outcome(planned)
    top = next(a for a in extended["attacks"] if a["name"] == extra)
    rows = list(csv.DictReader(open(tmp_path / "extended" / "samples.csv")))
    survivors = [r for r in rows if r["fgsm:status"] == r["apgd-ce@iters=2:status"] == "held"]
    assert top["ran"] == len(survivors) > 0  # on the survivors of the finished attacks only
    convergence = {r["id"]: r for r in extended["findings"]}["attack-convergence"]
    assert convergence["evidence"]["families"]["apgd-ce"]["largest"] == extra
    samples = {d: (tmp_path / d / "samples.csv").read_text().splitlines() for d in ("planned", "extended")}
    assert samples["planned"] == samples["extended"]
    records = (tmp_path / "extended" / "records.jsonl").read_text()
    assert main(["extend", str(tmp_path / "extended"), "--attacks", extra, "--quiet"]) == 0
    assert (tmp_path / "extended" / "records.jsonl").read_text() == records
    capsys.readouterr()
    assert main(["extend", str(tmp_path / "extended"), "--attacks", "apgd-xx", "--quiet"]) != 0
    assert main(["extend", str(tmp_path / "nothing"), "--attacks", extra, "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "apgd-xx" in err and "Traceback" not in err and str(tmp_path / "nothing") in err
    assert (tmp_path / "extended" / "records.jsonl").read_text() == records


def test_base_run_reuse_equals_a_fresh_base_audit_on_a_tiny_meansparse_model(tmp_path, tiny_checkpoints):
    """`--base-run` in the default run, on a tiny MeanSparse model: its audit with a finished audit of its base
    (the same network, MeanSparse off) as `--base-run` gives, per sample, the AutoAttack records a fresh base
    audit gives, the same gain table, samples.csv and verdict (the slow tests above check it on the demo models)."""
    tiny = tiny_checkpoints
    eps = ("--eps", "0.12")
    assert (
        _run(tmp_path / "base", "--model", tiny["small_cnn"], "--checkpoint", tiny["small_cnn_checkpoint"], *AA, *eps)
        == 0
    )
    for out, extra in (("fresh", ()), ("reused", ("--base-run", str(tmp_path / "base")))):
        assert (
            _run(
                tmp_path / out,
                "--model",
                tiny["meansparse"],
                "--checkpoint",
                tiny["meansparse_checkpoint"],
                *AA,
                *eps,
                *extra,
            )
            == 0
        )

    def records(directory: Path, attack: str) -> list[dict]:
        from audit.store import ResultStore

        rows = [r for r in ResultStore.open_existing(directory).records() if r["attack"] == attack]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # wall time is all that may differ

    for attack in ("clean", "autoattack-standard"):
        fresh_rows = records(tmp_path / "fresh" / "base", attack)
        assert fresh_rows and records(tmp_path / "reused" / "base", attack) == fresh_rows
        assert records(tmp_path / "base", attack) == fresh_rows  # the base run attacked the same network alike
    fresh, reused, base = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("fresh", "reused", "base"))
    same = ("base_autoattack", "defense_autoattack", "defense_worst_case", "claimed_gain")
    assert {k: reused["gain"][k] for k in same} == {k: fresh["gain"][k] for k in same}
    assert fresh["gain"]["base_attacks"] == ["autoattack-standard"]
    assert reused["gain"]["base_attacks"] == ["fgsm", "autoattack-standard"]  # every attack of the base run
    base_worst = reused["gain"]["base_worst_case"]
    assert base_worst == {k: base["worst_case"]["lp"][k] for k in base_worst}
    assert reused["verdict"] == fresh["verdict"]
    assert (tmp_path / "reused" / "samples.csv").read_text() == (tmp_path / "fresh" / "samples.csv").read_text()
    # At eps 0.12 AutoAttack breaks all 9 correctly classified samples of 10 (measured), so the records compared are
    # APGD's points, distances and margins, bit for bit; a held sample would cost Square's 5,000 queries each
    # (the slow tests above have them).
    for directory in ("base", "fresh"):
        statuses = [s for r in records(tmp_path / directory, "autoattack-standard") for s in r["status"]]
        assert statuses.count("broken") >= 7, statuses
