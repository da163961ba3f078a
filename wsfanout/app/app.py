"""``App``: a WebSocket app on API Gateway, written as decorated coroutines.

::

    app = App()

    @app.on_connect
    async def connect(ctx):
        ctx.attributes["tenant"] = ctx.query["tenant"]

    @app.route("typing")
    async def typing(ctx):
        await ctx.send({"type": "typing"}, room=ctx.json["room"], exclude=[ctx.connection_id])

    handler = app.lambda_handler        # the Lambda entrypoint of every route

The framework owns what every such app needs: the registry item of each connection (with the
attributes its ``$connect`` hook set), rooms, fan-out (inline, or as broadcast jobs), the rules
of who may send where (:class:`~wsfanout.app.rules.Rules`), and error frames. What a client
sends can cost it an error frame, never the connection, and never an ERROR log line: those are
kept for failures of the app's own code and of AWS.

The App has two sides. Sending from outside a route (``async with app: await app.send(...)``)
needs only ``pip install wsfanout``. The Lambda side (:meth:`App.lambda_handler`,
:meth:`App.handle`, and so the test client) parses events with Powertools' models and logs
through Powertools: it needs the ``[lambda]`` extra, imported on first use, and raises a
:class:`~wsfanout.exceptions.ConfigurationError` naming it when it is missing.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self, Unpack

from pydantic import ValidationError

from ..aws.base import Owner
from ..core.models import Connection
from ..core.protocol import error_frame
from ..exceptions import ConnectionExistsError, ConnectionRefused, FrameError, WsFanoutError
from .context import (
    Context,
    Data,
    EventType,
    Sent,
    To,
    deliver,
    encode,
    is_durable,
    logger,
    target_of,
)
from .presence import Presence, presence_of
from .routing import Handler, Router
from .rules import Rules

if TYPE_CHECKING:
    from ..handlers.runtime import Runtime
    from ..settings import Settings
    from .events import ConnectEvent, DisconnectEvent, MessageEvent
    from .services import Services

__all__ = ["App"]

_INLINE_MARGIN_S = 1.0  # of the invocation, kept back for handing the rest to a job and the logs
_OK: dict[str, Any] = {"statusCode": 200}


class App(Router, Owner):
    """An app: routes and hooks (see :class:`~wsfanout.app.routing.Router`), its rules, and the
    entrypoint Lambda calls.

    ``load_attributes`` reads the connection's registry item once before every route and the
    ``$disconnect`` hook, so ``ctx.attributes`` holds what ``$connect`` stored (one consistent
    GetItem per invocation); an app that stores none may turn it off.

    ``durable_rooms`` says which rooms are durable: ``True`` (all), a collection of room names,
    or a predicate of the room's name. A durable room's messages (JSON objects) get a per-room
    ``seq`` and are kept in a bounded history, and ``ctx.join(room, since=...)`` replays what a
    client missed (docs/app.md, "Durable rooms"); a send may opt out with ``durable=False``.

    ``presence_rooms`` (the same three forms; default off) says which rooms have presence on:
    their other members get a ``{"type": "presence", "event": "join"|"leave"}`` frame when a
    connection joins, leaves or disconnects, and a frame of a connection whose ``lastSeen`` is
    a quarter of ``PRESENCE_TIMEOUT_SECONDS`` old refreshes it (docs/app.md, "Presence").
    ``ctx.presence(room)`` and :meth:`presence` answer who is in any room.
    """

    def __init__(
        self,
        *,
        rules: Rules | None = None,
        settings: Settings | None = None,
        load_attributes: bool = True,
        durable_rooms: bool | Collection[str] | Callable[[str], bool] = False,
        presence_rooms: bool | Collection[str] | Callable[[str], bool] = False,
    ) -> None:
        Router.__init__(self)
        Owner.__init__(self)  # what ``async with app:`` opens, closed when the block ends
        self.rules = rules or Rules()
        self.load_attributes = load_attributes
        self.is_durable = _durability(durable_rooms)
        self.has_presence = _durability(presence_rooms)
        # Off (the default, or no rooms named): no leave events to look up at $disconnect, and
        # no lastSeen refresh, so an app without presence pays nothing for it.
        self.presence_on = bool(presence_rooms)
        self._settings = settings
        self._outside: Services | None = None
        self._entrypoint: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None

    # -- Lambda ---------------------------------------------------------------------------------

    def lambda_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The Lambda entrypoint of every route (``handler = app.lambda_handler``).

        :raises ConfigurationError: the ``[lambda]`` extra is not installed.
        """
        if self._entrypoint is None:
            # Imported here, not with the App: a sender's install has no Powertools.
            from ..handlers.runtime import logger as powertools  # noqa: PLC0415

            # log_event=False pins it off even if POWERTOOLS_LOGGER_LOG_EVENT is set: a
            # $connect event carries the client's token in its query string.
            decorate = powertools.inject_lambda_context(log_event=False, clear_state=True)
            self._entrypoint = decorate(self._lambda_handler)
        return self._entrypoint(event, context)

    def _lambda_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from ..handlers.runtime import bind_log_keys, runtime  # noqa: PLC0415  (see above)
        from .events import deadline_of  # noqa: PLC0415

        request = event.get("requestContext") or {}
        bind_log_keys(connection_id=request.get("connectionId"), route=request.get("routeKey"))
        rt = runtime()
        return rt.run(self._invoke(rt, event, deadline_of(context, _INLINE_MARGIN_S)))

    async def _invoke(
        self, rt: Runtime, event: Mapping[str, Any], deadline: float | None
    ) -> dict[str, Any]:
        return await self.handle(event, await rt.clients(), deadline=deadline)

    async def handle(
        self, event: Mapping[str, Any], services: Services, *, deadline: float | None = None
    ) -> dict[str, Any]:
        """Serve one API Gateway WebSocket event on ``services``; the Lambda entrypoint and
        the test client both come here. Returns what API Gateway expects of the integration.

        :raises ConfigurationError: the ``[lambda]`` extra is not installed.
        """
        # Imported here, not with the App (see the module docstring); the runtime module
        # configures the "wsfanout" logger as Powertools' (see ``context.logger``).
        from ..handlers.runtime import logger as _powertools  # noqa: F401, PLC0415
        from .events import ConnectEvent, DisconnectEvent, MessageEvent  # noqa: PLC0415

        request = event.get("requestContext") or {}
        kind = request.get("eventType")
        try:
            if kind == "CONNECT":
                return await self._connect(ConnectEvent.model_validate(event), request, services)
            if kind == "DISCONNECT":
                disconnect = DisconnectEvent.model_validate(event)
                return await self._disconnect(disconnect, request, services)
            message = MessageEvent.model_validate(event)
        except ValidationError as exc:  # API Gateway's envelope, not a client's frame
            logger.warning(
                "not an API Gateway WebSocket event", extra={"problems": str(exc)[:2000]}
            )
            return {"statusCode": 400}
        return await self._message(message, request, services, deadline)

    # -- the three kinds of event ------------------------------------------------------------

    def _context(
        self,
        kind: EventType,
        services: Services,
        request: Any,
        raw: Mapping[str, Any],
        *,
        deadline: float | None = None,
        **fields: Any,
    ) -> Context:
        from .events import endpoint_of  # noqa: PLC0415  (loaded by handle, the only caller)

        authorizer = request.authorizer
        return Context(
            connection_id=request.connection_id,
            event_type=kind,
            route_key=request.route_key,
            endpoint=endpoint_of(services.settings, request),
            request_context=raw,
            services=services,
            rules=self.rules,
            user_id=authorizer.user if authorizer else None,
            claims=dict(raw.get("authorizer") or {}),
            can_broadcast=bool(authorizer and authorizer.can_broadcast),
            deadline=deadline,
            durable_rooms=self.is_durable,
            presence_rooms=self.has_presence,
            **fields,
        )

    async def _connect(
        self, event: ConnectEvent, raw: Mapping[str, Any], services: Services
    ) -> dict[str, Any]:
        request = event.request_context
        ctx = self._context(
            "CONNECT",
            services,
            request,
            raw,
            query=dict(event.query_string_parameters or {}),
            headers=dict(event.headers or {}),
        )
        if services.settings.auth_required and not ctx.user_id:
            logger.warning("connection refused: no authorizer identified a user")
            return {"statusCode": 401}
        try:
            chosen = await self._call(ctx, self.connect_hook)
        except ConnectionRefused as refused:
            logger.info("connection refused", extra={"status": refused.status})
            return {"statusCode": refused.status}
        except Exception:  # the app's own code failed: the client learns nothing more
            logger.exception("the $connect hook failed")
            return {"statusCode": 500}
        connected_at = request.connected_at
        try:
            connection = Connection(
                connection_id=ctx.connection_id,
                connected_at=connected_at
                if connected_at.tzinfo
                else connected_at.replace(tzinfo=UTC),
                user_id=ctx.user_id,
                endpoint=ctx.endpoint,
                can_broadcast=ctx.can_broadcast,
                attributes=ctx.attributes,
            )
        except ValidationError as exc:
            if any(error["loc"][:1] == ("attributes",) for error in exc.errors()):
                # the app's hook stored what the registry cannot hold: the app's bug
                logger.exception("the $connect hook set attributes the registry cannot hold")
                return {"statusCode": 500}
            # an identity the registry cannot hold (a user id over 512 characters, say)
            logger.warning(
                "connection refused: its identity does not fit the registry",
                extra={"problems": str(exc)[:2000]},
            )
            return {"statusCode": 403}
        try:
            await (await services.registry()).put(connection)
        except ConnectionExistsError:
            logger.info("connection already registered")
        except WsFanoutError:
            logger.exception("could not register the connection")
            return {"statusCode": 500}
        logger.info("connected", extra={"user_id": ctx.user_id})
        if isinstance(chosen, str):
            return {**_OK, "headers": {"Sec-WebSocket-Protocol": chosen}}
        return _OK

    async def _load(self, ctx: Context) -> Connection | None:
        """Attributes (and, without an authorizer, the identity) from the registry item; the
        item is read for presence's ``lastSeen`` too, with ``load_attributes`` off."""
        if not (self.load_attributes or self.presence_on):
            return None
        stored = await (await ctx.services.registry()).get(ctx.connection_id)
        if stored is None or not self.load_attributes:
            return stored
        ctx.attributes = dict(stored.attributes)
        if ctx.user_id is None:
            ctx.user_id = stored.user_id
            ctx.can_broadcast = ctx.can_broadcast or stored.can_broadcast
        return stored

    async def _refresh(self, ctx: Context, stored: Connection | None) -> None:
        """Presence's ``lastSeen`` rule: a frame of a connection last seen a quarter of
        ``PRESENCE_TIMEOUT_SECONDS`` ago or more refreshes it (one UpdateItem), so a client
        that sends anything at all stays present, at about four writes per connection per
        timeout window at most; nothing in an app without presence rooms."""
        if not self.presence_on or stored is None:
            return
        window = timedelta(seconds=ctx.services.settings.presence_timeout_seconds / 4)
        if stored.seen > datetime.now(UTC) - window:
            return
        try:
            await ctx.touch()
        except WsFanoutError:  # the frame is still served; the next one tries again
            logger.warning("could not refresh the connection's lastSeen", exc_info=True)

    async def _rooms_of(self, ctx: Context) -> list[str]:
        """The rooms a disconnecting connection was in, read before its memberships go, so
        its presence rooms get a leave event; none (and a log line) when they cannot be read:
        removing the connection matters more."""
        try:
            return await (await ctx.services.registry()).rooms_of(ctx.connection_id)
        except WsFanoutError:
            logger.exception("could not read the rooms of the connection; no leave events")
            return []

    async def _disconnect(
        self, event: DisconnectEvent, raw: Mapping[str, Any], services: Services
    ) -> dict[str, Any]:
        ctx = self._context("DISCONNECT", services, event.request_context, raw)
        try:
            await self._load(ctx)
            await self._call(ctx, self.disconnect_hook)
        except Exception:
            logger.exception("the $disconnect hook failed; the connection is removed anyway")
        registry = await services.registry()
        rooms = await self._rooms_of(ctx) if self.presence_on else []
        try:
            removed = await registry.delete(ctx.connection_id)
        except WsFanoutError:
            # API Gateway ignores the answer to $disconnect; the items' ttl reaps what is left.
            logger.exception("could not remove the connection; its ttl will")
            return _OK
        for room in rooms:
            if self.has_presence(room):
                ctx._announce("leave", room)
        await ctx._send_announcements()
        request = event.request_context
        logger.info(
            "disconnected",
            extra={
                "items_removed": removed,
                "status_code": request.disconnect_status_code,
                "reason": request.disconnect_reason,
            },
        )
        return _OK

    async def _message(
        self,
        event: MessageEvent,
        raw: Mapping[str, Any],
        services: Services,
        deadline: float | None,
    ) -> dict[str, Any]:
        body: str | bytes | None = event.body if isinstance(event.body, str) else None
        if event.is_base64_encoded and body is not None:
            body = base64.b64decode(body)
        ctx = self._context(
            "MESSAGE", services, event.request_context, raw, body=body, deadline=deadline
        )
        try:
            await self._refresh(ctx, await self._load(ctx))
            result = await self._call(ctx, self._route_of(ctx))
        except FrameError as exc:
            logger.info("refused a frame", extra={"code": exc.code, "reason": str(exc)})
            await ctx.reply(error_frame(exc.code, str(exc)))
            return _OK
        except WsFanoutError as exc:
            logger.exception("could not serve a frame")
            await ctx.reply(error_frame("unavailable", f"could not serve the frame: {exc}"))
            return _OK
        except Exception:  # a bug must cost the sender one error frame, never the connection
            logger.exception("unexpected failure serving a frame")
            await ctx.reply(error_frame("internal", "the frame could not be served"))
            return _OK
        finally:  # a join or leave done before a failure is done: the room is told of it
            await ctx._send_announcements()
        if result is None:
            return _OK
        payload, _ = encode(result)
        return {**_OK, "body": payload.decode(errors="replace")}

    def _route_of(self, ctx: Context) -> Handler:
        """The route API Gateway selected, else the frame's ``action`` (a template that routes
        everything to ``$default``), else the default hook.

        :raises FrameError: (``unknown_action``) nothing matches and there is no default hook.
        """
        handler = self.routes.get(ctx.route_key)
        if handler is None:
            try:
                frame = ctx.json
            except FrameError:
                frame = None
            action = frame.get("action") if isinstance(frame, dict) else None
            handler = self.routes.get(action) if isinstance(action, str) else None
        handler = handler or self.default_hook
        if handler is None:
            raise FrameError(
                "unknown_action", f"no route for this frame; use one of {self._keys()}"
            )
        return handler

    def _keys(self) -> str:
        return ", ".join(sorted(self.routes)) or "none"

    async def _call(self, ctx: Context, handler: Handler | None) -> Any:
        """``handler`` inside the middleware, the first added outermost."""

        async def innermost(c: Context) -> Any:
            return await handler(c) if handler is not None else None

        call: Callable[[Context], Any] = innermost
        for middleware in reversed(self.middlewares):
            call = _wrap(middleware, call)
        return await call(ctx)

    # -- outside routes ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        from ..aws.clients import Clients  # noqa: PLC0415  (AWS clients only when used outside)
        from ..settings import Settings  # noqa: PLC0415

        await super().__aenter__()
        clients = Clients(self._settings or Settings())
        self._outside = await self._stack.enter_async_context(clients)
        return self

    def _forget(self) -> None:
        self._outside = None

    def _services(self) -> Services:
        if self._outside is None:
            raise RuntimeError("send from outside a route inside 'async with app:'")
        return self._outside

    def bind(self, services: Services | None) -> Services | None:
        """Make ``services`` what :meth:`send` uses outside routes (the test client binds its
        in-memory ones for its block); returns what was bound before."""
        previous, self._outside = self._outside, services
        return previous

    async def send(
        self,
        data: Data,
        *,
        exclude: Collection[str] = (),
        durable: bool | None = None,
        **to: Unpack[To],
    ) -> Sent:
        """Send from outside a route (a backend, a cron job): the same targets (see
        :class:`~wsfanout.app.context.To`), bytes and durability as ``ctx.send``, and no rules
        (the app's own code is trusted).

        :raises RuntimeError: outside ``async with app:``.
        :raises TypeError: not exactly one target named; ``durable=True`` for a target that is
            not a room, or with ``data`` that is not a JSON object.
        """
        target = target_of(to)
        durable = is_durable(target, durable, self.is_durable)
        return await deliver(self._services(), target, data, exclude=exclude, durable=durable)

    async def broadcast(self, data: Data, *, exclude: Collection[str] = ()) -> Sent:
        """Send to every connection (a broadcast job), from outside a route."""
        return await self.send(data, everyone=True, exclude=exclude)

    async def presence(self, room: str) -> Presence:
        """Who is in ``room`` now, from outside a route (a backend): as ``ctx.presence``, with
        no rules asked.

        :raises RuntimeError: outside ``async with app:``.
        :raises RegistryError: DynamoDB refused or could not be reached.
        """
        services = self._services()
        timeout = services.settings.presence_timeout_seconds
        return await presence_of(await services.registry(), room, timeout)


def _durability(rooms: bool | Collection[str] | Callable[[str], bool]) -> Callable[[str], bool]:
    """``durable_rooms`` as a predicate of a room's name."""
    if isinstance(rooms, bool):
        return lambda _room: rooms
    if callable(rooms):
        return rooms
    names = frozenset(rooms)
    return names.__contains__


def _wrap(middleware: Any, call_next: Callable[[Context], Any]) -> Callable[[Context], Any]:
    async def call(ctx: Context) -> Any:
        return await middleware(ctx, call_next)

    return call
