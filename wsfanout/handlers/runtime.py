"""What a Lambda container keeps between invocations: settings, one event loop, the clients.

Why they live as long as the container: Lambda reuses a container for many invocations, and
creating AWS clients (loading service models, DNS, TLS handshakes, connection pools) costs tens
to hundreds of milliseconds, while an event loop closed after each invocation would close the
aiohttp pools bound to it. So the first invocation creates the loop (an :class:`asyncio.Runner`)
and the clients lazily, and every later invocation reuses both. Between invocations Lambda
freezes the process with nothing scheduled on the loop, which is safe.

Logging and metrics are AWS Lambda Powertools' (structured JSON logs, CloudWatch embedded metric
format), shared by every handler here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

from ..aws.clients import Clients
from ..settings import Settings

__all__ = ["Runtime", "close_all_runtimes", "logger", "metrics", "reset_runtime", "runtime"]

T = TypeVar("T")

logger = Logger(service="wsfanout")
metrics = Metrics(namespace="wsfanout", service="wsfanout")


class Runtime:
    """One per container; see the module docstring for why."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._runner = asyncio.Runner()
        self._clients: Clients | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one invocation's coroutine on the container's loop."""
        return self._runner.run(coroutine)

    async def clients(self) -> Clients:
        """The container's AWS clients, opened on first use and kept open."""
        if self._clients is None:
            clients = Clients(self.settings)
            await clients.__aenter__()
            self._clients = clients
        return self._clients

    def close(self) -> None:
        """Close the clients and the loop (tests; a real container is simply frozen)."""
        clients, self._clients = self._clients, None
        if clients is not None:
            self._runner.run(clients.__aexit__(None, None, None))
        self._runner.close()


# One runtime per thread: on Lambda that is one per container (a container runs one invocation
# at a time on one thread); the local emulator runs each concurrent invocation on a worker thread,
# so every thread plays one warm container.
_local = threading.local()
_all: list[Runtime] = []
_all_lock = threading.Lock()


def runtime() -> Runtime:
    """This container's runtime, created on first use."""
    current: Runtime | None = getattr(_local, "runtime", None)
    if current is None:
        current = Runtime()
        _local.runtime = current
        with _all_lock:
            _all.append(current)
    return current


def reset_runtime() -> None:
    """Forget this thread's runtime (tests start each case from a cold container)."""
    current: Runtime | None = getattr(_local, "runtime", None)
    _local.runtime = None
    if current is not None:
        with _all_lock:
            _all.remove(current)
        current.close()


def close_all_runtimes() -> None:
    """Close every thread's runtime (the local stack, shutting down; call it from any thread
    once no invocation is running)."""
    with _all_lock:
        everything = list(_all)
        _all.clear()
    for each in everything:
        each.close()
