"""The browser client ``wsfanout.js`` in a real headless Chromium.

Its logic (dedupe, reorder, gaps, reset, resume with ``since``, make-before-break, backoff,
keepalive) is driven case by case through fake sockets inside the page (the module takes a
socket factory); the live path runs against a local stack with compressed limits (idle 6 s,
lifetime 12 s): re-joining rooms after a DeleteConnection, keepalive past the idle timeout, a
planned reconnect with no gap, and the Python client's exactly-once check (test_client_replay.py,
sharing tests/local/replay.py): room messages sent through the chat app's ``sendMessage`` by
Python clients, which number them (``seq``), while the page's connections are deleted at
random, reach the page once each and in order; and two tabs of two users (JWTs) see each other
in ``presence`` and the leave when one closes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import aioboto3
import aiohttp
import anyio
import jwt
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as open_websocket

from tests.local.browser import WAIT_MS, chromium, needs_browser
from tests.local.replay import LIMITS, Drops, Figures, paced
from wsfanout.aws.clients import Clients
from wsfanout.local.emulator import Emulator, serve_emulator
from wsfanout.local.stack import local_stack
from wsfanout.settings import Settings

# One Chromium for the module (a launch takes seconds), so one event loop for the module too; each
# test gets a browser context of its own.
pytestmark = [pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]

# In the page: the module as `wsfanout`, a scriptable fake socket, and a recorder of a client's
# messages and events (with the page's clock, to order them).
SETUP = """async () => {
  window.wsfanout = await import("/wsfanout.js");
  class FakeSocket extends EventTarget {
    constructor(url) {
      super();
      this.url = url; this.readyState = 0; this.sent = []; this.closedWith = null;
      FakeSocket.all.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {  // the client closes
      if (this.readyState >= 2) return;
      this.closedWith = [code, reason];
      this.readyState = 3;
      setTimeout(() => this.dispatchEvent(Object.assign(new Event("close"), { code, reason })));
    }
    open() { this.readyState = 1; this.dispatchEvent(new Event("open")); }
    recv(frame) {
      this.dispatchEvent(Object.assign(new Event("message"), { data: JSON.stringify(frame) }));
    }
    drop(code, reason = "") {  // the server closes
      this.readyState = 3;
      this.dispatchEvent(Object.assign(new Event("close"), { code, reason }));
    }
  }
  FakeSocket.all = [];
  window.FakeSocket = FakeSocket;
  window.record = (client) => {
    const log = { messages: [], events: [], frames: [], presence: [] };
    client.on("message", (m) => log.messages.push({ ...m, at: performance.now() }));
    client.on("frame", (f) => log.frames.push(f));
    client.on("presence", (p) => log.presence.push({ ...p, at: performance.now() }));
    for (const type of ["connected", "resumed", "reconnecting", "reset", "close"]) {
      client.on(type, (detail) => log.events.push({ type, ...detail, at: performance.now() }));
    }
    return log;
  };
  window.fake = (options) => {
    window.client = wsfanout.connect("ws://fake.invalid/local", {
      socket: (url) => new FakeSocket(url), keepaliveMs: 0, ...options,
    });
    window.log = record(window.client);
  };
  window.hello = (seq) => {  // the newest socket opens and answers whoami, then each join
    const s = FakeSocket.all.at(-1);
    s.open();
    s.recv({ type: "ack", action: "whoami", connectionId: `conn${FakeSocket.all.length}=` });
    for (const f of s.sent) {
      if (f.action === "joinRoom") s.recv({ type: "ack", action: "joinRoom", room: f.room, seq });
    }
  };
}"""


def seqs_of(messages: list[dict[str, Any]]) -> list[Any]:
    return [m.get("seq", m.get("data")) for m in messages]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    """The module's headless Chromium (Playwright's ``Browser``)."""
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser context of the module's Chromium (its pages, and their sockets, close at
    the end of the test)."""
    fresh = await browser.new_context()
    try:
        yield fresh
    finally:
        await fresh.close()


@asynccontextmanager
async def fake_page(context: Any) -> AsyncIterator[Any]:
    """A page of a bare emulator (which serves ``/wsfanout.js``) with :data:`SETUP` run."""
    emulator = Emulator(route_handler=lambda _event, _context: {"statusCode": 200})
    async with serve_emulator(emulator) as base:
        tab = await context.new_page()
        await tab.goto(f"{base}/", timeout=WAIT_MS)
        await tab.evaluate(SETUP)
        yield tab


async def test_the_client_and_its_types_are_served() -> None:
    """Without a browser: ``/wsfanout.js`` is an ES module, ``/wsfanout.d.ts`` its types."""
    emulator = Emulator(route_handler=lambda _event, _context: {"statusCode": 200})
    async with serve_emulator(emulator) as base, aiohttp.ClientSession() as session:
        with anyio.fail_after(20):
            async with session.get(f"{base}/wsfanout.js") as response:
                assert response.status == 200
                assert response.content_type == "text/javascript"
                assert response.headers["Access-Control-Allow-Origin"] == "*"  # importable
                script = await response.text()
            async with session.get(f"{base}/wsfanout.d.ts") as response:
                assert response.status == 200
                types = await response.text()
            async with session.get(f"{base}/") as response:
                page = await response.text()
    assert "export function connect(" in script
    assert re.search(r"^\s*import\b|\bimport\(", script, re.MULTILINE) is None  # no dependencies
    assert "export function connect(url: string | URL, options?: ConnectOptions): Client;" in types
    assert 'import { connect } from "/wsfanout.js";' in page


