"""An app's test client: fake connections in memory, as Starlette's ``TestClient`` is for ASGI.

The app under test runs unchanged (:meth:`App.handle <wsfanout.App.handle>`, the method its
Lambda entrypoint calls) on :class:`MemoryServices`: a registry in a dict, a management API that
hands each posted frame to the fake connection it is addressed to, and a job queue that runs
every broadcast job at once. The events are built as API Gateway builds them; nothing opens a
socket or starts a server, so a test takes milliseconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from ..app.context import encode
from ..aws.base import Owner
from ..core.fanout import Fanout
from ..core.models import BroadcastJob, Connection
from ..core.outcomes import Outcome
from ..exceptions import ConnectionExistsError, ConnectionNotFoundError, ConnectionRefused
from ..settings import Settings
from .doubles import MemorySource, Post, connect_event, disconnect_event, message_event
from .history import MemoryHistory

if TYPE_CHECKING:
    from pydantic import JsonValue

    from ..app import App
    from ..app.context import Data
    from ..core.interfaces import Recipient

__all__ = ["AppConnection", "MemoryRegistry", "MemoryServices", "TestClient"]

_INVOCATION_S = 29.0  # API Gateway's integration timeout: what a route invocation may take


class MemoryRegistry(MemorySource):
    """A :class:`~wsfanout.core.interfaces.ConnectionStore` in memory, with the registry's rules:
    an id is stored once, a membership needs its connection, removing a connection removes its
    memberships."""

    def __init__(self, *, page_size: int = 100) -> None:
        super().__init__(page_size=page_size)
        self.connections: dict[str, Connection] = {}
        self.last_seen: dict[str, float] = {}
        """When each connection was last touched (a keepalive ``ping``), epoch seconds."""
        self.touches: list[str] = []
        """The connection id of every :meth:`touch` that found its connection, in order (each
        one UpdateItem on DynamoDB)."""

    async def put(self, connection: Connection) -> Connection:
        """Store a new connection.

        :raises ConnectionExistsError: the id is stored already.
        """
        cid = connection.connection_id
        if cid in self.connections:
            raise ConnectionExistsError(cid)
        self.connections[cid] = connection
        if cid not in self._endpoints:
            self._order.append(cid)
        self._endpoints[cid] = connection.endpoint
        self._live.add(cid)
        if connection.user_id:
            self.users.setdefault(connection.user_id, []).append(cid)
        return connection

    async def get(self, connection_id: str) -> Connection | None:
        """The stored connection, or ``None``."""
        return self.connections.get(connection_id)

    async def get_many(self, connection_ids: Sequence[str]) -> dict[str, Connection]:
        """The stored connections among ``connection_ids``, by id."""
        return {cid: self.connections[cid] for cid in connection_ids if cid in self.connections}

    async def rooms_of(self, connection_id: str) -> list[str]:
        """The rooms the connection has joined, in the order the rooms were first joined."""
        return [room for room, members in self.rooms.items() if connection_id in members]

    async def delete(self, connection_id: str) -> int:
        """Remove a connection and its memberships; return the items removed."""
        stored = self.connections.pop(connection_id, None)
        if stored is None:
            return 0
        self._live.discard(connection_id)
        if stored.user_id:
            self.users[stored.user_id].remove(connection_id)
        removed = 1
        for members in self.rooms.values():
            if connection_id in members:
                members.remove(connection_id)
                removed += 1
        return removed

    async def remove_gone(self, recipients: Sequence[Recipient]) -> int:
        """As :meth:`MemorySource.remove_gone`, and the connections' items go too."""
        for recipient in recipients:
            self.connections.pop(recipient.connection_id, None)
        return await super().remove_gone(recipients)

    async def join_room(self, connection_id: str, room: str) -> bool:
        """Add a membership; ``True`` when it is new.

        :raises ConnectionNotFoundError: the connection is not stored.
        """
        if connection_id not in self.connections:
            raise ConnectionNotFoundError(connection_id)
        members = self.rooms.setdefault(room, [])
        if connection_id in members:
            return False
        members.append(connection_id)
        return True

    async def leave_room(self, connection_id: str, room: str) -> bool:
        """Remove a membership; ``False`` when there was none."""
        members = self.rooms.get(room, [])
        if connection_id not in members:
            return False
        members.remove(connection_id)
        return True

    async def is_member(self, connection_id: str, room: str) -> bool:
        """Whether the connection has joined the room."""
        return connection_id in self.rooms.get(room, ())

    async def touch(self, connection_id: str) -> bool:
        """Record that the connection was seen now; ``False`` when it is not stored."""
        stored = self.connections.get(connection_id)
        if stored is None:
            return False
        now = time.time()
        self.last_seen[connection_id] = now
        self.touches.append(connection_id)
        seen = datetime.fromtimestamp(int(now), UTC)  # epoch seconds, as DynamoDB stores it
        self.connections[connection_id] = stored.model_copy(update={"last_seen": seen})
        return True

    async def set_attributes(self, connection_id: str, attributes: Mapping[str, JsonValue]) -> None:
        """Replace a stored connection's attributes.

        :raises ConnectionNotFoundError: the connection is not stored.
        """
        stored = self.connections.get(connection_id)
        if stored is None:
            raise ConnectionNotFoundError(connection_id)
        self.connections[connection_id] = stored.model_copy(update={"attributes": dict(attributes)})


