"""A RobustBench-layout checkpoint (<dir>/cifar10/Linf/<name>.pt, `module.` prefixes) loads strictly, MeanSparse
entries included, through the same path `audit run --robustbench-dir DIR --name NAME` uses."""
import torch

from audit.model_spec import load_robustbench, resolve_model
from defenses import meansparse_layers, sparsify
from defenses.models.wide_resnet import DMWideResNet


def _save(model, directory, name):
    path = directory / "cifar10" / "Linf"
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path / f"{name}.pt")


def test_base_wrn_loads_and_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    reference = DMWideResNet(depth=10, width=1).eval()
    _save(reference, tmp_path, "Someone2024_WRN-10-1")
    loaded = load_robustbench(tmp_path, "Someone2024_WRN-10-1")
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))


def test_meansparse_wrn_loads_with_its_statistics_and_is_audited_as_meansparse(tmp_path):
    torch.manual_seed(0)
    reference = sparsify(DMWideResNet(depth=10, width=1), 0.15, placement="wrn").eval()
    for _, layer in meansparse_layers(reference):
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.5, 2.0)
    _save(reference, tmp_path, "Mine2024MeanSparse_WRN-10-1")
    defense, kind = resolve_model("Mine2024MeanSparse_WRN-10-1", robustbench_dir=str(tmp_path))
    assert kind == "robustbench" and type(defense).__name__ == "MeanSparseDefense"
    assert len(defense.layers) == 3 * 1 * 3 + 1  # three per block, one block per group at depth 10, plus the end
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(defense(x), reference(x))
