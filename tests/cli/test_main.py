"""``wsfanout broadcast`` end to end: the real console script against moto and the local endpoint.

Every test runs the installed ``wsfanout`` script as a subprocess. Tests that need the local
management endpoint are async and start the subprocess with :func:`anyio.run_process`, so the
event loop keeps serving the endpoint (a blocking ``subprocess.run`` would deadlock it). Tests that
fail before any network call run it with ``subprocess.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import ClientSession, web

from tests.helpers import WSFANOUT, registered_ids
from wsfanout.bench.seeding import classic_item, connection_ids, seed_items
from wsfanout.cli.main import build_parser
from wsfanout.core.models import Connection
from wsfanout.local.management import Faults, ManagementEndpoint, serve
from wsfanout.local.serving import serve_app

TIMEOUT_S = 60
NOW = datetime(2026, 11, 26, tzinfo=UTC)
REPORT_KEYS = {"delivered", "gone", "failed", "retries", "throttled", "elapsed_s"}
# Nothing listens on the discard port: a test that reaches the network with it would fail loudly.
NOWHERE = "http://127.0.0.1:9/test"
NOWHERE_ARGS = ["--table", "t", "--endpoint", NOWHERE]


def cli_env(**changes: str | None) -> dict[str, str]:
    """The test's environment (conftest's dummy AWS settings) without any wsfanout knob set by the
    developer's shell, plus ``changes`` (``None`` removes a variable)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FANOUT_", "REGISTRY_"))
        and name not in {"CONNECTIONS_TABLE", "APIGW_MANAGEMENT_ENDPOINT", "BROADCAST_QUEUE_URL"}
    }
    env["COLUMNS"] = "160"  # the human report is a rich table: keep its rows on one line each
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _text(result: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


async def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script without blocking the loop that serves the local endpoint."""
    with anyio.fail_after(TIMEOUT_S):
        result = await anyio.run_process(
            [WSFANOUT, *args], check=False, env=cli_env() if env is None else env
        )
    return _text(result)


def run_cli_sync(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script (in ``cwd``, if given) for a case that fails before any network
    call."""
    result = subprocess.run(  # noqa: S603  (the installed script, fixed arguments)
        [WSFANOUT, *args],
        capture_output=True,
        check=False,
        timeout=TIMEOUT_S,
        env=cli_env() if env is None else env,
        cwd=cwd,
    )
    return _text(result)


def json_report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object ``--json`` prints, checked to be alone on stdout."""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got: {result.stdout!r}"
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert report.keys() >= REPORT_KEYS
    return report


def assert_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr that mentions every needle."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected a one-line reason, got: {result.stderr!r}"
    assert lines[0].startswith("wsfanout"), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


async def seed(dynamodb, table_name: str, count: int) -> list[str]:
    ids = connection_ids(count)
    await seed_items(dynamodb, table_name, [classic_item(cid) for cid in ids])
    return ids


# -- delivering ------------------------------------------------------------------------------------


async def test_all_target_json_report(dynamodb, table_name, endpoint) -> None:
    fake, url = endpoint
    ids = await seed(dynamodb, table_name, 40)
    result = await run_cli(
        "broadcast", "--data", "hello", "--table", table_name, "--endpoint", url, "--json"
    )
    assert result.returncode == 0, result
    assert result.stderr == ""
    report = json_report(result)
    assert report["delivered"] == 40
    assert (report["gone"], report["failed"], report["retries"], report["throttled"]) == (
        0,
        0,
        0,
        0,
    )
    assert report["excluded"] == 0
    assert isinstance(report["elapsed_s"], float)
    assert report["elapsed_s"] >= 0
    assert fake.counts() == dict.fromkeys(ids, 1)
    assert fake.received(ids[3]) == [b"hello"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--room", "lobby"], {"a=", "d="}, id="room"),
        pytest.param(["--user", "u1", "--user", "u3"], {"a=", "b=", "d="}, id="users"),
        pytest.param(["--connection", "c=", "--connection", "x="], {"c=", "x="}, id="connections"),
    ],
)
async def test_targets_reach_exactly_their_connections(
    registry, table_name, endpoint, args, expected
) -> None:
    fake, url = endpoint
    for cid, user in (("a=", "u1"), ("b=", "u1"), ("c=", "u2"), ("d=", "u3"), ("e=", None)):
        await registry.put(Connection(connection_id=cid, connected_at=NOW, user_id=user))
    await registry.join_room("a=", "lobby")
    await registry.join_room("d=", "lobby")
    await registry.join_room("b=", "other")

    result = await run_cli(
        "broadcast", "--data", "hi", *args, "--table", table_name, "--endpoint", url, "--json"
    )
    assert result.returncode == 0, result
    report = json_report(result)
    assert report["delivered"] == len(expected)
    assert report["failed"] == report["gone"] == 0
    assert fake.counts() == dict.fromkeys(expected, 1)


async def test_exclude_skips_the_listed_ids(dynamodb, table_name, endpoint) -> None:
    fake, url = endpoint
    ids = await seed(dynamodb, table_name, 20)
    excluded = ids[2:5]
    exclude_args = [arg for cid in excluded for arg in ("--exclude", cid)]
    result = await run_cli(
        "broadcast",
        "--data-base64",
        "AAEC/w==",
        *exclude_args,
        "--table",
        table_name,
        "--endpoint",
        url,
        "--json",
    )
    assert result.returncode == 0, result
    report = json_report(result)
    assert report["excluded"] == 3
    assert report["delivered"] == 17
    assert fake.counts() == dict.fromkeys(set(ids) - set(excluded), 1)
    assert fake.received(ids[0]) == [b"\x00\x01\x02\xff"]


async def test_gone_connections_are_reported_and_removed(
    registry, dynamodb, table_name, endpoint
) -> None:
    fake, url = endpoint
    fake.faults = Faults(gone_rate=0.2, seed=3)
    ids = await seed(dynamodb, table_name, 120)
    gone = {cid for cid in ids if fake.faults.is_gone(cid)}
    assert 5 < len(gone) < 60

    result = await run_cli(
        "broadcast", "--data", "x", "--table", table_name, "--endpoint", url, "--json"
    )
    assert result.returncode == 0, result
    report = json_report(result)
    assert report["gone"] == len(gone)
    assert report["cleaned_up"] == len(gone)
    assert report["delivered"] == 120 - len(gone)
    assert report["failed"] == 0
    assert fake.counts() == dict.fromkeys(set(ids) - gone, 1)
    assert await registered_ids(registry) == set(ids) - gone


async def test_failed_sends_exit_1(dynamodb, table_name, endpoint) -> None:
    fake, url = endpoint
    fake.faults = Faults(error_rate=1.0)
    await seed(dynamodb, table_name, 8)
    # The CLI runs in a subprocess, out of set_testing's reach: its backoff is shortened through
    # the environment it reads instead.
    env = cli_env(FANOUT_MAX_ATTEMPTS="2", FANOUT_BACKOFF_BASE_S="0.001")
    result = await run_cli(
        "broadcast", "--data", "x", "--table", table_name, "--endpoint", url, "--json", env=env
    )
    assert result.returncode == 1, result
    report = json_report(result)
    assert report["failed"] == 8
    assert report["delivered"] == 0
    assert report["retries"] == 8, "two attempts each: one retry per connection"
    assert report["failed_by_reason"] == {"server_error": 8}
    assert fake.stats()["errors"] == 16
    assert fake.counts() == {}


@asynccontextmanager
async def refusing_proxy(
    moto_url: str, refuse: Callable[[str], bool]
) -> AsyncIterator[tuple[list[str], str]]:
    """moto behind a proxy that answers AccessDenied to every call whose target
    (``DynamoDB_20120810.Scan`` ...) ``refuse`` says so of, as a role without that permission
    would; every other call passes through. Yields the targets seen and the proxy's URL."""
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        seen.append(target)
        if refuse(target):
            refusal = {"__type": "AccessDeniedException", "message": "not allowed"}
            return web.json_response(refusal, status=400)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            ClientSession() as client,
            client.post(moto_url, data=await request.read(), headers=headers) as answer,
        ):
            return web.Response(
                body=await answer.read(), status=answer.status, content_type=answer.content_type
            )

    app = web.Application()
    app.router.add_post("/", forward)
    async with serve_app(app) as url:
        yield seen, url


