"""Per-thread handler runtimes while the local stack (or its emulator or poller) runs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from wsfanout.handlers import runtime as runtimes
from wsfanout.local import containers

T = TypeVar("T")


def _in_thread(func: Callable[[], T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func).result(timeout=10)


def test_each_thread_is_a_container_until_the_last_release() -> None:
    process = runtimes.install(None)
    try:
        with containers.hosting():
            here = runtimes.runtime()
            assert runtimes.runtime() is here  # warm
            with containers.hosting():  # the stack's emulator or poller, sharing the host
                there = _in_thread(runtimes.runtime)
            assert there is not here
            assert not here.closed
            assert not there.closed
        assert here.closed
        assert there.closed
        assert isinstance(runtimes.install(process), runtimes.ProcessHost)  # put back
    finally:
        runtimes.install(process)


def test_a_busy_container_is_left_open_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    started: list[runtimes.Runtime] = []

    def invocation() -> None:
        rt = runtimes.runtime()
        started.append(rt)
        rt.run(asyncio.to_thread(release.wait, 10))

    containers.acquire()
    worker = threading.Thread(target=invocation)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not (started and started[0].busy):
            assert time.monotonic() < deadline, "the invocation never started"
            time.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="wsfanout.local.containers"):
            containers.release()
        assert "still busy" in caplog.text
        assert not started[0].closed
    finally:
        release.set()
        worker.join(timeout=10)
    assert not worker.is_alive()
    started[0].close()
