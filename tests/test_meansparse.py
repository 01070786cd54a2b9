"""MeanSparse: the published forward bit for bit, surrogate backwards, official/RobustBench key layouts, sparsify."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defenses.calibrate import calibrate
from defenses.checkpoints import CheckpointError, load_into
from defenses.gradient_mode import gradient_mode
from defenses.meansparse import MeanSparse, MeanSparseBefore, meansparse_layers
from defenses.models.demo_cnn import DemoCNN
from defenses.models.wide_resnet import DMWideResNet
from defenses.sparsify import sparsify
from tests.helpers import random_wrn


def official_formula(x: torch.Tensor, running_mean, running_var, threshold, view) -> torch.Tensor:
    """MeanSparse.forward as published (RobustBench `Meansparse_wrn_94_16.py`), with the view as a parameter."""
    bias = running_mean.view(view)
    crop = threshold * torch.sqrt(running_var).view(view)
    diff = x - bias
    if threshold == 0:
        output = x
    else:
        output = torch.where(torch.abs(diff) < crop, bias * torch.ones_like(x), x)
    return output


def make_layer(channels: int, alpha: float, layout: str = "auto", seed: int = 0) -> MeanSparse:
    generator = torch.Generator().manual_seed(seed)
    layer = MeanSparse(channels, alpha, layout)
    layer.running_mean.copy_(torch.randn(channels, generator=generator))
    layer.running_var.copy_(torch.rand(channels, generator=generator) * 2 + 0.1)
    return layer


def snapped_fraction(x, layer: MeanSparse, view) -> float:
    mean = layer.running_mean.view(view)
    return (torch.abs(x - mean) < layer.threshold * torch.sqrt(layer.running_var).view(view)).float().mean().item()


# ---------------------------------------------------------------------------------------------------------------
# Forward


@pytest.mark.parametrize(
    "shape, layout, view",
    [
        ((4, 5, 6, 7), "auto", (1, 5, 1, 1)),  # NCHW feature maps
        ((4, 5, 6, 7), "channels_first", (1, 5, 1, 1)),
        ((3, 9, 5), "auto", (1, 1, 5)),  # (N, tokens, C)
        ((3, 9, 5), "tokens", (1, 1, 5)),
        ((2, 6, 7, 5), "channels_last", (1, 1, 1, 5)),  # (N, H, W, C), the ImageNet variant
        ((8, 5), "auto", (1, 5)),  # (N, C) features
    ],
)
def test_forward_equals_official_formula_bit_for_bit(shape, layout, view):
    channels = max(view)
    layer = make_layer(channels, alpha=0.5, layout=layout)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=generator) * 1.5
    out = layer(x)
    expected = official_formula(x, layer.running_mean, layer.running_var, layer.threshold, view)
    assert torch.equal(out, expected)
    assert 0.1 < snapped_fraction(x, layer, view) < 0.9  # both branches exercised
    assert not torch.equal(out, x)


def test_forward_on_channels_last_memory_format():
    layer = make_layer(5, alpha=0.5)
    x = torch.randn(4, 5, 6, 7, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=torch.channels_last)
    expected = official_formula(x.contiguous(), layer.running_mean, layer.running_var, layer.threshold, (1, 5, 1, 1))
    assert torch.equal(layer(x), expected)


def test_band_edge_is_strict():
    # mean 1, var 4 (std 2), alpha 0.25: the band half-width is exactly 0.5, all exactly representable.
    layer = MeanSparse(2, alpha=0.25)
    layer.running_mean.copy_(torch.tensor([1.0, -3.0]))
    layer.running_var.copy_(torch.tensor([4.0, 0.25]))  # channel 1: std 0.5, half-width 0.125
    edge = torch.tensor([[1.5, 0.5], [-2.875, -3.125]])  # exactly mean +- alpha*std: NOT snapped (strict <)
    inside = torch.nextafter(edge, torch.tensor([[1.0, 1.0], [-3.0, -3.0]]))  # one ulp inside: snapped
    outside = torch.nextafter(edge, torch.tensor([[9.0, -9.0], [9.0, -9.0]]))
    x = torch.stack([edge, inside, outside]).unsqueeze(-1)  # (N=3, C=2, H=2, W=1)
    out = layer(x)
    means = torch.tensor([1.0, -3.0]).view(1, 2, 1, 1).expand_as(x)
    assert torch.equal(out[0], x[0])  # at the edge: unchanged
    assert torch.equal(out[1], means[1])  # just inside: snapped to the mean
    assert torch.equal(out[2], x[2])
    assert torch.equal(out, official_formula(x, layer.running_mean, layer.running_var, layer.threshold, (1, 2, 1, 1)))


def test_alpha_zero_is_the_identity():
    layer = make_layer(5, alpha=0.0)
    layer.running_var.zero_()  # even with degenerate statistics
    x = torch.randn(3, 5, 4, 4)
    assert torch.equal(layer(x), x)
    x.requires_grad_(True)
    with gradient_mode(nn.Sequential(layer), "smooth", 0.01):
        layer(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


# ---------------------------------------------------------------------------------------------------------------
# Gradient modes


@pytest.fixture(scope="module")
def sparsified_demo() -> nn.Module:
    torch.manual_seed(0)
    model = sparsify(DemoCNN(width=4).eval(), alpha=0.4)
    calibrate(model, [torch.rand(16, 1, 28, 28) for _ in range(3)], progress=False)
    return model


MODES = [("exact", 0.1), ("identity", 0.1)] + [("smooth", t) for t in (1.0, 0.1, 0.01, 1e-4)]


def test_every_gradient_mode_keeps_the_exact_forward(sparsified_demo):
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        exact = sparsified_demo(x)
    layers = [layer for _, layer in meansparse_layers(sparsified_demo)]
    assert len(layers) == 5
    grads = {}
    for mode, temperature in MODES:
        xg = x.clone().requires_grad_(True)
        with gradient_mode(sparsified_demo, mode, temperature):
            assert all(layer.gradient_mode == mode and layer.temperature == temperature for layer in layers)
            out = sparsified_demo(xg)
            assert torch.equal(out, exact), (mode, temperature)
            out[:, 0].sum().backward()
        grads[(mode, temperature)] = xg.grad
        assert torch.isfinite(xg.grad).all()
    assert all(layer.gradient_mode == "exact" for layer in layers)  # restored
    # The modes do change the backward.
    assert not torch.allclose(grads[("exact", 0.1)], grads[("identity", 0.1)])
    assert not torch.allclose(grads[("smooth", 1.0)], grads[("identity", 0.1)])


def test_sparsified_model_actually_snaps(sparsified_demo):
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    fractions = []
    hooks = [
        layer.register_forward_pre_hook(
            lambda module, inputs: fractions.append(snapped_fraction(inputs[0], module, (1, -1, 1, 1)))
        )
        for _, layer in meansparse_layers(sparsified_demo)
    ]
    try:
        with torch.no_grad():
            sparsified_demo(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(fractions) == 5 and all(0.05 < f < 0.95 for f in fractions)


def single_layer_grad(mode: str, temperature: float = 0.1, alpha: float = 0.5):
    layer = make_layer(4, alpha)
    x = torch.randn(6, 4, 5, 5, generator=torch.Generator().manual_seed(4)) * 2
    x = x.requires_grad_(True)
    with gradient_mode(nn.Sequential(layer), mode, temperature):
        out = layer(x)
        out.backward(torch.ones_like(out))
    d = (x.detach() - layer.running_mean.view(1, -1, 1, 1)).abs()
    crop = layer.threshold * torch.sqrt(layer.running_var).view(1, -1, 1, 1)
    return layer, x.detach(), x.grad, d, crop


def test_exact_gradient_is_autograd_through_the_official_formula_bit_for_bit():
    layer = make_layer(4, alpha=0.5)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, 5, 5, generator=generator) * 2
    upstream = torch.randn(6, 4, 5, 5, generator=generator)
    ours, official = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    layer(ours).backward(upstream)
    official_formula(official, layer.running_mean, layer.running_var, layer.threshold, (1, 4, 1, 1)).backward(upstream)
    assert torch.equal(ours.grad, official.grad)


@pytest.mark.parametrize("mode", ["exact", "identity", "smooth"])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_relu_fused_into_meansparse_is_the_composition_bit_for_bit(mode, alpha):
    """MeanSparseBefore(., ReLU) runs one fused kernel; values and every mode's gradient are relu(MeanSparse(x))'s."""
    layer = make_layer(4, alpha=alpha)
    fused = MeanSparseBefore(layer, nn.ReLU())
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(6, 4, 5, 5, generator=generator) * 2
    upstream = torch.randn(6, 4, 5, 5, generator=generator)
    ours, composed = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with gradient_mode(fused, mode, 0.1):
        out = fused(ours)
        out.backward(upstream)
        reference = torch.relu(layer(composed))
        reference.backward(upstream)
    assert torch.equal(out, reference) and torch.equal(ours.grad, composed.grad)
    assert (out == 0).float().mean() > 0.2 and ours.grad.abs().sum() > 0  # the gates were exercised


def test_relu_with_a_hook_is_not_fused_so_the_hook_runs():
    fused = MeanSparseBefore(make_layer(4, alpha=0.5), nn.ReLU())
    seen = []
    fused.module.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    fused(torch.randn(2, 4, 3, 3))
    assert seen == [torch.Size([2, 4, 3, 3])]


def test_unfused_fallback_gives_the_same_values_and_says_so(monkeypatch, caplog):
    from defenses import fused

    def broken_compiler(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compiler)
    fallback = fused._Fused(fused.dead_zone_eager)
    layer = make_layer(5, alpha=0.5)
    x = torch.randn(4, 5, 6, 7, generator=torch.Generator().manual_seed(1))
    mean = layer.running_mean.view(1, -1, 1, 1)
    crop = layer.threshold * torch.sqrt(layer.running_var).view(1, -1, 1, 1)
    assert torch.equal(fallback(x, mean, crop), layer(x))
    assert fallback.failed and "unfused" in caplog.text
    assert torch.equal(fallback(x, mean, crop), layer(x))  # and stays on the eager path


def test_exact_gradient_is_zero_inside_band_one_outside():
    _, _, grad, d, crop = single_layer_grad("exact")
    inside = d < crop
    assert 0 < inside.sum() < inside.numel()
    assert torch.equal(grad, (~inside).float())


def test_identity_gradient_is_all_ones():
    _, _, grad, d, crop = single_layer_grad("identity")
    assert (d < crop).any()
    assert torch.equal(grad, torch.ones_like(grad))


def smooth_reference_grad(x, layer: MeanSparse, temperature: float) -> torch.Tensor:
    """Autograd of the documented surrogate mean + d * sigmoid((|d| - alpha*std) / (T*std)), in float64."""
    x = x.double().requires_grad_(True)
    mean = layer.running_mean.double().view(1, -1, 1, 1)
    std = torch.sqrt(layer.running_var.double()).view(1, -1, 1, 1)
    d = x - mean
    (mean + d * torch.sigmoid((d.abs() - layer.alpha * std) / (temperature * std))).sum().backward()
    return x.grad


@pytest.mark.parametrize("temperature", [1.0, 0.3, 0.1, 0.03])
def test_smooth_gradient_is_the_surrogate_derivative(temperature):
    layer, x, grad, d, crop = single_layer_grad("smooth", temperature)
    torch.testing.assert_close(grad.double(), smooth_reference_grad(x, layer, temperature), rtol=1e-4, atol=1e-5)
    inside, deep = d < crop, d < crop / 2
    assert deep.sum() > 10
    # Where the exact gradient is 0 the smooth one is not: it gives a signal everywhere in the dead zone, and
    # well inside the band it lies strictly between the exact gradient (0) and the identity (1).
    assert (grad[inside] > 0).all()
    assert (grad[deep] < 1).all()
    assert (grad[~inside] > 0.5).all()  # outside, sigmoid > 1/2 and the derivative term is >= 0


def test_smooth_gradient_tends_to_exact_as_temperature_goes_to_zero():
    mean_errors, max_errors = [], []
    for temperature in (1.0, 0.1, 0.01, 0.001):
        layer, x, grad, d, crop = single_layer_grad("smooth", temperature)
        std = torch.sqrt(layer.running_var).view(1, -1, 1, 1)
        away = (d - crop).abs() > 0.1 * std  # more than 0.1 std from the band edge
        assert away.float().mean() > 0.8
        error = (grad - (d >= crop).float())[away].abs()
        mean_errors.append(error.mean().item())
        max_errors.append(error.max().item())
    assert all(a > b for a, b in zip(mean_errors, mean_errors[1:])), mean_errors
    assert mean_errors[0] > 0.05  # at T = 1 the surrogate is far from the exact gradient
    assert max_errors[2] < 1e-2 and max_errors[3] < 1e-6, max_errors


def test_gradient_mode_rejects_bad_arguments_and_restores_on_error():
    model = nn.Sequential(make_layer(3, 0.5))
    with pytest.raises(ValueError, match="gradient mode"):
        with gradient_mode(model, "straight"):
            pass
    with pytest.raises(ValueError, match="temperature"):
        with gradient_mode(model, "smooth", 0.0):
            pass
    with pytest.raises(RuntimeError):
        with gradient_mode(model, "identity", 0.5):
            raise RuntimeError("boom")
    assert model[0].gradient_mode == "exact" and model[0].temperature == 0.1


# ---------------------------------------------------------------------------------------------------------------
# Official and RobustBench key layouts in the WideResNet


def robustbench_wrn_layout(depth: int, width: int) -> tuple[set[str], dict[str, int]]:
    """Keys of RobustBench's DMWideResNet and the MeanSparse slots of MeanSparse_DMWideResNet, with channel counts,
    written from RobustBench's architecture file (not from our model)."""
    channels = [16, 16 * width, 32 * width, 64 * width]
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"init_conv.weight", "logits.weight", "logits.bias"} | {f"batchnorm.{b}" for b in bn}
    slots = {"meansparse_end": channels[3]}
    for g in range(3):
        for b in range((depth - 4) // 6):
            prefix = f"layer.{g}.block.{b}."
            in_planes, out_planes = (channels[g] if b == 0 else channels[g + 1]), channels[g + 1]
            keys |= {f"{prefix}batchnorm_0.{n}" for n in bn} | {f"{prefix}batchnorm_1.{n}" for n in bn}
            keys |= {f"{prefix}conv_0.weight", f"{prefix}conv_1.weight"}
            if in_planes != out_planes:
                keys.add(f"{prefix}shortcut.weight")
            slots |= {
                f"{prefix}meansparse_0": in_planes,
                f"{prefix}meansparse_1": out_planes,
                f"{prefix}meansparse_2": out_planes,
            }
    return keys, slots


def meansparse_state(slots: dict[str, int], alpha: float, official: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for slot, channels in slots.items():
        state[f"{slot}.running_mean"] = torch.randn(channels, generator=generator) * 0.3
        state[f"{slot}.running_var"] = torch.rand(channels, generator=generator) + 0.2
        state[f"{slot}.threshold"] = torch.tensor(alpha)
        state[f"{slot}.flag_update_statistics"] = torch.tensor(0)
        state[f"{slot}.batch_num"] = torch.tensor(7.0)
        if official:
            state[f"{slot}.momentum"] = torch.tensor(0.3)
            state[f"{slot}.epsilon"] = torch.tensor(1e-3)
    return state


@pytest.mark.parametrize("official", [True, False], ids=["official-layout", "robustbench-layout"])
def test_wrn_state_dict_layouts_load_strictly_and_match_formula(official):
    depth, width, alpha = 10, 2, 0.2
    base_keys, slots = robustbench_wrn_layout(depth, width)
    assert len(slots) == 3 * 3 + 1 and any(k.endswith("shortcut.weight") for k in base_keys)
    base = random_wrn(0, depth, width)
    assert set(base.state_dict()) == base_keys
    state = {**base.state_dict(), **meansparse_state(slots, alpha, official)}

    target = sparsify(random_wrn(1, depth, width), 0.0, placement="wrn")
    expected_keys = base_keys | set(meansparse_state(slots, alpha, official=True))
    assert set(target.state_dict()) == expected_keys
    load_into(target, {f"module.{k}": v for k, v in state.items()})
    strict = sparsify(random_wrn(2, depth, width), 0.0, placement="wrn")
    strict.load_state_dict(state, strict=True)  # torch's own strict load accepts both layouts too
    layer = target.get_submodule("layer.1.block.0.meansparse_0")
    assert isinstance(layer, MeanSparse) and layer.alpha == pytest.approx(alpha)
    assert layer.momentum.item() == pytest.approx(0.3 if official else 0.1)
    assert torch.equal(layer.running_mean, state["layer.1.block.0.meansparse_0.running_mean"])

    # Reference: the plain base model with the published formula hooked onto each empty slot.
    handles = []
    for slot in slots:
        stats = [state[f"{slot}.{name}"] for name in ("running_mean", "running_var", "threshold")]
        handles.append(
            base.get_submodule(slot).register_forward_hook(
                lambda module, inputs, output, stats=stats: official_formula(output, *stats, (1, -1, 1, 1))
            )
        )
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = base(x)
        for handle in handles:
            handle.remove()
        plain = base(x)
        assert torch.equal(target(x), reference)
        assert torch.equal(strict(x), reference)
    assert not torch.allclose(plain, reference)  # MeanSparse changed the logits: the comparison has teeth


def test_wrn_checkpoint_missing_a_required_meansparse_buffer_is_refused():
    _, slots = robustbench_wrn_layout(10, 1)
    state = {**random_wrn(0, 10, 1).state_dict(), **meansparse_state(slots, 0.2, official=False)}
    del state["meansparse_end.running_var"]
    with pytest.raises(CheckpointError, match=r"1 missing keys \(e\.g\. \['meansparse_end\.running_var'\]\)"):
        load_into(sparsify(random_wrn(1, 10, 1), 0.0, placement="wrn"), state)


def test_swish_matches_robustbench_formula_bit_for_bit():
    model = DMWideResNet(depth=10, width=1, activation="swish")
    x = torch.randn(10000) * 4
    assert torch.equal(model.relu(x), x * torch.sigmoid(x))  # RobustBench's _Swish.forward
    assert isinstance(model.relu, nn.SiLU)


# ---------------------------------------------------------------------------------------------------------------
# sparsify


def test_sparsify_does_not_modify_the_input_model():
    torch.manual_seed(0)
    model = DemoCNN(width=4).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = [type(m) for m in model.modules()]
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        logits = model(x)
    new = sparsify(model, 0.5)
    calibrate(new, [torch.rand(8, 1, 28, 28)], progress=False)
    with torch.no_grad():
        new.classifier.weight.add_(1.0)
    assert [type(m) for m in model.modules()] == types and not meansparse_layers(model)
    assert set(model.state_dict()) == set(before)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(x), logits)


def test_sparsify_democnn_puts_meansparse_before_every_activation():
    torch.manual_seed(0)
    model = DemoCNN(width=4).eval()
    new = sparsify(model, 0.3)
    expected = {"stem.2": 4, "block1.act1": 8, "block1.act2": 8, "block2.act1": 16, "block2.act2": 16}
    for path, channels in expected.items():
        wrapper = new.get_submodule(path)
        assert isinstance(wrapper, MeanSparseBefore) and isinstance(wrapper.module, nn.ReLU)
        assert wrapper.meansparse.running_mean.shape == (channels,) and wrapper.meansparse.alpha == pytest.approx(0.3)
    assert [name for name, _ in meansparse_layers(new)] == [f"{p}.meansparse" for p in expected]
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(sparsify(model, 0.0)(x), model(x))


@pytest.mark.parametrize("activation", ["swish", "relu"])
def test_sparsify_wrn_family(activation):
    model = DMWideResNet(depth=16, width=1, activation=activation).eval()
    _, slots = robustbench_wrn_layout(16, 1)
    new = sparsify(model, 0.25, placement="wrn")
    layers = dict(meansparse_layers(new))
    assert len(layers) == 3 * 2 * 3 + 1 == len(slots)
    assert set(layers) == set(slots)  # the slots themselves, no wrapper: official key names
    assert all(layers[s].running_mean.numel() == c for s, c in slots.items())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(sparsify(model, 0.0, placement="wrn")(x), model(x))
    # "activations" placement on the same model: one per activation module (2 per block + the final one).
    assert len(meansparse_layers(sparsify(model, 0.25))) == 3 * 2 * 2 + 1


def test_sparsify_generic_sequential_with_gelu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.GELU(), nn.Linear(8, 3)).eval()
    with pytest.raises(ValueError, match="input_shape"):
        sparsify(model, 0.3)
    model.input_shape = (3, 2, 2)
    new = sparsify(model, 0.6)
    layer = new[2].meansparse
    assert isinstance(new[2], MeanSparseBefore) and isinstance(new[2].module, nn.GELU)
    layer.running_mean.copy_(torch.linspace(-0.5, 0.5, 8))
    layer.running_var.copy_(torch.linspace(0.1, 1.0, 8))
    x = torch.rand(16, 3, 2, 2)
    hidden = model[1](model[0](x))
    snapped = official_formula(hidden, layer.running_mean, layer.running_var, layer.threshold, (1, 8))
    assert not torch.equal(snapped, hidden)
    with torch.no_grad():
        assert torch.equal(new(x), model[3](model[2](snapped)))


