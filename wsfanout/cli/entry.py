"""The ``wsfanout`` console script: the command line, or one line saying what to install.

The command line needs the ``[cli]`` extra (rich). Without it the script prints the one
``pip install`` to run and exits 2, the command line's status for bad input or configuration
(a missing extra is the install's configuration; 1 means "ran, and some sends failed").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..extras import missing_extra

__all__ = ["main"]

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (:func:`wsfanout.cli.main.main`) if its extra is installed."""
    try:
        from .main import main as run  # noqa: PLC0415  (needs the extra checked for here)
    except ModuleNotFoundError as exc:
        error = missing_extra("cli", exc)
        if error is exc:
            raise
        sys.stderr.write(f"wsfanout: error: {error}\n")
        return EXIT_USAGE
    return run(argv)
