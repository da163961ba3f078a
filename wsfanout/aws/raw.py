"""PostToConnection over bare asyncio HTTP/1.1 connections (``FANOUT_TRANSPORT=raw``).

Why by hand: once signing is precomputed (:mod:`.sigv4`), most of what is left of a lean
PostToConnection's CPU is aiohttp's client machinery (request and response objects, header
multidicts, the connector's bookkeeping), general for any request while a broadcast is one
request shape repeated. This transport writes that request's bytes and reads just the status,
the ``x-amzn- ErrorType`` header and the framing of the answer, over connections it keeps alive.

What it keeps right: keep-alive with a bounded pool of idle connections per endpoint, and idle
ones dropped before a server would; ``Connection: close`` (and HTTP/1.0) answers end their
connection; bodies framed by ``Content-Length``, by chunks (trailers too) or by the end of the
connection are read to their end, error bodies included, so the next request starts clean; a
per-attempt timeout (checked by one sweep of the requests in flight, several times per timeout);
TLS verified by the system's certificates or ``ca_bundle``; the outcome classified by
:func:`~wsfanout.core.outcomes.classify` as the other transports do. Anything it cannot read as
HTTP/1.1 ends the connection and is a network error, which the engine retries. It needs asyncio
(the engine's backend on Lambda); :class:`~wsfanout.aws.lean.LeanGateway` (aiohttp, the default)
and :class:`~wsfanout.aws.gateway.ManagementGateway` (botocore) remain the fallbacks.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Self
from urllib.parse import urlsplit

from ..core.outcomes import Outcome, classify
from .lean import LeanGateway
from .sigv4 import host_header

__all__ = ["RawGateway"]

_IDLE_S = 30.0  # an idle connection is dropped after this, before a server drops it mid-write
_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024
_SWEEPS = 8  # per timeout: a request times out between timeout_s and 1 + 1/_SWEEPS of it


class _Answer(Exception):  # noqa: N818  (not an error: how a finished answer leaves the parser)
    pass


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = True
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, str | None]] | None = None
        self._status = 0
        self._error_type: str | None = None
        self._remaining = -1  # body bytes still to read; -1: until the connection ends
        self._chunked = False
        self._head_done = False
        self.keep = True
        self.deadline = 0.0  # when the answer in progress is overdue (loop time)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101  (a stream connection)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = self.keep = False
        if self._waiter is None or self._waiter.done():
            return
        if self._head_done and self._remaining < 0 and not self._chunked:
            self._finish()  # a body framed by the end of the connection is complete
        else:
            self._waiter.set_exception(exc or ConnectionResetError("connection closed mid-answer"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.keep = False  # bytes nobody asked for: this connection is out of step
            self.close()
            return
        self._buffer += data
        try:
            self._parse()
        except _Answer:
            self._finish()
        except (ValueError, IndexError) as exc:
            self.keep = False
            self._waiter.set_exception(ConnectionError(f"unreadable HTTP answer: {exc}"))

    # -- parsing -----------------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        while not self._head_done:
            end = buffer.find(_HEAD_END)
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise ValueError("answer head too long")
                return
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[: end + len(_HEAD_END)]
            self._read_head(head)
        if self._chunked:
            self._read_chunks()
        elif self._remaining >= 0:
            if len(buffer) >= self._remaining:
                if len(buffer) > self._remaining:
                    raise ValueError("more bytes than the answer's Content-Length")
                buffer.clear()
                raise _Answer
        else:
            buffer.clear()  # read until the connection ends

    def _read_head(self, head: str) -> None:
        lines = head.split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not HTTP/1.x: {lines[0][:40]!r}")
        code = int(status)
        if 100 <= code < 200:
            return  # an interim answer; the real one follows
        self._status, self._head_done = code, True
        self.keep = version == "HTTP/1.1"
        length = 0 if code in (204, 304) else self._read_fields(lines[1:])
        if self._chunked:
            self._remaining = 0
        elif length is not None:
            self._remaining = length
        else:
            self.keep = False  # framed by the end of the connection
        if not self._chunked and length == 0:
            raise _Answer

    def _read_fields(self, lines: list[str]) -> int | None:
        """Take the framing, ``Connection`` and error type; return the ``Content-Length``."""
        length = None
        for line in lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
                if length < 0:
                    raise ValueError("negative Content-Length")
            elif name == "transfer-encoding":
                self._chunked = value.strip().lower().endswith("chunked")
            elif name == "connection":
                tokens = {token.strip().lower() for token in value.split(",")}
                self.keep = "close" not in tokens and (self.keep or "keep-alive" in tokens)
            elif name == "x-amzn-errortype":
                self._error_type = value.strip().split(":", 1)[0] or None
        return length

    def _read_chunks(self) -> None:
        buffer = self._buffer
        while True:
            if self._remaining > 0:  # inside a chunk: its data and CRLF
                if len(buffer) < self._remaining + 2:
                    return
                if buffer[self._remaining : self._remaining + 2] != b"\r\n":
                    raise ValueError("a chunk not followed by CRLF")
                del buffer[: self._remaining + 2]
                self._remaining = 0
            end = buffer.find(b"\r\n")
            if end < 0:
                return
            size = int(bytes(buffer[:end]).split(b";", 1)[0], 16)
            if size == 0:  # the last chunk, then trailer fields up to an empty line
                if buffer[end + 2 : end + 4] == b"\r\n":
                    del buffer[: end + 4]
                    raise _Answer
                stop = buffer.find(_HEAD_END, end)
                if stop < 0:
                    return
                del buffer[: stop + len(_HEAD_END)]
                raise _Answer
            del buffer[: end + 2]
            self._remaining = size

    def _finish(self) -> None:
        if self._buffer:
            self.keep = False  # bytes beyond the answer: out of step
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._error_type))

    # -- use -----------------------------------------------------------------------------------

    async def exchange(
        self, request: bytes, timeout_s: float, in_flight: set[_Connection]
    ) -> tuple[int, str | None]:
        """Write ``request`` and return the answer's status and error type, once read whole.

        The connection is in ``in_flight`` while it waits: whoever holds that set calls
        :meth:`expire` now and then (one sweep for all, not a timer per request: a timer's
        creation and cancelling cost a visible share of a request's CPU).

        :raises OSError: the connection failed or closed before the answer was complete.
        :raises ConnectionError: the answer was not readable HTTP/1.1.
        :raises TimeoutError: no complete answer within ``timeout_s`` (and the sweep after).
        """
        transport = self.transport
        if transport is None or not self.open:
            raise ConnectionResetError("connection closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, str | None]] = loop.create_future()
        self._waiter, self._status, self._error_type = waiter, 0, None
        self._remaining, self._chunked, self._head_done = -1, False, False
        self.deadline = loop.time() + timeout_s
        transport.write(request)
        in_flight.add(self)
        try:
            return await waiter
        finally:
            in_flight.discard(self)
            self._waiter = None

    def expire(self, now: float) -> None:
        """Fail the answer in progress with :class:`TimeoutError` if it is overdue at ``now``."""
        waiter = self._waiter
        if waiter is not None and not waiter.done() and now >= self.deadline:
            waiter.set_exception(TimeoutError("no answer in time"))

    def close(self) -> None:
        self.open = self.keep = False
        if self.transport is not None:
            self.transport.close()


class _Origin:
    """One endpoint's address, TLS, fixed request parts and idle connections."""

    def __init__(self, base_url: str, tls: ssl.SSLContext | None, keep: int) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self.prefix_length = len(f"{parts.scheme}://{parts.netloc}")
        self.host_header = host_header(base_url)  # the host the signature covers
        self.idle: deque[_Connection] = deque()
        self.keep = keep

    async def acquire(self, timeout_s: float) -> _Connection:
        now = time.monotonic()
        while self.idle:
            connection = self.idle.pop()  # the most recently used: the least likely to be stale
            if connection.open and now - connection.idle_since < _IDLE_S:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port, ssl=self.tls), timeout_s
        )
        return connection

    def release(self, connection: _Connection) -> None:
        if connection.keep and connection.open and len(self.idle) < self.keep:
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class RawGateway(LeanGateway):
    """:class:`~wsfanout.aws.lean.LeanGateway`'s signed PostToConnection over bare asyncio
    HTTP/1.1 connections instead of aiohttp (see the module docstring for what it keeps).

    Same contract: it never raises for HTTP or network errors but returns an :class:`Outcome`;
    use it as an async context manager, under asyncio.
    """

    def _setup(self) -> None:
        super()._setup()
        self._origins: dict[str, _Origin] = {}
        self._client_tls: ssl.SSLContext | None = None
        self._entered = False
        self._in_flight: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Self:
        """Ready the pools (connections open on first use).

        :raises ConfigurationError: ``ca_bundle`` cannot be loaded.
        """
        self._client_tls = self._tls()
        await self._stack.__aenter__()
        self._stack.callback(self._close_all)
        self._entered = True
        return self

    def _forget(self) -> None:
        self._entered = False

    def _sweep(self) -> None:
        """Time out the overdue answers, then come back in a fraction of the timeout."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self._in_flight):
            connection.expire(now)
        self._sweeper = loop.call_later(self._timeout_s / _SWEEPS, self._sweep)

    def _close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()

    def _origin(self, base_url: str) -> _Origin:
        origin = self._origins.get(base_url)
        if origin is None:
            origin = _Origin(base_url, self._client_tls, self._pool_size)
            self._origins[base_url] = origin
        return origin

    async def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        """One signed PostToConnection attempt, classified; HTTP and network errors are outcomes.

        :raises ConfigurationError: no endpoint for the connection, or no credentials to sign.
        :raises RuntimeError: called outside the gateway's ``async with`` block (a bug).
        """
        if not self._entered:
            raise RuntimeError("RawGateway used outside its 'async with' block")
        signed = await self._signed(connection_id, data, endpoint)
        if signed is None:
            return Outcome.REJECTED
        base_url, url, headers = signed
        origin = self._origins.get(base_url) or self._origin(base_url)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {url[origin.prefix_length :]} HTTP/1.1\r\nHost: {origin.host_header}\r\n"
            f"{lines}Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        if self._sweeper is None:
            self._sweep()
        connection: _Connection | None = None
        try:
            connection = await origin.acquire(self._timeout_s)
            status, error_type = await connection.exchange(
                request, self._timeout_s, self._in_flight
            )
        except (OSError, TimeoutError, ssl.SSLError):  # ConnectionError is an OSError
            if connection is not None:
                connection.close()
            return Outcome.NETWORK_ERROR
        except BaseException:  # cancelled mid-answer: the connection is out of step
            if connection is not None:
                connection.close()
            raise
        origin.release(connection)
        return Outcome.DELIVERED if status < 300 else classify(status, error_type)