@needs_browser
async def test_each_seq_is_delivered_once_and_in_order(context: Any) -> None:
    async with fake_page(context) as page:
        result = await page.evaluate("""() => {
            fake({ rooms: ["lobby"], gapMs: 60000 });
            const s = FakeSocket.all[0];
            s.open();
            const hello = s.sent.slice();
            s.recv({ type: "message", room: "lobby", seq: 5, data: 5 });  // before the join's ack
            s.recv({ type: "message", room: "lobby", seq: 7, data: 7 });
            s.recv({ type: "ack", action: "whoami", connectionId: "A=" });
            s.recv({ type: "ack", action: "joinRoom", room: "lobby", seq: 5 });  // latest: 5
            for (const seq of [9, 6, 7, 6, 8, 10, 9]) {
              s.recv({ type: "message", room: "lobby", seq });
            }
            s.recv({ type: "message", data: "direct" });  // no seq: as it comes
            s.recv({ type: "pong" });  // keepalive answers are not surfaced
            client.join("other");  // rooms are independent
            s.recv({ type: "ack", action: "joinRoom", room: "other", seq: 0 });
            for (const seq of [2, 1, 2]) s.recv({ type: "message", room: "other", seq });
            return {
              hello, sent: s.sent, log, stats: client.stats, id: client.connectionId,
              rooms: client.rooms, last: client.lastSeq("lobby"),
            };
        }""")
        assert result["hello"] == [{"action": "whoami"}, {"action": "joinRoom", "room": "lobby"}]
        assert result["sent"][-1] == {"action": "joinRoom", "room": "other"}
        lobby = [m["seq"] for m in result["log"]["messages"] if m.get("room") == "lobby"]
        assert lobby == [6, 7, 8, 9, 10]  # 5 predates the join; each once, in order
        assert [m["seq"] for m in result["log"]["messages"] if m.get("room") == "other"] == [1, 2]
        assert "direct" in seqs_of(result["log"]["messages"])
        assert result["stats"]["duplicates"] == 4  # 7, 6, 9 in the lobby, 2 in the other room
        assert result["id"] == "A="
        assert result["rooms"] == ["lobby", "other"]
        assert result["last"] == 10
        assert [e["type"] for e in result["log"]["events"]] == ["connected"]
        assert all(f.get("type") != "pong" for f in result["log"]["frames"])


@needs_browser
async def test_the_clients_own_room_message_is_skipped_not_waited_for(context: Any) -> None:
    """The server sends a room message to every member but its sender; the ``sendMessage`` ack
    names its seq, so the seq after it is delivered at once, with no gap asked for."""
    async with fake_page(context) as page:
        result = await page.evaluate("""() => {
            fake({ rooms: ["lobby"], gapMs: 60000 });
            hello(3);
            const s = FakeSocket.all[0];
            client.send({ action: "sendMessage", to: { room: "lobby" }, data: "mine" });
            s.recv({ type: "message", room: "lobby", seq: 5, data: 5 });  // after ours: held
            const held = log.messages.length;
            s.recv({ type: "ack", action: "sendMessage", room: "lobby", jobId: "j", seq: 4 });
            s.recv({ type: "message", room: "lobby", seq: 4, data: "mine" });  // a replay of it
            return { held, log, last: client.lastSeq("lobby"), stats: client.stats };
        }""")
        assert result["held"] == 0
        assert [m["seq"] for m in result["log"]["messages"]] == [5]
        assert result["last"] == 5
        assert result["stats"]["gaps"] == 0
        assert result["stats"]["duplicates"] == 1


@needs_browser
async def test_a_gap_is_asked_for_again_and_reset_when_it_never_fills(context: Any) -> None:
    async with fake_page(context) as page:
        await page.evaluate(
            """() => { fake({ rooms: ["lobby"], gapMs: 500, gapRetries: 2 }); hello(10); }"""
        )
        await page.evaluate(
            """() => FakeSocket.all[0].recv({ type: "message", room: "lobby", seq: 12 })"""
        )
        # 11 is missing: after gapMs the client asks for what follows 10 again.
        await page.wait_for_function(
            "() => FakeSocket.all[0].sent.some((f) => f.action === 'joinRoom' && f.since === 10)",
            timeout=WAIT_MS,
        )
        await page.evaluate("""() => {
            const s = FakeSocket.all[0];
            s.recv({ type: "message", room: "lobby", seq: 11 });  // the replay
            s.recv({ type: "message", room: "lobby", seq: 12 });
            s.recv({ type: "ack", action: "joinRoom", room: "lobby", seq: 12 });
            s.recv({ type: "message", room: "lobby", seq: 14 });  // 13 never comes
        }""")
        await page.wait_for_function(
            """() => log.events.some((e) => e.type === "reset")""", timeout=WAIT_MS
        )
        result = await page.evaluate("""() => {
            const s = FakeSocket.all[0];
            s.recv({ type: "message", room: "lobby", seq: 13 });  // too late: after the reset
            s.recv({ type: "reset", room: "lobby", seq: 20 });  // the server's: history too short
            s.recv({ type: "message", room: "lobby", seq: 21 });
            return { log, stats: client.stats };
        }""")
        assert [m["seq"] for m in result["log"]["messages"]] == [11, 12, 14, 21]
        resets = [e for e in result["log"]["events"] if e["type"] == "reset"]
        assert [(e["seq"], e["last"], e["reason"]) for e in resets] == [
            (13, 12, "gap not filled"),
            (20, 14, "history"),
        ]
        assert result["stats"]["gaps"] >= 4  # 11 asked for once or twice, 13 three times