def refuse_batch_writes(moto_url: str) -> AbstractAsyncContextManager[tuple[list[str], str]]:
    """Every BatchWriteItem refused (a role without ``dynamodb:BatchWriteItem``)."""
    return refusing_proxy(moto_url, lambda target: target.endswith(".BatchWriteItem"))


async def test_gone_connections_left_in_the_registry_exit_1(
    moto_url, registry, dynamodb, table_name, endpoint
) -> None:
    fake, url = endpoint
    fake.faults = Faults(gone_rate=0.2, seed=3)
    ids = await seed(dynamodb, table_name, 60)
    gone = {cid for cid in ids if fake.faults.is_gone(cid)}
    assert gone
    async with refuse_batch_writes(moto_url) as (seen, proxy_url):
        env = cli_env(AWS_ENDPOINT_URL_DYNAMODB=proxy_url)
        result = await run_cli(
            "broadcast", "--data", "x", "--table", table_name, "--endpoint", url, "--json", env=env
        )
    assert result.returncode == 1, result
    report = json_report(result)
    assert report["delivered"] == 60 - len(gone)
    assert (report["gone"], report["failed"]) == (len(gone), 0)
    assert (report["cleaned_up"], report["cleanup_failed"]) == (0, len(gone))
    assert "DynamoDB_20120810.BatchWriteItem" in seen, "the clean-up went through the proxy"
    assert fake.counts() == dict.fromkeys(set(ids) - gone, 1)
    assert await registered_ids(registry) == set(ids), "the gone connections are still there"


