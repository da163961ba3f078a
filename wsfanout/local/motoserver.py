"""``python -m wsfanout.local.motoserver PARENT_PID MOTO_ARGS...``: moto's server, ending when
the process that started it is gone.

moto runs in a session of its own (so a terminal's Ctrl-C reaches its parent first, which then
stops it in order); a parent that is killed outright (SIGKILL, a test run's timeout, a crashed
benchmark) never gets to stop it, and an orphan would hold its port and memory for good. Linux's
``PR_SET_PDEATHSIG`` would follow the *thread* that started the child, which an async parent's
worker threads make wrong, so this watches for the reparenting instead: once ``getppid()`` is no
longer the parent, moto exits.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Final

__all__ = ["main"]

WATCH_INTERVAL_S: Final = 0.5
"""How often the child looks for its parent: the bound on how long an orphan outlives it."""


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL_S)  # a daemon thread's poll: nothing to wait on instead
    os._exit(0)  # the parent is gone: nobody will stop moto, so end now, state and all


def main(argv: list[str] | None = None) -> None:
    """Watch the parent (``argv[0]``, a pid), then run ``moto.server.main`` on the rest."""
    args = sys.argv[1:] if argv is None else argv
    parent = int(args[0])
    threading.Thread(target=_watch, args=(parent,), name="wsfanout-parent", daemon=True).start()
    from moto.server import main as moto_main  # noqa: PLC0415  (after the watch is up)

    moto_main(args[1:])


if __name__ == "__main__":
    main()
