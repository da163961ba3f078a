"""The route model of a WebSocket API, as a template declares it and the emulator serves it.

A :class:`RouteTable` is what the emulator needs to know of an ``AWS::ApiGatewayV2::Api``: its
route selection expression, its routes (each a Lambda integration, one-way or two-way) and the
REQUEST authorizer of ``$connect`` with its identity sources. A template reader builds one from
the template's resources; :meth:`RouteTable.for_handler` builds the shape this project deploys
(one function behind every route). The strings are the template's own
(``route.request.querystring.token``), so nothing is translated twice.

What API Gateway does with the model, and so the emulator too:

- a frame selects the route its selection expression names; a non-JSON frame, no value, or a
  value with no route goes to ``$default``; with no ``$default`` route the client is answered
  ``Forbidden`` and no function runs;
- no ``$connect`` route: connections are accepted without an invocation; no ``$disconnect``
  route: nothing is invoked when they close;
- a two-way route (one with a route response) sends the integration's ``body`` back to the
  client; a one-way route sends nothing;
- an identity source missing from the upgrade request (or empty) answers 401 without invoking
  the authorizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ..aws import events
from ..aws.events import DEFAULT_ROUTE, Upgrade
from ..exceptions import InvalidInputError

__all__ = [
    "CHAT_ROUTE_KEYS",
    "CONNECT_ROUTE",
    "DISCONNECT_ROUTE",
    "TOKEN_IDENTITY_SOURCE",
    "Authorizer",
    "Handler",
    "Route",
    "RouteTable",
    "integration_body",
]

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
"""A Lambda entrypoint: ``handler(event, context) -> response``."""

CONNECT_ROUTE: Final = "$connect"
DISCONNECT_ROUTE: Final = "$disconnect"
CHAT_ROUTE_KEYS: Final = ("joinRoom", "leaveRoom", "sendMessage", "broadcast")
"""The message routes ``deploy/template.yaml`` declares besides ``$default``."""
TOKEN_IDENTITY_SOURCE: Final = "route.request.querystring.token"  # noqa: S105  (a name, no secret)
"""The deployed authorizer's identity source: the JWT in ``?token=``."""

_ROUTE_FUNCTION: Final = "wsfanout-route"
_AUTHORIZER_FUNCTION: Final = "wsfanout-authorizer"
_HEADER_SOURCE: Final = "route.request.header."
_QUERY_SOURCE: Final = "route.request.querystring."


@dataclass(frozen=True)
class Route:
    """One route: its key, the Lambda entrypoint behind it and that function's name (what its
    context reports). ``two_way`` routes have a route response: the integration's ``body`` is
    sent back to the client."""

    key: str
    handler: Handler = field(compare=False)
    function: str
    two_way: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise InvalidInputError("a route key must not be empty")


@dataclass(frozen=True)
class Authorizer:
    """The REQUEST authorizer of ``$connect`` and the identity sources it requires, written as
    in a template: ``route.request.header.NAME`` or ``route.request.querystring.NAME``."""

    handler: Handler = field(compare=False)
    function: str
    identity_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for source in self.identity_sources:
            name = _source_name(source)
            if not name:
                raise InvalidInputError(
                    f"identity source {source!r} must be route.request.header.NAME or "
                    "route.request.querystring.NAME"
                )

    def identified(self, upgrade: Upgrade) -> bool:
        """Whether every identity source is present and non-empty in the upgrade request (API
        Gateway answers 401 without invoking the authorizer otherwise). Header names are
        case-insensitive, query names are not."""
        headers = {name.lower(): value for name, value in upgrade.headers}
        query = dict(upgrade.query)
        for source in self.identity_sources:
            if source.startswith(_HEADER_SOURCE):
                value = headers.get(source.removeprefix(_HEADER_SOURCE).lower())
            else:
                value = query.get(source.removeprefix(_QUERY_SOURCE))
            if not value:
                return False
        return True


def _source_name(source: str) -> str:
    for prefix in (_HEADER_SOURCE, _QUERY_SOURCE):
        if source.startswith(prefix):
            return source.removeprefix(prefix)
    return ""


class RouteTable:
    """A WebSocket API's routes, selection expression and authorizer (immutable once built).

    :raises InvalidInputError: a selection expression other than ``$request.body.PATH`` (or
        ``${request.body.PATH}``), or a route stored under a key that is not its own.
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        selection_expression: str = "$request.body.action",
        authorizer: Authorizer | None = None,
    ) -> None:
        for key, each in routes.items():
            if key != each.key:
                raise InvalidInputError(f"route {each.key!r} is stored under key {key!r}")
        self.routes: Mapping[str, Route] = MappingProxyType(dict(routes))
        self.selection_expression = selection_expression
        self.selection_path = events.selection_path(selection_expression)
        self.authorizer = authorizer
        self._message_keys = frozenset(routes) - {CONNECT_ROUTE, DISCONNECT_ROUTE}

    @classmethod
    def for_handler(
        cls,
        handler: Handler,
        *,
        keys: Iterable[str] = CHAT_ROUTE_KEYS,
        authorizer: Handler | None = None,
        identity_sources: tuple[str, ...] = (TOKEN_IDENTITY_SOURCE,),
    ) -> RouteTable:
        """The deployed shape: ``handler`` behind ``$connect``, ``$disconnect``, ``$default``
        and ``keys`` (all one-way), and ``authorizer``, when given, on ``identity_sources``."""
        every = (CONNECT_ROUTE, DISCONNECT_ROUTE, DEFAULT_ROUTE, *keys)
        routes = {key: Route(key, handler, _ROUTE_FUNCTION) for key in every}
        guard = (
            None
            if authorizer is None
            else Authorizer(authorizer, _AUTHORIZER_FUNCTION, identity_sources)
        )
        return cls(routes, authorizer=guard)

    def __contains__(self, key: object) -> bool:
        return key in self.routes

    def get(self, key: str) -> Route | None:
        """The route stored under ``key``, if there is one."""
        return self.routes.get(key)

    def select(self, data: str | bytes) -> str:
        """The route key a frame selects: its selection value when a route has that key, else
        ``$default`` (which may itself have no route: then the client gets ``Forbidden``)."""
        return events.select_route(data, self._message_keys, self.selection_path)

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.routes))
        return f"RouteTable([{keys}], {self.selection_expression!r}, authorizer={self.authorizer})"


def integration_body(response: Any) -> str | None:
    """What a two-way route sends back: the proxy response's string ``body``; nothing when the
    response has none (AWS documents only that the body is returned)."""
    if isinstance(response, dict):
        body = response.get("body")
        if isinstance(body, str):
            return body
    return None