@needs_browser
async def test_a_dropped_connection_resumes_from_the_last_seq(context: Any) -> None:
    async with fake_page(context) as page:
        await page.evaluate(
            """() => {
                fake({ rooms: ["lobby"], backoffInitialMs: 50 });
                hello(3);
                FakeSocket.all[0].recv({ type: "message", room: "lobby", seq: 4 });
                FakeSocket.all[0].drop(1001, "Going away");
                client.send({ action: "sendMessage", to: { room: "lobby" }, data: "queued" });
            }"""
        )
        await page.wait_for_function("() => FakeSocket.all.length === 2", timeout=WAIT_MS)
        result = await page.evaluate("""() => {
            const s = FakeSocket.all[1];
            s.open();
            const hello = s.sent.slice();
            s.recv({ type: "ack", action: "whoami", connectionId: "B=" });
            for (const seq of [4, 5, 6]) s.recv({ type: "message", room: "lobby", seq });  // replay
            const before = s.sent.length;
            s.recv({ type: "ack", action: "joinRoom", room: "lobby", seq: 6 });
            return { hello, before, sent: s.sent, log, id: client.connectionId };
        }""")
        assert result["hello"] == [
            {"action": "whoami"},
            {"action": "joinRoom", "room": "lobby", "since": 4},
        ]
        # The frame sent while reconnecting waited for the rooms to be re-joined.
        assert result["before"] == 2
        assert result["sent"][2] == {
            "action": "sendMessage",
            "to": {"room": "lobby"},
            "data": "queued",
        }
        assert [m["seq"] for m in result["log"]["messages"]] == [4, 5, 6]
        events = result["log"]["events"]
        assert [e["type"] for e in events] == ["connected", "reconnecting", "connected", "resumed"]
        reconnecting = events[1]
        assert (reconnecting["attempt"], reconnecting["code"]) == (1, 1001)
        assert 0 <= reconnecting["delayMs"] <= 50
        assert (events[3]["planned"], events[3]["first"]) == (False, False)
        assert events[0]["latencyMs"] is None  # the first connection
        assert events[3]["latencyMs"] >= events[1]["delayMs"]  # from the drop, backoff included
        assert result["id"] == "B="


@needs_browser
async def test_reconnects_back_off_exponentially_with_full_jitter(context: Any) -> None:
    """Sockets that fail before opening: each delay is drawn from [0, min(max, initial*2^n))."""
    async with fake_page(context) as page:
        await page.evaluate("""() => {
            fake({
              backoffInitialMs: 20, backoffMaxMs: 160, maxAttempts: 12,
              socket: (url) => {
                const s = new FakeSocket(url);
                setTimeout(() => s.drop(1006));
                return s;
              },
            });
        }""")
        await page.wait_for_function(
            """() => log.events.some((e) => e.type === "close")""", timeout=WAIT_MS
        )
        events = await page.evaluate("() => log.events")
        tries = [e for e in events if e["type"] == "reconnecting"]
        assert [e["attempt"] for e in tries] == list(range(1, 13))
        for e in tries:
            assert 0 <= e["delayMs"] <= min(160, 20 * 2 ** (e["attempt"] - 1))
        capped = [e["delayMs"] for e in tries if e["attempt"] >= 4]
        assert len(set(capped)) == len(capped)  # jittered: never the same delay twice
        assert events[-1]["type"] == "close"
        assert events[-1]["gaveUp"] is True
        assert await page.evaluate("() => FakeSocket.all.length") == 13  # the first and 12 retries