class TokenMLP(nn.Module):
    input_shape = (5, 6)  # (tokens, C)

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 10), nn.GELU(), nn.Linear(10, 6)

    def forward(self, x):  # noqa: ANN001 - untyped by design in this script/test
        return self.fc2(self.act(self.fc1(x)))


def test_sparsify_token_model_uses_last_dim_as_channels():
    torch.manual_seed(0)
    model = TokenMLP().eval()
    new = sparsify(model, 0.5)
    layer = new.act.meansparse
    assert layer.running_mean.shape == (10,)
    calibrate(new, [torch.randn(4, 5, 6) for _ in range(2)], method="exact", progress=False)
    x = torch.randn(3, 5, 6)
    hidden = model.fc1(x)
    snapped = official_formula(hidden, layer.running_mean, layer.running_var, layer.threshold, (1, 1, 10))
    assert not torch.equal(snapped, hidden)
    with torch.no_grad():
        assert torch.equal(new(x), model.fc2(model.act(snapped)))


def test_sparsify_explicit_module_paths():
    torch.manual_seed(0)
    model = DemoCNN(width=4).eval()
    new = sparsify(model, 0.3, placement=["block1.bn2", "classifier"])
    assert [name for name, _ in meansparse_layers(new)] == ["block1.bn2.meansparse", "classifier.meansparse"]
    assert isinstance(new.block1.bn2.module, nn.BatchNorm2d) and new.block1.bn2.meansparse.running_mean.numel() == 8
    assert isinstance(new.classifier.module, nn.Linear) and new.classifier.meansparse.running_mean.numel() == 16
    wrn = sparsify(DMWideResNet(depth=10, width=1), 0.3, placement=["meansparse_end"])
    assert [name for name, _ in meansparse_layers(wrn)] == ["meansparse_end"]
    assert "meansparse_end.running_mean" in wrn.state_dict()


