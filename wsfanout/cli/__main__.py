"""``python -m wsfanout.cli``: the ``wsfanout`` command, for a child process of the same
interpreter (``dev --reload`` starts its stack so, whether or not the console script is on
``PATH``)."""

from __future__ import annotations

from .main import main

raise SystemExit(main())
