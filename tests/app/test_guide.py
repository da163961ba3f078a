"""The guide's five-minute app and its test (docs/app.md) run as printed."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsfanout import ConnectionRefused
from wsfanout.testing import TestClient

GUIDE = Path(__file__).parents[2] / "docs" / "app.md"


def blocks() -> list[str]:
    section = GUIDE.read_text().split("## Five minutes", 1)[1].split("\n## ", 1)[0]
    return [part.split("```", 1)[0] for part in section.split("```python\n")[1:]]


@pytest.fixture
def guide_app() -> Iterator[types.ModuleType]:
    """The guide's app.py, importable as ``app`` for the guide's test."""
    module = types.ModuleType("app")
    exec(compile(blocks()[0], "docs/app.md", "exec"), module.__dict__)  # noqa: S102  (our guide)
    previous = sys.modules.get("app")
    sys.modules["app"] = module
    yield module
    if previous is None:
        del sys.modules["app"]
    else:
        sys.modules["app"] = previous


async def test_the_guides_test_passes_on_the_guides_app(guide_app: types.ModuleType) -> None:
    app_code, test_code = blocks()
    assert "app.lambda_handler" in app_code
    namespace: dict[str, Any] = {}
    exec(compile(test_code, "docs/app.md", "exec"), namespace)  # noqa: S102  (our guide)
    await namespace["test_typing_reaches_the_room_but_not_the_sender"]()
    assert guide_app.handler == guide_app.app.lambda_handler


async def test_the_readmes_first_app_works_as_printed() -> None:
    """The App on the README's first screen: members of a tenant's room see each other type."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (our README)
    async with TestClient(namespace["app"]) as client:
        alice = await client.connect(query={"tenant": "acme"})
        bob = await client.connect(query={"tenant": "acme"})
        for member in (alice, bob):
            await member.send({"action": "join", "room": "lobby"})
        await alice.send({"action": "typing", "room": "lobby"})
        assert bob.received == [{"type": "typing"}]
        assert alice.received == []
        with pytest.raises(ConnectionRefused):
            await client.connect()
