"""What a Lambda container keeps between invocations: settings, one event loop, the clients.

Why they live as long as the container: Lambda reuses a container for many invocations, and
creating AWS clients (loading service models, DNS, TLS handshakes, connection pools) costs tens
to hundreds of milliseconds, while an event loop closed after each invocation would close the
aiohttp pools bound to it. So the first invocation creates the loop (an :class:`asyncio.Runner`)
and the clients lazily, and every later invocation reuses both. Between invocations Lambda
freezes the process with nothing scheduled on the loop, which is safe.

A Lambda container is one process running one invocation at a time, so there is one runtime per
process and the handlers' log keys are the process's. :func:`install` is the seam for a host
that plays several warm containers in one process (the local stack runs each on a thread of its
own): it decides which runtime :func:`runtime` answers and how :func:`bind_log_keys` binds.

Logging and metrics are AWS Lambda Powertools' (structured JSON logs, CloudWatch embedded metric
format), shared by every handler here.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aws_lambda_powertools import Logger, Metrics

from ..settings import Settings

if TYPE_CHECKING:
    from ..aws.clients import Clients

__all__ = [
    "Host",
    "ProcessHost",
    "Runtime",
    "bind_log_keys",
    "close_all_runtimes",
    "install",
    "logger",
    "metrics",
    "reset_runtime",
    "runtime",
]

T = TypeVar("T")

logger = Logger(service="wsfanout")
metrics = Metrics(namespace="wsfanout", service="wsfanout")


class Runtime:
    """One per container; see the module docstring for why.

    Creating one is cheap (no loop, no clients until used), so the authorizer, which makes no
    AWS calls, holds one too and reads only its settings.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._runner = asyncio.Runner()
        self._clients: Clients | None = None
        self._running = 0
        self.closed = False

    @property
    def busy(self) -> bool:
        """Whether an invocation is running on the loop (which :meth:`close` must not touch)."""
        return self._running > 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one invocation's coroutine on the container's loop.

        In a fresh copy of the caller's context: a runner left to itself runs every coroutine in
        the context it copied on its first run, so context variables set by a later invocation
        (Powertools' thread-safe log keys among them) would not be seen inside it.
        """
        self._running += 1
        try:
            return self._runner.run(coroutine, context=contextvars.copy_context())
        finally:
            self._running -= 1

    async def clients(self) -> Clients:
        """The container's AWS clients, opened on first use and kept open."""
        if self._clients is None:
            # Imported here: the authorizer's cold start must not load aioboto3 and aiohttp.
            from ..aws.clients import Clients  # noqa: PLC0415  (lazy, see above)

            clients = Clients(self.settings)
            await clients.__aenter__()
            self._clients = clients
        return self._clients

    def close(self) -> None:
        """Close the clients and the loop (tests; a real container is simply frozen).

        Call it from a thread with no running event loop.
        """
        clients, self._clients = self._clients, None
        self.closed = True
        try:
            if clients is not None:
                self._runner.run(clients.__aexit__(None, None, None))
        finally:
            self._runner.close()


class Host(Protocol):
    """Where the runtimes of a process live, and how handlers bind their log keys."""

    def runtime(self) -> Runtime:
        """The calling container's runtime, created on first use."""
        ...

    def reset(self) -> None:
        """Close and forget the calling container's runtime (the next use starts cold)."""
        ...

    def close_all(self) -> None:
        """Close every runtime this host holds, once no invocation is running."""
        ...

    def bind_log_keys(self, **keys: object) -> None:
        """Make ``keys`` the calling invocation's log keys, replacing the last ones bound."""
        ...


class ProcessHost:
    """What Lambda has: one container per process, so one runtime and process-wide log keys."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._bound: list[str] = []

    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime()
        return self._runtime

    def reset(self) -> None:
        current, self._runtime = self._runtime, None
        if current is not None:
            current.close()

    def close_all(self) -> None:
        self.reset()

    def bind_log_keys(self, **keys: object) -> None:
        logger.remove_keys(self._bound)
        logger.append_keys(**keys)
        self._bound = list(keys)


_host: Host = ProcessHost()


def install(host: Host | None) -> Host:
    """Make ``host`` answer :func:`runtime` and :func:`bind_log_keys` (``None``: a new
    :class:`ProcessHost`); returns the host it replaced."""
    global _host
    previous, _host = _host, host or ProcessHost()
    return previous


def runtime() -> Runtime:
    """This container's runtime, created on first use."""
    return _host.runtime()


def reset_runtime() -> None:
    """Forget this container's runtime (tests start each case from a cold container)."""
    _host.reset()


def close_all_runtimes() -> None:
    """Close every runtime of the process: one on Lambda, one per container of a local host."""
    _host.close_all()


def bind_log_keys(**keys: object) -> None:
    """Make ``keys`` the log keys of the invocation (or record) now being handled, replacing the
    ones bound before; every handler binds through here so the host decides where they live."""
    _host.bind_log_keys(**keys)
