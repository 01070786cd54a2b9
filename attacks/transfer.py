"""Transfer: craft points on a surrogate model, judge them on the real one (Athalye et al.; Pintor et al.).

For MeanSparse the natural surrogate is the base model (every threshold set to 0): if points made on it beat
white-box attacks on the defended model, the defended model's gradients are hiding its weakness.
"""
from __future__ import annotations

import copy

from torch import nn

from attacks.base import Attack, AttackOutput
from attacks.counting import CountingModel
from defenses.calibrate import set_alpha
from defenses.meansparse import meansparse_layers
from defenses.protocol import Defense


def base_model_of(defense: Defense) -> nn.Module | None:
    """The defended model with MeanSparse switched off (alpha = 0), or None when there is nothing to remove."""
    if not meansparse_layers(defense.model):
        return None
    return set_alpha(copy.deepcopy(defense.model), 0.0).eval()


class Transfer(Attack):
    """Run `inner` on `source` (a plain model), return its points for the runner to judge on the defense."""

    def __init__(self, inner: Attack, source: nn.Module, source_name: str = "base") -> None:
        super().__init__()
        self.inner, self.source, self.source_name = inner, source, source_name
        self.name = f"transfer-{source_name}:{inner.label}"
        self.uses_gradients = inner.uses_gradients
        self.kind = inner.kind

    def perturb(self, model, x, y, threat, seed):  # noqa: ANN001 - model is the runner's counter on the defense
        source = CountingModel(self.source)
        output = self.inner.perturb(source, x, y, threat, seed)
        # The attack's cost is the source's calls: add them to the runner's counts (so reports show them) and
        # keep them apart in extra, which says the defense itself was never queried while crafting.
        model.forward_images += source.forward_images
        model.backward_images += source.backward_images
        output.extra["source_forward_images"] = source.forward_images
        output.extra["source_backward_images"] = source.backward_images
        return output

    def config(self) -> dict:
        return {"name": self.name}
