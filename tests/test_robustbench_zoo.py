"""The six published MeanSparse checkpoints (RobustBench `Amini2024MeanSparse_*`), rebuilt, placed and loaded.

For each entry a reduced copy (same architecture code, same placement, smaller width/depth) is registered in the
real zoo registry, saved with random weights and random MeanSparse statistics in RobustBench's file layout
(`<dir>/<dataset>/<threat>/<name>.pt`, with and without `module.` prefixes), and loaded back strictly through the
`--robustbench-dir` path with identical logits. Full-size architectures are checked on the meta device (no
memory): MeanSparse layer counts per block type, and key for key against timm's parameter names.

How the timm reference lists in tests/fixtures/timm_keys/ were obtained: `scripts/timm_reference.py` imports timm
1.0.31 from its PyPI wheel (pip download, no install) with a stand-in torchvision module in `sys.modules` (timm's
model code does not use torchvision, but `import timm` does and torchvision cannot load beside the CPU torch), builds
`convnext_large` and `swin_large_patch4_window7_224` on the meta device and writes every state-dict key with its
shape. `test_timm_itself_agrees_on_keys_and_logits` (slow) repeats that against the wheel when `make setup` has
downloaded it, and compares logits with timm's own classes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from audit.model_spec import resolve_model
from defenses.meansparse import MeanSparse, meansparse_layers
from defenses.models import robustbench as rb

ROOT = Path(__file__).resolve().parent.parent
TIMM_KEYS = ROOT / "tests" / "fixtures" / "timm_keys"

# Reduced configurations: the same builders and placements, small enough for 2 CPU cores.
REDUCED = {
    ("cifar10", "Linf", "Amini2024MeanSparse_S-WRN-94-16"): {"depth": 10, "width": 1},
    ("cifar10", "Linf", "Amini2024MeanSparse_Ra_WRN_70_16"): {
        "stem_width": 8,
        "depth": (2, 1, 1),
        "stage_width": (16, 32, 64),
    },
    ("cifar10", "L2", "Amini2024MeanSparse_S-WRN-70-16"): {"depth": 16, "width": 1},
    ("cifar100", "Linf", "Amini2024MeanSparse_S-WRN-70-16"): {"depth": 16, "width": 1},
    ("imagenet", "Linf", "Amini2024MeanSparse_Swin-L"): {
        "embed_dim": 8,
        "depths": (2, 2, 2, 2),
        "num_heads": (1, 1, 2, 2),
    },
    ("imagenet", "Linf", "Amini2024MeanSparse_ConvNeXt-L"): {"depths": (1, 1, 2, 1), "dims": (8, 16, 32, 64)},
}
PUBLISHED_ALPHA = {
    "S-WRN-94-16": 0.15,
    "Ra_WRN_70_16": 0.25,
    "S-WRN-70-16": {"L2": 0.25, "Linf": 0.15},
    "Swin-L": 0.10,
    "ConvNeXt-L": 0.3,
}
IDS = ["/".join(key) for key in REDUCED]


def published_alpha(entry: rb.ZooEntry) -> float:
    alpha = PUBLISHED_ALPHA[entry.name.removeprefix("Amini2024MeanSparse_").removesuffix("-test")]
    return alpha[entry.threat] if isinstance(alpha, dict) else alpha


def reduced_entry(key) -> rb.ZooEntry:  # noqa: ANN001 - untyped by design in this script/test
    return rb.find(key[2], key[0], key[1]).reduced(key[2] + "-test", **REDUCED[key])


@pytest.fixture
def registered():
    """Registers reduced entries in the real registry for one test, and removes them afterwards."""
    added = []

    def register(entry: rb.ZooEntry) -> rb.ZooEntry:
        added.append(rb.register(entry))
        return entry

    yield register
    for entry in added:
        rb.unregister(entry)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights and MeanSparse statistics that make the operator bite (so the logit check has teeth)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.endswith("threshold"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.05)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif tensor.dim() > 1 and not name.endswith("relative_position_bias_table"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1 + (1.0 if "norm" in name else 0.0))


def save_robustbench_file(model: torch.nn.Module, entry: rb.ZooEntry, directory: Path, prefix: str) -> Path:
    """As RobustBench stores it: ImageNet files hold the inner model's keys (its loader adds `model.` back)."""
    state = model.state_dict()
    if entry.dataset == "imagenet":
        state = {k.removeprefix("model."): v for k, v in state.items()}
    path = entry.path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}} if prefix else state, path)
    return path


