"""The raw transport's HTTP/1.1 against a scripted server: keep-alive, ``Connection: close``,
HTTP/1.0, chunked and close-delimited bodies, error bodies and their classification, timeouts,
answers it cannot read, and answers arriving a byte at a time. (The suites every transport
passes, the engine's and TLS's, run it too: tests/core/test_fanout.py, tests/aws/test_tls.py.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aioboto3
import anyio
import pytest

from wsfanout.aws import raw
from wsfanout.aws.raw import RawGateway, _Connection
from wsfanout.core.outcomes import Outcome

pytestmark = pytest.mark.timeout(30)

CID = "L0SM9cOFvHcCIhw="
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
HANG = b""  # the script's way of saying: never answer


def error(status: int, error_type: str | None, body: bytes = b'{"message":"x"}') -> bytes:
    typed = f"x-amzn-ErrorType: {error_type}:http://internal.amazon.com/\r\n" if error_type else ""
    return (
        f"HTTP/1.1 {status} X\r\n{typed}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Script:
    """What the server answers, request by request (a closing answer ends its connection)."""

    answers: list[tuple[bytes, bool]]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, str]]:
    script = Script([])
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.connections += 1
        try:
            while script.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                script.requests.append(head + await reader.readexactly(length))
                answer, close = script.answers.pop(0)
                if answer is HANG:
                    await stop.wait()
                    return
                writer.write(answer)
                await writer.drain()
                if close:
                    return
        except asyncio.IncompleteReadError:
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield script, f"http://127.0.0.1:{port}/prod"
    finally:
        stop.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def gateway(
    session: aioboto3.Session, scripted: tuple[Script, str]
) -> AsyncIterator[RawGateway]:
    _, url = scripted
    async with RawGateway(session, default_endpoint=url, timeout_s=1.0) as gw:
        yield gw


async def posts(gateway: RawGateway, count: int) -> list[Outcome]:
    with anyio.fail_after(20):
        return [await gateway.post(CID, b"hello") for _ in range(count)]


async def test_one_kept_alive_connection_carries_every_post(gateway, scripted) -> None:
    script, _ = scripted
    script.answers = [(OK, False)] * 3
    assert await posts(gateway, 3) == [Outcome.DELIVERED] * 3
    assert script.connections == 1
    head, _, body = script.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /prod/@connections/L0SM9cOFvHcCIhw%3D HTTP/1.1\r\n")
    assert b"\r\nAuthorization: AWS4-HMAC-SHA256 Credential=" in head
    assert body == b"hello"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nthe body ends with the connection",
    ],
    ids=["connection-close", "http-1.0", "close-delimited"],
)
async def test_an_answer_that_ends_its_connection_is_not_reused(
    gateway, scripted, answer: bytes
) -> None:
    script, _ = scripted
    script.answers = [(answer, True), (OK, False)]
    assert await posts(gateway, 2) == [Outcome.DELIVERED] * 2
    assert script.connections == 2


async def test_a_chunked_error_body_with_trailers_is_read_and_the_connection_reused(
    gateway, scripted
) -> None:
    script, _ = scripted
    chunked = (
        b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1a\r\n" + b"z" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    script.answers = [(chunked, False), (OK, False)]
    assert await posts(gateway, 2) == [Outcome.GONE, Outcome.DELIVERED]
    assert script.connections == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (error(410, "GoneException"), Outcome.GONE),
        (error(403, "ForbiddenException"), Outcome.FORBIDDEN),
        (error(403, None, b'{"message":"Forbidden"}'), Outcome.FORBIDDEN),
        (error(413, "PayloadTooLargeException"), Outcome.TOO_LARGE),
        (error(429, "LimitExceededException"), Outcome.THROTTLED),
        (error(400, "TooManyRequestsException"), Outcome.THROTTLED),  # the type decides
        (error(500, "InternalServerErrorException"), Outcome.SERVER_ERROR),
        (error(502, None, b"<html>bad gateway</html>"), Outcome.SERVER_ERROR),
        (error(400, "BadRequestException"), Outcome.REJECTED),
        (b"HTTP/1.1 204 No Content\r\n\r\n", Outcome.DELIVERED),
    ],
)
async def test_error_answers_are_classified_and_their_bodies_read(
    gateway, scripted, answer: bytes, expected: Outcome
) -> None:
    script, _ = scripted
    script.answers = [(answer, False), (OK, False)]
    assert await posts(gateway, 2) == [expected, Outcome.DELIVERED]
    assert script.connections == 1  # the body was read to its end: the connection goes on


@pytest.mark.parametrize(
    "answer",
    [
        HANG,
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # then the connection closes
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["no-answer", "not-http", "cut-short", "bad-chunk"],
)
async def test_an_answer_not_had_in_full_is_a_network_error_on_a_dropped_connection(
    gateway, scripted, answer: bytes
) -> None:
    script, _ = scripted
    script.answers = [(answer, True), (OK, False)]
    assert await posts(gateway, 2) == [Outcome.NETWORK_ERROR, Outcome.DELIVERED]
    assert script.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced(gateway, scripted) -> None:
    script, _ = scripted
    script.answers = [(OK, True), (OK, False)]  # answers keep-alive, then closes anyway
    assert await posts(gateway, 1) == [Outcome.DELIVERED]
    (origin,) = gateway._origins.values()
    with anyio.fail_after(10):
        # the close comes from the kernel, no event to wait on: polled, bounded above
        while origin.idle and origin.idle[0].open:  # noqa: ASYNC110  (see above)
            await anyio.sleep(0.01)
    assert await posts(gateway, 1) == [Outcome.DELIVERED]
    assert script.connections == 2


async def test_a_connection_idle_too_long_is_not_reused(
    gateway, scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, _ = scripted
    script.answers = [(OK, False), (OK, False)]
    assert await posts(gateway, 1) == [Outcome.DELIVERED]
    monkeypatch.setattr(raw, "_IDLE_S", 0.0)
    assert await posts(gateway, 1) == [Outcome.DELIVERED]
    assert script.connections == 2


async def test_a_refused_connection_is_a_network_error(session: aioboto3.Session) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with RawGateway(session, default_endpoint=f"http://127.0.0.1:{port}/p") as gateway:
        assert await posts(gateway, 1) == [Outcome.NETWORK_ERROR]


async def test_used_outside_its_block_is_a_bug(session: aioboto3.Session) -> None:
    gateway = RawGateway(session, default_endpoint="http://127.0.0.1:9/p")
    with pytest.raises(RuntimeError, match="outside its 'async with' block"):
        await gateway.post(CID, b"x")


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    "answer",
    [
        error(429, "LimitExceededException"),
        b"HTTP/1.1 100 Continue\r\n\r\n" + error(413, "PayloadTooLargeException"),
        b"HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ],
)
async def test_answers_arriving_a_byte_at_a_time(answer: bytes) -> None:
    connection = _Connection()
    transport = _Transport()
    connection.connection_made(transport)
    exchange = asyncio.ensure_future(connection.exchange(b"POST / HTTP/1.1\r\n\r\n", 10.0, set()))
    await asyncio.sleep(0)  # the request is written
    for index in range(len(answer)):
        assert not exchange.done()
        connection.data_received(answer[index : index + 1])
    status, error_type = await exchange
    assert status == int(answer.rsplit(b"HTTP/1.1 ", 1)[1][:3])
    assert error_type == (
        None
        if b"ErrorType" not in answer
        else answer.split(b"ErrorType: ")[1].split(b":")[0].decode()
    )
    assert connection.keep
    assert transport.written == b"POST / HTTP/1.1\r\n\r\n"
