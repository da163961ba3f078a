"""The App framework on its in-memory test client: hooks, routes, rules, middleware, errors."""

from __future__ import annotations

import time
from typing import Any

import pytest

from wsfanout import App, ConnectionRefused
from wsfanout.app import Context, Router, Rules
from wsfanout.app.context import deliver, target_of
from wsfanout.core.models import UsersTarget
from wsfanout.core.outcomes import Outcome
from wsfanout.testing import MemoryServices, TestClient


def tenant_app() -> App:
    """The issue's example: a tenant stored at $connect, typing indicators in tenant rooms."""
    app = App()

    @app.on_connect
    async def connect(ctx: Context) -> None:
        if "tenant" not in ctx.query:
            raise ConnectionRefused(400, "say which tenant")
        ctx.attributes["tenant"] = ctx.query["tenant"]

    @app.route("join")
    async def join(ctx: Context) -> None:
        await ctx.join(f"{ctx.attributes['tenant']}:{ctx.json['room']}")

    @app.route("typing")
    async def typing(ctx: Context) -> None:
        room = f"{ctx.attributes['tenant']}:{ctx.json['room']}"
        await ctx.send(
            {"type": "typing", "who": ctx.user_id}, room=room, exclude=[ctx.connection_id]
        )

    return app


async def test_an_attribute_set_at_connect_scopes_a_room_on_every_later_route() -> None:
    async with TestClient(tenant_app()) as client:
        alice = await client.connect(user="alice", query={"tenant": "acme"})
        bob = await client.connect(user="bob", query={"tenant": "acme"})
        eve = await client.connect(user="eve", query={"tenant": "evil"})
        for member in (alice, bob, eve):
            await member.send({"action": "join", "room": "lobby"})
        assert client.registry.connections[alice.connection_id].attributes == {"tenant": "acme"}

        await alice.send({"action": "typing", "room": "lobby"})
        assert bob.received == [{"type": "typing", "who": "alice"}]
        assert alice.received == [], "the sender is excluded"
        assert eve.received == [], "another tenant's lobby is another room"


async def test_only_members_post_to_a_room_by_default() -> None:
    async with TestClient(tenant_app()) as client:
        alice = await client.connect(user="alice", query={"tenant": "acme"})
        bob = await client.connect(user="bob", query={"tenant": "acme"})
        await bob.send({"action": "join", "room": "lobby"})
        await alice.send({"action": "typing", "room": "lobby"})  # alice never joined
        assert bob.received == []
        [refused] = alice.received
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
        assert client.jobs == [], "nothing was sent"


async def test_a_refused_connection_answers_its_status_and_is_not_stored() -> None:
    async with TestClient(tenant_app()) as client:
        with pytest.raises(ConnectionRefused) as refused:
            await client.connect(user="alice")
        assert refused.value.status == 400
        assert client.registry.connections == {}


def test_a_refusal_is_a_4xx() -> None:
    with pytest.raises(ValueError, match="4xx"):
        ConnectionRefused(500)


async def test_unmatched_frames_go_to_the_default_hook_and_without_one_get_an_error() -> None:
    app = App()
    seen: list[Any] = []

    @app.on_default
    async def fallback(ctx: Context) -> None:
        seen.append(ctx.body)
        await ctx.reply({"type": "error", "code": "unknown_action"})

    bare = App()
    async with TestClient(app) as client, TestClient(bare) as other:
        conn = await client.connect()
        await conn.send({"action": "nothing"})
        await conn.send("not json at all")
        assert seen == ['{"action":"nothing"}', "not json at all"]
        assert conn.received == [{"type": "error", "code": "unknown_action"}] * 2
        lone = await other.connect()
        await lone.send({"action": "nothing"})
        [error] = lone.received
        assert error["code"] == "unknown_action"


@pytest.mark.parametrize(
    "body", ["not json", '{"n": 1e999}', '{"n": NaN}', "", b"\x00\xff binary"], ids=repr
)
async def test_odd_frames_cost_an_error_frame_and_never_an_error_log(
    body: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.on_default
    async def echo(ctx: Context) -> None:
        await ctx.reply({"got": ctx.json})

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.send(body)
        [error] = conn.received
        assert (error["type"], error["code"]) == ("error", "bad_frame")
    assert not [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}]


async def test_a_bug_in_a_route_answers_internal_with_no_detail() -> None:
    app = App()

    @app.route("boom")
    async def boom(ctx: Context) -> None:
        raise KeyError("secret detail")

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.send({"action": "boom"})
        [error] = conn.received
        assert error == {
            "type": "error",
            "code": "internal",
            "message": "the frame could not be served",
        }


