"""One measured run of one algorithm, in a process of its own: ``python -m wsfanout.bench.child``.

Protocol, one JSON object per line: the parent passes the :class:`~.algorithms.Spec` as the only
argument; the child imports everything and sets the algorithm up (its clients and sessions, what
a warm Lambda container already holds), prints ``READY`` and waits for ``GO`` on stdin, so that
neither start-up nor set-up is measured and several children (the distributed sweep) start
together; then it broadcasts and prints ``{"elapsed_s", "cpu_s", "peak_rss_mb", "start", "end",
"outcome"}``. CPU is the whole process's (every thread), so what a library does in a thread pool
is billed too.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence

import anyio
import anyio.to_thread

from .algorithms import Spec, prepared

__all__ = ["main", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MiB.

    Not ``getrusage().ru_maxrss`` on Linux: the kernel carries the high-water mark of the
    process that called ``execve`` over into the new program, so a child spawned by a parent
    holding 100 MB reports at least 100 MB whatever it does itself (and the bench parent grows
    with N: ids, the endpoint's records). ``VmHWM`` belongs to the memory map ``execve`` created.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


async def _run(spec: Spec) -> dict[str, object] | None:
    async with prepared(spec) as go:
        print("READY", flush=True)
        if (await anyio.to_thread.run_sync(sys.stdin.readline)).strip() != "GO":
            return None
        start, cpu = time.time(), time.process_time()
        outcome = await go()
        end = time.time()
        return {
            "elapsed_s": end - start,
            "cpu_s": time.process_time() - cpu,
            "peak_rss_mb": peak_rss_mb(),
            "start": start,
            "end": end,
            "outcome": outcome,
        }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the spec given as the first argument once the parent says go."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m wsfanout.bench.child SPEC_JSON", file=sys.stderr)
        return 2
    result = anyio.run(_run, Spec(**json.loads(args[0])))
    if result is None:
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
