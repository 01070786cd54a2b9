"""Everything the user may have got wrong, checked before an audit touches its output directory."""
from __future__ import annotations

import math

import torch

from attacks.suites import SUITES
from attacks.threat_model import ThreatModel
from audit.config import AuditConfig
from defenses.protocol import Defense


class AuditInputError(ValueError):
    """Bad input the user can fix."""


def validate_config(config: AuditConfig) -> ThreatModel:
    if config.norm not in ("Linf", "L2"):
        raise AuditInputError(f"--norm must be Linf or L2, not {config.norm!r}")
    if not (config.eps > 0) or not math.isfinite(config.eps):
        raise AuditInputError(f"--eps must be a positive number, not {config.eps}")
    limit = 1.0 if config.norm == "Linf" else 100.0
    if config.eps >= limit:
        raise AuditInputError(f"--eps {config.eps} is absurd for {config.norm} on [0, 1] images (eps is a fraction, "
                              f"e.g. 8/255 = 0.031 for Linf); use a value below {limit:g}")
    if config.suite not in SUITES:
        raise AuditInputError(f"unknown suite {config.suite!r}; choose one of {', '.join(SUITES)}")
    if config.n <= 0:
        raise AuditInputError(f"--n must be positive, not {config.n}")
    if config.claim is not None and not 0 <= config.claim <= 1:
        raise AuditInputError(f"--claim is a fraction in [0, 1] (e.g. 0.7528), not {config.claim}")
    return ThreatModel(config.norm, config.eps)


def check_inputs(defense: Defense, images: torch.Tensor, labels: torch.Tensor) -> list[str]:
    """Refuse what cannot be audited; return warnings for what is suspicious."""
    warnings = []
    if images.dim() != 4:
        raise AuditInputError(f"inputs must be NCHW images, got shape {tuple(images.shape)}")
    if images.min() < 0 or images.max() > 1:
        raise AuditInputError(f"inputs must lie in [0, 1] (found {images.min():.3g}..{images.max():.3g}); "
                              f"put normalisation inside the model")
    with torch.no_grad():
        out = defense(images[:8].to(defense.device))
    if out.dim() != 2 or out.shape[0] != min(8, len(images)):
        raise AuditInputError(f"the model must return (N, classes) logits, got shape {tuple(out.shape)}")
    if not torch.isfinite(out).all():
        raise AuditInputError("the model returned NaN or Inf logits on clean inputs")
    if labels.min() < 0 or labels.max() >= out.shape[1]:
        raise AuditInputError(f"labels range {int(labels.min())}..{int(labels.max())} does not fit the model's "
                              f"{out.shape[1]} outputs")
    if ((out >= 0) & (out <= 1)).all() and torch.allclose(out.sum(1), torch.ones(len(out), device=out.device), atol=1e-4):
        warnings.append("the model outputs probabilities, not logits: gradients of the usual losses vanish; "
                        "remove the final softmax")
    return warnings
