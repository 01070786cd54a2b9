"""The settings of one audit, frozen: everything a run needs to be reproduced, and what must match to resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Bumped when what the store holds changes meaning, so an old output directory is refused rather than misread.
STORE_FORMAT = 3
# The vocabularies of `--suite` and `--budget`; what each runs is the planner's (audit/plan/suites.py).
SUITES = ("autoattack", "adaptive", "full", "quick", "spatial")
BUDGET_NAMES = ("quick", "standard", "thorough")


@dataclass(frozen=True)
class AuditConfig:
    model: str
    dataset: str = "fashion-mnist"
    norm: str = "Linf"
    eps: float = 0.1
    n: int = 1000
    suite: str = "full"
    budget: str = "standard"  # quick | standard | thorough: how far up the strength curves (audit/plan/suites.py)
    seed: int = 0
    mode: str = "full"
    batch_size: int = 250  # the run's batch; `--batch-size auto` resolves to a number first (audit/batch_size.py)
    diagnostics_n: int = 50  # what the calibration ran (docs/findings.md): its thresholds were checked at 50
    checkpoint: str | None = None
    robustbench_dir: str | None = None
    meansparse_alpha: float | None = None
    claim: float | None = None
    trust_checkpoint: bool = False
    attacks: tuple[str, ...] | None = None  # an explicit attack list instead of the suite
    transfer_from: tuple[str, ...] = ()  # model specs to craft transfer attacks on (--transfer-from)
    keep_examples: str = "worst"  # all | worst | none: which adversarial examples the evidence keeps
    static_model: str | None = None  # a test-time defense's classifier: submodule name or model spec (--static-model)
    proposal_precision: str = "float32"  # float32 | tf32 | bfloat16 for the attacks' passes; scoring is float32
    batch_size_auto: bool = False  # batch_size was chosen by `--batch-size auto` (recorded in the results)

    def identity(self, content: dict[str, Any]) -> dict[str, Any]:
        """What must match for a resumed run to reuse stored results: the settings, and what was audited by
        content (`audit.fingerprint`: model state, checkpoint file, images, versions), never paths alone."""
        keep = (
            "model",
            "dataset",
            "norm",
            "eps",
            "n",
            "suite",
            "budget",
            "seed",
            "mode",
            "batch_size",
            "diagnostics_n",
            "meansparse_alpha",
            "attacks",
            "transfer_from",
            "keep_examples",
            "static_model",
        )
        # Lower-precision proposals change what the attacks propose: named only when chosen, so runs made before
        # the option resume as they were.
        precision = {"proposal_precision": self.proposal_precision} if self.proposal_precision != "float32" else {}
        return {
            "store_format": STORE_FORMAT,
            **{k: v for k, v in asdict(self).items() if k in keep},
            **precision,
            **content,
        }
