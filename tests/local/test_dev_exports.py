"""``wsfanout dev`` as a user runs it: a subprocess on fixed ports, its printed exports the only
link to it, boto3 (and the AWS CLI, when installed) reaching ``@connections`` through
``AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`` with no ``--endpoint-url``, and SIGHUP stopping it
all, moto included. Bad flag values are refused before anything starts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import sys
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect

from tests.helpers import WSFANOUT
from tests.local.dev_process import running_dev
from wsfanout.cli.main import main
from wsfanout.local.processes import free_port

pytestmark = pytest.mark.timeout(240)

# Run with nothing but the exports (and what any process needs to start): no profile, no config.
BOTO3 = """
import json, sys, boto3
client = boto3.client("apigatewaymanagementapi")
client.post_to_connection(ConnectionId=sys.argv[1], Data=b"from boto3")
described = client.get_connection(ConnectionId=sys.argv[1])
print(json.dumps({"agent": described["Identity"]["UserAgent"], "url": client.meta.endpoint_url}))
"""


def exports_of(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            found[name] = shlex.split(value)[0]
    return found


def only(exports: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **exports,
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no ~/.aws of the developer's
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        # which wsfanout the console script imports (a worktree's, in development)
        **{name: os.environ[name] for name in ("PYTHONPATH",) if name in os.environ},
    }


async def run(command: list[str], env: dict[str, str]) -> str:
    done = await anyio.run_process(command, env=env, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, f"{out[-4000:]}\n{done.stderr.decode()[-4000:]}"
    return out


async def test_boto3_and_the_cli_use_the_printed_exports_alone(tmp_path: Path) -> None:
    port, moto_port = free_port(), free_port()
    command = [WSFANOUT, "dev", "--port", str(port), "--moto-port", str(moto_port)]
    command += ["--idle-timeout", "120", "--frame-bytes", "65536"]
    command += ["--account-rate", "50", "--account-burst", "50"]
    # run where there is no template: the built-in stack (a template has its own test)
    async with running_dev(command, tmp_path / "stderr.txt", cwd=tmp_path) as dev:
        out = dev.out
        ws_url = await out.ws_url()
        await out.until("to stop")
        exports = exports_of(out.lines)
        management = exports["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
        assert management == f"http://127.0.0.1:{port}/local"
        assert exports["AWS_ENDPOINT_URL_SQS"] == f"http://127.0.0.1:{moto_port}"
        assert exports["BROADCAST_DLQ_URL"].endswith("/wsfanout-broadcast-dlq")
        assert any("dead letters" in line for line in out.lines)
        assert any("idle 120 s" in line and "65536 bytes" in line for line in out.lines)

        headers = {"User-Agent": "dev-exports-test"}
        async with connect(ws_url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"action": "whoami"}))
            with anyio.fail_after(20):
                connection_id = json.loads(await ws.recv())["connectionId"]
            env = only(exports, tmp_path)
            answer = json.loads(await run([sys.executable, "-c", BOTO3, connection_id], env))
            assert answer == {"agent": "dev-exports-test", "url": management}
            with anyio.fail_after(20):
                assert await ws.recv() == "from boto3"
            aws = shutil.which("aws")
            if aws is not None:  # the AWS CLI honours the variable as boto3 does
                cli = [aws, "apigatewaymanagementapi", "get-connection"]
                # an id may start with "-": the = form keeps the CLI from reading it as an option
                described = await run([*cli, f"--connection-id={connection_id}"], env)
                assert json.loads(described)["Identity"]["UserAgent"] == headers["User-Agent"]

        await conformance_through_the_exports(ws_url, management, env)

        await dev.stop(signal.SIGHUP, "SIGHUP, stopping", seconds=90)
    for stopped in (port, moto_port):  # moto stopped too: both ports refuse
        with pytest.raises(OSError):  # noqa: PT011  (refused, whichever errno)
            await anyio.connect_tcp("127.0.0.1", stopped)


async def conformance_through_the_exports(
    ws_url: str, management: str, env: dict[str, str]
) -> None:
    """``wsfanout conformance`` as a user runs it: exit 0 with every check passed or skipped
    for want of a knob (the idle timeout is 120 s here) or of the conformance API's shapes
    (the chat API has a ``$default``, no two-way route, no authorizer), exit 1 against a wrong
    stage."""
    command = [WSFANOUT, "conformance", "--ws", ws_url, "--management", management, "--json"]
    rows = json.loads(await run(command, env))
    outcomes = {row["behaviour"]: row["result"] for row in rows}
    assert outcomes.pop("idle connection: closed with 1001") == "skip"
    for needs_the_conformance_api in (
        "no route and no $default: Forbidden",
        "two-way route answers, one-way route does not",
        "missing identity source: 401, authorizer not invoked",
    ):
        assert outcomes.pop(needs_the_conformance_api) == "skip"
    assert set(outcomes.values()) == {"pass"}, rows
    assert outcomes["account throttle: 429 LimitExceededException"] == "pass"
    wrong = management.removesuffix("/local") + "/other"
    only_410 = ["--check", "unknown well-formed id: 410 GoneException"]
    done = await anyio.run_process(
        [WSFANOUT, "conformance", "--ws", ws_url, "--management", wrong, *only_410],
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "fail" in done.stdout.decode()


@pytest.mark.parametrize(
    "argv",
    [
        ["--ws", "http://127.0.0.1:1/local", "--management", "http://127.0.0.1:1/local"],
        ["--ws", "ws://127.0.0.1:1/local", "--management", "ftp://127.0.0.1:1/local"],
        ["--ws", "ws://127.0.0.1:1/local"],
    ],
)
def test_conformance_refuses_bad_arguments(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code: int | str | None = main(["conformance", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--idle-timeout", "0"],
        ["--max-lifetime", "-5"],
        ["--frame-bytes", "0"],
        ["--moto-port", "70000"],
        ["--account-rate", "nan"],
        ["--account-burst", "10"],
        ["--port", "4510", "--moto-port", "4510"],
    ],
)
def test_bad_values_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code: int | str | None = main(["dev", *argv])
    except SystemExit as exc:  # argparse's refusals exit; the others return
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "error:" in err


def test_a_taken_moto_port_exits_2_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["dev", "--moto-port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot start moto" in err
    assert err.count("\n") == 1
