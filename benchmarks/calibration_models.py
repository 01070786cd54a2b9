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


# --- grown for the held-out calibration (benchmarks/calibration_set.py): more instances of each family, and
# families the fitting set has none of. Toys train for a few hundred seeded steps (seconds each).


def _adversarially_trained(eps: float, seed: int, steps: int = 400) -> nn.Module:
    """A SmallCNN trained with FGSM-RS at `eps` (Wong et al. 2020): standard SGD on the perturbed batch."""
    import torch
    import torch.nn.functional as F

    from audit.train import TrainConfig, perturb
    from defenses.toys import SmallCNN

    images, labels = _train_data()
    torch.manual_seed(seed)
    model, generator = SmallCNN(), torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    config = TrainConfig(method="fgsm", eps=eps, seed=seed)
    for _ in range(steps):
        index = torch.randint(0, len(images), (64,), generator=generator)
        model.eval()  # the perturbation sees the model as the attack will (SmallCNN has no batch norm anyway)
        x = perturb(model, images[index], labels[index], config, generator)
        model.train()
        loss = F.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def undefended_toy_seed0() -> nn.Module:
    from defenses.toys import SmallCNN

    return train_toy(SmallCNN(), *_train_data(), steps=300, seed=0)


def undefended_toy_seed1() -> nn.Module:
    from defenses.toys import SmallCNN

    return train_toy(SmallCNN(), *_train_data(), steps=300, seed=1)


def adversarial_toy_eps01() -> nn.Module:
    return _adversarially_trained(0.1, seed=0)


def adversarial_toy_eps005() -> nn.Module:
    return _adversarially_trained(0.05, seed=1)


def noise_declared_small() -> nn.Module:
    return RandomNoise(load_shipped("demo-adversarial"), sigma=0.05, seed=2)


def ste_quantizer_standard() -> nn.Module:
    from defenses.straight_through import STEQuantizer

    return STEQuantizer(load_shipped("demo-standard"), bits=3)


def ste_quantizer_adversarial() -> nn.Module:
    from defenses.straight_through import STEQuantizer

    return STEQuantizer(load_shipped("demo-adversarial"), bits=4)


def jpeg_identity_standard() -> nn.Module:
    from defenses.straight_through import JPEGRounding

    return JPEGRounding(load_shipped("demo-standard"), step=0.1)


def jpeg_identity_adversarial() -> nn.Module:
    from defenses.straight_through import JPEGRounding

    return JPEGRounding(load_shipped("demo-adversarial"), step=0.1)


def quantized_toy() -> nn.Module:
    from defenses.toys import QuantizedInput

    return train_toy(QuantizedInput(levels=8), *_train_data(), steps=300, seed=0)


def logits_times_1e4_adversarial() -> nn.Module:
    return ScaledLogits(load_shipped("demo-adversarial"), 1e4)


def gradients_killed_adversarial() -> nn.Module:
    return KillGradients(load_shipped("demo-adversarial"))


def noise_undeclared_standard() -> nn.Module:
    from defenses.toys import HiddenNoise

    return HiddenNoise(load_shipped("demo-standard"), sigma=0.1)


def thermometer_8() -> nn.Module:
    return train_toy(Thermometer(levels=8), *_train_data(), steps=300, seed=1)


def gradient_step_in_forward_adversarial() -> nn.Module:
    return GradientInForward(load_shipped("demo-adversarial"))


def noisy_quantized_standard() -> nn.Module:
    """Two mechanisms at once: undeclared noise, then rounding to 8 levels (zero gradient almost everywhere)."""
    from defenses.toys import HiddenNoise, QuantizedInput

    return HiddenNoise(QuantizedInput(levels=8, net=load_shipped("demo-standard")), sigma=0.05)


def noisy_quantized_adversarial() -> nn.Module:
    from defenses.toys import HiddenNoise, QuantizedInput

    return HiddenNoise(QuantizedInput(levels=8, net=load_shipped("demo-adversarial")), sigma=0.05)
