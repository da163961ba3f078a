"""``python -m wsfanout.cli``: the ``wsfanout`` command, for a child process of the same
interpreter (``dev --reload`` starts its stack so, whether or not the console script is on
``PATH``). Importing this module runs nothing."""

from __future__ import annotations

from .entry import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
