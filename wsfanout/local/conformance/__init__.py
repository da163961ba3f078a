"""Does a WebSocket API behave like API Gateway? One small check per behaviour, against any stage.

``wsfanout conformance --ws URL --management URL`` runs every check against a stage through its
two public URLs, so the same run judges the local stack and a real AWS stage (see
:mod:`.runner` for how a check sees its target, and how to add one). The checks, by what they
drive: :mod:`.management_checks` (``@connections``), :mod:`.client_checks` (frames, messages,
routes, ids, the authorizer), :mod:`.knob_checks` (behaviours a local knob makes quick to see).
:mod:`.api` is the conformance API, deployable to AWS, for the checks the chat stack cannot
serve.
"""

from __future__ import annotations

# Imported for their registrations, in the order the checks run (the knobs' last).
from . import management_checks  # noqa: F401  (registers its checks)

# isort: split
from . import client_checks  # noqa: F401  (registers its checks)

# isort: split
from . import knob_checks  # noqa: F401  (registers its checks)

# isort: split
from .runner import (
    CHECK_TIMEOUT_S,
    CHECKS,
    ConformanceTarget,
    Result,
    Verdict,
    check,
    failed,
    open_target,
    passed,
    run_checks,
    skipped,
)

__all__ = [
    "CHECKS",
    "CHECK_TIMEOUT_S",
    "ConformanceTarget",
    "Result",
    "Verdict",
    "check",
    "failed",
    "open_target",
    "passed",
    "run_checks",
    "skipped",
]
