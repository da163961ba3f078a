"""What the clients' exactly-once checks share (the Python client's in test_client_replay.py,
wsfanout.js's in test_jsclient.py): the compressed stack they run on, paced senders,
connections deleted at random through the management API, and the line of figures they print.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio

from wsfanout.aws.gateway import ManagementGateway
from wsfanout.client import ClientOptions
from wsfanout.local.emulator import Limits

LIMITS = Limits(max_lifetime_s=12, idle_timeout_s=6)
"""API Gateway's limits compressed: a connection lives 12 s and idles out after 6 s."""

OPTIONS = ClientOptions(
    lifetime_s=7,
    keepalive_s=2,
    backoff_base_s=0.1,
    backoff_max_s=1.0,
    gap_timeout_s=2.0,
    open_timeout_s=10,
)
"""A Python client on :data:`LIMITS`: replaced before the lifetime, pinging before the idle
timeout, and back quickly after a drop."""


async def paced(
    send: Callable[[int], Awaitable[object]], numbers: Iterable[int], period_s: float
) -> None:
    """``send(n)`` for each of ``numbers``, each taking ``period_s`` at least and never
    catching up after a slow one: a stalled moto (the cores are shared) must not end in a
    burst."""
    for n in numbers:
        began = time.monotonic()
        await send(n)
        await anyio.sleep(max(0.0, period_s - (time.monotonic() - began)))


class Drops:
    """DeleteConnection of a client's current connection at random, forever: a pause drawn from
    ``pauses[0]``, a drop, one from ``pauses[1]``, a drop, in turn. Long pauses that outlast the
    client's lifetime let planned reconnects happen between the drops."""

    def __init__(
        self,
        gateway: ManagementGateway,
        connection_id: Callable[[], Awaitable[str | None]],
        *,
        pauses: Sequence[tuple[float, float]] = ((3, 5), (8.5, 10)),
        seed: int = 18,
    ) -> None:
        self.found: list[bool] = []
        """Whether each DeleteConnection found the connection."""
        self._gateway = gateway
        self._connection_id = connection_id
        self._pauses = pauses
        self._rng = random.Random(seed)

    async def run(self) -> None:
        while True:
            for low, high in self._pauses:
                await anyio.sleep(self._rng.uniform(low, high))
                connection_id = await self._connection_id()
                if connection_id is not None:
                    self.found.append(await self._gateway.delete_connection(connection_id))


@dataclass(frozen=True, slots=True)
class Figures:
    """What one exactly-once run went through, printed (``pytest -s``) for the issue's notes."""

    label: str
    messages: int
    elapsed_s: float
    senders: int
    sent_in_s: float
    drops: int
    reconnects: int
    planned: int
    duplicates: int
    gaps: int
    resets: int
    resume_latencies_s: Sequence[float]
    planned_latencies_s: Sequence[float]

    def print(self) -> None:
        print(
            f"\n{self.label}: {self.messages} messages in {self.elapsed_s:.1f} s (sent by "
            f"{self.senders} at once, in {self.sent_in_s:.1f} s); {self.drops} drops; reconnects "
            f"{self.reconnects} after drops, {self.planned} planned; duplicates dropped "
            f"{self.duplicates}; gaps asked again {self.gaps}; resets {self.resets}; resume "
            f"latency after a drop median {_median(self.resume_latencies_s):.3f} s, max "
            f"{max(self.resume_latencies_s, default=0):.3f} s; planned (no gap) median "
            f"{_median(self.planned_latencies_s):.3f} s"
        )


def _median(values: Sequence[float]) -> float:
    return statistics.median(values or [0])
