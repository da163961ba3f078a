"""The Python client end to end on the local stack with compressed limits: connections live
12 s and idle out after 6 s, DeleteConnection drops them at random, and room messages sent
meanwhile all reach the client exactly once and in order; one cut off longer than the history
gets ``reset``.

Compressed from the issue's shape (300 messages over about 40 s, at least three reconnects):
the same 300 messages, sent by three backend tasks at once through the App (the registry/queue
path: the history item, then the room job), one every 0.12 s in all (36 s), while the client
is dropped after 3-5 s and 8.5-10 s in turn and replaces its connection (make-before-break)
every 7 s. The history keeps 150 messages, so a reconnect (backoff capped at 1 s) stays well
inside it, while a client cut off after its first 10 messages, back at the end, falls out of
it.
"""

from __future__ import annotations

import time

import anyio
import pytest

from tests.local.replay import LIMITS, OPTIONS, Drops, Figures, paced
from wsfanout import App
from wsfanout.aws.clients import Clients
from wsfanout.aws.gateway import ManagementGateway
from wsfanout.client import Client, Event, Message, connect
from wsfanout.local.stack import local_stack
from wsfanout.settings import Settings

pytestmark = pytest.mark.timeout(120)

MESSAGES = 300
INTERVAL_S = 0.12
SENDERS = 3  # at once, as several backends or route invocations would: seq orders them
HISTORY = 150


async def test_messages_arrive_exactly_once_in_order_across_reconnects() -> None:
    environ = {"ROOM_HISTORY_MESSAGES": str(HISTORY), "ROOM_HISTORY_SECONDS": "600"}
    events: list[Event] = []
    backend = App(durable_rooms=True)
    async with (
        local_stack(environ=environ, limits=LIMITS, set_management_endpoint=True) as stack,
        backend,
        Clients(Settings()) as clients,
        connect(stack.ws_url, rooms=["lobby"], options=OPTIONS, on_event=events.append) as client,
    ):
        run = Run(stack.ws_url, backend, await clients.gateway(), client)
        await run.run()
        stats = client.stats
        run.report()
        assert [m.seq for m in run.got] == list(range(1, MESSAGES + 1)), "once each, in order"
        assert sorted(m.data for m in run.got) == list(range(MESSAGES)), "every message"
        assert stats.reconnects >= 3
        assert stats.planned_reconnects >= 1
        assert stats.resets == 0
        resumed = [e for e in events if e.kind == "resumed"]
        assert len(resumed) == stats.reconnects + stats.planned_reconnects

        # The client cut off early, back after far more than the history keeps: a reset, then
        # live messages from the room's latest on.
        assert run.cut_at is not None
        assert MESSAGES - run.cut_at > HISTORY
        resets: list[Event] = []
        async with connect(
            stack.ws_url,
            since={"lobby": run.cut_at},
            options=OPTIONS,
            on_event=lambda e: resets.append(e) if e.kind == "reset" else None,
        ) as back:
            assert [(e.room, e.seq) for e in resets] == [("lobby", MESSAGES)]
            assert back.last_seq("lobby") == MESSAGES
            await backend.send({"type": "message", "data": "after"}, room="lobby")
            # A room job still running from before (a loaded machine's backlog) may reach the
            # new membership with an old message: passed on, as the reset covers up to its seq,
            # and never after the live one.
            late: list[int | None] = []
            with anyio.fail_after(10):
                async for message in back:
                    if message.data == "after":
                        break
                    late.append(message.seq)
            assert message.seq == MESSAGES + 1
            assert all(seq is not None and seq <= MESSAGES for seq in late), late


class Run:
    """The senders, the random drops, the client cut off early, and what the client got."""

    def __init__(self, url: str, backend: App, gateway: ManagementGateway, client: Client) -> None:
        self.url, self.backend, self.gateway, self.client = url, backend, gateway, client
        self.got: list[Message] = []
        self.sent_in: list[float] = []
        self.drops = Drops(gateway, self._connection_id)
        self.cut_at: int | None = None
        self.elapsed = 0.0
        self._started = time.monotonic()

    async def run(self) -> None:
        self._started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(self.drops.run)
            group.start_soon(self._cut_off)
            for first in range(SENDERS):
                group.start_soon(self._send_share, first)
            with anyio.move_on_after(60):  # then the assertions say what was missing
                async for message in self.client:
                    self.got.append(message)
                    if len(self.got) == MESSAGES:
                        break
            group.cancel_scope.cancel()
        self.elapsed = time.monotonic() - self._started

    async def _send_share(self, first: int) -> None:
        async def send(n: int) -> None:
            await self.backend.send({"type": "message", "data": n}, room="lobby")

        await paced(send, range(first, MESSAGES, SENDERS), INTERVAL_S * SENDERS)
        self.sent_in.append(time.monotonic() - self._started)

    async def _connection_id(self) -> str | None:
        return self.client.connection_id

    async def _cut_off(self) -> None:
        async with connect(self.url, rooms=["lobby"], options=OPTIONS) as cut:
            seen = 0
            async for _ in cut:
                seen += 1
                if seen == 10:
                    break
            self.cut_at = cut.last_seq("lobby")

    def report(self) -> None:
        stats = self.client.stats
        Figures(
            "replay",
            messages=len(self.got),
            elapsed_s=self.elapsed,
            senders=SENDERS,
            sent_in_s=max(self.sent_in, default=0),
            drops=len(self.drops.found),
            reconnects=stats.reconnects,
            planned=stats.planned_reconnects,
            duplicates=stats.duplicates,
            gaps=stats.gap_requests,
            resets=stats.resets,
            resume_latencies_s=stats.resume_latencies_s,
            planned_latencies_s=stats.planned_latencies_s,
        ).print()