@needs_browser
async def test_the_planned_reconnect_makes_before_it_breaks(context: Any) -> None:
    async with fake_page(context) as page:
        await page.evaluate(
            """() => {
                fake({ rooms: ["lobby"], lifetimeMs: 200, handoverMs: 150 });
                hello(0);
                FakeSocket.all[0].recv({ type: "message", room: "lobby", seq: 1 });
            }"""
        )
        await page.wait_for_function("() => FakeSocket.all.length === 2", timeout=WAIT_MS)
        result = await page.evaluate("""() => {
            const [a, b] = FakeSocket.all;
            const oldOpenAtStart = a.readyState === 1 && a.closedWith === null;
            b.open();
            const hello = b.sent.slice();
            b.recv({ type: "ack", action: "whoami", connectionId: "B=" });
            a.recv({ type: "message", room: "lobby", seq: 2 });  // live on the old socket
            b.recv({ type: "message", room: "lobby", seq: 2 });  // replay on the new one
            b.recv({ type: "message", room: "lobby", seq: 3 });  // arrives on both, in either order
            a.recv({ type: "message", room: "lobby", seq: 3 });
            const oldOpenBeforeAck = a.readyState === 1 && a.closedWith === null;
            b.recv({ type: "ack", action: "joinRoom", room: "lobby", seq: 3 });
            b.recv({ type: "message", room: "lobby", seq: 4 });
            // Still on its way to the old socket: read for handoverMs after the switch.
            a.recv({ type: "message", room: "lobby", seq: 4 });
            a.recv({ type: "message", data: "late on the old socket" });
            return {
              oldOpenAtStart, oldOpenBeforeAck, hello, closedAtSwitch: a.closedWith, log,
              id: client.connectionId, stats: client.stats,
            };
        }""")
        await page.wait_for_function("() => FakeSocket.all[0].closedWith !== null", timeout=WAIT_MS)
        closed_with = await page.evaluate("() => FakeSocket.all[0].closedWith")
        assert result["oldOpenAtStart"]
        assert result["oldOpenBeforeAck"]  # the old socket stays until the new one has its rooms
        assert result["closedAtSwitch"] is None  # and handoverMs longer
        assert closed_with == [1000, "planned reconnect"]
        assert result["hello"][1] == {"action": "joinRoom", "room": "lobby", "since": 1}
        assert seqs_of(result["log"]["messages"]) == [1, 2, 3, 4, "late on the old socket"]
        assert [(e["type"], e["planned"]) for e in result["log"]["events"]] == [
            ("connected", False),
            ("connected", True),
            ("resumed", True),
        ]
        assert result["id"] == "B="
        assert result["stats"]["reconnects"] == 0  # no gap: never "reconnecting"
        assert result["stats"]["planned"] == 1


@needs_browser
async def test_a_failed_planned_reconnect_keeps_the_old_socket_and_tries_again(
    context: Any,
) -> None:
    async with fake_page(context) as page:
        await page.evaluate("""() => {
            fake({ rooms: ["lobby"], lifetimeMs: 200, backoffInitialMs: 50, handoverMs: 0 });
            hello(0);
        }""")
        await page.wait_for_function("() => FakeSocket.all.length === 2", timeout=WAIT_MS)
        await page.evaluate("() => FakeSocket.all[1].drop(1006)")  # refused: never opened
        await page.wait_for_function("() => FakeSocket.all.length === 3", timeout=WAIT_MS)
        assert await page.evaluate("() => FakeSocket.all[0].closedWith") is None
        await page.evaluate("() => hello(0)")  # the third socket opens and re-joins: it takes over
        await page.wait_for_function("() => FakeSocket.all[0].closedWith !== null", timeout=WAIT_MS)
        result = await page.evaluate(
            "() => ({ first: FakeSocket.all[0].closedWith, log, id: client.connectionId,"
            " stats: client.stats })"
        )
        assert result["first"] == [1000, "planned reconnect"]  # only once the third took over
        assert result["id"] == "conn3="
        assert result["stats"]["reconnects"] == 0  # the old socket carried on meanwhile
        assert result["stats"]["planned"] == 2
        assert [e["type"] for e in result["log"]["events"]] == [
            "connected",
            "connected",
            "resumed",
        ]


@needs_browser
async def test_a_kick_ends_the_client_and_coming_online_retries_at_once(context: Any) -> None:
    async with fake_page(context) as page:
        result = await page.evaluate("""() => {
            fake({ rooms: ["lobby"], backoffInitialMs: 60000, backoffMaxMs: 60000 });
            hello(0);
            FakeSocket.all[0].drop(1006);  // lost: the next attempt waits up to a minute
            const waiting = FakeSocket.all.length;
            window.dispatchEvent(new Event("online"));  // ... unless the browser is back online
            const online = FakeSocket.all.length;
            hello(0);
            const kicked = FakeSocket.all.at(-1);
            kicked.recv({ type: "close", reason: "token expired" });
            kicked.drop(1000);
            return { waiting, online, log, sockets: FakeSocket.all.length };
        }""")
        assert (result["waiting"], result["online"]) == (1, 2)
        close = result["log"]["events"][-1]
        assert (close["type"], close["reason"], close["byServer"]) == (
            "close",
            "token expired",
            True,
        )
        # Told why, the client does not come back (a reconnect says "reconnecting" at once).
        assert [e["type"] for e in result["log"]["events"]] == [
            "connected",
            "reconnecting",
            "connected",
            "resumed",
            "close",
        ]
        assert result["sockets"] == 2
        assert await page.evaluate("() => client.connected") is False


@needs_browser
async def test_keepalive_pings_only_when_nothing_was_sent(context: Any) -> None:
    async with fake_page(context) as page:
        await page.evaluate(
            """() => {
                fake({ keepaliveMs: 1000 });
                hello(0);
                window.busy = setInterval(() => client.send({ action: "whoami" }), 50);
            }"""
        )
        await page.wait_for_function(
            "() => FakeSocket.all[0].sent.filter((f) => f.action === 'whoami').length >= 20",
            timeout=WAIT_MS,
        )
        busy_pings = await page.evaluate("""() => {
            clearInterval(window.busy);
            return FakeSocket.all[0].sent.filter((f) => f.action === "ping").length;
        }""")
        assert busy_pings == 0  # a client that sends anyway needs no ping
        await page.wait_for_function(
            "() => FakeSocket.all[0].sent.filter((f) => f.action === 'ping').length >= 2",
            timeout=WAIT_MS,
        )


