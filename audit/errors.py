"""Which exceptions are the user's to fix (shown as one line) and which are our bugs (shown in full).

Every error the user can fix subclasses `defenses.errors.UserError`; this module only adds the command line's own
`UsageError` and the few OS errors that are the user's to fix too (a full disk, an unwritable directory). It
imports nothing from `audit.cli`, so the CLI can import it at the top.
"""

from __future__ import annotations

from defenses.errors import UserError

__all__ = ["UsageError", "UserError", "describe_error", "one_line"]


class UsageError(UserError):
    """Bad command-line usage the user can fix; the message says what and how."""


def one_line(message: str) -> str:
    """A message as one line: a user's exception text may span several."""
    return " ".join(message.split())


def describe_error(error: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(error, UserError):
        return one_line(str(error))
    if isinstance(error, OSError) and error.errno == 28:
        return "disk full while writing results; results finished so far are kept; free space and re-run to resume"
    if isinstance(error, PermissionError):
        return f"cannot write {error.filename}: permission denied; choose another --out directory"
    return None
