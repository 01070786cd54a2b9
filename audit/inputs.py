"""What the user gave us, checked once before anything runs: the options, the device, and the model contract.

The model contract (README, "Conventions"): the model maps a batch of [0, 1] NCHW float32 images of the dataset's
shape to an (N, classes) floating-point tensor of finite logits on the same device, in eval mode, without
changing its own state. `check_inputs` probes it on a batch of one and a batch of eight and turns each violation
into its own one-line `AuditInputError` that says what is wrong and what to do; it runs before the output
directory is created, so a refused model leaves nothing a later run could mistake for results.
docs/refused-inputs.md lists every refusal with its message (tests/test_bad_input.py keeps the two in step).

One violation is repaired rather than refused: a float16/bfloat16 (or float64) model is converted to float32 in
memory and audited in float32, with a warning kept in results.json. Attacks need float32 gradients (pyautoattack
and the attack libraries make float32 inputs; half-precision logits saturate the losses' softmax), and every
float16/bfloat16 weight is exact in float32, so this audits the same weights; what differs is only the
activations' rounding, which the warning says.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from attacks.threat_model import ThreatModel
from audit.config import BUDGET_NAMES, SUITES, AuditConfig
from defenses.errors import UserError
from defenses.protocol import Defense

PROBE_BATCH = 8  # the second probe; the first is a batch of one
_FIRST_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class AuditInputError(UserError, ValueError):
    """Bad input the user can fix: an option, the data, or a model that breaks the contract."""


def validate_config(config: AuditConfig) -> ThreatModel:
    """The options on their own, before any model or data is loaded; returns the threat model."""
    if config.norm not in ("Linf", "L2"):
        raise AuditInputError(f"--norm must be Linf or L2, not {config.norm!r}")
    if not (config.eps > 0) or not math.isfinite(config.eps):
        raise AuditInputError(f"--eps must be a positive number, not {config.eps}")
    limit = 1.0 if config.norm == "Linf" else 100.0
    if config.eps >= limit:
        raise AuditInputError(
            f"--eps {config.eps} is absurd for {config.norm} on [0, 1] images (eps is a fraction, "
            f"e.g. 8/255 = 0.031 for Linf); use a value below {limit:g}"
        )
    if config.suite not in SUITES:
        raise AuditInputError(f"unknown suite {config.suite!r}; choose one of {', '.join(SUITES)}")
    if config.budget not in BUDGET_NAMES:
        raise AuditInputError(f"unknown budget {config.budget!r}; choose one of {', '.join(BUDGET_NAMES)}")
    if config.n <= 0:
        raise AuditInputError(f"--n must be positive, not {config.n}")
    from attacks.precision import PRECISIONS

    if config.proposal_precision not in PRECISIONS:
        raise AuditInputError(
            f"--proposal-precision must be one of {', '.join(PRECISIONS)}, not {config.proposal_precision!r}"
        )
    if config.batch_size <= 0:
        raise AuditInputError(f"--batch-size must be positive, not {config.batch_size}")
    if config.diagnostics_n < 0:
        raise AuditInputError(f"--diagnostics-n must be 0 (comparisons only) or more, not {config.diagnostics_n}")
    if config.claim is not None and not 0 <= config.claim <= 1:
        raise AuditInputError(f"--claim is a fraction in [0, 1] (e.g. 0.7528), not {config.claim}")
    if config.meansparse_alpha is not None and not (
        math.isfinite(config.meansparse_alpha) and config.meansparse_alpha >= 0
    ):
        raise AuditInputError(f"--meansparse-alpha must be 0 or more (e.g. 0.25), not {config.meansparse_alpha}")
    if config.checkpoint is not None and (config.robustbench_dir is not None or ".py:" not in config.model):
        # A shipped or RobustBench model loads its own weights: the checkpoint would be silently ignored.
        raise AuditInputError(
            f"--checkpoint gives the weights of a PATH.py:FACTORY model; {config.model} loads its "
            f"own, so drop --checkpoint (or give the model as PATH.py:FACTORY)"
        )
    if config.attacks:
        from attacks.registry import canonical_name

        # UnknownAttack (a UserError) names the attack and what is wrong with it.
        canonical = [canonical_name(name) for name in config.attacks]
        twice = sorted({name for name in canonical if canonical.count(name) > 1})
        if twice:
            raise AuditInputError(
                f"--attacks names {', '.join(twice)} more than once; each attack runs once "
                f"(results are stored under its name)"
            )
    return ThreatModel(config.norm, config.eps)


def check_device(device: str) -> None:
    """`--device` names a device torch has here (checked before the model is moved there)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise AuditInputError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise AuditInputError(f"--device {device!r} is not supported; use cpu, cuda or cuda:N")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise AuditInputError(
                f"--device {device} asked for, but torch sees no CUDA GPU on this machine; use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise AuditInputError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )


def check_inputs(defense: Defense, images: torch.Tensor, labels: torch.Tensor) -> list[str]:
    """Refuse what cannot be audited (one AuditInputError per violation); return warnings for what is suspicious.

    May convert `defense` to float32 in place (see the module docstring); that conversion is one of the warnings.
    """
    if images.dim() != 4:
        raise AuditInputError(f"inputs must be NCHW images, got shape {tuple(images.shape)}")
    if images.numel() == 0:
        raise AuditInputError("no test images to audit; check --n and the dataset")
    if images.min() < 0 or images.max() > 1:
        raise AuditInputError(
            f"inputs must lie in [0, 1] (found {images.min():.3g}..{images.max():.3g}); "
            f"put normalisation inside the model"
        )
    warnings = _float32(defense)
    _check_eval_mode(defense, "after .eval()")
    state = {name: buffer.detach().clone() for name, buffer in defense.named_buffers()}
    device = defense.device
    out = None
    for size in (1, min(PROBE_BATCH, len(images))):
        batch = images[:size].to(device)
        out = _check_output(_forward(defense, batch), batch)
    _check_eval_mode(defense, "during forward")
    for name, buffer in defense.named_buffers():
        before = state.get(name)
        if before is not None and (before.shape != buffer.shape or not torch.equal(before, buffer)):
            raise AuditInputError(
                f"the model's forward changed its buffer {_strip(name)} (e.g. BatchNorm or MeanSparse statistics "
                f"updated at inference); results would depend on what ran before: freeze it "
                f"(eval mode, MeanSparse flag_update_statistics = 0)"
            )
    assert out is not None
    if labels.min() < 0 or labels.max() >= out.shape[1]:
        raise AuditInputError(
            f"labels range {int(labels.min())}..{int(labels.max())} does not fit the model's {out.shape[1]} outputs"
        )
    if ((out >= 0) & (out <= 1)).all() and torch.allclose(
        out.sum(1), torch.ones(len(out), device=out.device), atol=1e-4
    ):
        warnings.append(
            "the model outputs probabilities, not logits: gradients of the usual losses vanish; "
            "remove the final softmax"
        )
    return warnings


def _strip(name: str) -> str:
    """A module or buffer name as the user's model spells it (without the Defense wrapper's `model.`)."""
    return "" if name == "model" else name[len("model.") :] if name.startswith("model.") else name


PRECISION_NOTE = "audit_precision_note"  # set on a converted module, so the note survives sparsify's deepcopy


def to_float32(model: nn.Module) -> str | None:
    """Convert a float16/bfloat16/float64 model to float32 in place (the checkpoint file is never touched).

    Returns the warning to keep in results.json (None when the model was float32 already). Called right after
    loading, so that --meansparse-alpha calibrates in float32 too (float16 on a CPU is ~20x slower).
    """
    dtypes = {t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()}
    other = sorted(str(d).replace("torch.", "") for d in dtypes - {torch.float32})
    if not other:
        return getattr(model, PRECISION_NOTE, None)
    model.float()
    note = (
        f"the model's weights are {' and '.join(other)}: audited in float32 (weights converted exactly; "
        f"activations rounded as float32, not as {' and '.join(other)}, so the numbers describe the float32 "
        f"model; see docs/refused-inputs.md)"
    )
    setattr(model, PRECISION_NOTE, note)
    return note


def _float32(defense: Defense) -> list[str]:
    note = to_float32(defense.model)
    return [note] if note else []  # logged with the other warnings by the pipeline, and kept in results.json


def _check_eval_mode(defense: Defense, when: str) -> None:
    training = [(name, module) for name, module in defense.named_modules() if module.training]
    if training:
        name, module = training[0]
        raise AuditInputError(
            f"the model's {_strip(name) or 'top module'} ({type(module).__name__}) is in training mode {when}; "
            f"an audit runs in eval mode (BatchNorm and Dropout change results in training mode): remove the "
            f".train() call or the train() override"
        )


def _first_layer_hooks(defense: Defense) -> tuple[list[Any], list[tuple[str, nn.Module]]]:
    """Forward pre-hooks that record the first conv/linear layer the forward reaches (the one that sees the input)."""
    seen: list[tuple[str, nn.Module]] = []
    hooks = []
    for name, module in defense.named_modules():
        if isinstance(module, _FIRST_LAYERS):

            def hook(module: nn.Module, args: Any, name: str = name) -> None:
                if not seen:
                    seen.append((name, module))

            hooks.append(module.register_forward_pre_hook(hook))
    return hooks, seen


def _expects(name: str, layer: nn.Module, shape: tuple[int, ...]) -> str | None:
    """What the first layer expects, when the input's shape cannot fit it; None when it can."""
    if isinstance(layer, nn.Linear):
        values = math.prod(shape[1:])
        if layer.in_features != values:
            return (
                f"the model's first layer {_strip(name)} is Linear({layer.in_features}, {layer.out_features}): it "
                f"expects {layer.in_features} input values per image, but these images have "
                f"{'x'.join(map(str, shape[1:]))} = {values}"
            )
        return None
    if layer.in_channels != shape[1]:
        kind = type(layer).__name__
        return (
            f"the model's first layer {_strip(name)} is {kind}({layer.in_channels}, {layer.out_channels}, ...): it "
            f"expects {layer.in_channels}-channel images, but this dataset's are {shape[1]}-channel "
            f"({'x'.join(map(str, shape[1:]))})"
        )
    return None


def _forward(defense: Defense, batch: torch.Tensor) -> Any:
    hooks, seen = _first_layer_hooks(defense)
    try:
        with torch.no_grad():
            return defense(batch)
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything; we summarise it in one line
        shape = tuple(batch.shape)
        if seen:
            mismatch = _expects(*seen[0], shape)
            if mismatch:
                raise AuditInputError(
                    f"{mismatch}; audit it on the dataset it was built for (--dataset), or adapt its first layer"
                ) from error
        raise AuditInputError(
            f"the model's forward raised {type(error).__name__}: {_summary(error)} (on a batch of {len(batch)} "
            f"input(s) of shape {shape}, {str(batch.dtype).replace('torch.', '')}, on {batch.device}); fix the "
            f"model, or run with --debug for the traceback"
        ) from error
    finally:
        for hook in hooks:
            hook.remove()


def _summary(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_output(out: Any, batch: torch.Tensor) -> torch.Tensor:
    n = len(batch)
    if isinstance(out, (tuple, list)):
        parts = ", ".join(_describe(v) for v in out[:4]) + (", ..." if len(out) > 4 else "")
        raise AuditInputError(
            f"the model returned a {type(out).__name__} of {len(out)} ({parts}), not one logits tensor; wrap it so "
            f"that forward returns the logits only, e.g. return model(x)[0] in a small nn.Module"
        )
    if isinstance(out, dict):
        keys = ", ".join(repr(k) for k in list(out)[:6])
        raise AuditInputError(
            f"the model returned a dict (keys {keys}), not one logits tensor; wrap it so that forward returns the "
            f"logits only, e.g. return model(x)['logits'] in a small nn.Module"
        )
    if not isinstance(out, torch.Tensor):
        raise AuditInputError(f"the model returned {type(out).__name__}, not a tensor of (N, classes) logits")
    if not out.is_floating_point():
        raise AuditInputError(
            f"the model returned {str(out.dtype).replace('torch.', '')} values (class indices?), "
            f"not floating-point (N, classes) logits; return the logits before argmax"
        )
    if out.dim() != 2 or out.shape[0] != n:
        raise AuditInputError(
            f"the model must return (N, classes) logits, got shape {tuple(out.shape)} for a batch of {n}"
        )
    if out.shape[1] < 2:
        raise AuditInputError(
            f"the model returned {out.shape[1]} output per sample; the audit needs one logit per "
            f"class, (N, classes) with at least 2 classes"
        )
    if out.device != batch.device:
        raise AuditInputError(
            f"the model returned logits on {out.device} for inputs on {batch.device}; it must "
            f"return them on the input's device (a tensor created without device=x.device?)"
        )
    if not torch.isfinite(out).all():
        raise AuditInputError("the model returned NaN or Inf logits on clean inputs")
    return out
