"""``wsfanout.handlers.route.handler``: API Gateway WebSocket route events, served by the
built-in chat app (:mod:`wsfanout.apps.chat`, docs/contracts.md "Client protocol").

The module path and the name are what ``deploy/template.yaml`` and the local stack invoke.
"""

from __future__ import annotations

from ..apps import chat

__all__ = ["handler"]

handler = chat.app.lambda_handler