# -- interrupted, resumed, segmented ------------------------------------------------------------

MANY = 3000
# Endpoint latency and few senders make the run last seconds, so a signal lands mid-run.
SLOW = Faults(latency_s=0.005)
SLOW_SENDERS = ("--concurrency", "8")


async def run_cli_interrupted(
    fake: ManagementEndpoint, signum: signal.Signals, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the console script and send it ``signum`` once, as soon as deliveries have started
    (the endpoint's counters are polled, with a bound); then wait for it to end by itself."""
    with anyio.fail_after(TIMEOUT_S):
        async with await anyio.open_process([WSFANOUT, *args], env=cli_env()) as process:
            while fake.stats()["delivered"] < 50:
                assert process.returncode is None, "it ended before it could be interrupted"
                await anyio.sleep(0.01)  # polling the endpoint's counters, not synchronising
            process.send_signal(signum)
            assert process.stdout is not None
            assert process.stderr is not None
            stdout = b"".join([chunk async for chunk in process.stdout])
            stderr = b"".join([chunk async for chunk in process.stderr])
            returncode = await process.wait()
    return _text(subprocess.CompletedProcess(args, returncode, stdout, stderr))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_an_interrupted_broadcast_reports_and_resumes_exactly_once(
    dynamodb, table_name, endpoint, signum
) -> None:
    fake, url = endpoint
    fake.faults = SLOW
    ids = await seed(dynamodb, table_name, MANY)
    where = ("--table", table_name, "--endpoint", url, *SLOW_SENDERS)
    first = await run_cli_interrupted(fake, signum, "broadcast", "--data", "m", *where, "--json")
    assert first.returncode == 1, first
    assert first.stderr.splitlines() == ["wsfanout: interrupted"]
    partial = json_report(first)
    assert partial["complete"] is False
    assert 50 <= partial["delivered"] < MANY, "stopped mid-run"
    assert partial["delivered"] == sum(fake.counts().values()), "the report counts what was sent"
    assert max(fake.counts().values()) == 1
    token = partial["resume_token"]
    assert isinstance(token, str)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token), "URL-safe base64"

    rest = await run_cli("broadcast", "--data", "m", "--resume", token, *where, "--json")
    assert rest.returncode == 0, rest
    second = json_report(rest)
    assert second["complete"] is True
    assert second["resume_token"] is None
    assert partial["delivered"] + second["delivered"] == MANY
    assert fake.counts() == dict.fromkeys(ids, 1), "none twice, none missed"


async def test_an_interrupted_human_report_prints_the_table_and_the_resume_command(
    dynamodb, table_name, endpoint
) -> None:
    fake, url = endpoint
    fake.faults = SLOW
    ids = await seed(dynamodb, table_name, MANY)
    where = ("--table", table_name, "--endpoint", url, *SLOW_SENDERS)
    first = await run_cli_interrupted(fake, signal.SIGINT, "broadcast", "--data", "m", *where)
    assert first.returncode == 1, first
    delivered = sum(fake.counts().values())
    assert re.search(rf"\bdelivered\W+{delivered}\b", first.stdout), first.stdout
    found = re.search(r"wsfanout broadcast --resume ([A-Za-z0-9_-]+)", first.stdout)
    assert found, first.stdout
    rest = await run_cli("broadcast", "--data", "m", "--resume", found[1], *where, "--json")
    assert rest.returncode == 0, rest
    assert fake.counts() == dict.fromkeys(ids, 1)


async def test_a_registry_failure_mid_run_reports_a_resume_token(
    moto_url, dynamodb, table_name, endpoint
) -> None:
    """DynamoDB goes away after the first Scan page: what was read is sent, the report carries
    the watermark, and a resume once DynamoDB is back reaches the rest exactly once."""
    fake, url = endpoint
    ids = await seed(dynamodb, table_name, 60)
    async with refuse_scans_after(moto_url, pages_ok=1) as (seen, proxy_url):
        env = cli_env(AWS_ENDPOINT_URL_DYNAMODB=proxy_url, REGISTRY_PAGE_SIZE="20")
        args = ("--table", table_name, "--endpoint", url, "--json")
        first = await run_cli("broadcast", "--data", "m", *args, env=env)
    assert "DynamoDB_20120810.Scan" in seen, "the registry was read through the proxy"
    assert first.returncode == 1, first
    assert first.stderr.startswith("wsfanout: interrupted: "), first.stderr
    assert len(first.stderr.splitlines()) == 1, first.stderr
    partial = json_report(first)
    assert 0 < partial["delivered"] < 60
    assert partial["delivered"] == sum(fake.counts().values())
    rest = await run_cli("broadcast", "--data", "m", "--resume", partial["resume_token"], *args)
    assert rest.returncode == 0, rest
    assert partial["delivered"] + json_report(rest)["delivered"] == 60
    assert fake.counts() == dict.fromkeys(ids, 1)


def refuse_scans_after(
    moto_url: str, *, pages_ok: int
) -> AbstractAsyncContextManager[tuple[list[str], str]]:
    """Every Scan after the first ``pages_ok`` refused: a registry unreadable mid-run."""
    scans = 0

    def refuse(target: str) -> bool:
        nonlocal scans
        scans += target.endswith(".Scan")
        return target.endswith(".Scan") and scans > pages_ok

    return refusing_proxy(moto_url, refuse)


async def test_a_resume_with_another_message_exits_2(dynamodb, table_name, endpoint) -> None:
    fake, url = endpoint
    fake.faults = SLOW
    await seed(dynamodb, table_name, MANY)
    where = ("--table", table_name, "--endpoint", url, *SLOW_SENDERS)
    first = await run_cli_interrupted(fake, signal.SIGTERM, "broadcast", "--data", "m", *where)
    found = re.search(r"--resume ([A-Za-z0-9_-]+)", first.stdout)
    assert found, first
    sent = fake.stats()["posts"]
    result = await run_cli("broadcast", "--data", "other", "--resume", found[1], *where)
    assert_usage_error(result, "--resume", "message")
    assert fake.stats()["posts"] == sent, "nothing sent"


async def test_two_segments_reach_everyone_once(dynamodb, table_name, endpoint) -> None:
    fake, url = endpoint
    ids = await seed(dynamodb, table_name, 200)
    delivered = []
    where = ("--table", table_name, "--endpoint", url, "--json")
    for segment in ("0", "1"):
        segments = ("--segment", segment, "--total-segments", "2")
        result = await run_cli("broadcast", "--data", "m", *segments, *where)
        assert result.returncode == 0, result
        delivered.append(json_report(result)["delivered"])
    assert all(0 < n < 200 for n in delivered), "each segment is a part"
    assert sum(delivered) == 200
    assert fake.counts() == dict.fromkeys(ids, 1)


async def test_an_interrupted_segment_resumes_within_its_segment(
    dynamodb, table_name, endpoint
) -> None:
    """The token carries the segment: the resumed run finishes segment 0 alone, and segment 1
    then reaches exactly the others."""
    fake, url = endpoint
    fake.faults = SLOW
    ids = await seed(dynamodb, table_name, MANY)
    where = ("--table", table_name, "--endpoint", url, *SLOW_SENDERS, "--json")
    zero = ("broadcast", "--data", "m", "--segment", "0", "--total-segments", "2", *where)
    first = json_report(await run_cli_interrupted(fake, signal.SIGINT, *zero))
    rest = await run_cli("broadcast", "--data", "m", "--resume", first["resume_token"], *where)
    assert rest.returncode == 0, rest
    segment_zero = first["delivered"] + json_report(rest)["delivered"]
    assert 0 < segment_zero < MANY, "the resume stayed within segment 0"
    assert max(fake.counts().values()) == 1
    one = await run_cli(
        "broadcast", "--data", "m", "--segment", "1", "--total-segments", "2", *where
    )
    assert one.returncode == 0, one
    assert segment_zero + json_report(one)["delivered"] == MANY
    assert fake.counts() == dict.fromkeys(ids, 1)


# -- configuration ---------------------------------------------------------------------------------


async def test_flags_override_the_environment(dynamodb, table_name, endpoint) -> None:
    fake, url = endpoint
    ids = await seed(dynamodb, table_name, 10)
    decoy = ManagementEndpoint(faults=Faults())
    async with serve(decoy) as decoy_url:
        env = cli_env(
            CONNECTIONS_TABLE="wsfanout-no-such-table",
            APIGW_MANAGEMENT_ENDPOINT=f"{decoy_url}/test",
            FANOUT_CONCURRENCY="0",  # invalid, but --concurrency replaces it
        )
        result = await run_cli(
            "broadcast",
            "--data",
            "x",
            "--table",
            table_name,
            "--endpoint",
            url,
            "--concurrency",
            "3",
            "--json",
            env=env,
        )
    assert result.returncode == 0, result
    assert json_report(result)["delivered"] == 10
    assert fake.counts() == dict.fromkeys(ids, 1)
    assert decoy.stats()["posts"] == 0


async def test_environment_configuration_and_human_report(dynamodb, table_name, endpoint) -> None:
    fake, url = endpoint
    ids = await seed(dynamodb, table_name, 12)
    env = cli_env(CONNECTIONS_TABLE=table_name, APIGW_MANAGEMENT_ENDPOINT=url)
    result = await run_cli("broadcast", "--data", "x", env=env)
    assert result.returncode == 0, result
    assert fake.counts() == dict.fromkeys(ids, 1)
    out = result.stdout
    for figure in ("delivered", "gone", "failed", "excluded", "retries", "throttled", "elapsed"):
        assert figure in out, (figure, out)
    assert re.search(r"\bdelivered\W+12\b", out), out
    assert re.search(r"\bfailed\W+0\b", out), out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


# -- bad input and configuration: exit 2 with a one-line reason -----------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["--table", "t", "--endpoint", NOWHERE], ["--data"], id="no-data"),
        pytest.param(
            ["--data", "x", "--room", "r", "--user", "u", "--table", "t", "--endpoint", NOWHERE],
            ["--user", "--room"],
            id="room-and-user",
        ),
        pytest.param(
            ["--data", "x", "--concurrency", "0", "--table", "t", "--endpoint", NOWHERE],
            ["--concurrency"],
            id="concurrency-0",
        ),
        pytest.param(
            ["--data", "x", "--concurrency", "abc", "--table", "t", "--endpoint", NOWHERE],
            ["--concurrency", "abc"],
            id="concurrency-abc",
        ),
        pytest.param(
            ["--data-base64", "not base64!", "--table", "t", "--endpoint", NOWHERE],
            ["base64"],
            id="bad-base64",
        ),
        pytest.param(["--data", "x", "--endpoint", NOWHERE], ["CONNECTIONS_TABLE"], id="no-table"),
        pytest.param(
            ["--data", "x", "--table", "t"], ["APIGW_MANAGEMENT_ENDPOINT"], id="no-endpoint"
        ),
    ],
)
def test_bad_arguments_exit_2(args: list[str], needles: list[str]) -> None:
    assert_usage_error(run_cli_sync("broadcast", *args), *needles)


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ("--segment 2 --total-segments 2", ["--segment 2", "--total-segments 2"]),
        ("--segment -1 --total-segments 2", ["--segment -1"]),
        ("--segment 0 --total-segments 1000001", ["--total-segments 1000001"]),
        ("--segment 0", ["--segment", "--total-segments"]),
        ("--total-segments 2", ["--segment", "--total-segments"]),
        ("--room r --segment 0 --total-segments 2", ["--segment", "every connection"]),
        ("--resume bm90IGEgdG9rZW4", ["--resume", "not a resume token"]),
        ("--resume e30 --room r", ["--resume", "--room"]),
        ("--resume e30 --total-segments 2", ["--resume", "--total-segments"]),
    ],
)
def test_bad_segment_and_resume_options_exit_2(options: str, needles: list[str]) -> None:
    result = run_cli_sync("broadcast", "--data", "x", *options.split(), *NOWHERE_ARGS)
    assert_usage_error(result, *needles)


