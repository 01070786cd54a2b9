"""Defenses: MeanSparse exactly as published, surrogate gradients, the Defense protocol and its adapters."""

from defenses.adapters import InputQuantization, MeanSparseDefense, RandomNoise, as_defense
from defenses.calibrate import calibrate, set_alpha
from defenses.checkpoints import load_into, load_state_dict, save_checkpoint
from defenses.gradient_mode import gradient_mode
from defenses.meansparse import MeanSparse, meansparse_layers
from defenses.models.registry import load_shipped
from defenses.opaque import OpaqueModel
from defenses.protocol import Defense, Undefended
from defenses.sparsify import ACTIVATION_TYPES, sparsify

__all__ = [
    "ACTIVATION_TYPES",
    "Defense",
    "InputQuantization",
    "MeanSparse",
    "MeanSparseDefense",
    "OpaqueModel",
    "RandomNoise",
    "Undefended",
    "as_defense",
    "calibrate",
    "gradient_mode",
    "load_into",
    "load_shipped",
    "load_state_dict",
    "meansparse_layers",
    "save_checkpoint",
    "set_alpha",
    "sparsify",
]
