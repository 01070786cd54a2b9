"""calibrate: the authors' statistic (`official`) and the true per-channel statistic (`exact`), checked with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from defenses.calibrate import calibrate, set_alpha
from defenses.meansparse import MeanSparse, meansparse_layers
from defenses.models.demo_cnn import DemoCNN
from defenses.sparsify import SparsifyError, sparsify


class Probe(nn.Module):
    """MeanSparse sees the input itself, then a second MeanSparse sees the first one's output."""

    def __init__(self, channels: int, alpha: float, layout: str = "auto") -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # calibrate finds the device from the parameters
        self.first = MeanSparse(channels, alpha, layout)
        self.second = MeanSparse(channels, alpha, layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x * self.scale))


def shifted_batches(layout: str) -> list[torch.Tensor]:
    """Batches whose per-channel means differ from batch to batch (and a smaller last batch)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for k, n in enumerate([8, 8, 8, 3]):
        shape = (n, 3, 4, 5) if layout == "nchw" else (n, 6, 3)
        shift = torch.tensor([2.0 * k, -1.0 * k, 0.5]) + 0.3
        scale = torch.tensor([1.0, 0.5 + k, 2.0])
        view = (1, 3, 1, 1) if layout == "nchw" else (1, 1, 3)
        batches.append(torch.randn(shape, generator=generator) * scale.view(view) + shift.view(view))
    return batches


def numpy_statistics(batches: list[torch.Tensor], layout: str):
    axes = (0, 2, 3) if layout == "nchw" else (0, 1)
    arrays = [b.double().numpy() for b in batches]
    official_mean = np.mean([a.mean(axis=axes) for a in arrays], axis=0)
    official_var = np.mean([a.var(axis=axes, ddof=1) for a in arrays], axis=0)
    # All features of a channel together: move the channel axis first and flatten the rest.
    channel_axis = 1 if layout == "nchw" else 2
    flat = np.concatenate([np.moveaxis(a, channel_axis, 0).reshape(3, -1) for a in arrays], axis=1)
    return official_mean, official_var, flat.mean(axis=1), flat.var(axis=1, ddof=1)


@pytest.mark.parametrize("layout", ["nchw", "tokens"])
def test_official_is_mean_of_per_batch_statistics(layout):
    batches = shifted_batches(layout)
    model = Probe(3, alpha=0.3)
    calibrate(model, batches, method="official", progress=False)
    official_mean, official_var, true_mean, true_var = numpy_statistics(batches, layout)
    for layer in (model.first, model.second):
        np.testing.assert_allclose(layer.running_mean.double().numpy(), official_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.running_var.double().numpy(), official_var, rtol=1e-5, atol=1e-6)
        assert layer.batch_num.item() == len(batches)
    # The authors' statistic is not the true one here: it misses the spread between batch means, and the small
    # last batch weighs as much as a full one.
    assert np.abs(official_var - true_var).max() > 1.0
    assert np.abs(official_mean - true_mean).max() > 0.1


@pytest.mark.parametrize("layout", ["nchw", "tokens"])
def test_exact_is_the_true_mean_and_unbiased_variance(layout):
    batches = shifted_batches(layout)
    model = Probe(3, alpha=0.3)
    calibrate(model, [(b, torch.zeros(len(b))) for b in batches], method="exact", progress=False)  # (x, y) batches
    _, _, true_mean, true_var = numpy_statistics(batches, layout)
    for layer in (model.first, model.second):
        np.testing.assert_allclose(layer.running_mean.double().numpy(), true_mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(layer.running_var.double().numpy(), true_var, rtol=1e-6)


@pytest.mark.parametrize("method", ["official", "exact"])
@pytest.mark.parametrize("training", [True, False])
def test_calibration_restores_thresholds_flags_and_mode(method, training):
    batches = shifted_batches("nchw")
    model = Probe(3, alpha=0.3)
    model.second.threshold.fill_(0.7)
    model.first.running_mean.fill_(123.0)  # stale statistics are replaced, not added to
    model.train(training)
    returned = calibrate(model, batches, method=method, progress=False)
    assert returned is model
    assert model.training is training and all(m.training is training for m in model.modules())
    assert model.first.threshold.item() == pytest.approx(0.3) and model.second.threshold.item() == pytest.approx(0.7)
    for layer in (model.first, model.second):
        assert layer.flag_update_statistics.item() == 0
        assert layer.threshold.dtype == torch.float32 and layer.flag_update_statistics.dtype == torch.int64
    # Thresholds were 0 during the pass, so the second layer saw raw features: both have the same statistics.
    assert torch.equal(model.first.running_mean, model.second.running_mean)
    assert torch.equal(model.first.running_var, model.second.running_var)
    assert model.first.running_mean.abs().max() < 10
    # After calibration the layer snaps with the restored alpha.
    x = batches[0]
    assert not torch.equal(model.first(x), x)


def test_calibration_failure_still_restores_state():
    model = Probe(3, alpha=0.3).train()
    batches = [torch.randn(4, 3, 2, 2), torch.randn(4, 5, 2, 2)]  # the second batch has the wrong channel count
    with pytest.raises(SparsifyError, match="calibrating MeanSparse: the model's forward raised RuntimeError") as error:
        calibrate(model, batches, progress=False)
    assert isinstance(error.value.__cause__, RuntimeError)
    assert model.training and model.first.threshold.item() == pytest.approx(0.3)
    assert model.first.flag_update_statistics.item() == 0


def test_calibration_runs_in_eval_mode_and_leaves_batchnorm_alone():
    torch.manual_seed(0)
    model = sparsify(DemoCNN(width=4), 0.25).train()
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k and "meansparse" not in k}
    calibrate(model, [torch.rand(8, 1, 28, 28) for _ in range(2)], progress=False)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in bn_before.items())
    layers = meansparse_layers(model)
    assert len(layers) == 5 and all(layer.running_var.min() > 0 for _, layer in layers)


def test_calibrate_and_set_alpha_argument_checks():
    with pytest.raises(ValueError, match="method must be"):
        calibrate(Probe(3, 0.3), [torch.randn(2, 3, 2, 2)], method="ema", progress=False)
    with pytest.raises(ValueError, match="no MeanSparse layers"):
        calibrate(DemoCNN(width=2), [torch.rand(2, 1, 28, 28)], progress=False)
    model = Probe(3, 0.3)
    assert set_alpha(model, 0.15) is model
    assert all(layer.alpha == pytest.approx(0.15) for _, layer in meansparse_layers(model))


def test_calibrate_model_without_parameters():
    model = nn.Sequential(MeanSparse(3, 0.2))
    batches = shifted_batches("nchw")
    calibrate(model, batches, method="exact", progress=False)
    _, _, true_mean, _ = numpy_statistics(batches, "nchw")
    np.testing.assert_allclose(model[0].running_mean.double().numpy(), true_mean, rtol=1e-6, atol=1e-6)