def test_bad_environment_value_exits_2() -> None:
    env = cli_env(
        CONNECTIONS_TABLE="t", APIGW_MANAGEMENT_ENDPOINT=NOWHERE, FANOUT_CONCURRENCY="abc"
    )
    assert_usage_error(run_cli_sync("broadcast", "--data", "x", env=env), "fanout_concurrency")


def test_oversize_data_exits_2() -> None:
    # Linux refuses to exec a single argument of 128 KiB or more (MAX_ARG_STRLEN), so no payload
    # above the limit can reach the console script through argv at all: call the same entry point
    # in a fresh interpreter with the argument list built in process instead.
    code = (
        "import sys; from wsfanout.cli.main import main; "
        "sys.exit(main(['broadcast', '--data', 'x' * 200_000, "
        f"'--table', 't', '--endpoint', {NOWHERE!r}]))"
    )
    result = subprocess.run(  # noqa: S603  (our own interpreter, fixed code)
        [sys.executable, "-c", code],
        capture_output=True,
        check=False,
        timeout=TIMEOUT_S,
        env=cli_env(),
    )
    assert_usage_error(_text(result), "200000", "131072")


OUTPUT_MODES = [
    pytest.param(["--json"], id="json"),
    pytest.param([], id="human"),
]


@pytest.mark.parametrize("mode", OUTPUT_MODES)
async def test_table_missing_in_dynamodb_exits_2(moto_url, endpoint, mode) -> None:
    fake, url = endpoint
    result = await run_cli(
        "broadcast", "--data", "x", "--table", "wsfanout-no-such-table", "--endpoint", url, *mode
    )
    assert_usage_error(result, "not found")
    assert fake.stats()["posts"] == 0


