"""SIGINT and SIGTERM as a polite stop for long commands (``broadcast``, ``dlq redrive``).

A signal sets an :class:`anyio.Event` the work checks at its safe points (the engine between
sends, a redrive between two moves), so the command ends with its partial report and says how
to resume, where a cancellation would lose both.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

__all__ = ["stoppable"]


async def _stop_on_signals(stop: anyio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM (for the engine, a deadline "now": the sends in flight
    finish and the run returns its report and watermark, which a cancellation would lose)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()


_T = TypeVar("_T")


async def stoppable(run: Callable[[anyio.Event], Awaitable[_T]]) -> tuple[_T, bool]:
    """Await ``run(stop)`` with SIGINT and SIGTERM setting ``stop``; return its result and
    whether a signal came. What ``run`` raises passes through as it is (not in a group)."""
    stop = anyio.Event()
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_stop_on_signals, stop)
        try:
            result = await run(stop)
        except Exception as exc:  # re-raised below, outside the task group that would wrap it
            failure = exc
        finally:
            tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result, stop.is_set()
