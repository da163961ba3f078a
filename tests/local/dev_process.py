"""A ``wsfanout dev`` process for the dev tests: started with its stderr in a file, its stdout
read line by line within a bound, stopped by a signal, and killed should a test fail first."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["DevProcess", "Output", "running_dev"]


class Output:
    """The lines a ``wsfanout dev`` process prints, read on demand within a bound."""

    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self._stream = BufferedByteReceiveStream(process.stdout)
        self.lines: list[str] = []

    async def until(self, needle: str, *, seconds: float = 60) -> str:
        """Read up to the next line containing ``needle`` and return it."""
        with anyio.fail_after(seconds):
            for _ in range(200):
                line = (await self._stream.receive_until(b"\n", 65536)).decode()
                self.lines.append(line)
                if needle in line:
                    return line
        raise AssertionError(f"no line with {needle!r} in {self.lines}")

    async def ws_url(self) -> str:
        return (await self.until("WebSocket")).split()[-1]


@dataclass
class DevProcess:
    """A running ``wsfanout dev``: the process, what it prints, and where its stderr goes."""

    process: Process
    out: Output
    stderr: Path

    async def stop(self, sig: signal.Signals, *said: str, seconds: float = 60) -> None:
        """Send ``sig``, read the lines ``said`` in order and then ``wsfanout dev: stopped``,
        and assert that the process exits 0 within ``seconds`` (its stderr is the message)."""
        self.process.send_signal(sig)
        for line in said:
            await self.out.until(line)
        await self.out.until("wsfanout dev: stopped")
        with anyio.fail_after(seconds):
            code = await self.process.wait()
        assert code == 0, self.stderr.read_text()


@asynccontextmanager
async def running_dev(
    command: list[str], stderr: Path, *, cwd: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[DevProcess]:
    """Run ``command`` in ``cwd`` (``env``: the environment, default this process's), its stderr
    written to the file ``stderr``; killed on the way out unless it has exited."""
    with stderr.open("wb") as err:
        process = await anyio.open_process(
            command, cwd=cwd, stdin=None, stderr=err, env=None if env is None else dict(env)
        )
        async with process:
            try:
                yield DevProcess(process, Output(process), stderr)
            finally:
                if process.returncode is None:
                    process.kill()