@pytest.mark.parametrize("mode", OUTPUT_MODES)
async def test_forbidden_endpoint_exits_2(dynamodb, table_name, endpoint, mode) -> None:
    fake, url = endpoint
    fake.forbid_all = True
    await seed(dynamodb, table_name, 30)
    result = await run_cli(
        "broadcast", "--data", "x", "--table", table_name, "--endpoint", url, *mode
    )
    assert_usage_error(result, "403", url)
    assert fake.counts() == {}


async def test_endpoint_that_is_not_a_url_exits_2(table_name) -> None:
    result = await run_cli(
        "broadcast", "--data", "x", "--table", table_name, "--endpoint", "ftp://nope"
    )
    assert_usage_error(result, "apigw_management_endpoint", "http")


async def test_data_file_sends_a_full_size_message(
    dynamodb, table_name, endpoint, tmp_path
) -> None:
    """The largest message API Gateway takes cannot pass as an argument; --data-file sends it."""
    fake, url = endpoint
    ids = await seed(dynamodb, table_name, 3)
    message = tmp_path / "message.bin"
    message.write_bytes(bytes(range(256)) * 512)  # 131,072 bytes
    result = await run_cli(
        "broadcast", "--data-file", str(message), "--table", table_name, "--endpoint", url, "--json"
    )
    assert result.returncode == 0, result
    assert all(fake.received(cid) == [message.read_bytes()] for cid in ids)


