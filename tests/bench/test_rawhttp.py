"""floor-raw's bare HTTP/1.1: kept-alive connections, answers read whole, what it refuses; and
its signed POSTs accepted by the local endpoint over HTTP and HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from aiohttp import web

from wsfanout.aws.account import KEY_ID, REGION, SECRET
from wsfanout.aws.sigv4 import Credentials, PostSigner
from wsfanout.bench.rawhttp import RawOrigin
from wsfanout.local.management import Faults, ManagementEndpoint, serve
from wsfanout.local.serving import serve_app
from wsfanout.local.tls import Certificate, throwaway_certificate

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def certificate() -> Iterator[Certificate]:
    with throwaway_certificate() as made:
        yield made


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[object]]]:
    """A server answering ``/ok`` (a body), ``/close`` (``Connection: close``) and
    ``/chunked``; it lists the client port of every request it answers."""
    peers: list[object] = []

    async def ok(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(status=201, body=b"x" * 70_000)  # more than one read

    async def close(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(status=410, body=b"{}", headers={"Connection": "close"})

    async def chunked(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse()
        answer.enable_chunked_encoding()
        await answer.prepare(request)
        await answer.write(b"part")
        await answer.write_eof()
        return answer

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/close", close)
    app.router.add_post("/chunked", chunked)
    async with serve_app(app) as url:
        yield url, peers


async def test_a_connection_is_kept_alive_and_answers_are_read_whole(server) -> None:
    url, peers = server
    origin = RawOrigin(url, None)
    connection = await origin.connect()
    with anyio.fail_after(10):
        statuses = [await connection.exchange(origin.post(f"{url}/ok", {}, b"b")) for _ in range(3)]
    connection.close()
    assert statuses == [201, 201, 201]
    assert len(peers) == 3
    assert len(set(peers)) == 1  # one connection carried the three


async def test_connection_close_makes_it_unusable(server) -> None:
    url, _ = server
    origin = RawOrigin(url, None)
    connection = await origin.connect()
    with anyio.fail_after(10):
        assert await connection.exchange(origin.post(f"{url}/close", {"A": "b"}, b"")) == 410
    assert not connection.reusable
    with pytest.raises(ConnectionError, match="cannot take another request"):
        await connection.exchange(origin.post(f"{url}/ok", {}, b""))
    connection.close()


async def test_a_chunked_answer_is_refused_not_guessed(server) -> None:
    url, _ = server
    origin = RawOrigin(url, None)
    connection = await origin.connect()
    with anyio.fail_after(10), pytest.raises(ConnectionError, match="chunked"):
        await connection.exchange(origin.post(f"{url}/chunked", {}, b""))
    connection.close()


def test_the_request_is_http_11_with_the_signed_host() -> None:
    origin = RawOrigin("https://abc.execute-api.eu-west-1.amazonaws.com/prod", None)
    request = origin.post(
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections/a%3D", {"X": "y"}, b"hi"
    )
    assert request == (
        b"POST /prod/@connections/a%3D HTTP/1.1\r\n"
        b"Host: abc.execute-api.eu-west-1.amazonaws.com\r\nX: y\r\n"
        b"Content-Length: 2\r\n\r\nhi"
    )
    assert origin.port == 443
    assert origin.tls is not None  # https: verified with the system's certificates by default


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_signed_posts_are_accepted_and_gone_ids_answered_410(
    tls: bool, certificate: Certificate
) -> None:
    fake = ManagementEndpoint(faults=Faults(gone_rate=0.5, seed=2))
    context = certificate.server_context() if tls else None
    async with serve(fake, ssl_context=context) as base:
        url = f"{base}/bench"
        signer = PostSigner(url, REGION)
        credentials = Credentials(KEY_ID, SECRET, None)
        origin = RawOrigin(url, certificate.client_context() if tls else None)
        connection = await origin.connect()
        statuses = {}
        with anyio.fail_after(10):
            for cid in ("a1", "a2", "a3", "a4", "a5", "a6"):
                target, headers = signer.sign(cid, b"hi", credentials)
                statuses[cid] = await connection.exchange(origin.post(target, headers, b"hi"))
        connection.close()
    assert statuses == {cid: 410 if fake.faults.is_gone(cid) else 200 for cid in statuses}
    assert set(statuses.values()) == {200, 410}
    assert fake.stats()["forbidden"] == 0
    assert fake.counts() == {cid: 1 for cid, status in statuses.items() if status == 200}
