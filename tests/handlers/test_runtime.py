"""A Lambda container's runtime: one per process, one fresh context per invocation, log keys."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import pytest

from wsfanout.handlers import runtime as runtimes
from wsfanout.handlers.runtime import ProcessHost, Runtime

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="unset")


@pytest.fixture
def host() -> Iterator[ProcessHost]:
    fresh = ProcessHost()
    previous = runtimes.install(fresh)
    yield fresh
    runtimes.install(previous)
    fresh.reset()


def test_one_runtime_per_process_whatever_the_thread(host: ProcessHost) -> None:
    mine = runtimes.runtime()
    seen: list[Runtime] = []
    thread = threading.Thread(target=lambda: seen.append(runtimes.runtime()))
    thread.start()
    thread.join(timeout=10)
    assert seen == [mine]
    runtimes.reset_runtime()
    assert mine.closed
    assert runtimes.runtime() is not mine, "after a reset the next invocation starts cold"


def test_each_invocation_sees_the_context_it_was_called_in(host: ProcessHost) -> None:
    rt = runtimes.runtime()

    async def read() -> str:
        return MARK.get()

    seen = []
    for value in ("first", "second", "third"):
        MARK.set(value)
        seen.append(rt.run(read()))
    assert seen == ["first", "second", "third"]


def test_bound_log_keys_replace_the_last_ones(host: ProcessHost) -> None:
    runtimes.bind_log_keys(connection_id="a=", route="$connect")
    runtimes.bind_log_keys(connection_id="b=")
    keys = runtimes.logger.get_current_keys()
    assert keys.get("connection_id") == "b="
    assert "route" not in keys
