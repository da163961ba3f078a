"""A Python client of the wsfanout protocol (docs/contracts.md, "Client protocol" and "Replay"),
on ``websockets``: connections that outlast API Gateway's limits.

::

    from wsfanout.client import connect

    async with connect(url, token=None, rooms=["lobby"]) as client:
        await client.send({"action": "sendMessage", "to": {"room": "lobby"}, "data": "hi"})
        async for message in client:          # message.room, message.seq, message.data
            ...

What it does for the application, so that a healthy client never sees a gap:

- **keepalive**: ``{"action": "ping"}`` every ``keepalive_s``, below API Gateway's 10-minute
  idle timeout;
- **planned reconnect** before the 2-hour limit (``lifetime_s``), make-before-break: a new
  connection is opened and its rooms re-joined with ``since`` before the old one is closed;
- **reconnect** after a drop, with exponential backoff and full jitter (a random delay up to
  ``min(backoff_max_s, backoff_base_s * 2**attempt)``, so clients cut off together do not
  come back together);
- **exactly once, in order**: in a durable room each ``(room, seq)`` reaches the iterator
  once and in ``seq`` order; early ones wait in a buffer, and a gap that has not filled within
  ``gap_timeout_s`` is asked for again (``joinRoom`` with ``since``); a ``reset`` (the room's
  history no longer reaches back) is an event, and the client goes on from the room's latest;
  a ``seq`` that three such asks did not bring although later ones came (a message whose
  storing failed, which nobody got) is given up with a ``reset`` event too;
- **events** (``on_event=`` callback, or ``async for event in client.events()``):
  ``connected``, ``reconnecting``, ``resumed``, ``reset`` and ``error``, and in rooms with
  presence on ``join`` and ``leave`` (another connection came into or left a joined room);
- **presence**: ``await client.presence("lobby")`` says who is in a room the client joined; a
  request whose connection drops before the answer is asked again on the next connection
  (within ``send_timeout_s``), so a reconnect never loses it.

The sender's own messages to a room are not sent back to it (the server excludes the sender);
their ``seq``, from the ``sendMessage`` ack, is skipped in the room's order. This module imports
nothing of wsfanout's server side; it needs the ``[client]`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .exceptions import InvalidInputError, WsFanoutError
from .extras import missing_extra

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as open_websocket
    from websockets.exceptions import ConnectionClosed, WebSocketException
except ModuleNotFoundError as exc:  # pragma: no cover - the bare install
    raise missing_extra("client", exc) from None

__all__ = [
    "Client",
    "ClientOptions",
    "Event",
    "EventKind",
    "Message",
    "Presence",
    "ProtocolError",
    "Stats",
    "connect",
]

EventKind = Literal["connected", "reconnecting", "resumed", "reset", "error", "join", "leave"]
_PROTOCOL_TYPES = frozenset({"ack", "error", "reset", "pong", "close", "presence"})


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a client keeps its connection. The defaults fit API Gateway's limits (2 hours, 10
    minutes idle); a local stack with compressed limits wants smaller ones."""

    lifetime_s: float = 6600.0
    """Open the next connection this long after the current one opened (AWS closes at 2 h)."""
    keepalive_s: float = 240.0
    """Ping this often (AWS closes a connection idle for 10 minutes)."""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    gap_timeout_s: float = 2.0
    """How long a missing ``seq`` may stay missing before the room is asked again."""
    open_timeout_s: float = 10.0
    """Bound on opening a connection and on each answer (``whoami``, a join's ack) it awaits."""
    send_timeout_s: float = 30.0
    """How long :meth:`Client.send` waits for a connection while reconnecting."""

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class Message:
    """A frame for the application: a room's message (``room`` and ``seq`` set in a durable
    room), a direct message, or any other frame an app sends (``frame`` holds it whole)."""

    room: str | None
    seq: int | None
    data: Any
    sender: Mapping[str, str]
    frame: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to the connection: ``connected`` (a new connection, with its
    id), ``reconnecting`` (after a drop: the ``attempt`` and its ``delay_s``), ``resumed`` (the
    rooms re-joined; ``planned`` for a make-before-break, ``latency_s`` from the drop or the
    planned start), ``reset`` (``room`` lost messages up to ``seq``), ``error`` (an error frame),
    ``join`` and ``leave`` (in a presence room, another connection, ``connection_id``, of
    ``user_id`` when it has one, came into or left ``room``; ``frame`` holds the event)."""

    kind: EventKind
    connection_id: str | None = None
    room: str | None = None
    seq: int | None = None
    attempt: int = 0
    delay_s: float = 0.0
    planned: bool = False
    latency_s: float | None = None
    frame: Mapping[str, Any] | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is in ``room``: ``users`` maps each user id with a live connection there to how
    many it has, in user id order; ``connections`` counts every live member connection,
    anonymous ones included."""

    room: str
    users: Mapping[str, int]
    connections: int


