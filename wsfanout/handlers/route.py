"""``wsfanout.handlers.route.handler``: API Gateway WebSocket route events, served by the
built-in chat app (:mod:`wsfanout.apps.chat`, docs/contracts.md "Client protocol").

The module path and the name are what ``deploy/template.yaml`` and the local stack invoke.
"""

from __future__ import annotations

from ..app import events as _events  # noqa: F401  (see below)
from ..apps import chat
from . import runtime as _runtime  # noqa: F401

# The App loads its Lambda side (the event models, Powertools' logger) on first use, so that a
# sender's install needs no [lambda]; a function loads it here, at init, not in its first request.

__all__ = ["handler"]

handler = chat.app.lambda_handler
