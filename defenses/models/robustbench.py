"""The RobustBench model-zoo entries this suite rebuilds, as data, and loading their checkpoints strictly.

An entry says everything needed to rebuild a RobustBench model and audit it: architecture and its arguments,
dataset, threat model and eps, normalisation, preprocessing, where MeanSparse goes and with which alpha, and the
published numbers (RobustBench's leaderboard: the base model's AutoAttack accuracy, the MeanSparse claim, and
RobustBench's later APGD + BPDA re-evaluation). Entries are keyed by (dataset, threat model, name): RobustBench uses
`Amini2024MeanSparse_S-WRN-70-16` for both a CIFAR-10 L2 and a CIFAR-100 Linf model. An unknown name is refused
with the list of known ones, never guessed; an ambiguous one asks for `--dataset` (or `--norm`).

Checkpoints are read from RobustBench's layout, `<model_dir>/<dataset>/<threat>/<name>.pt`, without unpickling
objects (`torch.load(weights_only=True)`), `module.`/`model.` prefixes stripped as RobustBench does, and loaded
strictly. Like timm's registry, `register` also takes reduced test entries, so tests go through this code path.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defenses.checkpoints import CheckpointError, load_into, load_state_dict, strip_prefixes
from defenses.models.normalized import IMAGENET_MEAN, IMAGENET_STD, Normalized
from defenses.models.wide_resnet import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

log = logging.getLogger(__name__)

NORMALIZATIONS = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
# `audit run --dataset` names -> the RobustBench dataset folder they belong to.
AUDIT_DATASETS = {
    "cifar10": "cifar10",
    "foolbox-cifar10": "cifar10",
    "cifar100": "cifar100",
    "foolbox-cifar100": "cifar100",
    "imagenet": "imagenet",
    "foolbox-imagenet": "imagenet",
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
# What `audit.imagenet` implements (it applies this to every ImageNet image; CIFAR images are used as they are).
PREPROCESSINGS = ("BicubicRes256Crop224",)


class ZooError(CheckpointError):
    """A RobustBench name that is unknown or ambiguous, or whose file is missing; the message says what to do."""


def _dm_wide_resnet(num_classes: int, mean: tuple[float, ...], std: tuple[float, ...], **kwargs: Any) -> nn.Module:
    from defenses.models.wide_resnet import DMWideResNet

    return DMWideResNet(num_classes=num_classes, mean=mean, std=std, **kwargs)


def _robustarch_wide_resnet(
    num_classes: int, mean: tuple[float, ...], std: tuple[float, ...], **kwargs: Any
) -> nn.Module:
    from defenses.models.robustarch_wide_resnet import RobustArchWideResNet

    return RobustArchWideResNet(num_classes=num_classes, mean=mean, std=std, **kwargs)


def _convnext(num_classes: int, mean: tuple[float, ...], std: tuple[float, ...], **kwargs: Any) -> nn.Module:
    from defenses.models.convnext import build_convnext

    return Normalized(build_convnext(num_classes=num_classes, **kwargs), mean, std)


def _swin(num_classes: int, mean: tuple[float, ...], std: tuple[float, ...], **kwargs: Any) -> nn.Module:
    from defenses.models.swin import SwinTransformer

    return Normalized(SwinTransformer(num_classes=num_classes, **kwargs), mean, std)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "dm_wide_resnet": _dm_wide_resnet,
    "robustarch_wide_resnet": _robustarch_wide_resnet,
    "convnext": _convnext,
    "swin": _swin,
}


@dataclass(frozen=True)
class ZooEntry:
    """One RobustBench model. Accuracies are fractions; `autoattack` is the number RobustBench lists for this very
    model (for a MeanSparse entry: the paper's claim), `bpda` RobustBench's APGD-CE/DLR + identity-BPDA number."""

    name: str
    dataset: str  # RobustBench's folder: cifar10, cifar100, imagenet
    threat: str  # Linf or L2
    eps: float
    architecture: str  # a key of BUILDERS
    arch_kwargs: tuple[tuple[str, Any], ...] = ()
    meansparse_alpha: float | None = None
    placement: str | None = None  # a `defenses.sparsify` placement
    preprocessing: str | None = None  # RobustBench's name, e.g. BicubicRes256Crop224; None: the images as they are
    autoattack: float | None = None
    base: str | None = None  # the adversarially trained model MeanSparse was added to
    base_autoattack: float | None = None
    bpda: float | None = None
    source: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.threat, self.name)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return NORMALIZATIONS[self.dataset]

    def reduced(self, name: str, **arch_kwargs: Any) -> ZooEntry:
        """The same entry with a smaller architecture (tests: same code path, fits 2 CPU cores)."""
        merged = {**dict(self.arch_kwargs), **arch_kwargs}
        return dataclasses.replace(self, name=name, arch_kwargs=tuple(merged.items()))

    def path(self, model_dir: str | Path) -> Path:
        return Path(model_dir) / self.dataset / self.threat / f"{self.name}.pt"

    def build(self) -> nn.Module:
        """The architecture with MeanSparse in place (statistics zero until a checkpoint is loaded), eval mode."""
        from defenses.sparsify import sparsify

        mean, std = self.normalization
        model = BUILDERS[self.architecture](self.num_classes, mean, std, **dict(self.arch_kwargs))
        if self.meansparse_alpha is not None:
            model = sparsify(model, self.meansparse_alpha, placement=self.placement or "activations")
        return model.eval()


_ZOO: dict[tuple[str, str, str], ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    if entry.architecture not in BUILDERS:
        raise ValueError(f"unknown architecture {entry.architecture!r}; known: {', '.join(BUILDERS)}")
    if entry.dataset not in NUM_CLASSES or entry.threat not in ("Linf", "L2"):
        raise ValueError(f"bad key {entry.key}: dataset one of {', '.join(NUM_CLASSES)}, threat Linf or L2")
    if entry.preprocessing not in (None, *PREPROCESSINGS) or (entry.dataset == "imagenet") != bool(entry.preprocessing):
        raise ValueError(
            f"{entry.name}: preprocessing {entry.preprocessing!r} is not what the {entry.dataset} loader "
            f"applies ({', '.join(PREPROCESSINGS)} for ImageNet, none for CIFAR)"
        )
    if entry.key in _ZOO and _ZOO[entry.key] != entry:
        raise ValueError(f"{'/'.join(entry.key)} is already registered with other values")
    _ZOO[entry.key] = entry
    return entry


def unregister(entry: ZooEntry) -> None:
    _ZOO.pop(entry.key, None)


def entries() -> list[ZooEntry]:
    return list(_ZOO.values())


def find(name: str, dataset: str | None = None, threat: str | None = None) -> ZooEntry:
    """The one entry called `name`; `dataset` (a RobustBench or `audit run` dataset name) and `threat` narrow it."""
    matches = [e for e in _ZOO.values() if e.name == name]
    if not matches:
        known = sorted({e.name for e in _ZOO.values()})
        # RobustBench mixes `-` and `_` (Amini2024MeanSparse_Ra_WRN_70_16 beside ..._S-WRN-70-16): compare without.
        folded = {n.lower().replace("-", "_"): n for n in known}
        close = difflib.get_close_matches(name.lower().replace("-", "_"), list(folded), n=1, cutoff=0.75)
        hint = f" (did you mean {folded[close[0]]}?)" if close else ""
        raise ZooError(f"unknown RobustBench model {name!r}{hint}; known: {', '.join(known)}")
    where = ", ".join(f"{e.dataset}/{e.threat}" for e in matches)
    if dataset is not None:
        zoo_dataset = AUDIT_DATASETS.get(dataset, dataset)
        matches = [e for e in matches if e.dataset == zoo_dataset]
    if threat is not None:
        matches = [e for e in matches if e.threat == threat]
    if not matches:
        raise ZooError(
            f"{name} has no entry for dataset {dataset or 'any'} and threat {threat or 'any'}; it exists for {where}"
        )
    if len(matches) > 1:
        datasets = sorted({e.dataset for e in matches})
        option = (
            f"--dataset ({' or '.join(datasets)})"
            if len(datasets) > 1
            else f"--norm ({' or '.join(sorted(e.threat for e in matches))})"
        )
        raise ZooError(f"{name} is ambiguous: RobustBench has it for {where}; pass {option}")
    return matches[0]


def fit_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """RobustBench's key handling: strip `module.`/`model.`, then for a model wrapped in its normalisation
    (ImageNet: `model.<inner keys>`) put `model.` back, as its loader does with `add_substr_to_state_dict`."""
    state = strip_prefixes(state)
    expected = model.state_dict()
    if all(k.startswith("model.") for k in expected) and not set(state) <= set(expected):
        state = {f"model.{k}": v for k, v in state.items()}
    return state


def load(
    model_dir: str | Path,
    name: str,
    dataset: str | None = None,
    threat: str | None = None,
    trust_checkpoint: bool = False,
) -> tuple[nn.Module, ZooEntry]:
    """Build `name`'s architecture and load `<model_dir>/<dataset>/<threat>/<name>.pt` strictly."""
    entry = find(name, dataset, threat)
    path = entry.path(model_dir)
    if not path.is_file():
        raise ZooError(
            f"{path} not found: RobustBench's layout is <robustbench-dir>/{entry.dataset}/{entry.threat}/"
            f"{entry.name}.pt (the file robustbench.utils.load_model downloads)"
        )
    model = entry.build()
    state = fit_state_dict(load_state_dict(path, trust_checkpoint), model)
    load_into(model, state, source=str(path))
    _check_alpha(model, entry, path)
    log.info("loaded %s (%s/%s) from %s", entry.name, entry.dataset, entry.threat, path)
    return model.eval(), entry


def _check_alpha(model: nn.Module, entry: ZooEntry, path: Path) -> None:
    """The checkpoint's `threshold` buffers are what runs; say so when they differ from the published alpha."""
    from defenses.meansparse import meansparse_layers

    if entry.meansparse_alpha is None:
        return
    alphas = sorted({layer.alpha for _, layer in meansparse_layers(model)})
    if alphas != [round(entry.meansparse_alpha, 6)]:
        log.warning(
            "%s: MeanSparse thresholds in the file are %s, the published alpha is %g; the file's are used",
            path,
            alphas,
            entry.meansparse_alpha,
        )


def fill_run_defaults(args: Any, fallback: dict[str, Any]) -> None:
    """`audit run`: set `dataset`, `norm`, `eps` and `claim` on `args` where they are None. With
    `--robustbench-dir`, from the zoo entry (dataset, threat model, eps, published AutoAttack accuracy as the claim);
    otherwise from `fallback` (claim stays None)."""
    name = getattr(args, "model", None)
    if getattr(args, "robustbench_dir", None) is None or name is None:
        for key, value in fallback.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
        return
    entry = find(name, args.dataset, args.norm)
    if args.dataset is None:
        args.dataset = entry.dataset
    if args.norm is None:
        args.norm = entry.threat
    if args.eps is None:
        args.eps = entry.eps
    if args.claim is None and entry.autoattack is not None:
        args.claim = entry.autoattack
    log.info(
        "%s: %s, %s eps %.4g, claim %s (from the RobustBench entry unless given)",
        entry.name,
        args.dataset,
        args.norm,
        args.eps,
        "none" if args.claim is None else f"{100 * args.claim:.2f}%",
    )


# ---------------------------------------------------------------------------------------------------------------
# The entries. Architectures as in RobustBench's model_zoo/{cifar10,cifar100,imagenet}.py and
# architectures/sparsified_model.py; accuracies from its model_info/*.json
# (the MeanSparse rows: RobustBench's leaderboard entries and their BPDA footnotes).

_LB = "RobustBench leaderboard (model_info/{}/{}/{}.json)"
_WRN_94_16 = (("depth", 94), ("width", 16), ("activation", "silu"))
_WRN_70_16 = (("depth", 70), ("width", 16), ("activation", "silu"))

for _entry in (
    ZooEntry(
        "Amini2024MeanSparse_S-WRN-94-16",
        "cifar10",
        "Linf",
        8 / 255,
        "dm_wide_resnet",
        _WRN_94_16,
        meansparse_alpha=0.15,
        placement="wrn",
        autoattack=0.7528,
        base="Bartoldson2024Adversarial_WRN-94-16",
        base_autoattack=0.7371,
        bpda=0.7310,
    ),
    ZooEntry(
        "Amini2024MeanSparse_Ra_WRN_70_16",
        "cifar10",
        "Linf",
        8 / 255,
        "robustarch_wide_resnet",
        meansparse_alpha=0.25,
        placement="wrn",
        autoattack=0.7208,
        base="Peng2023Robust",
        base_autoattack=0.7107,
        bpda=0.6894,
    ),
    ZooEntry(
        "Amini2024MeanSparse_S-WRN-70-16",
        "cifar10",
        "L2",
        0.5,
        "dm_wide_resnet",
        _WRN_70_16,
        meansparse_alpha=0.25,
        placement="wrn",
        autoattack=0.8728,
        base="Wang2023Better_WRN-70-16",
        base_autoattack=0.8497,
        bpda=0.8433,
    ),
    ZooEntry(
        "Amini2024MeanSparse_S-WRN-70-16",
        "cifar100",
        "Linf",
        8 / 255,
        "dm_wide_resnet",
        _WRN_70_16,
        meansparse_alpha=0.15,
        placement="wrn",
        autoattack=0.4478,
        base="Wang2023Better_WRN-70-16",
        base_autoattack=0.4267,
        bpda=0.4225,
    ),
    ZooEntry(
        "Amini2024MeanSparse_Swin-L",
        "imagenet",
        "Linf",
        4 / 255,
        "swin",
        meansparse_alpha=0.10,
        placement="swin",
        preprocessing="BicubicRes256Crop224",
        autoattack=0.6212,
        base="Liu2023Comprehensive_Swin-L",
        base_autoattack=0.5956,
        bpda=0.5892,
    ),
    ZooEntry(
        "Amini2024MeanSparse_ConvNeXt-L",
        "imagenet",
        "Linf",
        4 / 255,
        "convnext",
        meansparse_alpha=0.3,
        placement="convnext",
        preprocessing="BicubicRes256Crop224",
        autoattack=0.5964,
        base="Liu2023Comprehensive_ConvNeXt-L",
        base_autoattack=0.5848,
        bpda=0.5822,
    ),
    # The bases of the CIFAR MeanSparse models (same architectures without MeanSparse), for side-by-side audits.
    ZooEntry(
        "Bartoldson2024Adversarial_WRN-94-16",
        "cifar10",
        "Linf",
        8 / 255,
        "dm_wide_resnet",
        _WRN_94_16,
        autoattack=0.7371,
    ),
    ZooEntry("Peng2023Robust", "cifar10", "Linf", 8 / 255, "robustarch_wide_resnet", autoattack=0.7107),
    ZooEntry("Wang2023Better_WRN-70-16", "cifar10", "Linf", 8 / 255, "dm_wide_resnet", _WRN_70_16, autoattack=0.7069),
    ZooEntry("Wang2023Better_WRN-70-16", "cifar10", "L2", 0.5, "dm_wide_resnet", _WRN_70_16, autoattack=0.8497),
    ZooEntry("Wang2023Better_WRN-70-16", "cifar100", "Linf", 8 / 255, "dm_wide_resnet", _WRN_70_16, autoattack=0.4267),
    ZooEntry(
        "Wang2023Better_WRN-28-10",
        "cifar10",
        "Linf",
        8 / 255,
        "dm_wide_resnet",
        (("depth", 28), ("width", 10), ("activation", "silu")),
        autoattack=0.6731,
    ),
):
    register(dataclasses.replace(_entry, source=_LB.format(*_entry.key)))

MEANSPARSE_ENTRIES = [e for e in entries() if e.meansparse_alpha is not None]