async def test_data_file_too_large_or_missing_exits_2(table_name, endpoint, tmp_path) -> None:
    _, url = endpoint
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 131_073)
    for path, words in ((big, ("131073",)), (tmp_path / "nope.bin", ("nope.bin",))):
        result = await run_cli(
            "broadcast", "--data-file", str(path), "--table", table_name, "--endpoint", url
        )
        assert_usage_error(result, *words)


# -- the command tree ------------------------------------------------------------------------------


def test_no_command_exits_2() -> None:
    result = run_cli_sync()
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_broadcast_help() -> None:
    result = run_cli_sync("broadcast", "--help")
    assert result.returncode == 0, result
    assert result.stdout.startswith("usage: wsfanout broadcast")
    for option in ("--data", "--room", "--user", "--connection", "--exclude", "--json"):
        assert option in result.stdout
    assert result.stderr == ""


def test_help_texts_are_plain_text() -> None:
    """Every command's help reads as plain text: docstring markup (``name``, :class:`x`) that
    argparse would print verbatim never reaches it."""
    parsers = [build_parser()]
    for parser in parsers:  # grows as subcommands are found: the whole tree
        text = parser.format_help()
        assert "``" not in text, text
        assert ":class:" not in text, text
        for action in parser._actions:  # argparse has no public walk of its tree
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    assert len(parsers) > 20  # the tree was walked, not just its root
    assert build_parser().description == "The wsfanout command line: a thin edge over the core."


