"""`sparsify`: a copy of a model with MeanSparse inserted, where the paper puts it or where you say."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from defenses.errors import UserError
from defenses.meansparse import MeanSparse, MeanSparseBefore

ACTIVATION_TYPES = (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Tanh, nn.Hardswish)
PLACEMENTS = ("activations", "wrn", "convnext", "swin")


class SparsifyError(UserError, ValueError):
    """A model MeanSparse cannot be inserted into or calibrated on (what the user can change is in the message)."""


def _activation_paths(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, ACTIVATION_TYPES)]


def _wrn_paths(model: nn.Module) -> list[str]:
    """The official WRN placement: our WRN's empty `meansparse_*` slots (both BN/act pairs of each block, after
    the residual add, and before the final activation)."""
    paths = [
        name
        for name, m in model.named_modules()
        if name.split(".")[-1].startswith("meansparse_") and isinstance(m, nn.Identity)
    ]
    if not paths:
        raise SparsifyError("placement='wrn' needs a model with meansparse_* slots (defenses.models.DMWideResNet)")
    return paths


def _channel_counts(model: nn.Module, paths: Sequence[str], layout: str | dict[str, str]) -> dict[str, int]:
    """Run one dummy forward to see how many channels reach each insertion point (layout: one, or one per path)."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise SparsifyError("sparsify needs the model's input shape: set model.input_shape = (C, H, W)")
    modules = dict(model.named_modules())
    counts: dict[str, int] = {}
    reused: list[str] = []
    hooks = []
    for path in paths:
        path_layout = layout if isinstance(layout, str) else layout[path]

        def hook(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str = path, layout: str = path_layout
        ) -> None:
            x = inputs[0]
            if path in counts:
                reused.append(path)
            counts[path] = (
                x.shape[-1]
                if (layout == "channels_last" or (layout != "channels_first" and x.dim() == 3))
                else x.shape[1]
            )

        hooks.append(modules[path].register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        with torch.no_grad():
            try:
                model(torch.zeros(2, *shape, device=device, dtype=dtype))
            except Exception as error:  # noqa: BLE001 - the user's model may raise anything: one line, not a traceback
                raise SparsifyError(
                    f"inserting MeanSparse: the model's forward raised {type(error).__name__} on "
                    f"zeros of shape {(2, *shape)}: {' '.join(str(error).split())[:200]}"
                ) from error
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    if reused:
        # One module object called at several places (e.g. a shared `self.relu`): a single MeanSparse there would
        # mix the statistics of different features. The paper uses one MeanSparse per call site.
        raise SparsifyError(
            f"these modules are called more than once in forward, so one MeanSparse would serve several places "
            f"with mixed statistics: {sorted(set(reused))}; give each call site its own module"
        )
    missing = [p for p in paths if p not in counts]
    if missing:
        raise SparsifyError(
            f"these modules are never called in forward, so MeanSparse there would do nothing: {missing}"
        )
    return counts


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def sparsify(
    model: nn.Module,
    alpha: float,
    placement: str | Sequence[str] = "activations",
    layout: str = "auto",
) -> nn.Module:
    """Return a new model with MeanSparse (threshold alpha) inserted; the input model is not modified.

    placement: `activations` (before every activation module, i.e. after its BatchNorm), `wrn` (the official
    WideResNet placement), `convnext` / `swin` (RobustBench's ImageNet placements, see the end of this file), or a
    list of module paths: MeanSparse acts on the input of each named module (an `nn.Identity` slot is replaced
    outright, which gives the official key names).
    Statistics start at zero: call `defenses.calibrate` before use (shipped checkpoints carry them).
    """
    if isinstance(placement, str):
        if placement not in PLACEMENTS:
            raise SparsifyError(f"placement must be one of {PLACEMENTS} or a list of module paths, not {placement!r}")
        if placement in IMAGENET_PLACEMENTS:
            return IMAGENET_PLACEMENTS[placement](model, alpha)
        paths = _activation_paths(model) if placement == "activations" else _wrn_paths(model)
    else:
        paths = list(placement)
        known = dict(model.named_modules())
        unknown = [p for p in paths if p not in known or p == ""]
        if unknown:
            raise SparsifyError(f"no such modules in the model: {unknown}")
    if not paths:
        raise SparsifyError("no insertion points found (the model has no activation modules?)")
    new = copy.deepcopy(model)
    counts = _channel_counts(new, paths, layout)
    reference = next(new.buffers(), next(new.parameters(), None))
    for path in paths:
        meansparse = MeanSparse(counts[path], alpha, layout)
        if reference is not None:  # same device, and same dtype for a float16/bfloat16 model
            meansparse = meansparse.to(reference.device, reference.dtype if reference.is_floating_point() else None)
        target = new.get_submodule(path)
        _set_submodule(
            new, path, meansparse if isinstance(target, nn.Identity) else MeanSparseBefore(meansparse, target)
        )
    return new


# ---------------------------------------------------------------------------------------------------------------
# RobustBench's ImageNet placements (`sparsified_model.py` in RobustBench's model zoo), for its MeanSparse entries.
# Each names the sites, the channel layout MeanSparse sees there, and how the official code inserts it, so the
# resulting state dict has the official keys.


def _convnext_sites(model: nn.Module) -> list[tuple[str, str, str]]:
    """`add_custom_layer_imagenet`: in every ConvNeXt block, MeanSparse before the MLP's GELU
    (`Sequential(MeanSparse, GELU)`, keys `mlp.act.0.*`, on the channels-last MLP features) and after the residual
    branch's `drop_path` (`Sequential(drop_path, MeanSparse)`, keys `drop_path.1.*`, on NCHW maps). The official
    code picks the layout per call by `input.shape[1] == channels`; at 224x224 the two never coincide, so a fixed
    layout per site is the same thing."""
    sites = []
    for name, _ in model.named_modules():
        parts = name.split(".")
        if "stages" in parts and "blocks" in parts:
            if parts[-2:] == ["mlp", "act"]:
                sites.append((name, "before", "channels_last"))
            elif parts[-1] == "drop_path":
                sites.append((name, "after", "channels_first"))
    if not sites:
        raise ValueError("placement='convnext' needs a timm-layout ConvNeXt (stages.*.blocks.*.mlp.act / drop_path)")
    return sites


def _swin_sites(model: nn.Module) -> list[tuple[str, str, str]]:
    """RobustBench's Swin copy: the empty `meansparse1`/`meansparse2` slots of `defenses.models.swin` (after each
    attention and MLP residual, and after `fc1` and `fc2` in each MLP), on (N, tokens, C) features."""
    sites = [
        (name, "slot", "tokens")
        for name, m in model.named_modules()
        if name.split(".")[-1] in ("meansparse1", "meansparse2") and isinstance(m, nn.Identity)
    ]
    if not sites:
        raise ValueError("placement='swin' needs a model with meansparse1/2 slots (defenses.models.swin)")
    return sites


def _sparsify_sites(model: nn.Module, alpha: float, sites: list[tuple[str, str, str]]) -> nn.Module:
    new = copy.deepcopy(model)
    layouts = {path: layout for path, _, layout in sites}
    counts = _channel_counts(new, list(layouts), layouts)
    reference = next(new.buffers(), next(new.parameters(), None))
    for path, where, layout in sites:
        meansparse = MeanSparse(counts[path], alpha, layout)
        if reference is not None:
            meansparse = meansparse.to(reference.device)
        target = new.get_submodule(path)
        if where == "slot":
            replacement: nn.Module = meansparse
        elif where == "before":
            replacement = nn.Sequential(meansparse, target)
        else:
            replacement = nn.Sequential(target, meansparse)
        _set_submodule(new, path, replacement)
    return new


IMAGENET_PLACEMENTS = {
    "convnext": lambda model, alpha: _sparsify_sites(model, alpha, _convnext_sites(model)),
    "swin": lambda model, alpha: _sparsify_sites(model, alpha, _swin_sites(model)),
}
