"""Warm Lambda containers played by threads: one handler runtime per thread, for as long as the
local stack (or an emulator or poller of its own) runs.

On Lambda a container is a process running one invocation at a time, and
:mod:`wsfanout.handlers.runtime` holds one runtime per process. Locally the emulator and the SQS
poller run concurrent invocations on long-lived worker threads, each playing one warm container,
so while they run :func:`acquire` installs a host that keeps a runtime per thread and binds log
keys per thread (Powertools' thread-safe keys, context variables: each invocation's coroutine
runs in a copy of its thread's context, so it sees them). Its process-wide ``append_keys`` would
mix the keys of concurrent invocations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..handlers import runtime as runtimes
from ..handlers.runtime import Host, Runtime

__all__ = ["ThreadHost", "acquire", "hosting", "release"]

log = logging.getLogger(__name__)


class ThreadHost:
    """A :class:`~wsfanout.handlers.runtime.Host` with one runtime per thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._open: list[Runtime] = []
        self._lock = threading.Lock()

    def runtime(self) -> Runtime:
        current: Runtime | None = getattr(self._local, "runtime", None)
        if current is None:
            current = Runtime()
            self._local.runtime = current
            with self._lock:
                self._open.append(current)
        return current

    def reset(self) -> None:
        current: Runtime | None = getattr(self._local, "runtime", None)
        self._local.runtime = None
        if current is not None:
            with self._lock:
                self._open.remove(current)
            current.close()

    def close_all(self) -> None:
        """Close every thread's runtime, from any thread with no running loop; one still busy
        in its thread (a hung handler, left behind) is logged and left open."""
        with self._lock:
            everything, self._open = self._open, []
        for each in everything:
            if each.busy:  # a hung invocation, left behind: its loop runs in its own thread
                log.warning("a container was still busy at shutdown; its runtime stays open")
            else:
                each.close()

    def bind_log_keys(self, **keys: object) -> None:
        runtimes.logger.thread_safe_clear_keys()
        runtimes.logger.thread_safe_append_keys(**keys)


_lock = threading.Lock()
_users = 0
_previous: Host | None = None
_current: ThreadHost | None = None


def acquire() -> ThreadHost:
    """Install a :class:`ThreadHost` (every container starts cold), or share the one installed:
    the stack, its emulator and its poller each acquire, and the last to :func:`release` ends
    it. Calls pair with :func:`release`."""
    global _users, _previous, _current  # noqa: PLW0603  (the handlers' seam is process-wide)
    with _lock:
        if _current is None:
            _current = ThreadHost()
            _previous = runtimes.install(_current)
        _users += 1
        return _current


def release() -> None:
    """Undo one :func:`acquire`; the last closes every container's runtime and puts the host
    that was there before back. Call it from a thread with no running loop (closing a runtime
    runs its loop), once the invocations have ended."""
    global _users, _previous, _current  # noqa: PLW0603  (see acquire)
    with _lock:
        _users = max(0, _users - 1)
        if _users > 0 or _current is None:
            return
        ending, _current = _current, None
        runtimes.install(_previous)
        _previous = None
    ending.close_all()


@contextmanager
def hosting() -> Iterator[ThreadHost]:
    """:func:`acquire` for the block, :func:`release` after it (in a thread with no loop)."""
    host = acquire()
    try:
        yield host
    finally:
        release()