def block_site_counts(model: torch.nn.Module) -> Counter:
    """MeanSparse layers counted per kind of site: the path with block indices removed."""
    return Counter(re.sub(r"\.\d+\.", ".#.", re.sub(r"^model\.", "", name)) for name, _ in meansparse_layers(model))


def images_for(entry: rb.ZooEntry, n: int = 3) -> torch.Tensor:
    size = 224 if entry.dataset == "imagenet" else 32
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("key", list(REDUCED), ids=IDS)
@pytest.mark.parametrize("prefix", ["", "module."], ids=["plain", "module-prefixed"])
def test_reduced_entry_round_trips_through_robustbench_dir_with_identical_logits(key, prefix, tmp_path, registered):
    entry = registered(reduced_entry(key))
    reference = entry.build()
    randomize(reference, seed=1)
    save_robustbench_file(reference, entry, tmp_path, prefix)

    defense, kind = resolve_model(entry.name, robustbench_dir=str(tmp_path), dataset=entry.dataset, threat=entry.threat)
    assert kind == "robustbench" and type(defense).__name__ == "MeanSparseDefense"
    assert defense.num_classes == entry.num_classes
    x = images_for(entry)
    with torch.no_grad():
        expected = reference(x)
        assert torch.equal(defense(x), expected)
        assert expected.shape == (len(x), entry.num_classes)
        # MeanSparse changes the logits, so a loader that dropped its statistics would fail the check above.
        for _, layer in meansparse_layers(reference):
            layer.threshold.fill_(0.0)
        assert (reference(x) - expected).abs().max() > 1e-3
    layers = meansparse_layers(defense.model)
    assert {layer.alpha for _, layer in layers} == {published_alpha(entry)}
    saved = dict(meansparse_layers(reference))
    assert [name for name, _ in layers] == list(saved)
    assert all(
        isinstance(layer, MeanSparse) and torch.equal(layer.running_var, saved[name].running_var)
        for name, layer in layers
    )


# Official placement, counted per kind of site (RobustBench's MeanSparse architecture files / sparsified_model.py).
FULL_SIZE_SITES = {
    "Amini2024MeanSparse_S-WRN-94-16": {
        "layer.#.block.#.meansparse_0": 45,
        "layer.#.block.#.meansparse_1": 45,
        "layer.#.block.#.meansparse_2": 45,
        "meansparse_end": 1,
    },
    "Amini2024MeanSparse_Ra_WRN_70_16": {
        "layer.#.block.#.meansparse_0": 71,
        "layer.#.block.#.meansparse_1": 71,
        "layer.#.block.#.meansparse_2": 71,
        "meansparse_end": 1,
    },
    "Amini2024MeanSparse_S-WRN-70-16": {
        "layer.#.block.#.meansparse_0": 33,
        "layer.#.block.#.meansparse_1": 33,
        "layer.#.block.#.meansparse_2": 33,
        "meansparse_end": 1,
    },
    "Amini2024MeanSparse_Swin-L": {
        "layers.#.blocks.#.meansparse1": 24,
        "layers.#.blocks.#.meansparse2": 24,
        "layers.#.blocks.#.mlp.meansparse1": 24,
        "layers.#.blocks.#.mlp.meansparse2": 24,
    },
    "Amini2024MeanSparse_ConvNeXt-L": {"stages.#.blocks.#.mlp.act.0": 36, "stages.#.blocks.#.drop_path.1": 36},
}


@pytest.mark.parametrize("entry", rb.MEANSPARSE_ENTRIES, ids=lambda e: "/".join(e.key))
def test_full_size_placement_per_block_type_and_alpha(entry):
    with torch.device("meta"):
        model = entry.build()
    assert block_site_counts(model) == FULL_SIZE_SITES[entry.name]
    layers = meansparse_layers(model)
    assert entry.meansparse_alpha == published_alpha(entry)  # the value each layer's threshold is built with
    # Channel counts where the official code hard-codes them (ConvNeXt-L's drop_path sites: 192, 384, 768, 1536).
    if entry.name.endswith("ConvNeXt-L"):
        widths = {
            name.split(".")[2]: layer.running_mean.shape[0] for name, layer in layers if name.endswith("drop_path.1")
        }
        assert widths == {"0": 192, "1": 384, "2": 768, "3": 1536}
        assert {layer.layout for name, layer in layers if name.endswith("mlp.act.0")} == {"channels_last"}
    if entry.name.endswith("Swin-L"):
        assert {layer.layout for _, layer in layers} == {"tokens"}