async def test_a_route_may_answer_as_a_two_way_route() -> None:
    app = App()

    @app.route("ping")
    async def ping(ctx: Context) -> dict[str, Any]:
        return {"type": "pong", "n": ctx.json["n"]}

    async with TestClient(app) as client:
        conn = await client.connect()
        assert await conn.send({"action": "ping", "n": 3}) == {"type": "pong", "n": 3}


async def test_connect_may_choose_a_subprotocol() -> None:
    app = App()

    @app.on_connect
    async def connect(ctx: Context) -> str:
        return "chat.v2"

    async with TestClient(app) as client:
        assert (await client.connect()).subprotocol == "chat.v2"


async def test_sends_to_users_connections_and_everyone() -> None:
    app = App()

    @app.route("dm")
    async def dm(ctx: Context) -> None:
        await ctx.send(ctx.json["text"], user=ctx.json["to"])

    @app.route("shout")
    async def shout(ctx: Context) -> None:
        await ctx.send(b"\x01loud", everyone=True, exclude=[ctx.connection_id])

    async with TestClient(app) as client:
        alice = await client.connect(user="alice", claims={"canBroadcast": True})
        bob_phone = await client.connect(user="bob")
        bob_laptop = await client.connect(user="bob")
        await alice.send({"action": "dm", "to": "bob", "text": "hi bob"})
        assert bob_phone.received == bob_laptop.received == ["hi bob"]
        await alice.send({"action": "shout"})
        assert bob_phone.raw[-1] == b"\x01loud"
        bob_phone.new()
        assert alice.received == []
        [job] = client.jobs
        assert job.target.model_dump() == {"all": True}

        await bob_phone.send({"action": "shout"})  # bob may not broadcast
        [refused] = bob_phone.new()
        assert refused["code"] == "forbidden"


async def test_close_sends_the_reason_then_disconnects() -> None:
    app = App()
    gone: list[Any] = []

    @app.route("bye")
    async def bye(ctx: Context) -> None:
        await ctx.close("see you")

    @app.on_disconnect
    async def disconnect(ctx: Context) -> None:
        gone.append(ctx.attributes["tenant"])

    @app.on_connect
    async def connect(ctx: Context) -> None:
        ctx.attributes["tenant"] = "acme"

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.send({"action": "bye"})
        assert conn.received == [{"type": "close", "reason": "see you"}]
        assert conn.closed
        assert gone == ["acme"], "the $disconnect hook ran, and saw the attributes"
        assert client.registry.connections == {}


async def test_middleware_wraps_every_invocation_in_order_and_may_answer_itself() -> None:
    app = App()
    calls: list[str] = []

    @app.middleware
    async def outer(ctx: Context, call_next: Any) -> Any:
        calls.append(f"outer {ctx.event_type}")
        return await call_next(ctx)

    @app.middleware
    async def gate(ctx: Context, call_next: Any) -> Any:
        if ctx.event_type == "MESSAGE" and ctx.json.get("blocked"):
            await ctx.error("rate_limited", "slow down")
            return None
        calls.append("gate")
        return await call_next(ctx)

    @app.route("go")
    async def go(ctx: Context) -> None:
        calls.append("route")

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.send({"action": "go"})
        await conn.send({"action": "go", "blocked": True})
        assert conn.received[-1]["code"] == "rate_limited"
    assert calls == [
        "outer CONNECT",
        "gate",
        "outer MESSAGE",
        "gate",
        "route",
        "outer MESSAGE",
        "outer DISCONNECT",
        "gate",
    ]


async def test_routers_split_an_app_and_clash_loudly() -> None:
    chat = Router()

    @chat.route("hello")
    async def hello(ctx: Context) -> str:
        return "hi"

    app = App()
    app.include_router(chat)
    async with TestClient(app) as client:
        assert await (await client.connect()).send({"action": "hello"}) == "hi"
    with pytest.raises(ValueError, match="declared twice"):
        app.include_router(chat)
    with pytest.raises(ValueError, match="not a route key"):
        app.route("$connect")


async def test_custom_rules_decide_who_joins() -> None:
    class Invited(Rules):
        async def may_join(self, ctx: Context, room: str) -> bool:
            return room in ctx.claims.get("rooms", "").split(",")

    app = App(rules=Invited())

    @app.route("join")
    async def join(ctx: Context) -> None:
        await ctx.join(ctx.json["room"])

    async with TestClient(app) as client:
        conn = await client.connect(user="u1", claims={"rooms": "a,b"})
        await conn.send({"action": "join", "room": "a"})
        await conn.send({"action": "join", "room": "c"})
        assert await client.registry.is_member(conn.connection_id, "a")
        assert not await client.registry.is_member(conn.connection_id, "c")
        [refused] = conn.received
        assert refused["code"] == "forbidden"


