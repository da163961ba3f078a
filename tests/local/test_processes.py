"""The management endpoint in its own process: it keeps serving however much it writes to stderr.

aiohttp logs a traceback (about a kilobyte) for every request whose client resets the connection
mid-body. Unread, those fill the child's stderr pipe (some 64 KiB) within about a hundred aborted
requests and the child blocks in its next write, its event loop with it.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from wsfanout.exceptions import ConfigurationError
from wsfanout.local.motoserver import WATCH_INTERVAL_S
from wsfanout.local.processes import endpoint_process
from wsfanout.local.signatures import signed_headers

ANSWER_TIMEOUT_S = 10
ROUNDS, ABORTS_PER_ROUND = 20, 10  # 200 tracebacks: some 200 KiB, three pipe buffers


def abort_a_request(host: str, port: int) -> None:
    """Send a POST whose body never comes in full, then reset the connection (RST, no FIN)."""
    with socket.create_connection((host, port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(
            b"POST /test/@connections/abc%3D HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def answer(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    """Status and body of a request, signed for the endpoint, that must be answered in time."""
    headers = signed_headers("GET" if data is None else "POST", url, data or b"")
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310  (loopback)
    with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_S) as reply:  # noqa: S310  (our loopback endpoint)
        return int(reply.status), bytes(reply.read())


@pytest.mark.timeout(120)
def test_endpoint_keeps_serving_after_flooding_its_stderr() -> None:
    with endpoint_process() as base_url:
        split = urlsplit(base_url)
        assert split.hostname is not None
        assert split.port is not None
        for round_ in range(ROUNDS):
            for _ in range(ABORTS_PER_ROUND):
                abort_a_request(split.hostname, split.port)
            # the post is queued behind the aborted ones: answered only if their logging is
            status, _ = answer(f"{base_url}/test/@connections/live{round_}%3D", b"hi")
            assert status == 200
        _, body = answer(f"{base_url}/_wsfanout/stats")
        stats = json.loads(body)
        _, body = answer(f"{base_url}/_wsfanout/counts")
    assert stats["posts"] == ROUNDS * (ABORTS_PER_ROUND + 1), "every aborted post was handled"
    assert json.loads(body) == {f"live{n}=": 1 for n in range(ROUNDS)}


def test_a_start_that_fails_names_the_childs_error() -> None:
    with (
        pytest.raises(ConfigurationError, match="must not be negative: -1"),
        endpoint_process(["--latency", "-1"], startup_timeout=30),
    ):
        pytest.fail("the endpoint started with a negative latency")


# A parent that starts moto, prints its URL and waits to be killed.
PARENT = """
import sys, time
from wsfanout.local.processes import moto_server
with moto_server() as url:
    print(url, flush=True)
    time.sleep(120)  # killed long before: the test's SIGKILL ends it
"""


def test_moto_ends_when_the_process_that_started_it_is_killed() -> None:
    parent = subprocess.Popen(  # noqa: S603  (our interpreter, our script)
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        url = parent.stdout.readline().strip()
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=ANSWER_TIMEOUT_S):  # noqa: S310  (loopback)
            pass
        parent.kill()  # no finally of its own runs: only moto's watch can end moto
        parent.wait(timeout=ANSWER_TIMEOUT_S)
    finally:
        parent.kill()
        if parent.stdout is not None:
            parent.stdout.close()
    port = int(urlsplit(url).port or 0)
    give_up = time.monotonic() + ANSWER_TIMEOUT_S
    while True:  # polled, bounded: moto looks for its parent every WATCH_INTERVAL_S
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break  # refused: moto is gone
        assert time.monotonic() < give_up, f"moto still serves {url} after its parent died"
        time.sleep(WATCH_INTERVAL_S / 5)
