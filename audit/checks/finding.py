"""A finding: one diagnostic's verdict on one symptom, with the numbers behind it and a paragraph that explains it.

Findings are plain data. `evidence` holds the few numbers a reader checks (JSON numbers, strings, lists);
`data` holds arrays for plots (histograms, profiles, surfaces). Both are converted to plain JSON values when a
finding is made, so a report can store and reload findings without knowing torch or numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("pass", "warn", "fail", "skipped")
FINDINGS_DOC = "docs/findings.md"


def plain(value: Any) -> Any:
    """A JSON-able copy of `value`: tensors and numpy arrays become lists, non-finite floats become None."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"cannot store a {type(value).__name__} in a finding; convert it to numbers first")


def anchor_for(finding_id: str) -> str:
    return f"{FINDINGS_DOC}#{finding_id}"


@dataclass
class Finding:
    """One symptom checked: `status` is pass | warn | fail | skipped; `message` is one line for a human."""

    id: str
    status: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    anchor: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"finding status must be one of {STATUSES}, not {self.status!r}")
        if "\n" in self.message:
            raise ValueError(f"a finding message is one line; got {self.message!r}")
        self.anchor = self.anchor or anchor_for(self.id)
        self.evidence = plain(self.evidence)
        self.data = plain(self.data)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "message": self.message,
            "evidence": self.evidence,
            "anchor": self.anchor,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Finding:
        return cls(
            row["id"],
            row["status"],
            row["message"],
            row.get("evidence", {}),
            row.get("anchor", ""),
            row.get("data", {}),
        )


def skipped(finding_id: str, reason: str, **evidence: Any) -> Finding:
    """A check that could not run says so, with its reason, instead of disappearing from the report."""
    return Finding(finding_id, "skipped", f"skipped: {reason}", {"reason": reason, **evidence})


def status_from(value: float, warn_at: float, fail_at: float, higher_is_worse: bool = True) -> str:
    """pass / warn / fail by comparing `value` with two thresholds (inclusive)."""
    if not higher_is_worse:
        value, warn_at, fail_at = -value, -warn_at, -fail_at
    if value >= fail_at:
        return "fail"
    if value >= warn_at:
        return "warn"
    return "pass"