def reference_keys(name: str) -> dict[str, list[int]]:
    return json.loads((TIMM_KEYS / f"{name}.json").read_text())["keys"]


@pytest.mark.parametrize(
    "entry_name,timm_name",
    [
        ("Amini2024MeanSparse_ConvNeXt-L", "convnext_large"),
        ("Amini2024MeanSparse_Swin-L", "swin_large_patch4_window7_224"),
    ],
)
def test_imagenet_architectures_match_timm_key_for_key(entry_name, timm_name):
    entry = rb.find(entry_name)
    timm_keys = reference_keys(timm_name)
    with torch.device("meta"):
        base = rb.BUILDERS[entry.architecture](entry.num_classes, *entry.normalization)
        sparse = entry.build()
    assert {k.removeprefix("model."): list(v.shape) for k, v in base.state_dict().items()} == timm_keys
    # With MeanSparse: timm's keys plus the official MeanSparse buffers, nothing else.
    buffers = {"running_mean", "running_var", "threshold", "flag_update_statistics", "batch_num", "momentum", "epsilon"}
    if timm_name.startswith("convnext"):
        blocks = {k.rsplit(".", 1)[0] for k in timm_keys if k.endswith(".gamma")}
        sites = {f"{b}.mlp.act.0" for b in blocks} | {f"{b}.drop_path.1" for b in blocks}
    else:
        blocks = {k.rsplit(".", 2)[0] for k in timm_keys if k.endswith(".norm1.weight")}
        sites = {
            f"{b}.{s}" for b in blocks for s in ("meansparse1", "meansparse2", "mlp.meansparse1", "mlp.meansparse2")
        }
    expected = set(timm_keys) | {f"{site}.{buffer}" for site in sites for buffer in buffers}
    assert {k.removeprefix("model.") for k in sparse.state_dict()} == expected


@pytest.mark.slow  # 15-30 s: a subprocess imports timm and compiles MeanSparse's kernels
def test_timm_itself_agrees_on_keys_and_logits():
    """Where timm can be imported (from the downloaded wheel, torchvision stood in), it gives the same key lists
    and the same logits as our ConvNeXt and Swin, and `build_convnext(backend="timm")` takes timm's class."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from timm_reference import wheel_path
    finally:
        sys.path.pop(0)
    if wheel_path() is None:
        pytest.skip("timm wheel not downloaded (make setup puts it in .venv/reference-wheels)")
    # A subprocess: importing timm through the stand-in must not leak into the other tests' process.
    code = r"""
import json, sys, torch
sys.path.insert(0, "scripts")
from timm_reference import import_timm, key_shapes
timm = import_timm()
from defenses.models.convnext import ConvNeXt, build_convnext
from defenses.models.swin import SwinTransformer
from timm.models.convnext import ConvNeXt as TimmConvNeXt
from timm.models.swin_transformer import SwinTransformer as TimmSwin
out = {}
for name in ("convnext_large", "swin_large_patch4_window7_224"):
    with torch.device("meta"):
        out[name] = key_shapes(timm.create_model(name, pretrained=False))
torch.manual_seed(0)
pairs = {"convnext": (TimmConvNeXt(num_classes=10, depths=(1, 1, 2, 1), dims=(8, 16, 32, 64)),
                      ConvNeXt(num_classes=10, depths=(1, 1, 2, 1), dims=(8, 16, 32, 64))),
         "swin": (TimmSwin(num_classes=10, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2)),
                  SwinTransformer(num_classes=10, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2)))}
