"""`audit train`: standard and adversarial training of the demo model on Fashion-MNIST, seeded and reproducible.

Adversarial training is FGSM with a random start ("fast is better than free", Wong et al. 2020) or PGD-AT
(Madry et al. 2018). FGSM-RS can overfit catastrophically; each epoch is checked with PGD on held-out
validation images and the best epoch is kept, as Wong et al. recommend.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from attacks.pgd import pgd
from attacks.threat_model import ThreatModel
from audit.dataset import Dataset
from defenses.models.demo_cnn import DemoCNN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    method: str = "standard"  # standard | fgsm | pgd
    epochs: int = 10
    batch_size: int = 128
    max_lr: float = 0.1
    weight_decay: float = 5e-4
    eps: float = 0.1
    pgd_steps: int = 7
    fgsm_step: float = 1.25  # in units of eps (Wong et al.)
    seed: int = 0
    width: int = 16


def perturb(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """The training-time attack: FGSM-RS (one step) or PGD-AT (pgd_steps steps), Linf, inside [0, 1]."""
    eps = config.eps
    steps, step = (
        (1, config.fgsm_step * eps) if config.method == "fgsm" else (config.pgd_steps, 2.5 * eps / config.pgd_steps)
    )
    return pgd(model, x, y, ThreatModel("Linf", eps), steps, step, generator=generator).x_last


def pgd_accuracy(
    model: nn.Module, data: Dataset, eps: float, steps: int = 20, seed: int = 0, batch_size: int = 500
) -> float:
    """Robust accuracy under torchattacks' PGD (Linf, step 2.5 * eps / steps, random start): an independent check."""
    import torchattacks

    model.eval()
    torch.manual_seed(seed)  # torchattacks draws its random start from the global generator
    attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(data), batch_size):
        x, y = data.images[start : start + batch_size].to(device), data.labels[start : start + batch_size].to(device)
        x_adv = attack(x, y)
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == y).sum().item()
    return correct / len(data)


@torch.no_grad()
def clean_accuracy(model: nn.Module, data: Dataset, batch_size: int = 1000) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(data), batch_size):
        x, y = data.images[start : start + batch_size].to(device), data.labels[start : start + batch_size].to(device)
        correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(data)


def train(
    config: TrainConfig, train_data: Dataset, validation: Dataset, device: str = "cpu"
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train the demo CNN; returns the model (best validation epoch for adversarial training) and the history."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = DemoCNN(width=config.width).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.max_lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
    )
    steps_per_epoch = (len(train_data) + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.max_lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )
    check = validation.subset(1000, seed=config.seed)
    history, best, best_score = [], None, -1.0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_data), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for i in bar:
            index = order[i * config.batch_size : (i + 1) * config.batch_size]
            x, y = train_data.images[index].to(device), train_data.labels[index].to(device)
            if config.method != "standard":
                x = perturb(model, x, y, config, generator)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        record = {"epoch": epoch + 1, "validation_clean": clean_accuracy(model, check)}
        if config.method != "standard":
            record["validation_pgd10"] = pgd_accuracy(model, check, config.eps, steps=10, seed=config.seed)
        score = record.get("validation_pgd10", record["validation_clean"])
        if score > best_score:
            best, best_score = copy.deepcopy(model.state_dict()), score
        log.info("epoch %d: %s", epoch + 1, record)
        history.append(record)
    assert best is not None  # config.epochs >= 1 and the score starts below any accuracy
    model.load_state_dict(best)
    model.eval()
    return model, history


def describe(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