@needs_browser
async def test_presence_answers_and_events_leave_the_clients_own_connections_out(
    context: Any,
) -> None:
    async with fake_page(context) as page:
        result = await page.evaluate("""async () => {
            fake({ rooms: ["lobby"], lifetimeMs: 300, handoverMs: 100 });
            hello(0);
            const s = FakeSocket.all[0];
            const lobby = client.presence("lobby");
            const other = client.presence("other");  // answered first: each by its room
            const asked = s.sent.filter((f) => f.action === "presence");
            s.recv({ type: "presence", room: "other", users: [], connections: 1 });
            const alice = [{ userId: "alice", connections: 2 }];
            s.recv({ type: "presence", room: "lobby", users: alice, connections: 3 });
            const event = (kind, connectionId, more) =>
              ({ type: "presence", event: kind, room: "lobby", connectionId, ...more });
            s.recv(event("join", "B=", { userId: "bob" }));
            s.recv(event("leave", "C="));
            s.recv(event("join", "conn1="));
            return { asked, lobby: await lobby, other: await other, presence: log.presence,
                     frames: log.frames.filter((f) => f.type === "presence") };
        }""")
        assert result["asked"] == [
            {"action": "presence", "room": "lobby"},
            {"action": "presence", "room": "other"},
        ]
        assert result["lobby"] == {
            "room": "lobby",
            "users": [{"userId": "alice", "connections": 2}],
            "connections": 3,
        }
        assert result["other"] == {"room": "other", "users": [], "connections": 1}
        assert [(p["event"], p["connectionId"], p.get("userId")) for p in result["presence"]] == [
            ("join", "B=", "bob"),
            ("leave", "C=", None),  # the client's own connection (conn1=) is left out
        ]
        assert result["frames"] == []  # presence frames are not "frame" events

        # A planned reconnect: its new connection's join reaches the old socket, the old one's
        # leave the new socket; neither is someone else's.
        await page.wait_for_function("() => FakeSocket.all.length === 2", timeout=WAIT_MS)
        presence = await page.evaluate("""() => {
            hello(0);
            const [a, b] = FakeSocket.all;
            a.recv({ type: "presence", event: "join", room: "lobby", connectionId: "conn2=" });
            b.recv({ type: "presence", event: "leave", room: "lobby", connectionId: "conn1=" });
            b.recv({ type: "presence", event: "leave", room: "lobby", connectionId: "B=" });
            return log.presence;
        }""")
        assert [(p["event"], p["connectionId"]) for p in presence[2:]] == [("leave", "B=")]


@needs_browser
async def test_presence_rejects_on_timeout_and_close_and_is_asked_again_after_a_drop(
    context: Any,
) -> None:
    async with fake_page(context) as page:
        result = await page.evaluate("""async () => {
            fake({ rooms: ["lobby"], requestTimeoutMs: 300, backoffInitialMs: 60000 });
            hello(0);
            const failure = (promise) => promise.then(
              (answer) => ({ answer }),
              (e) => ({ name: e.name, code: e.code, room: e.room, message: e.message,
                        typed: e instanceof wsfanout.RequestError }),
            );
            const timedOut = await failure(client.presence("lobby"));  // never answered
            const dropped = failure(client.presence("lobby"));  // its connection drops first
            FakeSocket.all[0].drop(1006);
            const queued = failure(client.presence("other"));  // while reconnecting
            window.dispatchEvent(new Event("online"));  // back now rather than in a minute
            hello(0);
            const resent = FakeSocket.all[1].sent.filter((f) => f.action === "presence");
            for (const [room, connections] of [["other", 2], ["lobby", 1]]) {
              FakeSocket.all[1].recv({ type: "presence", room, users: [], connections });
            }
            const closing = failure(client.presence("lobby"));
            client.close();
            let badRoom = null;
            try { client.presence(""); } catch (e) { badRoom = e instanceof TypeError; }
            return { timedOut, dropped: await dropped, queued: await queued, resent,
                     closing: await closing, closed: await failure(client.presence("lobby")),
                     badRoom };
        }""")
    timed_out = result["timedOut"]
    assert (timed_out["name"], timed_out["code"], timed_out["room"]) == (
        "RequestError",
        "timeout",
        "lobby",
    )
    assert timed_out["typed"]
    assert timed_out["message"].startswith('wsfanout: no presence answer for "lobby" within 300')
    # Asked again on the next connection once its rooms are joined, like the one made meanwhile.
    assert result["resent"] == [
        {"action": "presence", "room": "lobby"},
        {"action": "presence", "room": "other"},
    ]
    assert result["dropped"] == {"answer": {"room": "lobby", "users": [], "connections": 1}}
    assert result["queued"] == {"answer": {"room": "other", "users": [], "connections": 2}}
    assert (result["closing"]["code"], result["closing"]["message"]) == (
        "closed",
        "wsfanout: the client closed",
    )
    assert (result["closed"]["code"], result["closed"]["message"]) == (
        "closed",
        "wsfanout: the client is closed",
    )
    assert result["badRoom"] is True


