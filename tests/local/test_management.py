"""The local management endpoint, exercised through a real aiobotocore client.

The endpoint is only useful if botocore cannot tell it from API Gateway, so every behaviour is
asserted the way the engine will observe it: parsed responses, ``ClientError`` codes and HTTP
statuses, and botocore's connection-error classes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import anyio
import botocore.config
import botocore.exceptions
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from yarl import URL

from wsfanout.aws.account import KEY_ID, REGION, SECRET
from wsfanout.aws.sigv4 import Credentials, PostSigner
from wsfanout.exceptions import ConfigurationError, InvalidInputError
from wsfanout.local.management import (
    STAT_KEYS,
    AccountThrottle,
    ConnectionInfo,
    Faults,
    ManagementEndpoint,
    main,
    serve,
)
from wsfanout.local.processes import endpoint_process
from wsfanout.local.signatures import signed_headers
from wsfanout.local.tls import throwaway_certificate

pytestmark = pytest.mark.timeout(60)

# Real API Gateway connection ids are base64-like; '=', '/' and '+' must survive URL encoding.
IDS = ["L0SM9cOFvHcCIhw=", "a/b+c==", "plain"]


def _client(endpoint_url: str) -> Any:
    session = aioboto3.Session(
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )
    return session.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )


@asynccontextmanager
async def running(
    endpoint: ManagementEndpoint, path: str = "/prod"
) -> AsyncIterator[tuple[str, Any]]:
    """Serve the endpoint on a free port; yield its base URL and a client for ``url + path``."""
    async with serve(endpoint) as url, _client(url + path) as client:
        yield url, client


def _signed(method: str, url: str, route: str) -> dict[str, str]:
    return signed_headers(method, f"{url}/_wsfanout/{route}")


async def _error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        await call
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# -- POST ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/prod", ""], ids=["stage-prefix", "no-prefix"])
async def test_post_records_payload(path: str) -> None:
    endpoint = ManagementEndpoint()
    async with running(endpoint, path) as (_, client):
        for n, cid in enumerate(IDS):
            response = await client.post_to_connection(ConnectionId=cid, Data=f"m{n}".encode())
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        await client.post_to_connection(ConnectionId=IDS[0], Data=b"again")
    assert endpoint.received(IDS[0]) == [b"m0", b"again"]
    assert endpoint.received(IDS[1]) == [b"m1"]
    assert endpoint.received("never") == []
    assert endpoint.counts() == {IDS[0]: 2, IDS[1]: 1, IDS[2]: 1}
    assert endpoint.duplicates() == {IDS[0]: 2}
    assert endpoint.stats() == {**dict.fromkeys(STAT_KEYS, 0), "posts": 4, "delivered": 4}


async def test_configured_stage_refuses_other_stages() -> None:
    endpoint = ManagementEndpoint(stage="prod")
    async with running(endpoint, "/dev") as (_, client):
        code, status = await _error_of(client.post_to_connection(ConnectionId="a", Data=b"x"))
    assert (code, status) == ("ForbiddenException", 403)
    assert endpoint.counts() == {}


async def test_payload_limit_is_128_kib() -> None:
    endpoint = ManagementEndpoint()
    async with running(endpoint) as (_, client):
        await client.post_to_connection(ConnectionId="a", Data=b"x" * 131072)
        for size in (131073, 1024 * 1024):
            call = client.post_to_connection(ConnectionId="a", Data=b"x" * size)
            assert await _error_of(call) == ("PayloadTooLargeException", 413)
    assert endpoint.counts() == {"a": 1}
    assert endpoint.stats()["too_large"] == 2


# -- GET / DELETE / membership -------------------------------------------------------------------


async def test_get_connection_parses_with_datetimes() -> None:
    connected = datetime(2024, 5, 7, 14, 53, 35, 208000, tzinfo=UTC)
    endpoint = ManagementEndpoint()
    endpoint.add(
        IDS[0], ConnectionInfo(connected_at=connected, source_ip="10.0.0.1", user_agent="ua")
    )
    async with running(endpoint) as (_, client):
        described = await client.get_connection(ConnectionId=IDS[0])
        unknown = await client.get_connection(ConnectionId="seeded-elsewhere")
    assert isinstance(described["ConnectedAt"], datetime)
    assert described["ConnectedAt"].tzinfo is not None
    assert described["ConnectedAt"] == connected
    assert described["LastActiveAt"] == connected
    assert described["Identity"] == {"SourceIp": "10.0.0.1", "UserAgent": "ua"}
    # Open mode: an id nobody described is live and still parses.
    assert isinstance(unknown["ConnectedAt"], datetime)
    assert unknown["Identity"]["SourceIp"] == "127.0.0.1"


async def test_delete_makes_the_connection_gone() -> None:
    endpoint = ManagementEndpoint()
    async with running(endpoint) as (_, client):
        deleted = await client.delete_connection(ConnectionId=IDS[0])
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert not endpoint.is_live(IDS[0])
        post = client.post_to_connection(ConnectionId=IDS[0], Data=b"x")
        assert await _error_of(post) == ("GoneException", 410)
        assert await _error_of(client.get_connection(ConnectionId=IDS[0])) == ("GoneException", 410)
        call = client.delete_connection(ConnectionId=IDS[0])
        assert await _error_of(call) == ("GoneException", 410)
        endpoint.add(IDS[0])  # a reconnect under the same id
        await client.post_to_connection(ConnectionId=IDS[0], Data=b"back")
    assert endpoint.received(IDS[0]) == [b"back"]
    assert endpoint.stats()["gone"] == 1


async def test_gone_exception_is_botocores_modelled_class() -> None:
    endpoint = ManagementEndpoint(live=[])
    async with running(endpoint) as (_, client):
        with pytest.raises(client.exceptions.GoneException):
            await client.post_to_connection(ConnectionId="a", Data=b"x")


async def test_live_set_mode() -> None:
    endpoint = ManagementEndpoint(live=["a"])
    assert endpoint.is_live("a")
    assert not endpoint.is_live("b")
    async with running(endpoint) as (_, client):
        await client.post_to_connection(ConnectionId="a", Data=b"1")
        assert await _error_of(client.post_to_connection(ConnectionId="b", Data=b"1")) == (
            "GoneException",
            410,
        )
        endpoint.add("b")
        await client.post_to_connection(ConnectionId="b", Data=b"2")
        assert endpoint.remove("a")
        assert not endpoint.remove("a")
        assert await _error_of(client.post_to_connection(ConnectionId="a", Data=b"3")) == (
            "GoneException",
            410,
        )
    assert endpoint.counts() == {"a": 1, "b": 1}


def test_live_and_store_are_exclusive() -> None:
    with pytest.raises(ConfigurationError):
        ManagementEndpoint(live=[], store=ManagementEndpoint().store)
    with pytest.raises(InvalidInputError):
        ManagementEndpoint(stage="a/b")


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "code", "status", "counter"),
    [
        (Faults(throttle_rate=1.0), "LimitExceededException", 429, "throttled"),
        (Faults(error_rate=1.0), "InternalServerErrorException", 500, "errors"),
    ],
    ids=["throttle", "error"],
)
async def test_post_faults_surface_with_their_codes(
    faults: Faults, code: str, status: int, counter: str
) -> None:
    endpoint = ManagementEndpoint(faults=faults)
    async with running(endpoint) as (_, client):
        assert await _error_of(client.post_to_connection(ConnectionId="a", Data=b"x")) == (
            code,
            status,
        )
        # Only POST is affected.
        await client.get_connection(ConnectionId="a")
    assert endpoint.counts() == {}
    assert endpoint.stats()[counter] == 1


async def test_gone_wins_over_other_faults() -> None:
    endpoint = ManagementEndpoint(faults=Faults(gone_ids=frozenset({"g="}), throttle_rate=1.0))
    async with running(endpoint) as (_, client):
        assert await _error_of(client.post_to_connection(ConnectionId="g=", Data=b"x")) == (
            "GoneException",
            410,
        )
    assert endpoint.stats()["throttled"] == 0


async def test_drop_closes_the_connection_without_an_answer() -> None:
    endpoint = ManagementEndpoint(faults=Faults(drop_rate=1.0))
    async with running(endpoint) as (_, client):
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            await client.post_to_connection(ConnectionId="a", Data=b"x")
        endpoint.faults = Faults()
        await client.post_to_connection(ConnectionId="a", Data=b"y")  # the server is still fine
    assert endpoint.received("a") == [b"y"]
    assert endpoint.stats()["dropped"] == 1


async def test_per_request_faults_are_reproducible_from_the_seed() -> None:
    async def outcomes(endpoint: ManagementEndpoint, client: Any) -> list[int]:
        result = []
        for n in range(40):
            try:
                await client.post_to_connection(ConnectionId=f"c{n}", Data=b"x")
                result.append(200)
            except botocore.exceptions.ClientError as exc:
                result.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        return result

    faults = Faults(throttle_rate=0.3, error_rate=0.2, seed=7)
    first_endpoint, second_endpoint = (
        ManagementEndpoint(faults=faults),
        ManagementEndpoint(faults=faults),
    )
    async with running(first_endpoint) as (_, first), running(second_endpoint) as (_, second):
        run = await outcomes(first_endpoint, first)
        assert await outcomes(second_endpoint, second) == run
        first_endpoint.reset()
        assert await outcomes(first_endpoint, first) == run
    assert {200, 429, 500} == set(run)


async def test_latency_delays_every_answer() -> None:
    endpoint = ManagementEndpoint(faults=Faults(latency_s=0.05))
    async with running(endpoint) as (_, client):
        await client.post_to_connection(ConnectionId="warm", Data=b"x")
        started = time.monotonic()
        await client.post_to_connection(ConnectionId="a", Data=b"x")
        assert time.monotonic() - started >= 0.05


def test_is_gone_is_deterministic_and_roughly_at_rate() -> None:
    ids = [f"conn-{n}=" for n in range(10_000)]
    faults = Faults(gone_rate=0.05, seed=1)
    gone = {cid for cid in ids if faults.is_gone(cid)}
    assert gone == {cid for cid in ids if Faults(gone_rate=0.05, seed=1).is_gone(cid)}
    assert 400 <= len(gone) <= 600
    assert gone != {cid for cid in ids if Faults(gone_rate=0.05, seed=2).is_gone(cid)}
    assert not any(Faults(gone_rate=0.0).is_gone(cid) for cid in ids[:100])
    assert all(Faults(gone_rate=1.0).is_gone(cid) for cid in ids[:100])
    assert Faults(gone_ids=frozenset({"x"})).is_gone("x")


async def test_server_agrees_with_is_gone() -> None:
    faults = Faults(gone_rate=0.3, seed=3)
    ids = [f"id{n}=" for n in range(100)]
    endpoint = ManagementEndpoint(faults=faults)
    refused = set()
    async with running(endpoint) as (_, client):
        for cid in ids:
            try:
                await client.post_to_connection(ConnectionId=cid, Data=b"x")
            except client.exceptions.GoneException:
                refused.add(cid)
    assert refused == {cid for cid in ids if faults.is_gone(cid)}
    assert refused
    assert set(endpoint.counts()) == set(ids) - refused


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gone_rate": 1.5},
        {"throttle_rate": -0.1},
        {"throttle_rate": 0.6, "error_rate": 0.5},
        {"latency_s": -1.0},
    ],
)
def test_faults_reject_impossible_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        Faults(**kwargs)  # type: ignore[arg-type]


# -- authorisation -------------------------------------------------------------------------------


async def test_unsigned_requests_are_forbidden() -> None:
    endpoint = ManagementEndpoint()
    async with serve(endpoint) as url, aiohttp.ClientSession() as http:
        async with http.post(f"{url}/prod/@connections/a%3D", data=b"x") as response:
            assert response.status == 403
            # API Gateway's answer to a request without credentials (not ForbiddenException)
            assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
            assert (await response.json())["message"] == "Missing Authentication Token"
        async with http.get(f"{url}/@connections/a%3D") as response:
            assert response.status == 403
    assert endpoint.counts() == {}
    assert endpoint.stats()["forbidden"] == 1


async def test_signature_can_be_optional() -> None:
    endpoint = ManagementEndpoint(verify_signatures=False)
    async with (
        serve(endpoint) as url,
        aiohttp.ClientSession() as http,
        http.post(f"{url}/prod/@connections/a%3D", data=b"x") as response,
    ):
        assert response.status == 200
    assert endpoint.received("a=") == [b"x"]


async def test_forbid_all_simulates_wrong_credentials() -> None:
    endpoint = ManagementEndpoint(forbid_all=True)
    async with running(endpoint) as (_, client):
        with pytest.raises(client.exceptions.ForbiddenException):
            await client.post_to_connection(ConnectionId="a", Data=b"x")
        endpoint.forbid_all = False
        await client.post_to_connection(ConnectionId="a", Data=b"x")


async def test_unknown_paths_answer_like_api_gateway() -> None:
    async with serve(ManagementEndpoint()) as url, aiohttp.ClientSession() as http:
        async with http.put(f"{url}/prod/@connections/a") as response:
            assert response.status == 403
            assert response.headers["x-amzn-ErrorType"] == "ForbiddenException"
        async with http.get(f"{url}/nothing/here/at/all") as response:
            assert response.status == 403


# -- records and control routes ------------------------------------------------------------------


async def test_counts_only_mode() -> None:
    endpoint = ManagementEndpoint(keep_payloads=False)
    async with running(endpoint) as (_, client):
        await client.post_to_connection(ConnectionId="a", Data=b"x")
    assert endpoint.counts() == {"a": 1}
    with pytest.raises(ConfigurationError):
        endpoint.received("a")


async def test_control_routes() -> None:
    endpoint = ManagementEndpoint(faults=Faults(gone_ids=frozenset({"g"})))
    async with running(endpoint) as (url, client), aiohttp.ClientSession() as http:
        for cid in ("a", "a", "b", "g"):
            with suppress(client.exceptions.GoneException):
                await client.post_to_connection(ConnectionId=cid, Data=b"x")
        async with http.get(
            f"{url}/_wsfanout/stats", headers=_signed("GET", url, "stats")
        ) as response:
            stats = await response.json()
        first, last = stats.pop("first_post_at"), stats.pop("last_answer_at")
        assert endpoint.post_span() == (first, last)
        assert first <= last
        assert stats == {
            **dict.fromkeys(STAT_KEYS, 0),
            "posts": 4,
            "delivered": 3,
            "gone": 1,
            "unique": 2,
            "duplicates": 1,
        }
        async with http.get(
            f"{url}/_wsfanout/counts", headers=_signed("GET", url, "counts")
        ) as response:
            assert await response.json() == {"a": 2, "b": 1}
        async with http.post(
            f"{url}/_wsfanout/reset", headers=_signed("POST", url, "reset")
        ) as response:
            assert response.status == 204
        async with http.get(
            f"{url}/_wsfanout/stats", headers=_signed("GET", url, "stats")
        ) as response:
            after = await response.json()
        assert (after.pop("first_post_at"), after.pop("last_answer_at")) == (None, None)
        assert set(after.values()) == {0}
    assert endpoint.post_span() is None
    assert endpoint.counts() == {}
    assert endpoint.received("a") == []


# -- command line --------------------------------------------------------------------------------


async def test_module_entry_point_prints_ready_and_serves() -> None:
    command = [
        sys.executable,
        "-m",
        "wsfanout.local.management",
        "--port", "0",
        "--stage", "prod",
        "--latency", "0.001",
        "--gone-rate", "0",
        "--seed", "1",
        "--no-payloads",
    ]  # fmt: skip
    process = await anyio.open_process(command, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 200)
        word, url = line.decode().split(" ")
        assert word == "READY"
        assert url.startswith("http://127.0.0.1:")
        async with _client(f"{url}/prod") as client, aiohttp.ClientSession() as http:
            with anyio.fail_after(30):
                await client.post_to_connection(ConnectionId="a=", Data=b"x")
                counts = f"{url}/_wsfanout/counts"
                async with http.get(counts, headers=signed_headers("GET", counts)) as response:
                    assert await response.json() == {"a=": 1}
        process.terminate()
        with anyio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.move_on_after(10, shield=True):
            await process.aclose()


@pytest.mark.parametrize(
    "argv",
    [
        ["--gone-rate", "2"],
        ["--latency", "-1"],
        ["--port", "http"],
        ["--throttle-rate", "0.7", "--error-rate", "0.7"],
        ["--stage", "a/b"],
        ["--bogus"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "error:" in err


# -- conformance with API Gateway: malformed ids, signatures, the account throttle ---------------


async def test_malformed_ids_get_400_and_unknown_well_formed_ids_410() -> None:
    endpoint = ManagementEndpoint(live=["L0SM9cOFvHcCIhw="], any_id=False)
    async with running(endpoint) as (_, client):
        for call in (
            client.post_to_connection(ConnectionId="not an id", Data=b"x"),
            client.get_connection(ConnectionId="short="),
            client.delete_connection(ConnectionId="L0SM9cOFvHcCIhw"),  # no padding
        ):
            assert await _error_of(call) == ("BadRequestException", 400)
        with pytest.raises(botocore.exceptions.ClientError) as info:
            await client.post_to_connection(ConnectionId="a+b/c=", Data=b"x")
        assert info.value.response["Error"]["Message"] == "Invalid connectionId: a+b/c="
        unknown = client.post_to_connection(ConnectionId="AAAAAAAAAAAAAA-_=", Data=b"x")
        assert await _error_of(unknown) == ("BadRequestException", 400)  # 17 characters
        unknown = client.post_to_connection(ConnectionId="AAAAAAAAAAAAA-_=", Data=b"x")
        assert await _error_of(unknown) == ("GoneException", 410)
        await client.post_to_connection(ConnectionId="L0SM9cOFvHcCIhw=", Data=b"x")
    assert endpoint.stats()["bad_request"] == 3
    assert endpoint.stats()["gone"] == 1
    assert endpoint.counts() == {"L0SM9cOFvHcCIhw=": 1}


def test_only_the_in_memory_store_takes_any_id_by_default() -> None:
    assert ManagementEndpoint().any_id
    assert not ManagementEndpoint(store=ManagementEndpoint().store).any_id


async def test_a_wrong_key_secret_or_clock_is_refused_as_aws_refuses_it() -> None:
    endpoint = ManagementEndpoint(live=["a="])
    async with serve(endpoint) as url, aiohttp.ClientSession() as http:
        signer = PostSigner(f"{url}/prod", REGION)

        async def post(credentials: Credentials, now: float | None = None) -> tuple[int, str]:
            target, headers = signer.sign("a=", b"x", credentials, now)
            # aiohttp sends the signed %3D as "=": API Gateway normalises the path, and so do we
            async with http.post(target, data=b"x", headers=headers) as response:
                return response.status, response.headers.get("x-amzn-ErrorType", "")

        right = Credentials(KEY_ID, SECRET, None)
        assert await post(right) == (200, "")
        assert await post(right, time.time() - 240) == (200, "")  # within the 5-minute skew
        assert await post(Credentials("AKIDEXAMPLE", SECRET, None)) == (
            403,
            "UnrecognizedClientException",
        )
        assert await post(Credentials(KEY_ID, "wrong", None)) == (403, "InvalidSignatureException")
        assert await post(Credentials(KEY_ID, SECRET, "a-session-token")) == (
            403,
            "UnrecognizedClientException",
        )
        assert await post(right, time.time() - 360) == (403, "InvalidSignatureException")
        assert await post(right, time.time() + 360) == (403, "InvalidSignatureException")
        target, headers = signer.sign("a=", b"x", right)
        async with http.post(
            URL(target, encoded=True), data=b"tampered", headers=headers
        ) as response:
            assert response.status == 403
        async with http.post(
            target, data=b"x", headers={"Authorization": "AWS4-HMAC-SHA256 anything"}
        ) as response:
            assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
            assert "message" in await response.json()
    assert endpoint.counts() == {"a=": 2}
    assert endpoint.stats()["forbidden"] == 7


async def test_expired_signature_names_the_times_as_aws_does() -> None:
    async with serve(ManagementEndpoint()) as url, aiohttp.ClientSession() as http:
        signer = PostSigner(f"{url}/prod", REGION)
        target, headers = signer.sign("a=", b"x", Credentials(KEY_ID, SECRET, None), 1.7e9)
        async with http.post(target, data=b"x", headers=headers) as response:
            message = (await response.json())["message"]
    assert message.startswith("Signature expired: 20231114T221320Z is now earlier than ")


async def test_control_routes_need_the_credentials_too() -> None:
    endpoint = ManagementEndpoint()
    async with serve(endpoint) as url, aiohttp.ClientSession() as http:
        for method, route in (("GET", "stats"), ("GET", "counts"), ("POST", "reset")):
            async with http.request(method, f"{url}/_wsfanout/{route}") as response:
                assert response.status == 403
            wrong = signed_headers(method, f"{url}/_wsfanout/{route}", secret="wrong")
            async with http.request(method, f"{url}/_wsfanout/{route}", headers=wrong) as response:
                assert response.status == 403
            async with http.request(
                method, f"{url}/_wsfanout/{route}", headers=_signed(method, url, route)
            ) as response:
                assert response.status in (200, 204)


async def test_account_throttle_answers_429_across_connections_and_refills() -> None:
    now = [0.0]
    endpoint = ManagementEndpoint(throttle=AccountThrottle(2.0, 3, clock=lambda: now[0]))
    async with running(endpoint) as (url, client), aiohttp.ClientSession() as http:
        for cid in ("a", "b", "c"):  # the burst, spent by three connections
            await client.post_to_connection(ConnectionId=cid, Data=b"x")
        assert await _error_of(client.post_to_connection(ConnectionId="d", Data=b"x")) == (
            "LimitExceededException",
            429,
        )
        assert await _error_of(client.get_connection(ConnectionId="a")) == (
            "LimitExceededException",
            429,
        )
        now[0] += 0.5  # one token at 2 per second
        await client.get_connection(ConnectionId="a")
        assert await _error_of(client.delete_connection(ConnectionId="a")) == (
            "LimitExceededException",
            429,
        )
        async with http.get(f"{url}/_wsfanout/config", headers=_signed("GET", url, "config")) as r:
            assert await r.json() == {"account_rate": 2.0, "account_burst": 3}
    assert endpoint.stats()["account_throttled"] == 1
    assert endpoint.stats()["throttled"] == 0
    assert endpoint.counts() == {"a": 1, "b": 1, "c": 1}


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("nan"), 1), (1.0, 0)])
def test_account_throttle_refuses_impossible_values(rate: float, burst: int) -> None:
    with pytest.raises(InvalidInputError):
        AccountThrottle(rate, burst)


@pytest.mark.parametrize(
    "argv",
    [["--account-rate", "0"], ["--account-rate", "x"], ["--account-burst", "3"]],
)
def test_bad_throttle_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


async def test_the_standalone_endpoint_takes_the_throttle_flags() -> None:
    with endpoint_process(["--account-rate", "0.01", "--account-burst", "2"]) as url:
        async with _client(f"{url}/prod") as client, aiohttp.ClientSession() as http:
            for cid in ("a=", "b="):
                await client.post_to_connection(ConnectionId=cid, Data=b"x")
            call = client.post_to_connection(ConnectionId="c=", Data=b"x")
            assert await _error_of(call) == ("LimitExceededException", 429)
            stats_url = f"{url}/_wsfanout/stats"
            async with http.get(stats_url, headers=signed_headers("GET", stats_url)) as response:
                stats = await response.json()
    assert (stats["posts"], stats["delivered"], stats["account_throttled"]) == (3, 2, 1)


# -- HTTPS, as API Gateway serves ---------------------------------------------------------------


@pytest.mark.parametrize("pair", [("cert",), ("key",), ("cert", "key")])
def test_bad_tls_arguments_exit_2(
    pair: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One of the two alone, or files that are no certificate and key."""
    argv = []
    for part in pair:
        (tmp_path / part).write_text("not PEM\n")
        argv += [f"--tls-{part}", str(tmp_path / part)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("go together" if len(pair) == 1 else "cannot load the TLS certificate") in err


async def test_the_standalone_endpoint_serves_https_only_with_the_given_certificate() -> None:
    with throwaway_certificate() as certificate:
        files = ["--tls-cert", str(certificate.cert_file), "--tls-key", str(certificate.key_file)]
        with endpoint_process(files) as url:
            assert url.startswith("https://127.0.0.1:")
            session = aioboto3.Session(
                aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
            )
            connector = aiohttp.TCPConnector(ssl=certificate.client_context())
            async with (
                session.client(
                    "apigatewaymanagementapi",
                    endpoint_url=f"{url}/prod",
                    verify=str(certificate.cert_file),
                ) as client,
                aiohttp.ClientSession(connector=connector) as http,
            ):
                with anyio.fail_after(30):
                    await client.post_to_connection(ConnectionId="a=", Data=b"x")
                    counts_url = f"{url}/_wsfanout/counts"
                    headers = signed_headers("GET", counts_url)
                    async with http.get(counts_url, headers=headers) as response:
                        assert await response.json() == {"a=": 1}
                    plain = url.replace("https://", "http://") + "/_wsfanout/counts"
                    async with aiohttp.ClientSession() as clear:
                        with pytest.raises(aiohttp.ClientError):
                            await clear.get(plain, headers=signed_headers("GET", plain))