async def test_a_backend_sends_through_the_app_outside_any_route() -> None:
    app = App()
    async with TestClient(app) as client:
        conn = await client.connect(user="u1")
        sent = await app.send({"type": "news"}, user="u1")
        assert sent.delivered == 1
        assert conn.received == [{"type": "news"}]
    with pytest.raises(RuntimeError, match="async with app"):
        await app.send("x", user="u1")


async def test_an_inline_send_out_of_time_hands_the_rest_to_a_job() -> None:
    services = MemoryServices()
    client = TestClient(App())
    client.services = services
    async with client:
        phones = [await client.connect(user="u1") for _ in range(30)]
        sent = await deliver(
            services, UsersTarget(user_ids=["u1"]), "hi", deadline=time.monotonic() - 1
        )
        assert sent.delivered == 0
        assert sent.job_id is not None
        [job] = client.jobs
        assert job.cursor is not None, "the job starts where the inline send stopped"
        assert [phone.received for phone in phones] == [["hi"]] * 30, "none missed, none twice"


def test_a_send_names_exactly_one_target() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        target_of({})
    with pytest.raises(TypeError, match="exactly one"):
        target_of({"everyone": False})
    with pytest.raises(TypeError, match="got room, user"):
        target_of({"user": "u", "room": "r"})
    assert target_of({"connection": "c="}).model_dump() == {"connection_ids": ["c="]}
    assert target_of({"users": ["a", "b"]}).model_dump() == {"user_ids": ["a", "b"]}


async def test_a_refused_send_says_what_was_refused() -> None:
    app = App()

    @app.route("post")
    async def post(ctx: Context) -> None:
        if ctx.json.get("room"):
            await ctx.send("x", room=ctx.json["room"])
        else:
            await ctx.send("x", everyone=True)

    async with TestClient(app) as client:
        conn = await client.connect(user="u1")
        await conn.send({"action": "post", "room": "lobby"})
        await conn.send({"action": "post"})
        assert [(f["code"], f["message"]) for f in conn.received] == [
            ("forbidden", "this connection may not send to room 'lobby'"),
            ("forbidden", "this connection may not broadcast"),
        ]


async def test_the_disconnect_log_line_carries_the_close_code_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(App()) as client:
        conn = await client.connect()
        with caplog.at_level("INFO", logger="wsfanout"):
            await conn.close(4001, "bye now")
    [line] = [r for r in caplog.records if r.getMessage() == "disconnected"]
    assert (vars(line)["status_code"], vars(line)["reason"]) == (4001, "bye now")


async def test_an_identity_the_registry_cannot_hold_is_refused_without_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(App()) as client:
        with pytest.raises(ConnectionRefused) as refused:
            await client.connect(user="u" * 600)  # a token's sub over 512 characters
        assert refused.value.status == 403
        assert client.registry.connections == {}
    assert not [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}]


async def test_attributes_too_large_for_the_registry_are_the_apps_bug() -> None:
    app = App()

    @app.on_connect
    async def connect(ctx: Context) -> None:
        ctx.attributes["blob"] = "x" * 20_000  # over the registry's 16 KiB

    async with TestClient(app) as client:
        with pytest.raises(RuntimeError, match="answered 500"):
            await client.connect()
        assert client.registry.connections == {}


async def test_a_reply_is_retried_while_throttled_or_failing_and_never_after_a_410(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = App()

    @app.route("hello")
    async def hello(ctx: Context) -> None:
        await ctx.reply({"type": "hello"})

    async with TestClient(app) as client:
        conn = await client.connect()
        board = client.services.switchboard
        real = board.post
        answers = [Outcome.THROTTLED, Outcome.THROTTLED, Outcome.SERVER_ERROR]
        refused: list[Outcome] = []

        async def post(connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
            if answers:
                refused.append(answers.pop(0))
                return refused[-1]
            return await real(connection_id, data, endpoint)

        monkeypatch.setattr(board, "post", post)
        await conn.send({"action": "hello"})
        assert conn.new() == [{"type": "hello"}]
        assert refused == [Outcome.THROTTLED, Outcome.THROTTLED, Outcome.SERVER_ERROR]

        answers[:] = [Outcome.GONE, Outcome.GONE]
        await conn.send({"action": "hello"})
        assert (conn.new(), answers) == ([], [Outcome.GONE]), "a 410 is final: asked once"
