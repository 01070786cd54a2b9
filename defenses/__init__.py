"""Defenses: MeanSparse exactly as published, surrogate gradients, the Defense protocol and its adapters."""
from defenses.calibrate import calibrate, set_alpha
from defenses.gradient_mode import gradient_mode
from defenses.meansparse import MeanSparse, meansparse_layers
from defenses.protocol import (
    Defense,
    InputQuantization,
    MeanSparseDefense,
    OpaqueModel,
    RandomNoise,
    Undefended,
    as_defense,
)
from defenses.sparsify import sparsify

__all__ = [
    "Defense", "InputQuantization", "MeanSparse", "MeanSparseDefense", "OpaqueModel", "RandomNoise", "Undefended",
    "as_defense", "calibrate", "gradient_mode", "meansparse_layers", "set_alpha", "sparsify",
]
