"""The Defense protocol: adapter choice, surrogates, input quantization, randomized noise, eval mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from defenses.adapters import InputQuantization, MeanSparseDefense, RandomNoise, as_defense
from defenses.calibrate import calibrate
from defenses.meansparse import meansparse_layers
from defenses.models.demo_cnn import DemoCNN
from defenses.opaque import OpaqueModel
from defenses.protocol import Defense, Undefended
from defenses.sparsify import sparsify


def demo(seed: int = 0) -> DemoCNN:
    torch.manual_seed(seed)
    return DemoCNN(width=4).eval()


@pytest.fixture(scope="module")
def sparsified() -> nn.Module:
    model = sparsify(demo(), 0.4)
    calibrate(model, [torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))], progress=False)
    return model


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return torch.rand(6, 1, 28, 28, generator=generator), torch.randint(0, 10, (6,), generator=generator)


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return x.grad


def test_as_defense_picks_the_adapter(sparsified):
    defended = as_defense(sparsified, name="ms")
    assert type(defended) is MeanSparseDefense and defended.name == "ms"
    assert defended.surrogates == ("exact", "identity", "smooth", "ensemble")
    assert defended.alpha == pytest.approx(0.4) and len(defended.layers) == 5
    plain = as_defense(demo())
    assert type(plain) is Undefended and plain.surrogates == ("exact",)
    assert type(as_defense(sparsified, opaque=True)) is OpaqueModel
    assert as_defense(defended) is defended
    with pytest.raises(ValueError, match="needs a model with MeanSparse"):
        MeanSparseDefense(demo())


def test_defense_forward_is_the_model_forward(sparsified, images):
    x, _ = images
    with torch.no_grad():
        assert torch.equal(as_defense(sparsified)(x), sparsified(x))
        assert torch.equal(as_defense(demo())(x), demo()(x))


def test_surrogate_rejects_unknown_names(sparsified):
    for defense in (as_defense(sparsified), as_defense(demo()), InputQuantization(demo()), RandomNoise(demo())):
        with pytest.raises(ValueError, match="has no surrogate 'bpda'"):
            with defense.surrogate("bpda"):
                pass
    with pytest.raises(ValueError, match="has no surrogate 'identity'"):
        with as_defense(demo()).surrogate("identity"):
            pass


def test_meansparse_surrogates_switch_the_backward_only(sparsified, images):
    x, y = images
    defense = as_defense(sparsified)
    layers = [layer for _, layer in meansparse_layers(sparsified)]
    with torch.no_grad():
        exact_logits = defense(x)
    grads = {}
    for name, temperature in (("exact", None), ("identity", None), ("smooth", 0.05)):
        with defense.surrogate(name, temperature) as inside:
            assert inside is defense
            assert all(layer.gradient_mode == name for layer in layers)
            if temperature is not None:
                assert all(layer.temperature == temperature for layer in layers)
            with torch.no_grad():
                assert torch.equal(defense(x), exact_logits)
            grads[name] = input_grad(defense, x, y)
    assert all(layer.gradient_mode == "exact" and layer.temperature == 0.1 for layer in layers)
    assert torch.equal(grads["exact"], input_grad(sparsified, x, y))
    assert not torch.allclose(grads["exact"], grads["identity"])
    with pytest.raises(ValueError, match="temperature"):  # 0 is an error, not silently the default
        with defense.surrogate("smooth", 0.0):
            pass


def test_input_quantization_gradients(images):
    x, y = images
    base = demo()
    defense = InputQuantization(base, bits=3)
    levels = 2**3 - 1
    quantized = torch.round(x * levels) / levels
    assert not torch.equal(quantized, x)
    with torch.no_grad():
        assert torch.equal(defense(x), base(quantized))
    exact = input_grad(defense, x, y)
    assert torch.count_nonzero(exact) == 0  # rounding kills the gradient everywhere
    base_grad = input_grad(base, quantized, y)
    assert torch.count_nonzero(base_grad) > 0.9 * base_grad.numel()
    with defense.surrogate("identity"):
        with torch.no_grad():
            assert torch.equal(defense(x), base(quantized))  # same forward values
        assert torch.equal(input_grad(defense, x, y), base_grad)  # BPDA: the base gradient at the quantized point
    assert torch.count_nonzero(input_grad(defense, x, y)) == 0  # back to exact after the block


def test_random_noise_is_randomized_and_reproducible(images):
    x, _ = images
    base = demo()
    first = RandomNoise(base, sigma=0.2, seed=7)
    assert first.randomized and not Undefended(base).randomized
    with torch.no_grad():
        a1, a2, a3 = first(x), first(x), first(x)
        assert not torch.equal(a1, a2) and not torch.equal(a2, a3)
        second = RandomNoise(base, sigma=0.2, seed=7)
        b1, b2 = second(x), second(x)
        assert torch.equal(a1, b1) and torch.equal(a2, b2)
        other = RandomNoise(base, sigma=0.2, seed=8)
        assert not torch.equal(other(x), a1)
        first.reseed(7)
        assert torch.equal(first(x), a1)
        # The noise is the defense's own: the global generator neither drives it nor is consumed by it.
        torch.manual_seed(0)
        state = torch.get_rng_state()
        first.reseed(7)
        assert torch.equal(first(x), a1)
        assert torch.equal(torch.get_rng_state(), state)


class Noisy(nn.Module):
    """BatchNorm + Dropout: train mode would change its outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.Dropout(0.5), nn.Linear(32, 10)
        )

    def forward(self, x):  # noqa: ANN001 - untyped by design in this script/test
        return self.net(x)


@pytest.mark.parametrize("adapter", [Undefended, OpaqueModel, InputQuantization, RandomNoise])
def test_defense_stays_in_eval_mode(adapter, images):
    x, _ = images
    torch.manual_seed(0)
    model = Noisy().train()
    defense = adapter(model)
    assert isinstance(defense, Defense)
    assert not any(m.training for m in defense.modules())
    for call in (lambda: defense.train(), lambda: defense.train(True), lambda: model.train() and defense.train()):
        returned = call()
        assert returned is defense or returned is model
        assert not defense.training and not model.training
        assert not any(m.training for m in defense.modules())
    running_mean = model.net[2].running_mean.clone()
    if not defense.randomized:
        with torch.no_grad():
            assert torch.equal(defense(x), defense(x))  # no dropout
    assert torch.equal(model.net[2].running_mean, running_mean)  # BatchNorm statistics untouched


def test_device_and_description(sparsified):
    defense = as_defense(sparsified)
    assert defense.device == torch.device("cpu")
    assert "alpha=0.4" in defense.description and "5 layers" in defense.description
    assert "3 bits" in InputQuantization(demo(), bits=3).description
    assert "sigma=0.2" in RandomNoise(demo(), sigma=0.2).description
