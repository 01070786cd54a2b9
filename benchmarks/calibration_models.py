"""The calibration set of `benchmarks/calibration.py`: one factory per model, loaded by `audit run` through
`PATH.py:FACTORY` exactly as a reviewer's own model file would be (opaque: no class of ours tells the suite what
is inside, except where a defense declares itself, e.g. declared noise).

Toys are standard-trained here on the first 55,000 Fashion-MNIST training images (seeded, a few hundred steps);
the masked wrappers sit around the shipped demo models.
"""
from __future__ import annotations

import functools

from torch import nn

from audit import load_dataset
from defenses import RandomNoise, load_shipped, set_alpha
from defenses.toys import KWTA, GradientInForward, KillGradients, ScaledLogits, Thermometer, train_toy


@functools.lru_cache(maxsize=1)
def _train_data() -> tuple:
    data = load_dataset("fashion-mnist", "train-only")
    return data.images, data.labels


def _trained(model: nn.Module, steps: int = 600) -> nn.Module:
    images, labels = _train_data()
    return train_toy(model, images, labels, steps=steps, seed=0)


def undefended() -> nn.Module:
    return load_shipped("demo-standard")


def adversarial() -> nn.Module:
    return load_shipped("demo-adversarial")


def meansparse_alpha_01() -> nn.Module:
    return set_alpha(load_shipped("demo-meansparse"), 0.1)


def meansparse_alpha_03() -> nn.Module:
    return load_shipped("demo-meansparse")


def meansparse_alpha_10() -> nn.Module:
    return set_alpha(load_shipped("demo-meansparse"), 1.0)


def quantized_input() -> nn.Module:
    from defenses import InputQuantization

    return InputQuantization(load_shipped("demo-standard"), bits=3)


def thermometer() -> nn.Module:
    return _trained(Thermometer(levels=16))


def kwta() -> nn.Module:
    return _trained(KWTA(ratio=0.2))


def logits_times_1e4() -> nn.Module:
    return ScaledLogits(load_shipped("demo-standard"), 1e4)


def gradients_killed() -> nn.Module:
    return KillGradients(load_shipped("demo-standard"))


def noise_declared() -> nn.Module:
    return RandomNoise(load_shipped("demo-adversarial"), sigma=0.1, seed=1)


def noise_undeclared() -> nn.Module:
    from defenses.toys import HiddenNoise

    return HiddenNoise(load_shipped("demo-adversarial"), sigma=0.1)


def gradient_step_in_forward() -> nn.Module:
    return GradientInForward(load_shipped("demo-standard"))
