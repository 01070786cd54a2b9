"""`UserError`: the one base class of every error the user can fix (a bad option, file, model or attack name).

It lives here, in the bottom layer, because `defenses` imports nothing from `attacks` or `audit`, while both of
those import from `defenses`: every package can raise a UserError without an upward import. The CLI turns any
UserError into one line on stderr and exit code 2; any other exception is our bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix. The message is one line that says what is wrong and what to do."""