class _Switchboard:
    """The management API of the test client: a post reaches an open fake connection (or is
    410 Gone); DeleteConnection closes one, and its ``$disconnect`` follows the invocation."""

    default_endpoint = None

    def __init__(self) -> None:
        self.open: dict[str, AppConnection] = {}
        self.closing: list[AppConnection] = []
        self.posts: list[Post] = []

    async def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        self.posts.append(Post(connection_id, data, endpoint))
        connection = self.open.get(connection_id)
        if connection is None:
            return Outcome.GONE
        connection.raw.append(data)
        return Outcome.DELIVERED

    async def delete_connection(self, connection_id: str, endpoint: str | None = None) -> bool:
        connection = self.open.pop(connection_id, None)
        if connection is None:
            return False
        self.closing.append(connection)
        return True


class _InlineJobs:
    """A :class:`~wsfanout.core.interfaces.JobSink` that runs each job when it is enqueued."""

    def __init__(self, services: MemoryServices) -> None:
        self._services = services
        self.jobs: list[BroadcastJob] = []

    async def enqueue(self, job: BroadcastJob) -> str:
        self.jobs.append(job)
        fanout = await self._services.fanout()
        await fanout.run(job.target, job.payload, exclude=job.exclude, cursor=job.cursor)
        return f"job-{len(self.jobs)}"

    async def enqueue_many(self, jobs: Sequence[BroadcastJob]) -> int:
        for job in jobs:
            await self.enqueue(job)
        return len(jobs)


class MemoryServices:
    """What an app runs on, in memory (a :class:`~wsfanout.app.services.Services`); durable
    rooms' history is :attr:`rooms`, bounded by the settings' ``room_history_*``."""

    def __init__(self, settings: Settings | None = None, *, page_size: int = 100) -> None:
        self.settings = settings = settings or Settings()
        self.memory = MemoryRegistry(page_size=page_size)
        self.switchboard = _Switchboard()
        self.queue = _InlineJobs(self)
        self.rooms = MemoryHistory(settings.history_bounds())

    async def registry(self) -> MemoryRegistry:
        return self.memory

    async def sender(self) -> _Switchboard:
        return self.switchboard

    async def gateway(self) -> _Switchboard:
        return self.switchboard

    async def fanout(self) -> Fanout:
        return Fanout(self.memory, self.switchboard, concurrency=8)

    async def job_queue(self) -> _InlineJobs:
        return self.queue

    async def history(self) -> MemoryHistory:
        return self.rooms