# -- dev --app ---------------------------------------------------------------------------------

# A module beside the developer, with one thing of each kind --app must refuse.
NOT_APPS = """
number = 1


class Handler:
    pass


def three(event, context, extra):
    return {"statusCode": 200}
"""


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["--app", "notapp"], ("MODULE:ATTRIBUTE", "':' is missing"), id="no-colon"),
        pytest.param(["--app", "notapp:"], ("MODULE:ATTRIBUTE", "'notapp:'"), id="empty-attribute"),
        pytest.param(
            ["--app", "absent_mod:app"],
            ("no module named 'absent_mod'", "current directory"),
            id="no-module",
        ),
        pytest.param(
            ["--app", "not_apps:app"], ("'not_apps'", "no attribute 'app'"), id="no-attribute"
        ),
        pytest.param(["--app", "not_apps:number"], ("not a wsfanout.App", "int"), id="number"),
        pytest.param(["--app", "not_apps:Handler"], ("the class Handler",), id="class"),
        pytest.param(["--app", "not_apps:three"], ("not a wsfanout.App",), id="signature"),
        pytest.param(
            ["--app", "broken_dep:app"],
            ("importing 'broken_dep' failed", "no_such_dependency"),
            id="missing-dependency",
        ),
        pytest.param(
            ["--app", "broken_raise:app"],
            ("importing 'broken_raise' failed", "RuntimeError", "boom on two lines"),
            id="raises",
        ),
        pytest.param(["--reload"], ("--reload needs --app",), id="reload-without-app"),
        pytest.param(
            ["--template", "t.yaml", "--app", "not_apps:app"],
            ("--template and --app are exclusive",),
            id="template-and-app",
        ),
        pytest.param(["--parameter", "A=1"], ("--parameter needs a template",), id="no-template"),
        pytest.param(["--parameter", "A"], ("expected KEY=VALUE", "'A'"), id="parameter-no-value"),
        pytest.param(["--template", "absent.yaml"], ("no template at absent.yaml",), id="absent"),
        pytest.param(
            ["--reload", "--app", "absent_mod:app"],
            ("no module named 'absent_mod'",),
            id="reload-no-module",
        ),
    ],
)
def test_dev_refuses_an_app_it_cannot_serve(tmp_path, args: list[str], needles: tuple[str]) -> None:
    (tmp_path / "not_apps.py").write_text(NOT_APPS)
    (tmp_path / "broken_dep.py").write_text("import no_such_dependency\n")
    (tmp_path / "broken_raise.py").write_text('raise RuntimeError("boom on\\ntwo lines")\n')
    result = run_cli_sync("dev", *args, cwd=tmp_path)
    assert_usage_error(result, *needles)
    if "absent_mod" in " ".join(args):
        assert str(tmp_path.resolve()) in result.stderr  # which directory it looked in