x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
for name, (theirs, ours) in pairs.items():
    state = {k: torch.randn_like(v) * 0.2 if v.is_floating_point() else v for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(state); ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        out[name] = (theirs.eval()(x) - ours.eval()(x)).abs().max().item()
out["backend"] = type(build_convnext(10, (1, 1, 1, 1), (8, 8, 8, 8), backend="timm")).__module__
# The whole MeanSparse entry, built on timm (what `auto` picks where timm imports) and on our copy: same keys, and
# the same logits from the same state dict.
from defenses.models import robustbench as rb
from defenses.models import convnext as ours_module
entry = rb.find("Amini2024MeanSparse_ConvNeXt-L").reduced("t", depths=(1, 1, 2, 1), dims=(8, 16, 32, 64))
with_timm = entry.build()
out["entry_backend"] = type(with_timm.model).__module__
state = {k: torch.randn_like(v) * 0.2 if v.is_floating_point() and not k.endswith("threshold") else v
         for k, v in with_timm.state_dict().items()}
state = {k: v.abs() + 0.05 if k.endswith("running_var") else v for k, v in state.items()}
with_timm.load_state_dict(state)
real_import = ours_module._import_timm
ours_module._import_timm = lambda required: None
with_ours = entry.build()
ours_module._import_timm = real_import
with_ours.load_state_dict(state, strict=True)
with torch.no_grad():
    out["entry"] = (with_timm(x) - with_ours(x)).abs().max().item()
    out["entry_scale"] = with_ours(x).abs().max().item()
# RobustBench's own placement, transcribed from sparsified_model.py (add_custom_layer_imagenet and the buffers of
# MeanSparse_imagenet), applied to timm's convnext_large: the same keys and shapes as our full-size entry.
from torch import nn
from timm.layers.activations import GELU
class MeanSparse_imagenet(nn.Module):
    def __init__(self, in_planes, momentum=0.1):
        super().__init__()
        self.register_buffer('momentum', torch.tensor(momentum))
        self.register_buffer('epsilon', torch.tensor(1.0e-10))
        self.register_buffer('running_mean', torch.zeros(in_planes))
        self.register_buffer('running_var', torch.zeros(in_planes))
        self.register_buffer('threshold', torch.tensor(0.0))
        self.register_buffer('flag_update_statistics', torch.tensor(0))
        self.register_buffer('batch_num', torch.tensor(0.0))
def add_custom_layer_imagenet(model, custom_layer_class, parent_path='', prev_features=None):
    for name, child in model.named_children():
        current_path = f"{parent_path}.{name}" if parent_path else name
        if name == 'drop_path':
            widths = {'stages.0': 192, 'stages.1': 384, 'stages.2': 768, 'stages.3': 1536}
            stage = [k for k in widths if k in parent_path][0]
            setattr(model, name, nn.Sequential(child, custom_layer_class(widths[stage])))
        elif isinstance(child, GELU):
            assert any(f'stages.{i}' in parent_path for i in range(4))
            setattr(model, name, nn.Sequential(custom_layer_class(prev_features), child))
        elif isinstance(child, nn.Linear):
            prev_features = child.out_features
        add_custom_layer_imagenet(child, custom_layer_class, current_path, prev_features)
with torch.device("meta"):
    official = timm.create_model("convnext_large", pretrained=False)
    add_custom_layer_imagenet(official, MeanSparse_imagenet)
    ours_module._import_timm = lambda required: None
    mine = rb.find("Amini2024MeanSparse_ConvNeXt-L").build()
    ours_module._import_timm = real_import
out["official_placement"] = key_shapes(official) == {k.removeprefix("model."): v for k, v in key_shapes(mine).items()}
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["convnext_large"] == reference_keys("convnext_large")
    assert out["swin_large_patch4_window7_224"] == reference_keys("swin_large_patch4_window7_224")
    assert out["convnext"] == 0.0 and out["swin"] == 0.0  # bit for bit, same kernels in the same order
    assert out["backend"] == out["entry_backend"] == "timm.models.convnext"
    assert out["entry"] == 0.0 and out["entry_scale"] > 0.01
    assert out["official_placement"] is True


# ---------------------------------------------------------------------------------------------------------------
# Names: refused when unknown, never guessed; disambiguated by dataset and threat model


def test_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(
        rb.ZooError,
        match=r"unknown RobustBench model 'Nobody2030_Foo'; known: .*"
        r"Amini2024MeanSparse_ConvNeXt-L.*Amini2024MeanSparse_Swin-L",
    ):
        rb.find("Nobody2030_Foo")
    with pytest.raises(rb.ZooError, match=r"did you mean Amini2024MeanSparse_Ra_WRN_70_16\?"):
        rb.find("Amini2024MeanSparse_Ra-WRN-70-16")


def test_shared_name_needs_the_dataset_and_the_dataset_picks_it():
    with pytest.raises(
        rb.ZooError,
        match=r"ambiguous: RobustBench has it for cifar10/L2, cifar100/Linf; "
        r"pass --dataset \(cifar10 or cifar100\)",
    ):
        rb.find("Amini2024MeanSparse_S-WRN-70-16")
    assert rb.find("Amini2024MeanSparse_S-WRN-70-16", "cifar100").key == (
        "cifar100",
        "Linf",
        "Amini2024MeanSparse_S-WRN-70-16",
    )
    assert rb.find("Amini2024MeanSparse_S-WRN-70-16", "foolbox-cifar10").threat == "L2"
    with pytest.raises(rb.ZooError, match=r"pass --norm \(L2 or Linf\)"):
        rb.find("Wang2023Better_WRN-70-16", "cifar10")
    with pytest.raises(rb.ZooError, match=r"no entry for dataset cifar100 and threat L2; it exists for"):
        rb.find("Amini2024MeanSparse_S-WRN-70-16", "cifar100", "L2")


class Args:
    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - see the line above
        self.model, self.robustbench_dir = None, None
        self.dataset = self.norm = self.eps = self.claim = None
        self.__dict__.update(kwargs)


def test_run_defaults_come_from_the_entry_unless_given():
    args = Args(model="Amini2024MeanSparse_Swin-L", robustbench_dir="/models")
    rb.fill_run_defaults(args, {"dataset": "fashion-mnist", "norm": "Linf", "eps": 0.1})
    assert (args.dataset, args.norm, args.eps, args.claim) == ("imagenet", "Linf", pytest.approx(4 / 255), 0.6212)
    args = Args(
        model="Amini2024MeanSparse_S-WRN-70-16",
        robustbench_dir="/models",
        dataset="foolbox-cifar100",
        eps=0.01,
        claim=0.5,
    )
    rb.fill_run_defaults(args, {"dataset": "fashion-mnist", "norm": "Linf", "eps": 0.1})
    assert (args.dataset, args.norm, args.eps, args.claim) == ("foolbox-cifar100", "Linf", 0.01, 0.5)
    args = Args(model="demo-standard")
    rb.fill_run_defaults(args, {"dataset": "fashion-mnist", "norm": "Linf", "eps": 0.1})
    assert (args.dataset, args.norm, args.eps, args.claim) == ("fashion-mnist", "Linf", 0.1, None)


def test_missing_file_names_the_robustbench_layout(tmp_path):
    with pytest.raises(
        rb.ZooError,
        match=r"cifar100/Linf/Amini2024MeanSparse_S-WRN-70-16\.pt not found: "
        r"RobustBench's layout is <robustbench-dir>/cifar100/Linf/",
    ):
        rb.load(tmp_path, "Amini2024MeanSparse_S-WRN-70-16", "cifar100")


def test_published_numbers_are_brief_tables():
    table = {
        e.name + "/" + e.dataset + "/" + e.threat: (e.base_autoattack, e.autoattack, e.bpda)
        for e in rb.MEANSPARSE_ENTRIES
    }
    assert table == {
        "Amini2024MeanSparse_S-WRN-94-16/cifar10/Linf": (0.7371, 0.7528, 0.7310),
        "Amini2024MeanSparse_Ra_WRN_70_16/cifar10/Linf": (0.7107, 0.7208, 0.6894),
        "Amini2024MeanSparse_S-WRN-70-16/cifar10/L2": (0.8497, 0.8728, 0.8433),
        "Amini2024MeanSparse_S-WRN-70-16/cifar100/Linf": (0.4267, 0.4478, 0.4225),
        "Amini2024MeanSparse_Swin-L/imagenet/Linf": (0.5956, 0.6212, 0.5892),
        "Amini2024MeanSparse_ConvNeXt-L/imagenet/Linf": (0.5848, 0.5964, 0.5822),
    }


# ---------------------------------------------------------------------------------------------------------------
# End to end: `audit run --robustbench-dir DIR --model NAME` on foolbox's real sample images, reduced configs

E2E = [
    pytest.param(("cifar100", "Linf", "Amini2024MeanSparse_S-WRN-70-16"), "foolbox-cifar100", id="cifar100"),
    pytest.param(
        ("imagenet", "Linf", "Amini2024MeanSparse_Swin-L"), "foolbox-imagenet", id="swin-l", marks=pytest.mark.slow
    ),
    pytest.param(
        ("imagenet", "Linf", "Amini2024MeanSparse_ConvNeXt-L"),
        "foolbox-imagenet",
        id="convnext-l",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("key,dataset", E2E)
def test_audit_run_on_foolbox_samples_takes_threat_eps_and_claim_from_the_entry(key, dataset, tmp_path, registered):
    from audit.cli import main

    entry = registered(reduced_entry(key))
    model = entry.build()
    randomize(model, seed=2)
    save_robustbench_file(model, entry, tmp_path / "models", "module.")
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "--robustbench-dir",
            str(tmp_path / "models"),
            "--model",
            entry.name,
            "--dataset",
            dataset,
            "--n",
            "20",
            "--suite",
            "quick",
            "--diagnostics-n",
            "4",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == dataset and results["n_samples"] == 20
    assert results["threat_model"]["norm"] == "Linf"
    assert results["threat_model"]["eps"] == pytest.approx(8 / 255 if entry.dataset == "cifar100" else 4 / 255)
    assert results["claim"]["claimed_robust_accuracy"] == entry.autoattack
    assert {a["name"] for a in results["attacks"]} >= {"fgsm", "apgd-ce", "apgd-ce+bpda-identity"}
    assert any(f["id"] == "alpha-selection" and f["status"] == "warn" for f in results["findings"])
    report = (out / "report.html").read_text()
    assert entry.name in report and len((out / "samples.csv").read_text().splitlines()) == 1 + 20


def robustbench_rawrn_layout() -> dict[str, list[int]]:
    """Keys and shapes of RobustBench's MeanSparse RaWRN-70-16 (`Meansparse_ra_wrn_70_16.NormalizedWideResNet` with
    the arguments `sparsified_model.get_sparse_model` passes), written from that file, not from our model."""
    stem, depths, widths, classes = 96, (30, 31, 10), (216, 432, 864), 10
    bn = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    ms = {"running_mean", "running_var", "threshold", "flag_update_statistics", "batch_num"}

    def norm(prefix: str, c: int, buffers: set[str]) -> dict[str, list[int]]:
        return {
            f"{prefix}.{b}": (
                [] if b in ("num_batches_tracked", "threshold", "flag_update_statistics", "batch_num") else [c]
            )
            for b in buffers
        }

    keys = {"init_conv.weight": [stem, 3, 3, 3], "logits.weight": [classes, widths[2]], "logits.bias": [classes]}
    keys |= norm("batchnorm", widths[2], bn) | norm("meansparse_end", widths[2], ms)
    channels = [stem, *widths]
    for g in range(3):
        for b in range(depths[g]):
            p = f"layer.{g}.block.{b}"
            cin, cout = (channels[g] if b == 0 else channels[g + 1]), channels[g + 1]
            squeeze = int(round(0.25 * cout))
            keys |= norm(f"{p}.batchnorm_0", cin, bn) | norm(f"{p}.meansparse_0", cin, ms)
            keys |= norm(f"{p}.batchnorm_1", cout, bn) | norm(f"{p}.meansparse_1", cout, ms)
            keys |= norm(f"{p}.meansparse_2", cout, ms)
            keys |= {
                f"{p}.conv_0.weight": [cout, cin, 3, 3],
                f"{p}.conv_1.weight": [cout, cout, 3, 3],
                f"{p}.se.fc1.weight": [squeeze, cout, 1, 1],
                f"{p}.se.fc1.bias": [squeeze],
                f"{p}.se.fc2.weight": [cout, squeeze, 1, 1],
                f"{p}.se.fc2.bias": [cout],
            }
            if cin != cout:
                keys[f"{p}.shortcut.weight"] = [cout, cin, 1, 1]
    return keys


def test_rawrn_matches_robustbench_key_for_key():
    with torch.device("meta"):
        model = rb.find("Amini2024MeanSparse_Ra_WRN_70_16").build()
    ours = {
        k: list(v.shape) for k, v in model.state_dict().items() if not k.endswith((".momentum", ".epsilon"))
    }  # optional buffers of our MeanSparse (absent in this file)
    assert ours == robustbench_rawrn_layout()
