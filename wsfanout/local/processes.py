"""Local services in their own processes: moto server and the management endpoint.

Benchmarks and tests run these apart from the code under test, so the server's CPU is not billed
to the engine and neither shares the other's event loop or GIL. Both bind to 127.0.0.1 on a free
port, and both are stopped when their ``with`` block ends, however it ends.

A child's pipe that nobody reads fills (the OS buffers some 64 KiB) and then blocks the child
on its next write: the management endpoint logs a traceback for every aborted request, so a
benchmark that aborts a hundred would freeze it. What a child writes to stderr is therefore
read as it comes, on a thread, and only its last lines are kept, for the error message.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

from ..exceptions import ConfigurationError

__all__ = ["endpoint_process", "free_port", "moto_process", "moto_server"]


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


class _Tail:
    """Reads a child's pipe to its end on a daemon thread, keeping only its last ``keep`` lines.

    The child never waits on the pipe, and memory stays bounded however much it writes (a line
    is read at most ``_LINE_MAX`` bytes at a time).
    """

    _LINE_MAX = 4096

    def __init__(self, pipe: IO[bytes], keep: int = 20) -> None:
        self._pipe = pipe
        self._lines: deque[bytes] = deque(maxlen=keep)
        self._thread = threading.Thread(target=self._drain, name="wsfanout-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in iter(lambda: self._pipe.readline(self._LINE_MAX), b""):
            self._lines.append(line)

    def text(self, timeout: float = 10.0) -> str:
        """The last lines, once the pipe ended (the child exited) or ``timeout`` passed."""
        self._thread.join(timeout)
        return b"".join(self._lines).decode(errors="replace").strip()


def _stop(proc: subprocess.Popen[bytes], tail: _Tail | None = None) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    if tail is not None:
        tail.text()  # the reader is done with the pipe before it is closed
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _moto_args(port: int) -> list[str]:
    return ["-H", "127.0.0.1", "-p", str(port)]


@contextmanager
def moto_server(startup_timeout: float = 30.0, port: int = 0) -> Iterator[str]:
    """Run ``moto.server`` on 127.0.0.1 and yield its URL once it answers.

    ``port=0`` picks a free port; a given one (``wsfanout dev --moto-port``, stable across
    restarts) must be free: otherwise another server, maybe an old moto, would answer for it.

    :raises ConfigurationError: the port is taken, or moto did not start.
    """
    with moto_process(startup_timeout, port) as (url, _):
        yield url


@contextmanager
def moto_process(
    startup_timeout: float = 30.0, port: int = 0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`moto_server`, yielding the process too, for tests that play an outage on it
    (``SIGSTOP``/``SIGCONT``: moto keeps its state in memory only, so a frozen process is an
    outage that loses nothing, as DynamoDB's and SQS's do not).

    :raises ConfigurationError: the port is taken, or moto did not start.
    """
    if port:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot start moto on 127.0.0.1:{port}: {exc.strerror or exc}"
                ) from None
    else:
        port = free_port()
    proc = subprocess.Popen(  # noqa: S603  (our own interpreter, fixed arguments)
        # moto under a watch that ends it with this process (see wsfanout.local.motoserver)
        [sys.executable, "-m", "wsfanout.local.motoserver", str(os.getpid()), *_moto_args(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_clean_env(),
        start_new_session=True,  # Ctrl-C in a terminal stops us first; we then stop moto
    )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up = time.monotonic() + startup_timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > give_up:
                    raise ConfigurationError(
                        f"moto server did not start on {url} (is moto[server] installed?)"
                    ) from None
                time.sleep(0.05)  # polling a starting process, bounded by give_up
        yield url, proc
    finally:
        proc.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        _stop(proc)


@contextmanager
def endpoint_process(args: Sequence[str] = (), startup_timeout: float = 30.0) -> Iterator[str]:
    """Run the local management endpoint (``python -m wsfanout.local.management ARGS``).

    Yields its base URL (no stage) once it printed ``READY``. Its stderr is drained all along
    (see :class:`_Tail`), so however much it logs it keeps serving.

    :raises ConfigurationError: it exited or printed something else instead of ``READY``; the
        message carries the last lines of its stderr.
    """
    proc = subprocess.Popen(  # noqa: S603  (our own interpreter, our own module)
        [sys.executable, "-m", "wsfanout.local.management", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_clean_env(),
    )
    assert proc.stdout is not None  # noqa: S101  (PIPE was requested)
    assert proc.stderr is not None  # noqa: S101  (PIPE was requested)
    tail = _Tail(proc.stderr)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], startup_timeout)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("READY "):
            proc.wait(timeout=startup_timeout)
            error = tail.text()
            raise ConfigurationError(f"management endpoint did not start: {error or line}")
        yield line.split(" ", 1)[1]
    finally:
        _stop(proc, tail)
