"""Serving an aiohttp application on loopback: the one start-up the local servers share.

The management endpoint and the API Gateway emulator both bind here. Binding port 0 and reading
the bound port back from the listening socket means there is no window between choosing a port
and taking it, so parallel tests and benchmarks never collide.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

__all__ = ["serve_app"]


@asynccontextmanager
async def serve_app(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 2.0,
    backlog: int = 128,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host``:``port`` and yield its base URL, ``http://HOST:PORT``
    (``https://`` with an ``ssl_context``: then every connection is TLS).

    ``port=0`` lets the kernel pick a free port; the URL carries the port actually bound. The
    access log is off (a line per request would dominate a benchmark's cost) and signals are
    left to the caller. On exit the server stops, giving open requests ``shutdown_timeout``.

    :raises OSError: when the address cannot be bound (e.g. the given port is taken).
    """
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog, ssl_context=ssl_context).start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"{'http' if ssl_context is None else 'https'}://{shown}:{bound_port}"
    finally:
        await runner.cleanup()