class AppConnection:
    """One fake client connection: send frames, read what it received."""

    def __init__(
        self,
        client: TestClient,
        connection_id: str,
        authorizer: Mapping[str, Any] | None,
        subprotocol: str | None,
    ) -> None:
        self.client = client
        self.connection_id = connection_id
        self.subprotocol = subprotocol
        self.raw: list[bytes] = []
        """Every frame it received, as bytes, in order."""
        self._authorizer = authorizer
        self._read = 0

    @property
    def received(self) -> list[Any]:
        """Every frame it received, in order: JSON text parsed, other text as ``str``, binary
        frames as ``bytes``."""
        return [_decoded(frame) for frame in self.raw]

    def new(self) -> list[Any]:
        """The frames received since the last call (as :attr:`received` shows them)."""
        fresh = self.received[self._read :]
        self._read = len(self.raw)
        return fresh

    @property
    def closed(self) -> bool:
        """Whether the app closed it, or the test did."""
        return self.connection_id not in self.client.services.switchboard.open

    async def send(self, frame: Data) -> Any:
        """Send one frame (a dict or list as JSON text, ``str`` as text, ``bytes`` as binary);
        returns the route's response (parsed as :attr:`received` parses), if it gave one.

        :raises RuntimeError: the connection is closed.
        """
        if self.closed:
            raise RuntimeError(f"connection {self.connection_id} is closed")
        payload, text = encode(frame)
        body: str | bytes = payload.decode() if text else payload
        event = message_event(
            self.connection_id,
            body,
            route_key=self.client.route_key(frame),
            authorizer=self._authorizer,
        )
        response = await self.client.invoke(event, deadline=time.monotonic() + _INVOCATION_S)
        answer = response.get("body")
        return None if answer is None else _decoded(answer.encode())

    async def close(self, status_code: int = 1000, reason: str = "") -> None:
        """The client leaves; the app's ``$disconnect`` runs."""
        if self.client.services.switchboard.open.pop(self.connection_id, None) is not None:
            event = disconnect_event(
                self.connection_id,
                status_code=status_code,
                reason=reason,
                authorizer=self._authorizer,
            )
            await self.client.invoke(event)


class TestClient(Owner):
    """Runs an app in memory: ``async with TestClient(app) as client:`` then
    ``await client.connect(...)`` for each fake connection."""

    __test__ = False  # a class pytest would otherwise try to collect from test modules

    def __init__(self, app: App, *, settings: Settings | None = None) -> None:
        super().__init__()
        self.app = app
        self.services = MemoryServices(settings)

    @property
    def registry(self) -> MemoryRegistry:
        """The app's registry, to look into."""
        return self.services.memory

    @property
    def jobs(self) -> list[BroadcastJob]:
        """Every broadcast job the app enqueued (each already run)."""
        return self.services.queue.jobs

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        bound = self.app.bind(self.services)  # ``await app.send(...)`` works in the block
        self._stack.callback(self.app.bind, bound)
        self._stack.push_async_callback(self._leave_all)
        return self

    async def _leave_all(self) -> None:
        for connection in list(self.services.switchboard.open.values()):
            await connection.close(1001, "the test client ended")

    async def connect(
        self,
        *,
        user: str | None = None,
        claims: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AppConnection:
        """Open a fake connection; ``user`` and ``claims`` are what an authorizer allowed it with
        (none: an anonymous connection).

        :raises ConnectionRefused: the app answered the handshake with a 4xx.
        :raises RuntimeError: it answered with anything else but 200.
        """
        authorizer: dict[str, Any] | None = None
        if user is not None or claims is not None:
            authorizer = {**(claims or {})}
            if user is not None:
                authorizer |= {"principalId": user, "userId": user}
        event = connect_event(query=query, headers=headers, authorizer=authorizer)
        response = await self.invoke(event)
        status = int(response["statusCode"])
        if 400 <= status < 500:
            raise ConnectionRefused(status)
        if status != 200:
            raise RuntimeError(f"$connect answered {status}")
        connection_id = event["requestContext"]["connectionId"]
        subprotocol = (response.get("headers") or {}).get("Sec-WebSocket-Protocol")
        connection = AppConnection(self, connection_id, authorizer, subprotocol)
        self.services.switchboard.open[connection_id] = connection
        return connection

    def route_key(self, frame: Data) -> str:
        """The route API Gateway would select: the frame's ``action`` when the app routes it."""
        if isinstance(frame, Mapping):
            action = frame.get("action")
            if isinstance(action, str) and action in self.app.routes:
                return action
        return "$default"

    async def invoke(
        self, event: Mapping[str, Any], *, deadline: float | None = None
    ) -> dict[str, Any]:
        """One invocation of the app; then the ``$disconnect`` of what it closed."""
        response = await self.app.handle(event, self.services, deadline=deadline)
        switchboard = self.services.switchboard
        while switchboard.closing:
            closed = switchboard.closing.pop(0)
            await self.app.handle(
                disconnect_event(closed.connection_id, authorizer=closed._authorizer),
                self.services,
            )
        return response


def _decoded(frame: bytes) -> Any:
    try:
        text = frame.decode()
    except UnicodeDecodeError:
        return frame
    try:
        return json.loads(text)
    except ValueError:
        return text
