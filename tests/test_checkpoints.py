"""Checkpoints: RobustBench-style torch files, refusal of code-running pickles, clear mismatch errors, safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from defenses.checkpoints import (
    CheckpointError,
    load_into,
    load_state_dict,
    read_metadata,
    save_checkpoint,
    strip_prefixes,
)
from defenses.models.demo_cnn import DemoCNN
from defenses.models.registry import load_checkpoint_file
from defenses.models.wide_resnet import DMWideResNet
from defenses.sparsify import sparsify
from tests.helpers import random_wrn


def tiny_wrn(seed: int) -> DMWideResNet:
    """depth 10, width 1; BN statistics and affine parameters randomised so every weight matters in eval mode."""
    return random_wrn(seed, depth=10, width=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("wrapped", [True, False], ids=["state_dict-wrapped", "bare"])
def test_robustbench_style_torch_checkpoint_loads_strictly_with_identical_logits(tmp_path, images, wrapped):
    source, target = tiny_wrn(0), tiny_wrn(1)
    with torch.no_grad():
        assert not torch.equal(source(images), target(images))
    state = {f"module.{key}": value for key, value in source.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 99} if wrapped else state, tmp_path / "Model.pt")
    loaded = load_state_dict(tmp_path / "Model.pt")
    assert all(key.startswith("module.") for key in loaded)
    assert load_into(target, loaded) is target
    with torch.no_grad():
        assert torch.equal(source(images), target(images))
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key


def test_strip_prefixes_like_robustbench():
    value = torch.zeros(1)
    stripped = strip_prefixes({"module.a.weight": value, "model.b.bias": value, "module.model.c": value, "d": value})
    assert sorted(stripped) == ["a.weight", "b.bias", "c", "d"]


class _Wrapper(nn.Module):
    """A user's model whose own child is called `model`: its keys must not be stripped."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Linear(3, 2)
        self.head = nn.Linear(2, 2)

    def forward(self, x):  # noqa: ANN001 - untyped by design in this script/test
        return self.head(self.model(x))


def test_keys_that_already_fit_are_not_stripped():
    torch.manual_seed(0)
    source, target = _Wrapper(), _Wrapper()
    load_into(target, source.state_dict())
    x = torch.randn(5, 3)
    assert torch.equal(source(x), target(x))


class _WritesFile:
    """Unpickling this creates a file: the side effect a malicious checkpoint would have."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "side-effect"
    path = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(2), "payload": _WritesFile(marker)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as caught:
        load_state_dict(path)
    assert "GLOBAL getattr" in str(caught.value)  # the detail names what was refused, not torch's first line
    assert not marker.exists()
    # The payload is real: trusting the file runs it (and what it unpickles is then not a state dict).
    with pytest.raises(CheckpointError, match="does not hold a state dict of tensors"):
        load_state_dict(path, trust_checkpoint=True)
    assert marker.exists()


def test_missing_and_unexpected_keys_are_named(images):
    model = tiny_wrn(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = dict(tiny_wrn(1).state_dict())
    del state["logits.bias"]
    state["layer.0.block.0.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as caught:
        load_into(model, state, source="ckpt.pt")
    message = str(caught.value)
    assert message.startswith("ckpt.pt does not fit the architecture")
    assert "1 missing keys" in message and "logits.bias" in message
    assert "1 unexpected keys" in message and "layer.0.block.0.extra.weight" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded


def test_shape_mismatch_is_named():
    model = tiny_wrn(0)
    state = dict(tiny_wrn(1).state_dict())
    state["logits.weight"] = torch.zeros(100, 64)
    with pytest.raises(
        CheckpointError,
        match=r"1 shape mismatches \(e\.g\. logits\.weight: checkpoint \(100, 64\), "
        r"model \(10, 64\)\)",
    ):
        load_into(model, state)


def test_width_mismatch_between_architectures_is_an_error():
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_into(DMWideResNet(depth=10, width=1), DMWideResNet(depth=10, width=2).state_dict())


def test_missing_file(tmp_path):
    for name in ("absent.pt", "absent.safetensors"):
        with pytest.raises(CheckpointError, match="not found"):
            load_state_dict(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        read_metadata(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("cut", ["half", "header", "empty", "garbage"])
def test_corrupt_safetensors(tmp_path, cut):
    path = tmp_path / "model.safetensors"
    save_checkpoint(tiny_wrn(0), path, {"architecture": "dm_wide_resnet"})
    raw = path.read_bytes()
    path.write_bytes({"half": raw[: len(raw) // 2], "header": raw[:12], "empty": b"", "garbage": b"\xff" * 64}[cut])
    with pytest.raises(CheckpointError, match="corrupt or not safetensors"):
        load_state_dict(path)
    with pytest.raises(CheckpointError, match="corrupt or not safetensors"):
        read_metadata(path)


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"\x80\x02garbage"], ids=["empty", "text", "pickle"]
)
def test_corrupt_torch_file(tmp_path, content):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_state_dict(tmp_path / "bad.pt")


def test_truncated_torch_file(tmp_path):
    torch.save(tiny_wrn(0).state_dict(), tmp_path / "full.pt")
    raw = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state_dict(tmp_path / "cut.pt")


def test_safetensors_roundtrip_with_metadata(tmp_path, images):
    model = sparsify(tiny_wrn(0), 0.2, placement="wrn")
    for _, module in model.named_modules():
        if hasattr(module, "running_var") and not isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    metadata = {
        "architecture": "dm_wide_resnet",
        "arch_kwargs": {"depth": 10, "width": 1},
        "meansparse": {"alpha": 0.2, "placement": "wrn"},
        "history": [{"epoch": 1, "acc": 0.5}],
    }
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path, metadata)
    assert read_metadata(path) == metadata
    state = load_state_dict(path)
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in model.state_dict().items())
    # And the registry rebuilds it from the metadata alone, including MeanSparse.
    rebuilt = load_checkpoint_file(path)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), model(images))


def test_foreign_safetensors_metadata_is_kept_as_strings(tmp_path):
    path = tmp_path / "hf.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt", "n": "3"})
    assert read_metadata(path) == {"format": "pt", "n": 3}
    with pytest.raises(CheckpointError, match="no 'architecture' metadata"):
        load_checkpoint_file(path)


def test_save_checkpoint_metadata_is_json(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(DemoCNN(width=2), path, {"note": 'a "quoted" string', "alpha": 0.25})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata()
    assert json.loads(raw["note"]) == 'a "quoted" string' and json.loads(raw["alpha"]) == 0.25
