"""Build a WebSocket app on wsfanout: routes, lifecycle hooks, rules and middleware.

``App`` is the entrypoint Lambda calls; ``Router`` splits an app across modules; ``Rules``
holds who may do what; ``ctx`` (a :class:`Context`) is what every hook and route is handed.
"""

from .app import App
from .context import Context, Sent
from .limits import RateLimit
from .presence import Presence
from .routing import Router
from .rules import Rules

__all__ = ["App", "Context", "Presence", "RateLimit", "Router", "Rules", "Sent"]
