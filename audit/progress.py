"""One switch for every progress bar, ours and the libraries' (`--quiet`, the demo's parallel workers)."""
from __future__ import annotations

import os
from functools import partialmethod


def disable_progress_bars() -> None:
    # tqdm reads TQDM_DISABLE when it is first imported, which has happened by the time a command runs (and in a
    # forked worker), so the default of the class itself is changed as well; the variable covers child processes.
    from tqdm import std

    os.environ["TQDM_DISABLE"] = "1"
    std.tqdm.__init__ = partialmethod(std.tqdm.__init__, disable=True)  # type: ignore[method-assign]
