"""API Gateway's two size limits on client data, enforced frame by frame on the wire.

API Gateway accepts frames of up to 32 KB and messages of up to 128 KB, "a message larger than
32 KB must be split into multiple frames, each 32 KB or smaller", and closes the connection with
1009 when a larger frame or message arrives (Amazon API Gateway quotas for WebSocket APIs).

aiohttp assembles continuation frames inside its reader (compiled, in the usual wheels) and
bounds only the assembled message (``max_msg_size``); nothing outside the reader ever sees a
frame. So :class:`FrameGuard` sits in front of aiohttp on the socket itself: it is the
connection's asyncio protocol (installed with the transport's public ``set_protocol`` before
the handshake is answered, so every frame passes it), reads RFC 6455 frame headers (a dozen
bytes of well-defined format, written by hand because no library parses headers without also
taking over the socket) and hands aiohttp's protocol every byte of admitted frames unchanged.
Data frames that break a limit, and all data after them, are withheld, so aiohttp never
buffers more than one admitted message; control frames still pass, so the close handshake
completes. This relies on asyncio's protocol interface only, not on the internals of aiohttp or
of either of its readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

__all__ = ["FrameGuard"]

_CONTINUATION: Final = 0x0
_TEXT: Final = 0x1
_BINARY: Final = 0x2
_CONTROL: Final = 0x8  # opcodes from here on are control frames (close, ping, pong)


def _header(data: bytes, at: int) -> tuple[int, int, bool, int] | None:
    """``(header length, opcode, fin, payload length)`` of the frame starting at ``at``, or
    ``None`` while its header is incomplete."""
    if len(data) - at < 2:
        return None
    first, second = data[at], data[at + 1]
    length = second & 0x7F
    size = 2
    if length == 126:
        size = 4
    elif length == 127:
        size = 10
    if second & 0x80:
        size += 4  # the masking key
    if len(data) - at < size:
        return None
    if length >= 126:
        length = int.from_bytes(data[at + 2 : at + (4 if length == 126 else 10)], "big")
    return size, first & 0x0F, bool(first & 0x80), length


class FrameGuard(asyncio.Protocol):
    """The protocol in front of ``inner`` (aiohttp's): admits data frames up to ``frame_bytes``
    each and messages up to ``message_bytes``; on the first frame that breaks either limit it
    calls ``on_violation`` once and from then on forwards control frames only."""

    def __init__(
        self,
        inner: asyncio.BaseProtocol,
        *,
        frame_bytes: int,
        message_bytes: int,
        on_violation: Callable[[], object],
    ) -> None:
        if not isinstance(inner, asyncio.Protocol):
            raise TypeError(f"cannot guard a {type(inner).__name__}: not a streaming protocol")
        self.inner = inner
        self.frame_bytes = frame_bytes
        self.message_bytes = message_bytes
        self._on_violation = on_violation
        self.violated = False
        self._held = b""  # the start of a frame whose header has not fully arrived
        self._remaining = 0  # payload bytes of the current frame still to come
        self._forwarding = True  # whether the current frame's bytes are forwarded
        self._message = 0  # payload bytes of the data message under way

    @classmethod
    def install(
        cls,
        transport: asyncio.BaseTransport,
        *,
        frame_bytes: int,
        message_bytes: int,
        on_violation: Callable[[], object],
    ) -> FrameGuard:
        """Put a guard between ``transport`` and its protocol; every later byte passes it."""
        guard = cls(
            transport.get_protocol(),
            frame_bytes=frame_bytes,
            message_bytes=message_bytes,
            on_violation=on_violation,
        )
        transport.set_protocol(guard)
        return guard

    def data_received(self, data: bytes) -> None:
        """Scan ``data`` for frame boundaries and forward what is admitted."""
        if self._held:
            data, self._held = self._held + bytes(data), b""
        kept: list[bytes] = []
        start = 0  # where the run of forwarded bytes being collected began
        at = 0
        end = len(data)
        while at < end:
            if self._remaining:
                step = min(self._remaining, end - at)
                self._remaining -= step
                at += step
                continue
            header = _header(data, at)
            if header is None:
                self._held = data[at:]
                end = at
                break
            size, opcode, fin, length = header
            admit = self._admit(opcode, fin, length)
            if admit != self._forwarding:
                if self._forwarding:
                    kept.append(data[start:at])
                start = at
                self._forwarding = admit
            self._remaining = length
            at += size
        if self._forwarding:
            kept.append(data[start:end])
        payload = b"".join(kept)
        if payload:
            self.inner.data_received(payload)

    def _admit(self, opcode: int, fin: bool, length: int) -> bool:
        if opcode >= _CONTROL:
            return True
        if self.violated:
            return False
        if opcode in (_TEXT, _BINARY):
            self._message = length
        elif opcode == _CONTINUATION:
            self._message += length
        if length > self.frame_bytes or self._message > self.message_bytes:
            self.violated = True
            self._on_violation()
            return False
        if fin:
            self._message = 0
        return True

    # The rest of the protocol passes straight through.

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