def test_sparsify_rejects_bad_placements():
    model = DemoCNN(width=4)
    with pytest.raises(ValueError, match="placement must be one of"):
        sparsify(model, 0.3, placement="everywhere")
    with pytest.raises(ValueError, match="meansparse_\\* slots"):
        sparsify(model, 0.3, placement="wrn")
    with pytest.raises(ValueError, match=r"no such modules in the model: \['block3.act1'\]"):
        sparsify(model, 0.3, placement=["block1.act1", "block3.act1"])
    with pytest.raises(ValueError, match="no such modules"):
        sparsify(model, 0.3, placement=[""])
    with pytest.raises(ValueError, match="no insertion points"):
        sparsify(model, 0.3, placement=[])
    with pytest.raises(ValueError, match="layout must be one of"):
        sparsify(model, 0.3, layout="nhwc")
    model.unused = nn.ReLU()
    with pytest.raises(ValueError, match=r"never called in forward.*unused"):
        sparsify(model, 0.3)


class SharedActivation(nn.Module):
    input_shape = (3, 4, 4)

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):  # noqa: ANN001 - untyped by design in this script/test
        return self.relu(self.conv2(self.relu(self.conv1(x))))


def test_sparsify_refuses_a_module_called_at_several_places():
    with pytest.raises(ValueError, match=r"called more than once.*\['relu'\]"):
        sparsify(SharedActivation(), 0.3)
    assert len(meansparse_layers(sparsify(SharedActivation(), 0.3, placement=["conv2"]))) == 1
