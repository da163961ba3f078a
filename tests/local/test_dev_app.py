"""``wsfanout dev --app``: a user's app module, written to a temporary directory, served by the
local stack to real WebSocket clients; and ``--reload`` restarting it when the file changes.

The app has a custom route (``typing``, not among the template's route keys, so API Gateway's
route selection sends it to ``$default`` and the App routes it by its ``action``) and a
``$connect`` hook that stores a query attribute the route reads back from the registry.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from tests.helpers import WSFANOUT
from tests.local.dev_process import running_dev
from wsfanout.local.apps import load_handler
from wsfanout.local.stack import local_stack

pytestmark = pytest.mark.timeout(180)

APP = """
from wsfanout import App

app = App()


@app.on_connect
async def connect(ctx):
    ctx.attributes["nick"] = ctx.query.get("nick", "anonymous")


@app.route("typing")
async def typing(ctx):
    await ctx.reply({{"type": "{kind}", "nick": ctx.attributes["nick"], "text": ctx.json["text"]}})
"""


def write_app(directory: Path, module: str, kind: str) -> None:
    (directory / f"{module}.py").write_text(APP.format(kind=kind))


@pytest.fixture
def imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever a test imports from its tmp directory is forgotten afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("devapp_"):
            del sys.modules[name]


async def _frame(ws: Any, *, seconds: float = 20) -> dict[str, Any]:
    with anyio.fail_after(seconds):
        return dict(json.loads(await ws.recv()))


async def _typing(ws_url: str, nick: str) -> dict[str, Any]:
    async with connect(f"{ws_url}?nick={nick}") as ws:
        await ws.send(json.dumps({"action": "typing", "text": "hi"}))
        return await _frame(ws)


async def test_the_app_serves_its_custom_route_on_the_local_stack(tmp_path, imports) -> None:
    write_app(tmp_path, "devapp_echo", "typing")
    handler = load_handler("devapp_echo:app", tmp_path)
    assert sys.path[0] == str(tmp_path.resolve())

    async with local_stack(route_handler=handler) as stack:
        assert stack.emulator.route_handler is handler
        assert "typing" not in stack.emulator.routes  # so it reaches the App as $default
        assert await _typing(stack.ws_url, "ada") == {"type": "typing", "nick": "ada", "text": "hi"}


def test_a_plain_lambda_handler_is_used_as_is(tmp_path, imports) -> None:
    (tmp_path / "devapp_plain.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200}\n"
    )
    handler = load_handler("devapp_plain:handler", tmp_path)
    assert handler is sys.modules["devapp_plain"].handler
    assert handler({}, None) == {"statusCode": 200}


# -- --reload, end to end through the console script ------------------------------------------


async def test_reload_restarts_the_stack_with_the_changed_app(tmp_path) -> None:
    write_app(tmp_path, "devapp_reloaded", "typing")
    command = [WSFANOUT, "dev", "--app", "devapp_reloaded:app", "--reload"]
    async with running_dev(command, tmp_path / "stderr.txt", cwd=tmp_path) as dev:
        out = dev.out
        await out.until(f"watching {tmp_path.resolve()}")
        first = await out.ws_url()
        await out.until("to stop")
        assert (await _typing(first, "ada"))["type"] == "typing"

        write_app(tmp_path, "devapp_reloaded", "typing-v2")
        assert "devapp_reloaded.py changed, restarting" in await out.until("restarting")
        second = await out.ws_url()
        await out.until("to stop")
        answer = await _typing(second, "bob")
        assert answer == {"type": "typing-v2", "nick": "bob", "text": "hi"}

        # "stopped": the child shut its stack down
        await dev.stop(signal.SIGINT, "SIGINT, stopping", seconds=90)
    host, port = second.removeprefix("ws://").split("/")[0].split(":")
    with pytest.raises(OSError):  # noqa: PT011  (refused: the child is gone too)
        await anyio.connect_tcp(host, int(port))
