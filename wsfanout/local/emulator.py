"""A local API Gateway WebSocket API: both halves of the dual-URL model on one aiohttp port.

``ws://127.0.0.1:PORT/{stage}`` is the client half: it accepts WebSocket clients, gives each an
API Gateway-style connection id and invokes the route handler (and the REQUEST authorizer) with
events shaped exactly like API Gateway's (:mod:`wsfanout.aws.events`). The upgrade is answered
only after ``$connect`` returned 2xx, as on AWS, so a handler that refuses a client refuses the
handshake. ``http://127.0.0.1:PORT/{stage}/@connections/{id}`` is the server half: the
:class:`~wsfanout.local.management.ManagementEndpoint`, backed here by the live sockets, so a
POST reaches a real client and a DELETE closes it.

Handlers run as Lambda runs them: the synchronous entrypoint, an event and a context whose
remaining time runs down, off the event loop. Each of ``concurrency`` long-lived worker threads
plays one warm container (:mod:`wsfanout.local.containers` gives each its own handler runtime
while the pool lives); they are our own rather than
anyio's shared pool because that pool retires threads idle for ten seconds, which would turn
warm containers cold and strand their clients. A connection's invocations run one at a time in
frame order: a frame is read only after the previous one's invocation returned.

API Gateway's limits are enforced, each configurable through :class:`Limits` so tests can reach
them in milliseconds: frames larger than ``frame_bytes`` close the connection with 1009, an idle
connection (no data frame either way; pings do not count) is closed with 1001, and so is one
older than ``max_lifetime_s``. Every close, from either side, produces one ``$disconnect`` with
the status code and a reason, unless :meth:`Emulator.lose_disconnect` said to lose it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from aiohttp import WSCloseCode, WSMsgType, web

from ..aws import events
from ..aws.events import LambdaContext, Origin, Upgrade
from ..core.models import MAX_PAYLOAD_BYTES
from ..exceptions import ConfigurationError, InvalidInputError
from . import containers
from .management import ConnectionInfo, ManagementEndpoint
from .serving import serve_app

__all__ = ["Emulator", "Handler", "LambdaContext", "Limits", "serve_emulator"]

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
"""A Lambda entrypoint: ``handler(event, context) -> response``."""

_log = logging.getLogger(__name__)

_ROUTE_FUNCTION: Final = "wsfanout-route"
_AUTHORIZER_FUNCTION: Final = "wsfanout-authorizer"
_CLOSE_TIMEOUT_S: Final = 5.0  # how long a closing side waits for the peer's close frame

# (status code, reason) of the closes API Gateway initiates or observes.
_DELETED: Final = (1000, "Connection Closed Normally")
_GOING_AWAY: Final = (1001, "Going away")
_NO_STATUS: Final = (1005, "Client-side close frame status not set")
_ABNORMAL: Final = (1006, "Connection closed abnormally")
_TOO_BIG: Final = (1009, "Message too big")


_PAGE = Path(__file__).with_name("static") / "index.html"


@dataclass(frozen=True)
class Limits:
    """API Gateway's limits, as the emulator enforces them (defaults: AWS's)."""

    frame_bytes: int = 32 * 1024
    idle_timeout_s: float = 600
    max_lifetime_s: float = 7200
    integration_timeout_s: float = 29

    def __post_init__(self) -> None:
        if self.frame_bytes < 1:
            raise InvalidInputError("frame_bytes must be positive")
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

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.state = _State.CONNECTING
        self.ws: web.WebSocketResponse | None = None
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
        """Send ``data`` as API Gateway does: a text frame when it is UTF-8, else binary."""
        connection = self.by_id.get(connection_id)
        if connection is None or connection.state is not _State.OPEN or connection.ws is None:
            return False
        try:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                await connection.ws.send_bytes(data)
            else:
                await connection.ws.send_str(text)
        except ConnectionError:
            return False
        connection.last_activity = anyio.current_time()
        return True


class Emulator:
    """The WebSocket API: routes, an optional authorizer, limits and the management endpoint.

    ``routes`` are the route keys ``$request.body.action`` may select; other frames go to
    ``$default``. ``concurrency`` is the number of warm containers (concurrent invocations).
    """

    def __init__(
        self,
        *,
        route_handler: Handler,
        authorizer: Handler | None = None,
        stage: str = "local",
        routes: Iterable[str] = ("joinRoom", "leaveRoom", "sendMessage", "broadcast"),
        limits: Limits = Limits(),  # frozen: a shared default is safe
        concurrency: int = 8,
        api_id: str = "local",
    ) -> None:
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        self.route_handler = route_handler
        self.authorizer = authorizer
        self.stage = stage
        self.routes = frozenset(routes)
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
            [web.get(f"/{self.stage}", self._handshake), web.get("/", self._page)]
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
            domain_name=request.host,
            stage=self.stage,
            api_id=self.api_id,
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
        )
        connection = _Connection(origin)
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
        if self.authorizer is not None:
            try:
                connection.origin = await self._authorize(
                    self.authorizer, connection.origin, upgrade
                )
            except events.AuthorizerRejection as rejection:
                return _reject(rejection.status, rejection.message, rejection.error_type)
        try:
            response = await self._invoke(
                self.route_handler,
                events.connect_event(connection.origin, upgrade),
                _ROUTE_FUNCTION,
            )
        except _Failed as failure:
            return web.Response(status=504 if failure.timed_out else 502)
        status, subprotocol = events.connect_outcome(response)
        if not 200 <= status < 300:
            return web.Response(status=status)
        ws = web.WebSocketResponse(
            protocols=(subprotocol,) if subprotocol else (),
            compress=False,  # API Gateway negotiates no permessage-deflate
            # Over frame_bytes is closed by _read with API Gateway's reason; this only bounds
            # what aiohttp buffers for absurd frames (it closes those with 1009 itself).
            max_msg_size=max(4 * self.limits.frame_bytes, 8 * MAX_PAYLOAD_BYTES),
            timeout=_CLOSE_TIMEOUT_S,
        )
        try:
            await ws.prepare(request)
        except ConnectionError:  # the client left while $connect ran
            await self._disconnect(connection, *_ABNORMAL)
            return ws
        code, reason = await self._session(connection, ws)
        await self._disconnect(connection, code, reason)
        return ws

    async def _authorize(self, authorizer: Handler, origin: Origin, upgrade: Upgrade) -> Origin:
        event = events.authorizer_request(origin, upgrade)
        started = time.monotonic()
        try:
            answer = await self._invoke(authorizer, event, _AUTHORIZER_FUNCTION)
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
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._supervise, connection, ws)
            try:
                outcome = await self._read(connection, ws)
            finally:
                connection.state = _State.CLOSING
                connection.stop.set()  # the supervisor finishes a close it started, then ends
        return outcome

    async def _read(self, connection: _Connection, ws: web.WebSocketResponse) -> tuple[int, str]:
        while True:
            message = await ws.receive()
            kind = message.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                if connection.state is not _State.OPEN:
                    continue  # a close is under way: API Gateway drops late frames
                data: str | bytes = message.data
                size = len(data.encode()) if isinstance(data, str) else len(data)
                if size > self.limits.frame_bytes:
                    _log.info("%s sent %d bytes: closing", connection.origin.connection_id, size)
                    connection.request_close(*_TOO_BIG)
                    continue
                connection.last_activity = anyio.current_time()
                connection.last_client_message = datetime.now(UTC)
                await self._message(connection, data)
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
            code, reason = connection.close_request
            await ws.close(code=code, message=reason.encode())

    async def _message(self, connection: _Connection, data: str | bytes) -> None:
        route = events.select_route(data, self.routes)
        event = events.message_event(connection.origin, route, data)
        try:
            await self._invoke(self.route_handler, event, _ROUTE_FUNCTION)
        except _Failed as failure:
            request_id = event["requestContext"]["requestId"]
            frame = events.error_frame(failure.message, connection.origin, request_id)
            if connection.state is _State.OPEN and connection.ws is not None:
                with suppress(ConnectionError):
                    await connection.ws.send_str(frame)

    async def _disconnect(self, connection: _Connection, code: int, reason: str) -> None:
        connection.state = _State.CLOSING
        connection_id = connection.origin.connection_id
        if self._discarding:
            return  # the stack is being discarded with its registry; see aclose
        if connection_id in self._lost:
            _log.info("%s closed (%d); its $disconnect is lost on purpose", connection_id, code)
            return
        event = events.disconnect_event(connection.origin, code, reason)
        with suppress(_Failed):  # API Gateway ignores what $disconnect answers
            await self._invoke(self.route_handler, event, _ROUTE_FUNCTION)

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
