"""Which exceptions are the user's to fix (shown as one line) and which are our bugs (shown in full)."""
from __future__ import annotations


def describe_error(error: BaseException) -> str | None:
    from attacks.registry import UnknownAttack
    from audit.inputs import AuditInputError
    from audit.cli import UsageError
    from audit.data import DataError
    from audit.model_spec import ModelSpecError
    from audit.report import ReportError
    from audit.store import ConfigMismatch
    from defenses.checkpoints import CheckpointError

    if isinstance(error, (UsageError, DataError, CheckpointError, ModelSpecError, AuditInputError, ConfigMismatch,
                          ReportError, UnknownAttack)):
        return str(error)
    if isinstance(error, OSError) and error.errno == 28:
        return "disk full while writing results; results finished so far are kept; free space and re-run to resume"
    if isinstance(error, PermissionError):
        return f"cannot write {error.filename}: permission denied; choose another --out directory"
    if isinstance(error, ValueError) and str(error).startswith("unknown suite"):
        return str(error)
    return None
