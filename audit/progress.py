"""One switch for every progress bar, ours and the libraries' (`--quiet`, the demo's parallel workers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partialmethod


@contextmanager
def progress_bars_off() -> Iterator[None]:
    """Inside the block, no tqdm bar shows; the previous state is back after it (tests call commands in-process)."""
    # tqdm reads TQDM_DISABLE when it is first imported, which has happened by the time a command runs (and in a
    # forked worker), so the default of the class itself is switched as well; the variable covers child processes.
    from tqdm import std

    init, variable = std.tqdm.__dict__["__init__"], os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    std.tqdm.__init__ = partialmethod(init, disable=True)
    try:
        yield
    finally:
        std.tqdm.__init__ = init
        if variable is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = variable
