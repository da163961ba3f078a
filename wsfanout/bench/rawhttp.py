"""The ``floor-raw`` baseline's HTTP/1.1: keep-alive POSTs over bare :class:`asyncio.Protocol`.

Why by hand: ``floor-raw`` measures what a signed PostToConnection costs with no HTTP library at
all (no aiohttp, no botocore), so the difference to ``floor`` is the price of aiohttp's client
and the difference to the engine the price of everything else. It is a measuring stick, not a
transport: it speaks just enough HTTP/1.1 to talk to the local endpoint, which answers every
request with a ``Content-Length`` body, and it refuses (raises) what it does not speak (chunked
answers, a malformed status line) rather than guess; a connection the server closes, or marks
``Connection: close``, is replaced by a new one. No timeouts, no retries: a failure ends the run.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..aws.sigv4 import host_header

__all__ = ["RawConnection", "RawOrigin"]

_HEAD_END = b"\r\n\r\n"
_STATUS_MIN = len(b"HTTP/1.1 200")


class RawOrigin:
    """Where the posts go: host, port, TLS context, and the fixed part of every request."""

    def __init__(self, url: str, tls: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https" and tls is None:
            tls = ssl.create_default_context()
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = tls if parts.scheme == "https" else None
        self._origin_length = len(f"{parts.scheme}://{parts.netloc}")
        self._host = host_header(url)  # the host the signature covers

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> bytes:
        """The bytes of ``POST url`` with ``headers`` and ``body`` (a URL of this origin)."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return (
            f"POST {url[self._origin_length :]} HTTP/1.1\r\nHost: {self._host}\r\n{lines}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def connect(self) -> RawConnection:
        """A new keep-alive connection (TLS handshake done when the origin is HTTPS)."""
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            RawConnection, self.host, self.port, ssl=self.tls
        )
        return connection


class RawConnection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time: :meth:`exchange` writes a request and
    returns its answer's status once the whole answer has arrived."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101  (a stream connection)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(_HEAD_END)
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        if len(head) < _STATUS_MIN or not head.startswith(b"http/1."):
            self._fail(ConnectionError(f"not an HTTP/1.x answer: {head[:40]!r}"))
            return
        if b"\r\ntransfer-encoding:" in head:
            self._fail(ConnectionError("a chunked answer: floor-raw reads Content-Length only"))
            return
        start = head.find(b"\r\ncontent-length:")
        length = 0
        if start >= 0:
            start += len(b"\r\ncontent-length:")
            stop = head.find(b"\r\n", start)
            length = int(head[start : stop if stop >= 0 else len(head)])
        total = end + len(_HEAD_END) + length
        if len(buffer) < total:
            return
        del buffer[:total]
        if b"\r\nconnection: close" in head:
            self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(int(head[9:12]))

    async def exchange(self, request: bytes) -> int:
        """Send one request (head and body) and return the status of its answer.

        :raises ConnectionError: the connection closed first, or the answer was not readable.
        """
        transport = self._transport
        if transport is None or not self.reusable:
            raise ConnectionError("this connection cannot take another request")
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        transport.write(request)
        try:
            return await waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Close the connection (the server sees its end)."""
        if self._transport is not None:
            self._transport.close()