# -- live: the local stack with compressed limits ------------------------------------------------


async def _open_client(context: Any, page_url: str, options: dict[str, Any]) -> Any:
    """A tab of the demo page with ``window.client`` connected (``window.log`` records it, and
    ``window.arrived`` the seq of every message frame its sockets got, duplicates included)."""
    tab = await context.new_page()
    await tab.goto(page_url, timeout=WAIT_MS)
    await tab.evaluate(SETUP)
    await tab.evaluate(
        """(options) => {
            const url = `ws://${location.host}/local`;
            window.arrived = [];
            const socket = (u) => {
              const ws = new WebSocket(u);
              ws.addEventListener("message", (event) => {
                const frame = JSON.parse(event.data);
                if (frame.type === "message" && Number.isSafeInteger(frame.seq)) {
                  arrived.push(frame.seq);
                }
              });
              return ws;
            };
            window.client = wsfanout.connect(url, { socket, ...options });
            window.log = record(window.client);
        }""",
        options,
    )
    await tab.wait_for_function("() => client.connected && client.connectionId", timeout=WAIT_MS)
    return tab


@asynccontextmanager
async def _room_sender(queue_url: str) -> AsyncIterator[Callable[[str], Awaitable[None]]]:
    """``say(data)``: a room job for the lobby on the broadcast queue, carrying the chat app's
    ``message`` frame without a ``seq``, as a room that is not durable enqueues it. From outside
    any WebSocket, so no sender connection runs into the stack's 12-second lifetime."""
    async with aioboto3.Session().client("sqs") as sqs:

        async def say(data: str) -> None:
            frame = {"type": "message", "from": {"connectionId": "sender="}, "data": data}
            job = {"target": {"room": "lobby"}, "data": json.dumps(frame)}
            await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(job))

        yield say


async def _received(tab: Any, data: str) -> None:
    await tab.wait_for_function(
        "(data) => log.messages.some((m) => m.data === data)", arg=data, timeout=WAIT_MS
    )


@needs_browser
async def test_rooms_are_rejoined_after_the_stack_drops_the_connection(context: Any) -> None:
    with anyio.fail_after(60):
        async with local_stack(limits=LIMITS) as stack:
            tab = await _open_client(
                context, stack.page_url, {"rooms": ["lobby"], "backoffInitialMs": 200}
            )
            first = await tab.evaluate("() => client.connectionId")
            async with _room_sender(stack.queue_url) as say:
                await say("one")
                await _received(tab, "one")

                session = aioboto3.Session()
                async with session.client(
                    "apigatewaymanagementapi", endpoint_url=stack.management_url
                ) as management:
                    await management.delete_connection(ConnectionId=first)
                await tab.wait_for_function(
                    "() => log.events.some((e) => e.type === 'resumed')", timeout=WAIT_MS
                )
                # Only a member of the lobby gets this: the new connection re-joined it.
                await say("two")
                await _received(tab, "two")

            result = await tab.evaluate("() => ({ log, id: client.connectionId })")
    assert result["id"] != first
    assert [m["data"] for m in result["log"]["messages"]] == ["one", "two"]
    events = result["log"]["events"]
    assert [e["type"] for e in events] == ["connected", "reconnecting", "connected", "resumed"]
    assert events[1]["code"] == 1000  # DeleteConnection closes normally


@needs_browser
async def test_keepalive_keeps_an_idle_page_connected_past_the_idle_timeout(context: Any) -> None:
    with anyio.fail_after(60):
        async with local_stack(limits=LIMITS) as stack:
            options = {"lifetimeMs": 60_000, "backoffInitialMs": 200}
            pinging = await _open_client(context, stack.page_url, {**options, "keepaliveMs": 1500})
            silent = await _open_client(context, stack.page_url, {**options, "keepaliveMs": 0})
            first = await pinging.evaluate("() => client.connectionId")
            # The page that never pings is closed as idle (1001) after 6 s...
            await silent.wait_for_function(
                "() => log.events.some((e) => e.type === 'reconnecting' && e.code === 1001)",
                timeout=12_000,
            )
            # ... while five pings (7.5 s) keep the other past it, on its first connection.
            await pinging.wait_for_function("() => client.stats.pings >= 5", timeout=12_000)
            result = await pinging.evaluate(
                "() => ({ log, id: client.connectionId, connected: client.connected })"
            )
    assert result["id"] == first
    assert result["connected"]
    assert [e["type"] for e in result["log"]["events"]] == ["connected"]