@dataclass(slots=True)
class Stats:
    """What the client went through, for operators and tests."""

    connections: int = 0
    reconnects: int = 0
    planned_reconnects: int = 0
    duplicates: int = 0
    """Frames of a ``(room, seq)`` already delivered or buffered, dropped."""
    gap_requests: int = 0
    resets: int = 0
    resume_latencies_s: list[float] = field(default_factory=list)
    """From a drop to the rooms re-joined on a new connection, backoff included."""
    planned_latencies_s: list[float] = field(default_factory=list)
    """From the start of a planned reconnect to the rooms re-joined (the old one still open)."""


@dataclass(slots=True)
class _Room:
    last: int | None = None  # the last seq delivered (or skipped); None until the first ack
    known: int = 0  # the highest seq known to exist
    pending: dict[int, Message] = field(default_factory=dict)
    skip: set[int] = field(default_factory=set)  # the client's own messages
    gap_since: float | None = None
    asks: int = 0  # how often the current gap was asked for again


class _Link:
    """One WebSocket connection, its reader and keepalive, and the answers awaited on it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.connection_id: str | None = None
        self.opened = time.monotonic()
        self.closed = asyncio.Event()
        self.waiters: dict[tuple[str, str], asyncio.Future[Mapping[str, Any]]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def fail_waiters(self, error: Exception) -> None:
        for future in self.waiters.values():
            if not future.done():
                future.set_exception(error)
        self.waiters.clear()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.ws.close()
        self.closed.set()


class ProtocolError(WsFanoutError):
    """The server answered an awaited frame (``whoami``, a join) with an error frame."""


_ASKS = 3  # times a gap is asked for again before the client gives the missing seq up

# What opening or resuming a connection can meet that a later attempt may not.
_FAILURES = (OSError, TimeoutError, ConnectionError, ProtocolError, WebSocketException)


class Client:
    """A connection to a wsfanout endpoint that reconnects, resumes and orders (see the module
    docstring); made by :func:`connect`."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        rooms: Iterable[str] = (),
        query: Mapping[str, str] | None = None,
        since: Mapping[str, int] | None = None,
        options: ClientOptions | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.url = _address(url, token, query)
        self.options = options or ClientOptions()
        self.stats = Stats()
        self._on_event = on_event
        since = since or {}
        self._rooms: dict[str, _Room] = {
            room: _Room(last=since.get(room)) for room in (*rooms, *since)
        }
        self._link: _Link | None = None
        self._ready = asyncio.Event()
        self._messages: asyncio.Queue[Message | None] = asyncio.Queue()
        self._subscribers: list[asyncio.Queue[Event | None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._asking = asyncio.Lock()  # one request at a time: an error frame names none

    # -- public -------------------------------------------------------------------------------

    @property
    def connection_id(self) -> str | None:
        """The current connection's id (from ``whoami``)."""
        return self._link.connection_id if self._link else None

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Send one frame (JSON), on the current connection; while reconnecting, once one is
        open again (at most ``send_timeout_s``).

        :raises TimeoutError: no connection opened within ``send_timeout_s``.
        """
        text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
        async with asyncio.timeout(self.options.send_timeout_s):
            while True:
                await self._ready.wait()
                link = self._link
                assert link is not None  # noqa: S101  (set whenever ready)
                try:
                    await link.ws.send(text)
                except ConnectionClosed:
                    if self._link is link:
                        self._ready.clear()
                else:
                    return

    async def join(self, room: str) -> None:
        """Join ``room`` (and re-join it after every reconnect); returns once the server
        acknowledged it.

        :raises ProtocolError: the server refused (an error frame).
        :raises TimeoutError: no answer within ``open_timeout_s``.
        """
        self._rooms.setdefault(room, _Room())
        if self._link is not None:
            await self._join(self._link, room)

    async def presence(self, room: str) -> Presence:
        """Who is in ``room`` now (only a member may ask). A request whose connection drops
        before its answer is asked again on the next one: the answer is the room's as the
        server saw it then, never lost to a reconnect.

        :raises ProtocolError: the server refused (``forbidden``: not a member).
        :raises TimeoutError: no answer within ``send_timeout_s`` (the connection down all that
            time, or the server silent).
        """
        frame = {"action": "presence", "room": room}
        async with self._asking, asyncio.timeout(self.options.send_timeout_s):
            while True:
                await self._ready.wait()
                link = self._link
                assert link is not None  # noqa: S101  (set whenever ready)
                try:
                    answer = await self._ask(link, ("presence", room), frame)
                except ConnectionError:  # dropped before the answer: ask the next connection
                    if self._link is link:
                        self._ready.clear()
                    continue
                return _presence_of(room, answer)

    async def leave(self, room: str) -> None:
        """Leave ``room``; its messages are no longer ordered nor re-joined."""
        self._rooms.pop(room, None)
        await self.send({"action": "leaveRoom", "room": room})

    def last_seq(self, room: str) -> int | None:
        """The last ``seq`` of ``room`` the iterator got (or skipped as the client's own)."""
        state = self._rooms.get(room)
        return state.last if state else None

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Messages in order, each ``(room, seq)`` once; ends when the client closes."""
        while (message := await self._messages.get()) is not None:
            yield message

    async def events(self) -> AsyncIterator[Event]:
        """The events from now on (each iterator gets every one); ends when the client closes."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.remove(queue)

    async def aclose(self) -> None:
        """Close the connection and end the iterators."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._link is not None:
            await self._link.close()
        self._messages.put_nowait(None)
        for queue in self._subscribers:
            queue.put_nowait(None)

    # -- connections ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the first connection and join the rooms; then keep it (in the background).

        :raises OSError: the endpoint could not be reached (or refused the handshake).
        :raises TimeoutError: it did not answer within ``open_timeout_s``.
        """
        link = await self._open()
        await self._resume(link)
        self._use(link)
        self._tasks.append(asyncio.create_task(self._supervise()))
        self._tasks.append(asyncio.create_task(self._watch_gaps()))

    async def _open(self) -> _Link:
        options = self.options
        ws = await open_websocket(
            self.url, open_timeout=options.open_timeout_s, ping_interval=None, max_size=2**20
        )
        link = _Link(ws)
        link.tasks.append(asyncio.create_task(self._read(link)))
        try:
            answer = await self._ask(link, ("whoami", ""), {"action": "whoami"})
        except BaseException:
            await link.close()
            raise
        link.connection_id = str(answer.get("connectionId"))
        link.tasks.append(asyncio.create_task(self._keepalive(link)))
        self._emit(Event("connected", connection_id=link.connection_id))
        return link

    async def _resume(self, link: _Link) -> None:
        """Join every room on ``link``, from the last ``seq`` seen in each."""
        try:
            for room in list(self._rooms):
                await self._join(link, room)
        except BaseException:
            await link.close()
            raise

    async def _join(self, link: _Link, room: str) -> None:
        frame: dict[str, Any] = {"action": "joinRoom", "room": room}
        state = self._rooms.get(room)
        if state is not None and state.last is not None:
            frame["since"] = state.last
        await self._ask(link, ("joinRoom", room), frame)

    async def _ask(
        self, link: _Link, key: tuple[str, str], frame: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        link.waiters[key] = future
        try:
            await link.ws.send(json.dumps(frame))
            async with asyncio.timeout(self.options.open_timeout_s):
                return await future
        except ConnectionClosed as exc:
            raise ConnectionError(f"the connection closed: {exc}") from exc
        finally:
            link.waiters.pop(key, None)

    def _use(self, link: _Link) -> None:
        self._link = link
        self.stats.connections += 1
        self._ready.set()

    async def _supervise(self) -> None:
        """Replace the connection before its lifetime ends (make-before-break), or after it
        dropped (with backoff); forever, until the client closes."""
        while True:
            old = self._link
            assert old is not None  # noqa: S101  (start set it)
            remaining = old.opened + self.options.lifetime_s - time.monotonic()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    await old.closed.wait()
            except TimeoutError:
                if await self._replace(old):
                    continue
                await old.closed.wait()  # the new one failed: go on with the old until it ends
            await self._reconnect()

    async def _replace(self, old: _Link) -> bool:
        started = time.monotonic()
        try:
            new = await self._open()
            await self._resume(new)
        except _FAILURES:
            return False
        self._use(new)
        self.stats.planned_reconnects += 1
        latency = time.monotonic() - started
        self.stats.planned_latencies_s.append(latency)
        self._emit(
            Event("resumed", connection_id=new.connection_id, planned=True, latency_s=latency)
        )
        await old.close()
        return True

    async def _reconnect(self) -> None:
        self._ready.clear()
        started = time.monotonic()
        options = self.options
        attempt = 0
        while True:
            delay = random.uniform(
                0, min(options.backoff_max_s, options.backoff_base_s * 2**attempt)
            )
            self._emit(Event("reconnecting", attempt=attempt, delay_s=delay))
            await asyncio.sleep(delay)
            attempt += 1
            try:
                new = await self._open()
                await self._resume(new)
            except _FAILURES:
                continue
            break
        self._use(new)
        self.stats.reconnects += 1
        latency = time.monotonic() - started
        self.stats.resume_latencies_s.append(latency)
        self._emit(Event("resumed", connection_id=new.connection_id, latency_s=latency))

    async def _keepalive(self, link: _Link) -> None:
        ping = json.dumps({"action": "ping"})
        while True:
            await asyncio.sleep(self.options.keepalive_s)
            try:
                await link.ws.send(ping)
            except ConnectionClosed:
                return

    async def _read(self, link: _Link) -> None:
        try:
            async for raw in link.ws:
                if isinstance(raw, bytes):
                    continue  # the protocol is JSON text; a binary frame is not for us
                try:
                    frame = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(frame, dict):
                    self._dispatch(link, frame)
        except ConnectionClosed:
            pass
        finally:
            link.closed.set()
            link.fail_waiters(ConnectionError("the connection closed"))

    # -- frames ---------------------------------------------------------------------------

    def _dispatch(self, link: _Link, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind not in _PROTOCOL_TYPES:
            self._on_message(frame)
        elif kind == "ack":
            self._on_ack(link, frame)
        elif kind == "reset":
            self._on_reset(frame)
        elif kind == "presence":
            self._on_presence(link, frame)
        elif kind == "error":
            self._emit(Event("error", connection_id=link.connection_id, frame=frame))
            if link.waiters:  # the answer to what was asked (one thing is asked at a time)
                key = next(iter(link.waiters))
                link.waiters.pop(key).set_exception(ProtocolError(frame.get("message")))

    def _on_ack(self, link: _Link, frame: dict[str, Any]) -> None:
        action, room, seq = frame.get("action"), frame.get("room"), frame.get("seq")
        state = self._rooms.get(room) if isinstance(room, str) else None
        if state is not None and isinstance(seq, int):
            if action == "joinRoom":
                if state.last is None:  # the first join: from the latest on
                    state.last = seq
                    for early in [s for s in state.pending if s <= seq]:
                        del state.pending[early]
                state.known = max(state.known, seq)
            elif action == "sendMessage":  # our own message: not sent back to us
                if state.last is None or seq > state.last:
                    state.skip.add(seq)
                state.known = max(state.known, seq)
            self._flush(state)
        key = (str(action), room if isinstance(room, str) else "")
        future = link.waiters.pop(key, None)
        if future is not None and not future.done():
            future.set_result(frame)

    def _on_presence(self, link: _Link, frame: dict[str, Any]) -> None:
        """A join or leave event (``event`` set), or the answer to :meth:`presence`."""
        room, change = frame.get("room"), frame.get("event")
        if change in ("join", "leave"):
            who, user = frame.get("connectionId"), frame.get("userId")
            self._emit(
                Event(
                    "join" if change == "join" else "leave",
                    connection_id=who if isinstance(who, str) else None,
                    room=room if isinstance(room, str) else None,
                    user_id=user if isinstance(user, str) else None,
                    frame=frame,
                )
            )
            return
        future = link.waiters.pop(("presence", str(room)), None)
        if future is not None and not future.done():
            future.set_result(frame)

    def _on_message(self, frame: dict[str, Any]) -> None:
        room, seq = frame.get("room"), frame.get("seq")
        message = Message(
            room if isinstance(room, str) else None,
            seq if isinstance(seq, int) else None,
            frame.get("data"),
            frame.get("from") or {},
            frame,
        )
        state = self._rooms.get(room) if isinstance(room, str) else None
        if state is None or not isinstance(seq, int):
            self._messages.put_nowait(message)
            return
        if (state.last is not None and seq <= state.last) or seq in state.pending:
            self.stats.duplicates += 1
            return
        state.pending[seq] = message
        state.known = max(state.known, seq)
        self._flush(state)

    def _on_reset(self, frame: dict[str, Any]) -> None:
        room, seq = frame.get("room"), frame.get("seq")
        state = self._rooms.get(room) if isinstance(room, str) else None
        if state is None or not isinstance(seq, int):
            return
        for early in sorted(s for s in state.pending if s <= seq):  # real, if after a gap
            self._messages.put_nowait(state.pending.pop(early))
        state.last = max(seq, state.last or 0)
        state.known = max(state.known, seq)
        self.stats.resets += 1
        self._emit(Event("reset", room=str(room), seq=seq))
        self._flush(state)

    def _flush(self, state: _Room) -> None:
        """Deliver what is next in order; note when a gap opened (or closed)."""
        if state.last is None:
            return
        while True:
            following = state.last + 1
            if following in state.pending:
                self._messages.put_nowait(state.pending.pop(following))
            elif following in state.skip:
                state.skip.discard(following)
            else:
                break
            state.last = following
        if state.known > state.last:
            if state.gap_since is None:
                state.gap_since = time.monotonic()
        else:
            state.gap_since, state.asks = None, 0

    async def _watch_gaps(self) -> None:
        """Ask again for a room whose gap did not fill within ``gap_timeout_s``."""
        timeout = self.options.gap_timeout_s
        while True:
            await asyncio.sleep(timeout / 4)
            link = self._link
            if link is None or not self._ready.is_set():
                continue
            now = time.monotonic()
            for room, state in list(self._rooms.items()):
                if state.gap_since is not None and now - state.gap_since >= timeout:
                    state.gap_since = now
                    if state.asks >= _ASKS and state.pending:
                        self._give_up(room, state)
                        continue
                    state.asks += 1
                    self.stats.gap_requests += 1
                    with contextlib.suppress(ConnectionClosed):
                        await link.ws.send(
                            json.dumps({"action": "joinRoom", "room": room, "since": state.last})
                        )

    def _give_up(self, room: str, state: _Room) -> None:
        """A ``seq`` that replays did not bring either, although later ones are here: taken by a
        message whose storing failed (nobody got it). Go on past it, as after a reset."""
        state.last = min(state.pending) - 1
        state.asks = 0
        self.stats.resets += 1
        self._emit(Event("reset", room=room, seq=state.last))
        self._flush(state)

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        for queue in self._subscribers:
            queue.put_nowait(event)


def _presence_of(room: str, frame: Mapping[str, Any]) -> Presence:
    """The answer frame as a :class:`Presence`; entries that are not the protocol's are
    skipped, so a server that adds fields cannot break a client."""
    users: dict[str, int] = {}
    for entry in frame.get("users") or ():
        if isinstance(entry, Mapping):
            user, count = entry.get("userId"), entry.get("connections")
            if isinstance(user, str) and isinstance(count, int):
                users[user] = count
    total = frame.get("connections")
    return Presence(room, users, total if isinstance(total, int) else sum(users.values()))


def _address(url: str, token: str | None, query: Mapping[str, str] | None) -> str:
    """``url`` with ``token`` and ``query`` added to its query string.

    :raises InvalidInputError: not a ws:// or wss:// URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidInputError(f"not a ws:// or wss:// URL: {url!r}")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    pairs.extend((query or {}).items())
    if token is not None:
        pairs.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(pairs)))


@asynccontextmanager
async def connect(
    url: str,
    token: str | None = None,
    rooms: Iterable[str] = (),
    query: Mapping[str, str] | None = None,
    *,
    since: Mapping[str, int] | None = None,
    options: ClientOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> AsyncIterator[Client]:
    """A :class:`Client`, connected and in ``rooms``, closed when the block ends.

    ``since`` resumes rooms from an earlier session's last ``seq`` (:meth:`Client.last_seq`,
    kept by the application): what was missed is replayed, or a ``reset`` event says it is
    gone. The rooms it names are joined too.

    :raises InvalidInputError: ``url`` is not a ws:// or wss:// URL.
    :raises OSError: the endpoint could not be reached (or refused the handshake).
    :raises TimeoutError: it did not answer within ``options.open_timeout_s``.
    """
    client = Client(
        url, token=token, rooms=rooms, query=query, since=since, options=options, on_event=on_event
    )
    await client.start()
    try:
        yield client
    finally:
        await client.aclose()
