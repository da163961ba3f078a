"""``wsfanout dev --reload``: run the stack in a child process and restart it when the app's
Python files change (uvicorn's design).

A fresh process is the only reload that is always right: re-importing a module in place keeps
the old one's objects alive in whatever imported them. The child is the same ``wsfanout dev``
without ``--reload`` and with the same arguments, so a port given stays the port after a
restart (a port of 0 is chosen anew by each child). It runs in a session of its own so that the
supervisor alone decides when it stops: SIGTERM first (the stack shuts down in order, moto
included), SIGKILL after a bounded grace period. A child that exits by itself (the app failed
to import) is restarted on the next change; SIGINT or SIGTERM stops the supervisor and its
child.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream
from watchfiles import PythonFilter, awatch

__all__ = ["STOP_GRACE_S", "run_reloading"]

STOP_GRACE_S = 60.0
"""How long a child may take to stop after SIGTERM before it is killed (the stack's own
shutdown is bounded well within this)."""


@dataclass(frozen=True)
class _Changed:
    paths: list[str]


@dataclass(frozen=True)
class _Exited:
    process: anyio.abc.Process


@dataclass(frozen=True)
class _Signalled:
    signum: int


_Event = _Changed | _Exited | _Signalled


def run_reloading(command: Sequence[str], directory: Path, out: TextIO) -> int:
    """Run ``command`` and restart it whenever a ``.py`` file under ``directory`` changes,
    printing one line per restart to ``out``, until SIGINT or SIGTERM. Returns 0."""
    return anyio.run(_supervise, list(command), directory, out)


async def _supervise(command: list[str], directory: Path, out: TextIO) -> int:
    def say(text: str) -> None:
        out.write(f"wsfanout dev: {text}\n")
        out.flush()

    send, receive = anyio.create_memory_object_stream[_Event](16)
    stop_watching = anyio.Event()
    child: anyio.abc.Process | None = None
    # Signals are taken first, so Ctrl-C while the first child starts still stops it in order.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_watch, directory, send, stop_watching)
            tasks.start_soon(_forward, signals, send)
            say(f"watching {directory} for changes to .py files")
            try:
                child = await _start(command, tasks, send)
                async for event in receive:
                    if isinstance(event, _Signalled):
                        say(f"{signal.Signals(event.signum).name}, stopping")
                        break
                    if isinstance(event, _Exited):
                        if event.process is child:  # not one this loop stopped
                            say(
                                f"the stack exited with status {child.returncode}; "
                                "restarting on the next change"
                            )
                            child = None
                        await event.process.aclose()
                        continue
                    say(f"{_describe(event.paths, directory)} changed, restarting")
                    if child is not None:
                        await _stop(child)
                    child = await _start(command, tasks, send)
            finally:
                if child is not None:
                    await _stop(child)
                stop_watching.set()
                tasks.cancel_scope.cancel()
    return 0


async def _start(
    command: list[str], tasks: anyio.abc.TaskGroup, send: MemoryObjectSendStream[_Event]
) -> anyio.abc.Process:
    process = await anyio.open_process(
        command, stdin=None, stdout=None, stderr=None, start_new_session=True
    )

    async def report_exit() -> None:
        await process.wait()
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await send.send(_Exited(process))

    tasks.start_soon(report_exit)
    return process


async def _stop(process: anyio.abc.Process) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`; shielded, so a cancelled supervisor
    still never leaves its child running."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(STOP_GRACE_S):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        await process.aclose()


async def _watch(directory: Path, send: MemoryObjectSendStream[_Event], stop: anyio.Event) -> None:
    async for changes in awatch(directory, watch_filter=PythonFilter(), stop_event=stop):
        await send.send(_Changed(sorted({path for _, path in changes})))


async def _forward(signals: AsyncIterator[int], send: MemoryObjectSendStream[_Event]) -> None:
    async for signum in signals:
        await send.send(_Signalled(int(signum)))


def _describe(paths: list[str], directory: Path) -> str:
    """The changed files, relative to the watched directory (the first three)."""
    names = [os.path.relpath(path, directory) for path in paths]
    shown = ", ".join(names[:3])
    return f"{shown} (+{len(names) - 3} more)" if len(names) > 3 else shown or "a file"
