"""A RobustBench-layout checkpoint (<dir>/cifar10/Linf/<name>.pt, `module.` prefixes) loads strictly through the
same path `audit run --robustbench-dir DIR --model NAME` uses; unknown names are refused, never guessed."""

import dataclasses

import pytest
import torch

from audit.cli import main
from audit.model_spec import resolve_model
from defenses import meansparse_layers
from defenses.models import robustbench as rb


def _save(model, directory, name, dataset="cifar10", threat="Linf"):
    path = directory / dataset / threat
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path / f"{name}.pt")


@pytest.fixture
def small_entries():
    """Reduced copies of a base entry and a MeanSparse entry, registered in the real registry for one test."""
    base = rb.find("Wang2023Better_WRN-28-10").reduced("Wang2023Better_WRN-28-10-test", depth=10, width=1)
    sparse = rb.find("Amini2024MeanSparse_S-WRN-94-16").reduced(
        "Amini2024MeanSparse_S-WRN-94-16-test", depth=10, width=1
    )
    for entry in (base, sparse):
        rb.register(entry)
    yield base, sparse
    for entry in (base, sparse):
        rb.unregister(entry)


def test_base_wrn_loads_and_gives_identical_logits(tmp_path, small_entries):
    base, _ = small_entries
    torch.manual_seed(0)
    reference = base.build()
    _save(reference, tmp_path, base.name)
    loaded = rb.load(tmp_path, base.name)[0]
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))


def test_meansparse_wrn_loads_with_its_statistics_and_is_audited_as_meansparse(tmp_path, small_entries):
    _, sparse = small_entries
    torch.manual_seed(0)
    reference = sparse.build()
    for _, layer in meansparse_layers(reference):
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.5, 2.0)
    _save(reference, tmp_path, sparse.name)
    defense, kind = resolve_model(sparse.name, robustbench_dir=str(tmp_path))
    assert kind == "robustbench" and type(defense).__name__ == "MeanSparseDefense"
    assert len(defense.layers) == 3 * 1 * 3 + 1  # three per block, one block per group at depth 10, plus the end
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(defense(x), reference(x))


def test_a_file_whose_thresholds_differ_from_the_published_alpha_runs_with_its_own_and_says_so(
    tmp_path, small_entries, caplog
):
    _, sparse = small_entries
    reference = sparse.build()
    for _, layer in meansparse_layers(reference):
        layer.threshold.fill_(0.2)
    _save(reference, tmp_path, sparse.name)
    loaded = rb.load(tmp_path, sparse.name)[0]
    assert {layer.alpha for _, layer in meansparse_layers(loaded)} == {0.2}
    assert "published alpha is 0.15; the file's are used" in caplog.text


def test_a_guessable_but_unknown_name_is_refused_not_guessed(tmp_path):
    _save(torch.nn.Linear(1, 1), tmp_path, "Someone2024_WRN-10-1")
    with pytest.raises(rb.ZooError, match=r"unknown RobustBench model 'Someone2024_WRN-10-1'.*; known: "):
        rb.load(tmp_path, "Someone2024_WRN-10-1")


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--model", "Someone2024_WRN-10-1"], "unknown RobustBench model 'Someone2024_WRN-10-1'"),
        (
            ["--model", "Amini2024MeanSparse_S-WRN-70-16"],
            "is ambiguous: RobustBench has it for cifar10/L2, cifar100/Linf; pass --dataset (cifar10 or cifar100)",
        ),
        (
            ["--model", "Amini2024MeanSparse_S-WRN-70-16", "--dataset", "cifar100"],
            "cifar100/Linf/Amini2024MeanSparse_S-WRN-70-16.pt not found",
        ),
        (
            ["--model", "Amini2024MeanSparse_Swin-L", "--dataset", "fashion-mnist"],
            "Amini2024MeanSparse_Swin-L has no entry for dataset fashion-mnist",
        ),
    ],
)
def test_cli_refuses_bad_robustbench_names_in_one_line(tmp_path, capsys, argv, expected):
    code = main(
        ["run", "--robustbench-dir", str(tmp_path), *argv, "--n", "4", "--quiet", "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_reduced_entries_keep_every_other_field():
    entry = rb.find("Amini2024MeanSparse_ConvNeXt-L")
    small = entry.reduced("x", depths=(1, 1, 1, 1))
    assert dataclasses.replace(small, name=entry.name, arch_kwargs=()) == entry
    assert dict(small.arch_kwargs) == {"depths": (1, 1, 1, 1)}
