"""Models the speed benchmark builds itself, loaded by `audit run` through `PATH.py:FACTORY` as a reviewer's own
file would be (opaque: nothing tells the suite what is inside)."""

from __future__ import annotations

from torch import nn

from defenses import load_shipped
from defenses.toys import QuantizedInput


def quantized_adversarial() -> nn.Module:
    """An input quantizer (8 levels) around the shipped adversarially trained model: gradient masking by
    construction (the input gradient is 0 almost everywhere), found and bypassed by automatic BPDA."""
    return QuantizedInput(levels=8, net=load_shipped("demo-adversarial")).eval()
