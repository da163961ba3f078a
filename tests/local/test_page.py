"""The demo page at ``/``, driven in a real headless Chromium (Debian's ``chromium``) by
Playwright: two tabs are two connections, and what one sends shows up live in the other's log.

``make test-browser`` installs what this needs; elsewhere it skips with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anyio
import pytest

from tests.local.browser import WAIT_MS, chromium, needs_browser
from wsfanout.local.stack import local_stack

pytestmark = pytest.mark.timeout(90)


async def _connect(page: Any, url: str) -> None:
    await page.goto(url, timeout=WAIT_MS)
    await page.click("#connect", timeout=WAIT_MS)
    await page.wait_for_function(
        "document.getElementById('status').textContent === 'open'", timeout=WAIT_MS
    )


async def _frame(page: Any, *, kind: str, **expected: Any) -> dict[str, Any]:
    """The first frame received in ``page``'s log (``←`` lines) of type ``kind`` whose fields
    include ``expected``; waits for it to arrive."""
    predicate = """([kind, expected]) => [...document.querySelectorAll('#log li')].some((li) => {
        const at = li.textContent.indexOf('← ');
        if (at < 0) return false;
        let frame;
        try { frame = JSON.parse(li.textContent.slice(at + 2)); } catch (_) { return false; }
        const same = ([k, v]) => JSON.stringify(frame[k]) === JSON.stringify(v);
        return frame.type === kind && Object.entries(expected).every(same);
    })"""
    await page.wait_for_function(predicate, arg=[kind, expected], timeout=WAIT_MS)
    for text in await page.locator("#log li").all_text_contents():
        _, arrow, body = text.partition("← ")
        if arrow:
            frame = json.loads(body)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in expected.items()):
                return dict(frame)
    raise AssertionError(f"no {kind!r} frame with {expected} in the log")


async def _logged(page: Any, text: str) -> None:
    """Wait for a line of ``page``'s log that contains ``text``."""
    predicate = """(text) => [...document.querySelectorAll('#log li')]
        .some((li) => li.textContent.includes(text))"""
    await page.wait_for_function(predicate, arg=text, timeout=WAIT_MS)


async def test_the_page_is_served_at_the_root_with_the_stage() -> None:
    """Without a browser: ``/`` answers the page (not the management catch-all's 403)."""
    async with local_stack(stage="dev_1") as stack, aiohttp.ClientSession() as session:
        with anyio.fail_after(20):
            async with session.get(stack.page_url) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                html = await response.text()
            async with session.get(stack.page_url + "nothing-here") as response:
                assert response.status == 403  # as API Gateway answers an unknown path
    assert '<html lang="en" data-stage="dev_1">' in html
    assert 'id="connect"' in html


@needs_browser
async def test_two_tabs_join_send_broadcast_and_leave_through_the_page(tmp_path) -> None:
    with anyio.fail_after(75):
        async with local_stack() as stack, chromium() as browser:
            context = await browser.new_context()
            alice, bob = await context.new_page(), await context.new_page()
            await _connect(alice, stack.page_url)
            await _connect(bob, stack.page_url)
            assert await alice.input_value("#url") == stack.ws_url

            # A joins the lobby (the page's defaults: room "lobby", send to room "lobby").
            await alice.click("#join")
            await _frame(alice, kind="ack", action="joinRoom", room="lobby")

            # B joins too (only members post to a room), then sends to it; A sees the
            # message frame with the data, live.
            await bob.click("#join")
            await _frame(bob, kind="ack", action="joinRoom", room="lobby")
            # A hears B join, and "Who is here" counts both (anonymous: no users, 2 connections).
            bob_id = (await bob.text_content("#cid") or "").removeprefix("as ")
            await _logged(alice, f"{bob_id} joined lobby")
            await alice.click("#who")
            await _logged(alice, "in lobby: no signed-in users; 2 connections")
            await bob.fill("#data", "hi from the other tab")
            await bob.click("#send")
            await _frame(bob, kind="ack", action="sendMessage", room="lobby")
            message = await _frame(alice, kind="message", data="hi from the other tab")
            assert message["from"]["connectionId"]

            # Anonymous connections may not broadcast: an error frame, shown as an error.
            await bob.click("#broadcast")
            error = await _frame(bob, kind="error")
            assert "forbidden" in json.dumps(error)
            assert await bob.locator("#log li.error").count() >= 1

            # A leaves the room it is in.
            await alice.click("#leave")
            await _frame(alice, kind="ack", action="leaveRoom", room="lobby", wasMember=True)

            shot = tmp_path / "page.png"
            await alice.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            await alice.click("#disconnect")
            await alice.wait_for_function(
                "document.getElementById('status').textContent === 'closed'",
                timeout=WAIT_MS,
            )
