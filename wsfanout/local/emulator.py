"""A local API Gateway WebSocket API: both halves of the dual-URL model on one aiohttp port.

``ws://127.0.0.1:PORT/{stage}`` is the client half: it accepts WebSocket clients, gives each an
API Gateway-style connection id and invokes the routes of a
:class:`~wsfanout.local.routes.RouteTable` (and its REQUEST authorizer) with events shaped
exactly like API Gateway's (:mod:`wsfanout.aws.events`). The upgrade is answered only after
``$connect`` returned 2xx, as on AWS, so a handler that refuses a client refuses the handshake.
``http://127.0.0.1:PORT/{stage}/@connections/{id}`` is the server half: the
:class:`~wsfanout.local.management.ManagementEndpoint`, backed here by the live sockets, so a
POST reaches a real client and a DELETE closes it.

Handlers run as Lambda runs them: the synchronous entrypoint, an event and a context whose
remaining time runs down, off the event loop. Each of ``concurrency`` long-lived worker threads
plays one warm container (:mod:`wsfanout.local.containers` gives each its own handler runtime
while the pool lives); they are our own rather than anyio's shared pool because that pool
retires threads idle for ten seconds, which would turn warm containers cold and strand their
clients. A connection's invocations run one at a time in frame order, apart from its reading:
pings are answered and closes seen while a Lambda runs.

API Gateway's limits are enforced, each configurable through :class:`Limits` so tests can reach
them in milliseconds: a frame larger than ``frame_bytes`` or a message (continuation frames
joined) larger than ``message_bytes`` closes the connection with 1009
(:mod:`wsfanout.local.framing`), a binary frame with 1003, an idle connection (no data frame
either way; pings do not count) with 1001, and so does one older than ``max_lifetime_s``; a
POST to a connection whose ``send_buffer_bytes`` are taken answers 429
(:mod:`wsfanout.local.outbox`). Every close, from either side, produces one ``$disconnect`` with
the status code and a reason, unless :meth:`Emulator.lose_disconnect` said to lose it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from aiohttp import WSCloseCode, WSMsgType, web
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..aws import events
from ..aws.events import LambdaContext, Origin, Upgrade
from ..core.models import MAX_PAYLOAD_BYTES
from ..exceptions import ConfigurationError, InvalidInputError
from . import containers
from .framing import FrameGuard
from .management import Backpressure, ConnectionInfo, ManagementEndpoint
from .outbox import Outbox
from .routes import (
    CHAT_ROUTE_KEYS,
    CONNECT_ROUTE,
    DISCONNECT_ROUTE,
    Authorizer,
    Handler,
    RouteTable,
    integration_body,
)
from .serving import serve_app

__all__ = ["Emulator", "Handler", "LambdaContext", "Limits", "serve_emulator"]

_log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_S: Final = 5.0  # how long a closing side waits for the peer's close frame
_QUEUED_MESSAGES: Final = 16  # frames read ahead of a connection's running invocation

# (status code, reason) of the closes API Gateway initiates or observes.
_DELETED: Final = (1000, "Connection Closed Normally")
_GOING_AWAY: Final = (1001, "Going away")
_NO_STATUS: Final = (1005, "Client-side close frame status not set")
_ABNORMAL: Final = (1006, "Connection closed abnormally")
_TOO_BIG: Final = (1009, "Message too big")
# API Gateway rejects a binary frame from a client and disconnects it with 1003 (developer guide,
# "Binary media types for WebSocket APIs": incoming binary frames are not supported).
_BINARY: Final = (1003, "Binary frames are not supported")
_INTERNAL: Final = (1011, "Internal server error")


_STATIC = Path(__file__).with_name("static")
_PAGE = _STATIC / "index.html"
# The browser client (its types beside it), served for the demo page and for any page of a
# developer's: ``import { connect } from "http://127.0.0.1:PORT/wsfanout.js"``.
_SCRIPTS: Final = {
    "/wsfanout.js": (_STATIC / "wsfanout.js", "text/javascript"),
    "/wsfanout.d.ts": (_STATIC / "wsfanout.d.ts", "application/typescript"),
}


@dataclass(frozen=True)
class Limits:
    """API Gateway's limits, as the emulator enforces them (defaults: AWS's)."""

    frame_bytes: int = 32 * 1024
    message_bytes: int = MAX_PAYLOAD_BYTES
    idle_timeout_s: float = 600
    max_lifetime_s: float = 7200
    integration_timeout_s: float = 29
    send_buffer_bytes: int = 1024 * 1024
    """What one connection may have queued towards a client that does not read before POSTs
    answer 429 (AWS documents no figure; this bounds the emulator's memory per client)."""

    def __post_init__(self) -> None:
        for name in ("frame_bytes", "message_bytes", "send_buffer_bytes"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be positive")
        for name in ("idle_timeout_s", "max_lifetime_s", "integration_timeout_s"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive")


class _State(enum.Enum):
    CONNECTING = "connecting"  # $connect has not returned: the management API answers 410
    OPEN = "open"
    CLOSING = "closing"  # either side started closing: gone for the management API


class _Failed(Exception):  # noqa: N818  (an outcome, carrying API Gateway's own message)
    """An invocation failed or timed out; ``message`` is what API Gateway tells the client."""

    def __init__(
        self, message: str, *, timed_out: bool = False, unauthorized: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out
        self.unauthorized = unauthorized


class _Connection:
    """One client: its origin, its socket once open, and the clocks of its limits."""

    def __init__(self, origin: Origin, limits: Limits) -> None:
        self.origin = origin
        self.state = _State.CONNECTING
        self.ws: web.WebSocketResponse | None = None
        self.outbox = Outbox(limits.send_buffer_bytes)
        self.writer = anyio.CancelScope()  # the outbox's writer; cancelled once nothing may go
        self.guard: FrameGuard | None = None
        self.opened = self.last_activity = 0.0  # anyio.current_time() (the loop's clock)
        self.last_client_message: datetime | None = None
        self.close_request: tuple[int, str] | None = None
        self.stop = anyio.Event()  # set when a close was requested or the reader finished
        self.done = anyio.Event()  # set when the connection's handler (and $disconnect) ended

    def request_close(self, code: int, reason: str) -> bool:
        """Ask the supervisor to close the socket; ``False`` if it is not open (any more)."""
        if self.state is not _State.OPEN:
            return False
        self.state = _State.CLOSING
        self.close_request = (code, reason)
        self.stop.set()
        return True

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            connected_at=datetime.fromtimestamp(self.origin.connected_at_ms / 1000, UTC),
            source_ip=self.origin.source_ip,
            user_agent=self.origin.user_agent,
            last_active_at=self.last_client_message,
        )


class _Sockets:
    """The :class:`~wsfanout.local.management.ConnectionStore` of live sockets, and the
    :data:`~wsfanout.local.management.Deliver` hook that writes POSTed frames to them."""

    def __init__(self) -> None:
        self.by_id: dict[str, _Connection] = {}

    def is_live(self, connection_id: str) -> bool:
        connection = self.by_id.get(connection_id)
        return connection is not None and connection.state is _State.OPEN

    def add(self, connection_id: str, info: ConnectionInfo | None = None) -> None:
        raise ConfigurationError(
            f"cannot add {connection_id!r}: emulator connections open by connecting a client"
        )

    def remove(self, connection_id: str) -> bool:
        """DeleteConnection: close the socket (asynchronously, as on AWS)."""
        connection = self.by_id.get(connection_id)
        return connection is not None and connection.request_close(*_DELETED)

    def info(self, connection_id: str) -> ConnectionInfo | None:
        connection = self.by_id.get(connection_id)
        if connection is None or connection.state is not _State.OPEN:
            return None
        return connection.info()

    async def deliver(self, connection_id: str, data: bytes) -> bool:
        """Queue ``data`` for the client, sent as API Gateway sends it (a text frame when it is
        UTF-8, else binary); never waits for the client to read.

        :raises Backpressure: the connection's send buffer is full (the frame is dropped).
        """
        connection = self.by_id.get(connection_id)
        if connection is None or connection.state is not _State.OPEN:
            return False
        if not connection.outbox.offer(data):
            raise Backpressure(connection_id)
        connection.last_activity = anyio.current_time()
        return True


class Emulator:
    """The WebSocket API: a :class:`~wsfanout.local.routes.RouteTable`, limits and the
    management endpoint. ``concurrency`` is the number of warm containers (concurrent
    invocations).

    ``routes`` is the table, or (today's shape, kept for callers that predate tables) the
    message route keys ``$request.body.action`` may select, all served by ``route_handler``
    together with ``$connect``, ``$disconnect`` and ``$default``, with ``authorizer`` invoked
    on every upgrade (no identity sources).

    :raises ConfigurationError: a table together with ``route_handler``/``authorizer``, or
        neither a table nor a ``route_handler``.
    :raises InvalidInputError: ``concurrency`` below 1.
    """

    def __init__(
        self,
        *,
        route_handler: Handler | None = None,
        authorizer: Handler | None = None,
        stage: str = "local",
        routes: RouteTable | Iterable[str] = CHAT_ROUTE_KEYS,
        limits: Limits = Limits(),  # frozen: a shared default is safe
        concurrency: int = 8,
        api_id: str = "local",
    ) -> None:
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        if isinstance(routes, RouteTable):
            if route_handler is not None or authorizer is not None:
                raise ConfigurationError("give a RouteTable or route_handler/authorizer, not both")
            table = routes
        elif route_handler is None:
            raise ConfigurationError("an Emulator needs a RouteTable or a route_handler")
        else:
            table = RouteTable.for_handler(
                route_handler, keys=routes, authorizer=authorizer, identity_sources=()
            )
        self.routes = table
        """The API's routes (``key in emulator.routes`` asks whether a route has that key)."""
        self.route_handler = route_handler
        """The one handler of the keyword shape; ``None`` when built from a table."""
        self.stage = stage
        self.limits = limits
        self.concurrency = concurrency
        self.api_id = api_id
        self._sockets = _Sockets()
        self.management = ManagementEndpoint(
            stage=stage, store=self._sockets, deliver=self._sockets.deliver
        )
        """The management half, backed by the live sockets (faults and records work as usual)."""
        self._lost: set[str] = set()
        self._closing = False
        self._discarding = False
        self._pool: ThreadPoolExecutor | None = None

    @property
    def authorizer(self) -> Handler | None:
        """The handler of the ``$connect`` authorizer, if the API has one."""
        return None if self.routes.authorizer is None else self.routes.authorizer.handler

    @property
    def live_connections(self) -> int:
        """Connections that are open (handshake done, no close started)."""
        return sum(1 for c in self._sockets.by_id.values() if c.state is _State.OPEN)

    def connection_id_of(self, *, user_agent: str) -> str | None:
        """The id of the newest open connection whose client sent this ``User-Agent`` (API
        Gateway never tells a client its id; tests and the demo tag clients this way)."""
        matching = [
            c.origin
            for c in self._sockets.by_id.values()
            if c.state is _State.OPEN and c.origin.user_agent == user_agent
        ]
        if not matching:
            return None
        return max(matching, key=lambda origin: origin.connected_at_ms).connection_id

    def lose_disconnect(self, connection_id: str) -> None:
        """Make the next close of ``connection_id`` produce no ``$disconnect`` (it is best-effort
        on AWS too), leaving a zombie in the registry for the engine's 410 handling to find."""
        self._lost.add(connection_id)

    def make_app(self) -> web.Application:
        """The aiohttp application: the WebSocket route plus the management endpoint's routes."""
        self._closing = False
        self._discarding = False
        app = self.management.make_app(
            [
                web.get(f"/{self.stage}", self._handshake),
                web.get("/", self._page),
                *(web.get(path, self._script) for path in _SCRIPTS),
            ]
        )
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _page(self, _request: web.Request) -> web.StreamResponse:
        """The demo page (``wsfanout dev`` prints its URL): a WebSocket client of this API."""
        html = _PAGE.read_text(encoding="utf-8").replace(
            '<html lang="en">', f'<html lang="en" data-stage="{self.stage}">', 1
        )
        return web.Response(text=html, content_type="text/html")

    async def _script(self, request: web.Request) -> web.StreamResponse:
        """The browser client ``wsfanout.js`` (an ES module) or its ``.d.ts``."""
        path, content_type = _SCRIPTS[request.path]
        return web.Response(
            text=path.read_text(encoding="utf-8"),
            content_type=content_type,
            headers={
                "Cache-Control": "no-cache",  # `--reload` and upgrades show at once
                # A module script is fetched with CORS: a page served from another origin (a
                # developer's front end on its own port) may import it. It is public code.
                "Access-Control-Allow-Origin": "*",
            },
        )

    # -- invocations -----------------------------------------------------------------------------

    async def _invoke(self, handler: Handler, event: dict[str, Any], function: str) -> Any:
        """One Lambda invocation in a container thread, bounded by the integration timeout
        (after which API Gateway stops waiting; the thread, like a Lambda, runs on)."""
        if self._pool is None:
            containers.acquire()  # released in _on_cleanup, once the pool is shut down
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="wsfanout-lambda")
        seconds = self.limits.integration_timeout_s

        def run() -> Any:
            return handler(event, LambdaContext(seconds, function_name=function))

        route = event["requestContext"]["routeKey"]
        try:
            with anyio.fail_after(seconds):
                return await asyncio.get_running_loop().run_in_executor(self._pool, run)
        except TimeoutError:
            _log.warning("%s (%s) timed out after %ss", function, route, seconds)
            raise _Failed("Endpoint request timed out", timed_out=True) from None
        except Exception as exc:
            # Lambda reports the error type and message; "Unauthorized" is the authorizer's 401.
            _log.exception("%s (%s) failed", function, route)
            raise _Failed("Internal server error", unauthorized=str(exc) == "Unauthorized") from exc

    # -- the client half -------------------------------------------------------------------------

    async def _handshake(self, request: web.Request) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            return _reject(426, "Upgrade Required", "BadRequestException")
        if self._closing:
            return _reject(503, "Service Unavailable", "ServiceUnavailableException")
        connection_id = events.new_id()
        while connection_id in self._sockets.by_id:
            connection_id = events.new_id()
        origin = Origin(
            connection_id=connection_id,
            connected_at_ms=events.now_ms(),
            # Our own address, never the client's Host header: the handlers post replies to
            # domainName, and a client must not be able to point them elsewhere.
            domain_name=_own_address(request),
            stage=self.stage,
            api_id=self.api_id,
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
        )
        connection = _Connection(origin, self.limits)
        self._sockets.by_id[connection_id] = connection
        try:
            return await self._serve(connection, request)
        finally:
            del self._sockets.by_id[connection_id]
            self._lost.discard(connection_id)
            connection.done.set()

    async def _serve(self, connection: _Connection, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        upgrade = Upgrade(
            headers=tuple((str(k), v) for k, v in request.headers.items()),
            query=tuple(request.query.items()),
            port=int(sockname[1]) if sockname else 80,
            proto=request.scheme,
        )
        if self.routes.authorizer is not None:
            try:
                connection.origin = await self._authorize(
                    self.routes.authorizer, connection.origin, upgrade
                )
            except events.AuthorizerRejection as rejection:
                return _reject(rejection.status, rejection.message, rejection.error_type)
        subprotocol: str | None = None
        connect = self.routes.get(CONNECT_ROUTE)
        if connect is not None:  # no $connect route: accepted without an invocation, as on AWS
            try:
                response = await self._invoke(
                    connect.handler,
                    events.connect_event(connection.origin, upgrade),
                    connect.function,
                )
            except _Failed as failure:
                return web.Response(status=504 if failure.timed_out else 502)
            status, subprotocol = events.connect_outcome(response)
            if not 200 <= status < 300:
                return web.Response(status=status)
        ws = web.WebSocketResponse(
            protocols=(subprotocol,) if subprotocol else (),
            compress=False,  # API Gateway negotiates no permessage-deflate
            autoping=False,  # pongs go through the outbox, so a backlog cannot block reading
            # The FrameGuard admits no larger message; this bounds aiohttp should it be bypassed
            # (aiohttp refuses a message of max_msg_size bytes or more).
            max_msg_size=self.limits.message_bytes + 1,
            timeout=_CLOSE_TIMEOUT_S,
        )
        try:
            self._guard_frames(connection, request)
            await ws.prepare(request)
        except ConnectionError:  # the client left while $connect ran
            await self._disconnect(connection, *_ABNORMAL)
            return ws
        code, reason = await self._session(connection, ws)
        await self._disconnect(connection, code, reason)
        return ws

    def _guard_frames(self, connection: _Connection, request: web.Request) -> None:
        """Put a :class:`~wsfanout.local.framing.FrameGuard` on the socket before the
        handshake is answered (a client sends no frame before it), so every frame passes the
        per-frame and per-message limits first."""
        if request.transport is None:
            raise ConnectionResetError("the client left during $connect")
        connection.guard = FrameGuard.install(
            request.transport,
            frame_bytes=self.limits.frame_bytes,
            message_bytes=self.limits.message_bytes,
            on_violation=lambda: connection.request_close(*_TOO_BIG),
        )

    async def _authorize(self, authorizer: Authorizer, origin: Origin, upgrade: Upgrade) -> Origin:
        if not authorizer.identified(upgrade):
            # An identity source missing or empty: 401 without invoking the authorizer
            # (API Gateway developer guide, "Identity sources" of REQUEST authorizers).
            raise events.AuthorizerRejection(401, "Unauthorized", "UnauthorizedException")
        event = events.authorizer_request(origin, upgrade)
        started = time.monotonic()
        try:
            answer = await self._invoke(authorizer.handler, event, authorizer.function)
        except _Failed as failure:
            if failure.unauthorized:
                raise events.AuthorizerRejection(
                    401, "Unauthorized", "UnauthorizedException"
                ) from None
            raise events.AuthorizerRejection(
                500, "Internal server error", "AuthorizerConfigurationException"
            ) from None
        latency_ms = int((time.monotonic() - started) * 1000)
        context = events.authorizer_context(answer, origin.method_arn, latency_ms)
        return replace(origin, authorizer=context)

    async def _session(self, connection: _Connection, ws: web.WebSocketResponse) -> tuple[int, str]:
        """Serve an open socket until it closes; return the ``$disconnect`` code and reason."""
        connection.ws = ws
        connection.opened = connection.last_activity = anyio.current_time()
        connection.state = _State.OPEN
        if self._closing:  # shutting down while $connect ran: open, then close at once
            connection.request_close(*_GOING_AWAY)
        if connection.guard is not None and connection.guard.violated:  # before it was OPEN
            connection.request_close(*_TOO_BIG)
        send, receive = anyio.create_memory_object_stream[str](_QUEUED_MESSAGES)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._supervise, connection, ws)
            tasks.start_soon(self._write, connection, ws)
            tasks.start_soon(self._invocations, connection, receive)
            try:
                async with send:
                    outcome = await self._read(connection, ws, send)
            finally:
                connection.state = _State.CLOSING
                connection.stop.set()  # the supervisor finishes a close it started, then ends
                connection.outbox.abandon()  # the socket is closed: nothing more can be sent
                connection.writer.cancel()
        return outcome

    async def _write(self, connection: _Connection, ws: web.WebSocketResponse) -> None:
        """Drain the outbox until the close frame is due (see :meth:`_supervise`) or the
        client is gone."""
        with connection.writer:
            await connection.outbox.drain(ws)

    async def _read(
        self,
        connection: _Connection,
        ws: web.WebSocketResponse,
        messages: MemoryObjectSendStream[str],
    ) -> tuple[int, str]:
        while True:
            message = await ws.receive()
            kind = message.type
            if kind is WSMsgType.TEXT:
                if connection.state is not _State.OPEN:
                    continue  # a close is under way: API Gateway drops late frames
                connection.last_activity = anyio.current_time()
                connection.last_client_message = datetime.now(UTC)
                await messages.send(message.data)
            elif kind is WSMsgType.BINARY:
                _log.info("%s sent a binary frame: closing", connection.origin.connection_id)
                connection.request_close(*_BINARY)
            elif kind is WSMsgType.PING:
                connection.outbox.pong(message.data)
            elif kind is WSMsgType.PONG:
                continue
            elif kind is WSMsgType.CLOSE:  # the client closed first
                code = int(message.data)
                if code == 0:
                    return _NO_STATUS
                return code, message.extra or ""
            elif kind is WSMsgType.ERROR:  # a protocol error aiohttp closed the socket for
                code = ws.close_code or WSCloseCode.PROTOCOL_ERROR
                return code, _TOO_BIG[1] if code == _TOO_BIG[0] else str(message.data)
            elif kind is WSMsgType.CLOSING or kind is WSMsgType.CLOSED:
                return connection.close_request or _ABNORMAL

    async def _invocations(
        self, connection: _Connection, messages: MemoryObjectReceiveStream[str]
    ) -> None:
        """Invoke the routes of a connection's frames one at a time, in frame order.

        A frame read while the connection was open is routed even if it closes meanwhile, before
        ``$disconnect``: API Gateway invokes a route for each frame as it arrives, so a close
        (the client's make-before-break, a DeleteConnection) never takes back frames it had
        already received; only the one-at-a-time order makes them wait here.
        """
        async with messages:
            async for data in messages:
                try:
                    await self._message(connection, data)
                except Exception:  # a bug of ours must close the connection, not orphan it
                    _log.exception("%s: message failed", connection.origin.connection_id)
                    connection.request_close(*_INTERNAL)

    async def _supervise(self, connection: _Connection, ws: web.WebSocketResponse) -> None:
        """Enforce the idle timeout and the lifetime, and carry out requested closes."""
        limits = self.limits
        expires = connection.opened + limits.max_lifetime_s
        while not connection.stop.is_set():
            deadline = min(connection.last_activity + limits.idle_timeout_s, expires)
            with anyio.move_on_after(deadline - anyio.current_time()):
                await connection.stop.wait()
            if connection.stop.is_set():
                break
            # Frames may have moved the idle deadline while we slept: judge by the current one.
            now = anyio.current_time()
            idle = now >= connection.last_activity + limits.idle_timeout_s
            if idle or now >= expires:
                _log.info(
                    "%s %s: closing",
                    connection.origin.connection_id,
                    "idle too long" if idle else "reached its maximum lifetime",
                )
                connection.request_close(*_GOING_AWAY)
        if connection.close_request is not None:
            # Frames accepted before the close go out before it (bounded: a client that does not
            # read would otherwise hold the close up forever).
            with anyio.move_on_after(_CLOSE_TIMEOUT_S):
                await connection.outbox.flushed()
            connection.writer.cancel()
            code, reason = connection.close_request
            await ws.close(code=code, message=reason.encode())

    async def _message(self, connection: _Connection, data: str) -> None:
        origin = connection.origin
        key = self.routes.select(data)
        route = self.routes.get(key)
        if route is None:
            # No route for the selection and no $default: API Gateway answers the client itself
            # and invokes nothing.
            connection.outbox.send(events.error_frame("Forbidden", origin, events.new_id()))
            return
        event = events.message_event(origin, key, data)
        try:
            response = await self._invoke(route.handler, event, route.function)
        except _Failed as failure:
            request_id = event["requestContext"]["requestId"]
            if connection.state is _State.OPEN:
                connection.outbox.send(events.error_frame(failure.message, origin, request_id))
            return
        body = integration_body(response) if route.two_way else None
        if body is not None and connection.state is _State.OPEN:
            connection.outbox.send(body)  # a two-way route's answer; one-way routes send nothing

    async def _disconnect(self, connection: _Connection, code: int, reason: str) -> None:
        connection.state = _State.CLOSING
        connection_id = connection.origin.connection_id
        if self._discarding:
            return  # the stack is being discarded with its registry; see aclose
        if connection_id in self._lost:
            _log.info("%s closed (%d); its $disconnect is lost on purpose", connection_id, code)
            return
        route = self.routes.get(DISCONNECT_ROUTE)
        if route is None:
            return  # no $disconnect route: nothing is invoked
        event = events.disconnect_event(connection.origin, code, reason)
        with suppress(_Failed):  # API Gateway ignores what $disconnect answers
            await self._invoke(route.handler, event, route.function)

    # -- shutdown --------------------------------------------------------------------------------

    @property
    def _shutdown_timeout_s(self) -> float:
        return _CLOSE_TIMEOUT_S + self.limits.integration_timeout_s + 1.0

    async def aclose(self, *, disconnect: bool = True) -> None:
        """Close every socket (each producing its ``$disconnect``), refuse new clients, and wait,
        bounded by the close handshake plus one integration timeout, for all of it to finish.

        ``disconnect=False`` closes them with no ``$disconnect``: for a stack whose registry is
        discarded with it (``wsfanout demo``), where N ``$disconnect`` invocations would only
        empty a table about to be deleted, and they are most of what its shutdown would wait for.
        """
        self._closing = True
        connections = list(self._sockets.by_id.values())
        if not disconnect:
            self._discarding = True
        for connection in connections:
            connection.request_close(*_GOING_AWAY)
        with anyio.move_on_after(self._shutdown_timeout_s):
            for connection in connections:
                await connection.done.wait()

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.aclose()

    async def _on_cleanup(self, _app: web.Application) -> None:
        """Retire the containers once their invocations ended (bounded: a hung handler's thread
        is left behind rather than hanging the shutdown)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            with anyio.move_on_after(self._shutdown_timeout_s):
                await anyio.to_thread.run_sync(pool.shutdown, abandon_on_cancel=True)
            with anyio.CancelScope(shield=True):  # off the loop: closing a runtime runs its loop
                await anyio.to_thread.run_sync(containers.release)


def _own_address(request: web.Request) -> str:
    """``host:port`` of the socket the client reached (the emulator's own listening address)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return request.host  # no socket to ask (a test transport): nothing better is known
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reject(status: int, message: str, error_type: str) -> web.Response:
    return web.json_response(
        {"message": message}, status=status, headers={"x-amzn-ErrorType": error_type}
    )


@asynccontextmanager
async def serve_emulator(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``emulator`` and yield its base URL ``http://127.0.0.1:PORT``.

    Clients connect to ``ws://127.0.0.1:PORT/{stage}``; the management endpoint is the base URL
    plus ``/{stage}``. On exit every socket is closed and its ``$disconnect`` has run (or timed
    out) before the port stops answering, so ``$disconnect`` handlers can still use it.
    """
    app = emulator.make_app()
    async with serve_app(app, host, port, shutdown_timeout=emulator._shutdown_timeout_s) as url:
        try:
            yield url
        finally:
            await emulator.aclose()  # before the server stops, so $disconnect can still post
