"""Local stand-ins for AWS services, so tests and benchmarks run without an AWS account.

Everything here needs the ``[local]`` extra (moto server, websockets; it brings ``[lambda]``
and ``[cli]`` too); importing any of it without the extra raises a one-line
:class:`~wsfanout.exceptions.ConfigurationError` naming it, which ``wsfanout dev`` and
``wsfanout demo`` print before exiting 2.
"""

from __future__ import annotations

from importlib.util import find_spec

from ..extras import missing_extra

# Found, not imported: moto runs in a process of its own, and importing it here would cost
# every use of this package its import time.
for _needed in ("moto", "websockets"):
    if find_spec(_needed) is None:
        raise missing_extra(
            "local", ModuleNotFoundError(f"No module named {_needed!r}", name=_needed)
        )

__all__: list[str] = []
