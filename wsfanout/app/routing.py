"""Routes, lifecycle hooks and middleware: what an app (or a part of one) declares.

A :class:`Router` collects them with decorators; :meth:`Router.include_router` merges another
router's into this one, so an app can be split across modules. Route keys are exact: the value
of ``action`` in the frame (API Gateway's ``$request.body.action``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .context import Context

__all__ = ["CallNext", "Handler", "Middleware", "Router"]

Handler = Callable[["Context"], Awaitable[Any]]
"""A hook or a route: takes the context; what a route returns is its route response."""

CallNext = Callable[["Context"], Awaitable[Any]]
Middleware = Callable[["Context", CallNext], Awaitable[Any]]
"""Runs around every invocation: ``async def mw(ctx, call_next): ... await call_next(ctx) ...``."""

H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound=Middleware)

_RESERVED = {"$connect", "$disconnect", "$default"}


class Router:
    """Routes by exact key, the three lifecycle hooks, and middleware in the order added."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.connect_hook: Handler | None = None
        self.disconnect_hook: Handler | None = None
        self.default_hook: Handler | None = None
        self.middlewares: list[Middleware] = []

    def route(self, key: str) -> Callable[[H], H]:
        """Register a route for frames whose ``action`` is ``key``.

        :raises ValueError: ``key`` is empty, one of ``$connect``/``$disconnect``/``$default``
            (they have hooks of their own), or already routed.
        """
        if not key or key in _RESERVED:
            raise ValueError(
                f"{key!r} is not a route key; use on_connect, on_disconnect or on_default"
                if key
                else "a route key cannot be empty"
            )

        def register(handler: H) -> H:
            self._add(key, handler)
            return handler

        return register

    def on_connect(self, handler: H) -> H:
        """The ``$connect`` hook: may set ``ctx.attributes``, raise
        :class:`~wsfanout.exceptions.ConnectionRefused`, or return a subprotocol to accept."""
        self.connect_hook = _once(self.connect_hook, handler, "$connect")
        return handler

    def on_disconnect(self, handler: H) -> H:
        """The ``$disconnect`` hook; the connection is removed from the registry after it."""
        self.disconnect_hook = _once(self.disconnect_hook, handler, "$disconnect")
        return handler

    def on_default(self, handler: H) -> H:
        """Frames no route matches, and frames that are not JSON."""
        self.default_hook = _once(self.default_hook, handler, "$default")
        return handler

    def middleware(self, middleware: M) -> M:
        """Add ``middleware`` around every invocation (the first added runs outermost)."""
        self.middlewares.append(middleware)
        return middleware

    def include_router(self, router: Router) -> None:
        """Take over ``router``'s routes, hooks and middleware.

        :raises ValueError: a route or a hook is declared by both.
        """
        for key, handler in router.routes.items():
            self._add(key, handler)
        for name, hook in (
            ("connect_hook", router.connect_hook),
            ("disconnect_hook", router.disconnect_hook),
            ("default_hook", router.default_hook),
        ):
            if hook is not None:
                setattr(self, name, _once(getattr(self, name), hook, name.split("_")[0]))
        self.middlewares.extend(router.middlewares)

    def _add(self, key: str, handler: Handler) -> None:
        if key in self.routes:
            raise ValueError(f"route {key!r} is declared twice")
        self.routes[key] = handler


def _once(current: Handler | None, new: Handler, name: str) -> Handler:
    if current is not None:
        raise ValueError(f"the {name} hook is declared twice")
    return new