@needs_browser
async def test_the_planned_reconnect_leaves_no_gap_on_the_stack(context: Any) -> None:
    """Messages without a ``seq`` sent through the planned reconnect all arrive (the room jobs
    go straight onto the queue, past the room's history, as a room that is not durable sends
    them): one may arrive twice around the handover (the old socket is read for ``handoverMs``
    after the switch); none may be missing. The sequenced path is the exactly-once check's."""
    from playwright.async_api import (  # noqa: PLC0415  (optional dependency)
        TimeoutError as PlaywrightTimeout,
    )

    count = 64
    with anyio.fail_after(60):
        async with local_stack(limits=LIMITS) as stack:
            tab = await _open_client(
                context,
                stack.page_url,
                {"rooms": ["lobby"], "lifetimeMs": 7000, "keepaliveMs": 2000},
            )
            first = await tab.evaluate("() => client.connectionId")
            async with _room_sender(stack.queue_url) as say:
                for i in range(count):  # 8 s: through the reconnect at 6.3 to 7 s
                    await say(f"m{i}")
                    await anyio.sleep(0.125)  # pacing the sender, not synchronisation
                with suppress(PlaywrightTimeout):  # what is missing, if anything, is said below
                    await tab.wait_for_function(
                        "(n) => new Set(log.messages.map((m) => m.data)).size >= n",
                        arg=count,
                        timeout=20_000,
                    )
            result = await tab.evaluate("() => ({ log, id: client.connectionId })")
    messages = result["log"]["messages"]
    events = result["log"]["events"]
    missing = {f"m{i}" for i in range(count)} - {m["data"] for m in messages}
    assert not missing, f"missing {sorted(missing)}; events {events}"
    # Only planned reconnects (one at 6.3 to 7 s; a second may follow before the test ends):
    # the stack never cut the page off, so it never had to come back ("reconnecting").
    assert (events[0]["type"], events[0]["first"]) == ("connected", True)
    assert {(e["type"], e["planned"]) for e in events[1:]} == {
        ("connected", True),
        ("resumed", True),
    }
    assert result["id"] != first
    # The first handover happened while messages were flowing.
    handover = next(e for e in events if e["type"] == "resumed")
    assert messages[0]["at"] < handover["at"] < messages[-1]["at"]
    print(  # the figures of the run, for the closing note
        f"planned reconnect: {count} messages, {len(messages) - count} duplicates, no gap, "
        f"{sum(e['type'] == 'resumed' for e in events)} handovers"
    )


class _ChatSender:
    """Room messages through the chat app's ``sendMessage``, each sent once the one before was
    acknowledged (with its ``seq``). The stack closes a connection at 12 s and drops the frames
    it has not routed yet, so every few seconds, between two acks, the sender closes its
    connection and opens a new one in the lobby: nothing it sends is ever lost that way."""

    ROTATE_S = 5.0

    def __init__(self, url: str) -> None:
        self._url = url
        self._ws: ClientConnection | None = None
        self._opened = 0.0
        self.seqs: list[int] = []

    async def __aenter__(self) -> _ChatSender:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def say(self, n: int) -> None:
        """Send ``n`` to the lobby and wait for the ack.

        :raises AssertionError: the chat app answered an error frame.
        """
        if self._ws is None or time.monotonic() - self._opened > self.ROTATE_S:
            if self._ws is not None:
                await self._ws.close()
            self._ws = await open_websocket(self._url)
            self._opened = time.monotonic()
            await self._ask({"action": "joinRoom", "room": "lobby"})
        ack = await self._ask({"action": "sendMessage", "to": {"room": "lobby"}, "data": n})
        self.seqs.append(ack["seq"])

    async def _ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self._ws is not None
        await self._ws.send(json.dumps(frame))
        with anyio.fail_after(10):
            async for raw in self._ws:  # the other senders' messages go by
                answer = json.loads(raw)
                if answer["type"] == "error":
                    raise AssertionError(f"{frame} was answered {answer}")
                if answer["type"] == "ack" and answer["action"] == frame["action"]:
                    return dict(answer)
        raise AssertionError(f"the connection closed before {frame} was answered")


MESSAGES = 200
SENDERS = 3  # Python clients at once, each a member of the lobby: seq orders them
INTERVAL_S = 0.1  # one message every 0.1 s in all: 20 s of sending at least


