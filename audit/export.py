"""`audit export DIR --format robustbench|npz`: a run's adversarial examples in forms other tools load.

- `robustbench`: `adv_complete.pt`, what AutoAttack's and RobustBench's evaluation scripts save
  (`torch.save({"adv_complete": x_adv})` in fra31/auto-attack `examples/eval.py`): one input per audited sample,
  the Lp example that broke it where one is kept, else the clean image; with `labels` and `indices` (each
  sample's index in the test set). Plain tensors, so `torch.load(..., weights_only=True)` reads it. Its accuracy
  on the model is the verified Lp upper bound.
- `npz`: `examples.npz`, every kept example with its sample, attack, threat kind, distance and margin, and the
  clean images, labels and test-set indices: for numpy, JAX or any other framework.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audit.evidence import Evidence, EvidenceError, load_evidence

FORMATS = {"robustbench": "adv_complete.pt", "npz": "examples.npz"}


def adv_complete(evidence: Evidence) -> torch.Tensor:
    """The clean images with each sample's Lp example in place, where one is kept (the lowest margin wins)."""
    x = evidence.clean.clone()
    best: dict[int, int] = {}
    for j in range(evidence.k):
        sample = int(evidence.sample[j])
        lower = sample not in best or evidence.margin[j] < evidence.margin[best[sample]]
        if evidence.threat_kind[j] == "lp" and lower:
            best[sample] = j
    for sample, j in best.items():
        x[sample] = evidence.x_adv[j]
    return x


def export_run(out: str | Path, fmt: str, destination: str | Path | None = None) -> Path:
    evidence = load_evidence(out)
    path = Path(destination) if destination is not None else Path(out) / FORMATS[fmt]
    if path.is_dir():
        raise EvidenceError(f"--out {path} is a directory; give the file to write, e.g. {path / FORMATS[fmt]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EvidenceError(f"cannot write {path} ({error.strerror or error}); choose another --out") from None
    if fmt == "robustbench":
        torch.save(
            {"adv_complete": adv_complete(evidence), "labels": evidence.labels, "indices": evidence.dataset_index}, path
        )
    else:
        with open(path, "wb") as handle:  # a file handle, so numpy does not append .npz to a name without it
            np.savez_compressed(
                handle,
                x_adv=evidence.x_adv.numpy(),
                sample=evidence.sample.numpy(),
                attack=np.array(evidence.attack, dtype=str),
                threat_kind=np.array(evidence.threat_kind, dtype=str),
                distance=evidence.distance.numpy(),
                margin=evidence.margin.numpy(),
                clean=evidence.clean.numpy(),
                labels=evidence.labels.numpy(),
                indices=evidence.dataset_index.numpy(),
            )
    return path
