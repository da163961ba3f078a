"""``wsfanout connections list|count|get|kick``: the console script against the local stack (real
WebSocket clients, the emulator's management API, moto) and against moto with the local
management endpoint where faults are needed."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cli.test_main import (
    NOW,
    NOWHERE,
    assert_usage_error,
    cli_env,
    run_cli,
    run_cli_sync,
    seed,
)
from wsfanout.aws.clients import Clients
from wsfanout.core.models import Connection
from wsfanout.local.management import Faults
from wsfanout.local.stack import Stack, local_stack
from wsfanout.settings import Settings

pytestmark = pytest.mark.timeout(120)

SECRET = "local-test-secret-of-thirty-two-bytes"
USERS = {"alice": "u1", "bob": "u1", "carol": "u2"}  # client (its User-Agent) -> user


def stack_with_jwt() -> AbstractAsyncContextManager[Stack]:
    """The local stack with an HS256 secret, so the authorizer runs (entered in the test itself:
    the stack's task group must close in the task that opened it, which a fixture's is not)."""
    return local_stack(environ={"AUTH_JWT_SECRET": SECRET})


def stack_env(stack: Stack, **changes: str | None) -> dict[str, str]:
    return cli_env(**{**stack.env, "AUTH_JWT_SECRET": SECRET, **changes})


async def token_for(stack: Stack, user: str, *extra: str) -> str:
    result = await run_cli("token", "--sub", user, *extra, env=stack_env(stack))
    assert result.returncode == 0, result
    return result.stdout.strip()


async def connect_clients(
    stack: Stack, exits: AsyncExitStack, names: dict[str, str]
) -> tuple[dict[str, ClientConnection], dict[str, str]]:
    """Connect one client per name with a token for its user; their sockets and connection ids."""
    sockets: dict[str, ClientConnection] = {}
    ids: dict[str, str] = {}
    for name, user in names.items():
        token = await token_for(stack, user, *(["--broadcast"] if name == "alice" else []))
        sockets[name] = await exits.enter_async_context(
            connect(f"{stack.ws_url}?token={token}", user_agent_header=name)
        )
        found = stack.emulator.connection_id_of(user_agent=name)
        assert found is not None
        ids[name] = found
    return sockets, ids


async def frame(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(20):
        return dict(json.loads(await ws.recv()))


async def registered() -> set[str]:
    """What the stack's registry holds (the stack set this process's environment)."""
    async with Clients(Settings()) as clients:
        return await (await clients.registry()).connection_ids()


def document(result: Any) -> dict[str, Any]:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    found = json.loads(lines[0])
    assert isinstance(found, dict)
    return found


# -- against the local stack ----------------------------------------------------------------------


async def test_list_count_and_get_show_the_live_connections() -> None:
    async with stack_with_jwt() as stack, AsyncExitStack() as exits:
        sockets, ids = await connect_clients(stack, exits, USERS)
        await sockets["alice"].send(json.dumps({"action": "joinRoom", "room": "lobby"}))
        assert (await frame(sockets["alice"]))["type"] == "ack"
        env = stack_env(stack)

        listed = document(await run_cli("connections", "list", "--json", env=env))
        assert {c["connectionId"]: c["userId"] for c in listed["connections"]} == {
            ids[name]: user for name, user in USERS.items()
        }
        assert listed["truncated"] is False
        assert all(c["registered"] for c in listed["connections"])
        by_user = document(await run_cli("connections", "list", "--user", "u1", "--json", env=env))
        assert {c["connectionId"] for c in by_user["connections"]} == {ids["alice"], ids["bob"]}
        in_room = document(
            await run_cli("connections", "list", "--room", "lobby", "--json", env=env)
        )
        assert [c["connectionId"] for c in in_room["connections"]] == [ids["alice"]]

        assert document(await run_cli("connections", "count", "--json", env=env))["count"] == 3
        counted = await run_cli("connections", "count", "--user", "u1", "--json", env=env)
        assert document(counted) == {"target": {"userIds": ["u1"]}, "count": 2}
        human = await run_cli("connections", "count", "--room", "lobby", env=env)
        assert human.returncode == 0, human
        assert "1 connections in room 'lobby'" in human.stdout

        got = await run_cli("connections", "get", ids["alice"], "--json", env=env)
        assert got.returncode == 0, got
        shown = document(got)
        assert shown["registry"]["userId"] == "u1"
        assert shown["registry"]["canBroadcast"] is True
        assert shown["rooms"] == ["lobby"]
        assert shown["live"]["identity"]["userAgent"] == "alice"
        assert shown["live"]["identity"]["sourceIp"] == "127.0.0.1"
        connected = datetime.fromisoformat(shown["live"]["connectedAt"])
        assert connected <= datetime.fromisoformat(shown["live"]["lastActiveAt"])
        assert connected <= datetime.now(UTC)
        table = await run_cli("connections", "get", ids["bob"], env=env)
        assert table.returncode == 0, table
        assert "u1" in table.stdout
        assert "bob" in table.stdout  # the live identity's user agent
        listing = await run_cli("connections", "list", env=env)
        assert listing.returncode == 0, listing
        assert all(cid in listing.stdout for cid in ids.values())


async def test_kick_sends_the_close_frame_closes_and_forgets() -> None:
    async with stack_with_jwt() as stack, AsyncExitStack() as exits:
        sockets, ids = await connect_clients(stack, exits, USERS)
        env = stack_env(stack)

        result = await run_cli("connections", "kick", "--user", "u1", "--json", env=env)
        assert result.returncode == 0, result
        kicked = {k["connectionId"]: k for k in document(result)["kicked"]}
        assert set(kicked) == {ids["alice"], ids["bob"]}
        for name in ("alice", "bob"):
            step = kicked[ids[name]]
            assert (step["closeFrame"], step["deleted"], step["error"]) == ("delivered", True, None)
            assert await frame(sockets[name]) == {"type": "close"}
            with anyio.fail_after(20), pytest.raises(ConnectionClosed):
                await sockets[name].recv()
        assert await registered() == {ids["carol"]}

        human = await run_cli(
            "connections", "kick", ids["carol"], "--reason", "maintenance", env=env
        )
        assert human.returncode == 0, human
        assert ids["carol"] in human.stdout
        assert "closed" in human.stdout
        assert await frame(sockets["carol"]) == {"type": "close", "reason": "maintenance"}
        assert await registered() == set()

        again = await run_cli("connections", "kick", ids["carol"], "--json", env=env)
        assert again.returncode == 0, again
        [step] = document(again)["kicked"]
        assert (step["closeFrame"], step["deleted"], step["error"]) == ("gone", False, None)


# -- against moto and the local management endpoint -----------------------------------------------


async def test_list_stops_at_the_limit_and_shows_orphan_members(
    registry, dynamodb, table_name
) -> None:
    for index in range(5):
        await registry.put(Connection(connection_id=f"c{index}=", connected_at=NOW))
    await registry.join_room("c1=", "lobby")
    await registry.join_room("c2=", "lobby")
    # c2='s connection item goes, its membership stays (a $disconnect racing with a join)
    await dynamodb.delete_item(
        TableName=table_name, Key={"PK": {"S": "CONN#c2="}, "SK": {"S": "CONN"}}
    )
    limited = await run_cli("connections", "list", "--limit", "2", "--table", table_name, "--json")
    assert limited.returncode == 0, limited
    shown = document(limited)
    assert len(shown["connections"]) == 2
    assert shown["truncated"] is True
    exact = await run_cli("connections", "list", "--limit", "4", "--table", table_name, "--json")
    assert len(document(exact)["connections"]) == 4, "c2='s connection item is gone"
    assert document(exact)["truncated"] is False
    members = await run_cli(
        "connections", "list", "--room", "lobby", "--table", table_name, "--json"
    )
    registered_flags = {
        c["connectionId"]: c["registered"] for c in document(members)["connections"]
    }
    assert registered_flags == {"c1=": True, "c2=": False}
    human = await run_cli("connections", "list", "--room", "lobby", "--table", table_name)
    assert "(no connection item)" in human.stdout


async def test_kick_reports_a_failed_step_and_exits_1(registry, table_name) -> None:
    """The management API cannot be reached: the close frame and DeleteConnection fail, the
    registry keeps the connection (it may still be open), and the command exits 1."""
    await registry.put(Connection(connection_id="a=", connected_at=NOW))
    result = await run_cli(
        "connections", "kick", "a=", "--table", table_name, "--endpoint", NOWHERE, "--json"
    )
    assert result.returncode == 1, result
    [step] = document(result)["kicked"]
    assert step["closeFrame"] == "network_error"
    assert "DeleteConnection" in step["error"]
    assert step["registryItemsRemoved"] is None, "the registry is not touched after a failure"
    assert await registry.get("a=") is not None


async def test_a_close_frame_that_fails_does_not_stop_the_kick(
    registry, table_name, endpoint
) -> None:
    fake, url = endpoint
    fake.faults = Faults(error_rate=1.0)  # every POST answers 5xx; DELETE still works
    await registry.put(Connection(connection_id="a=", connected_at=NOW))
    await registry.join_room("a=", "lobby")
    result = await run_cli(
        "connections", "kick", "a=", "--table", table_name, "--endpoint", url, "--json"
    )
    assert result.returncode == 0, result
    [step] = document(result)["kicked"]
    assert (step["closeFrame"], step["deleted"]) == ("server_error", True)
    assert step["registryItemsRemoved"] == 2, "the connection and its membership"
    assert not fake.is_live("a=")
    assert await registry.get("a=") is None


async def test_get_of_an_unknown_connection_exits_1(table_name, endpoint) -> None:
    fake, url = endpoint
    fake.remove("nobody=")
    result = await run_cli(
        "connections", "get", "nobody=", "--table", table_name, "--endpoint", url, "--json"
    )
    assert result.returncode == 1, result
    shown = document(result)
    assert (shown["registry"], shown["live"], shown["rooms"]) == (None, None, [])
    assert result.stderr.splitlines() == [
        "wsfanout: connection nobody= is neither registered nor connected"
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["connections", "list", "--limit", "0"], "at least 1", id="list-limit"),
        pytest.param(["connections", "count"], "CONNECTIONS_TABLE", id="count-no-table"),
        pytest.param(
            ["connections", "count", "--table", "t", "--user", "u" * 513], "user", id="count-user"
        ),
        pytest.param(["connections", "get", "--table", "t", ""], "connection id", id="get-empty"),
        pytest.param(["connections", "kick", "--table", "t"], "required", id="kick-nobody"),
        pytest.param(
            ["connections", "kick", "a=", "--user", "u", "--table", "t"],
            "not allowed",
            id="kick-both",
        ),
        pytest.param(
            ["connections", "list", "--user", "u", "--room", "r", "--table", "t"],
            "not allowed",
            id="list-both",
        ),
        pytest.param(
            ["connections", "get", "a=", "--table", "t", "--endpoint", "ftp://x"],
            "endpoint",
            id="get-bad-endpoint",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str) -> None:
    assert_usage_error(run_cli_sync(*args), needle)


async def test_count_over_the_table_shows_progress_on_stderr_only(dynamodb, table_name) -> None:
    ids = await seed(dynamodb, table_name, 250)
    # a terminal for rich (TTY_COMPATIBLE), and pages of 100: the count moves in three steps
    env = cli_env(TTY_COMPATIBLE="1", REGISTRY_PAGE_SIZE="100")
    result = await run_cli("connections", "count", "--table", table_name, "--json", env=env)
    assert result.returncode == 0, result
    assert document(result) == {"target": {"all": True}, "count": len(ids)}
    assert "connections counted: 250" in result.stderr