@needs_browser
@pytest.mark.timeout(120)  # the bounds below are for a loaded machine; a run takes about 30 s
async def test_room_messages_reach_the_page_once_in_order_across_drops(context: Any) -> None:
    """The Python client's exactly-once check (test_client_replay.py), for wsfanout.js: room
    messages sent through ``sendMessage`` meanwhile reach the page once each and in order,
    while its connections are deleted after 2-3.5 s and 7-8 s in turn and replaced before
    their 6 s lifetime (make-before-break) in the long pauses."""
    from playwright.async_api import (  # noqa: PLC0415  (optional dependency)
        TimeoutError as PlaywrightTimeout,
    )

    with anyio.fail_after(110):
        async with (
            local_stack(limits=LIMITS, set_management_endpoint=True) as stack,
            Clients(Settings()) as clients,
            AsyncExitStack() as exits,
        ):
            options = {"rooms": ["lobby"], "lifetimeMs": 6000, "keepaliveMs": 2000, "gapMs": 1000}
            tab = await _open_client(
                context, stack.page_url, {**options, "backoffInitialMs": 100, "backoffMaxMs": 1000}
            )
            senders = [
                await exits.enter_async_context(_ChatSender(stack.ws_url)) for _ in range(SENDERS)
            ]

            async def connection_id() -> str | None:
                return await tab.evaluate("() => client.connectionId")  # type: ignore[no-any-return]

            drops = Drops(await clients.gateway(), connection_id, pauses=((2, 3.5), (7, 8)))
            sent_in: list[float] = []
            started = time.monotonic()

            async def send_share(sender: _ChatSender, first: int) -> None:
                await paced(sender.say, range(first, MESSAGES, SENDERS), INTERVAL_S * SENDERS)
                sent_in.append(time.monotonic() - started)

            async with anyio.create_task_group() as group:
                group.start_soon(drops.run)
                for first, sender in enumerate(senders):
                    group.start_soon(send_share, sender, first)
                with suppress(PlaywrightTimeout):  # what is missing, if anything, is said below
                    await tab.wait_for_function(
                        "(n) => log.messages.length >= n", arg=MESSAGES, polling=100, timeout=80_000
                    )
                group.cancel_scope.cancel()
            elapsed = time.monotonic() - started
            result = await tab.evaluate(
                "() => ({ log, stats: client.stats, arrived, last: client.lastSeq('lobby') })"
            )
    messages, events, stats = result["log"]["messages"], result["log"]["events"], result["stats"]
    resumed = [e for e in events if e["type"] == "resumed"]
    after_drops = [e["latencyMs"] / 1000 for e in resumed if not e["planned"]]
    planned = [e["latencyMs"] / 1000 for e in resumed if e["planned"]]
    Figures(
        "wsfanout.js replay",
        messages=len(messages),
        elapsed_s=elapsed,
        senders=SENDERS,
        sent_in_s=max(sent_in, default=0),
        drops=len(drops.found),
        reconnects=len(after_drops),
        planned=len(planned),
        duplicates=stats["duplicates"],
        gaps=stats["gaps"],
        resets=stats["resets"],
        resume_latencies_s=after_drops,
        planned_latencies_s=planned,
    ).print()
    # The seqs the acks named. A loaded moto can make the counter's ADD count twice (a retried
    # request): a seq that no message has, which nobody can get ("holes").
    numbered = sorted(seq for sender in senders for seq in sender.seqs)
    holes = set(range(1, numbered[-1] + 1)) - set(numbered)
    missing = sorted(set(range(MESSAGES)) - {m["data"] for m in messages})
    assert not missing, f"missing {missing}; last seq {result['last']}; events {events[-6:]}"
    assert [(m["room"], m["seq"]) for m in messages] == [("lobby", seq) for seq in numbered], (
        "once each, in order"
    )
    assert sorted(m["data"] for m in messages) == list(range(MESSAGES)), "every message"
    # Every frame the sockets got was delivered once or dropped as a duplicate.
    assert len(result["arrived"]) == MESSAGES + stats["duplicates"]
    assert len(after_drops) >= 3
    assert len(planned) >= 1
    # The client gives seqs up only where there was nothing to get.
    resets = [e for e in events if e["type"] == "reset"]
    assert stats["resets"] == len(resets) <= len(holes)
    for reset in resets:
        assert reset["reason"] == "gap not filled"
        assert set(range(reset["last"] + 1, reset["seq"] + 1)) <= holes


SECRET = "local-test-secret-of-thirty-two-bytes"


def _token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, "HS256")


def _presence_event(kind: str) -> str:
    """A page predicate: its log has a presence event ``kind`` of the connection given."""
    return f"(id) => log.presence.some((p) => p.event === {kind!r} && p.connectionId === id)"


@needs_browser
async def test_two_tabs_see_each_other_in_presence_and_the_leave_when_one_closes(
    context: Any,
) -> None:
    with anyio.fail_after(60):
        async with (
            local_stack(environ={"AUTH_JWT_SECRET": SECRET}) as stack,
        ):
            alice, bob = [
                await _open_client(
                    context, stack.page_url, {"rooms": ["lobby"], "token": _token(user)}
                )
                for user in ("alice", "bob")
            ]
            alice_id, bob_id = [
                await tab.evaluate("() => client.connectionId") for tab in (alice, bob)
            ]
            # A hears B join (B joined second), and each sees both in the room.
            await alice.wait_for_function(_presence_event("join"), arg=bob_id, timeout=WAIT_MS)
            seen_by_alice = await alice.evaluate("() => client.presence('lobby')")
            seen_by_bob = await bob.evaluate("() => client.presence('lobby')")
            bob_heard = await bob.evaluate("() => log.presence")

            await bob.close()  # the tab goes, and its socket with it
            await alice.wait_for_function(_presence_event("leave"), arg=bob_id, timeout=WAIT_MS)
            after = await alice.evaluate("() => client.presence('lobby')")
            alice_heard = await alice.evaluate("() => log.presence")
    both = [{"userId": "alice", "connections": 1}, {"userId": "bob", "connections": 1}]
    assert seen_by_alice == {"room": "lobby", "users": both, "connections": 2}
    assert seen_by_bob == seen_by_alice
    # B may hear A's join too (the event is a job: it reaches whoever is in the room when it
    # runs), never its own.
    assert {(p["event"], p["connectionId"], p["userId"]) for p in bob_heard} <= {
        ("join", alice_id, "alice")
    }
    assert [(p["event"], p["room"], p["connectionId"], p["userId"]) for p in alice_heard] == [
        ("join", "lobby", bob_id, "bob"),
        ("leave", "lobby", bob_id, "bob"),
    ]
    assert after == {"room": "lobby", "users": [both[0]], "connections": 1}
