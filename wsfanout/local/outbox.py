"""One connection's outgoing frames: a bounded buffer drained by the connection's own writer.

PostToConnection must answer at once: API Gateway answers 429 ``LimitExceededException`` when a
connection cannot take more data, it never holds the request until the client reads. Writing
from the POST handler itself would block it in aiohttp's drain once the client stops reading
(and a frame whose POST already timed out would still be delivered later, so the caller's retry
became a duplicate). So a POST only *offers* its frame: :meth:`Outbox.offer` queues it when the
buffer has room (it will be written, in order) and refuses it otherwise (it will never be
written). One writer task per connection (:meth:`Outbox.drain`) does the waiting.

Pongs jump the queue (a client's pings are answered even behind a backlog), and frames API
Gateway itself sends (error frames, a two-way route's answer) are queued without the limit,
since no POST could be refused for them.
"""

from __future__ import annotations

from collections import deque
from contextlib import suppress

import anyio
from aiohttp import web

__all__ = ["Outbox"]


class Outbox:
    """A connection's bounded send buffer of ``limit_bytes`` (frames queued and not yet fully
    handed to the socket)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.pending_bytes = 0
        self._frames: deque[tuple[str | bytes, int]] = deque()
        self._pong: bytes | None = None  # only the latest ping needs an answer (RFC 6455 5.5.3)
        self._wake = anyio.Event()
        self._emptied = anyio.Event()

    def offer(self, data: bytes) -> bool:
        """Queue a POSTed frame (text when it is UTF-8, else binary, as API Gateway sends it);
        ``False``, and nothing queued, when the buffer cannot take it."""
        if self.pending_bytes + len(data) > self.limit_bytes:
            return False
        try:
            frame: str | bytes = data.decode()
        except UnicodeDecodeError:
            frame = data
        self._put(frame, len(data))
        return True

    def send(self, text: str) -> None:
        """Queue a frame of API Gateway's own, past the limit (nothing can refuse it)."""
        self._put(text, len(text.encode()))

    def pong(self, data: bytes) -> None:
        """Answer a ping ahead of every queued frame."""
        self._pong = data
        self._wake.set()

    @property
    def empty(self) -> bool:
        """Whether nothing is waiting to be written."""
        return not self._frames and self._pong is None

    async def flushed(self) -> None:
        """Return once everything queued so far is written (or :meth:`abandon` was called)."""
        while not self.empty:
            if self._emptied.is_set():
                self._emptied = anyio.Event()
            await self._emptied.wait()

    def abandon(self) -> None:
        """Forget what is queued: the connection is gone."""
        self._frames.clear()
        self._pong = None
        self.pending_bytes = 0
        self._emptied.set()

    def _put(self, frame: str | bytes, size: int) -> None:
        self.pending_bytes += size
        self._frames.append((frame, size))
        self._wake.set()

    async def drain(self, ws: web.WebSocketResponse) -> None:
        """Write queued frames to ``ws`` until cancelled or the socket closes (what is still
        queued then is lost with the connection, as on AWS)."""
        with suppress(ConnectionError):
            while True:
                if self.empty:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                if self._pong is not None:
                    data, self._pong = self._pong, None
                    await ws.pong(data)
                    if self.empty:
                        self._emptied.set()
                    continue
                frame, size = self._frames[0]
                if isinstance(frame, str):
                    await ws.send_str(frame)
                else:
                    await ws.send_bytes(frame)
                self._frames.popleft()
                self.pending_bytes -= size
                if self.empty:
                    self._emptied.set()
