"""The checks of behaviours only a local stack's knobs make quick to see (an account throttle,
a short idle timeout), read from its ``GET /_wsfanout/config``; a target without them skips."""

from __future__ import annotations

from contextlib import suppress
from typing import Final

import anyio
from websockets.exceptions import ConnectionClosed

from .runner import (
    UNKNOWN_ID,
    WAIT_S,
    ConformanceTarget,
    Verdict,
    answer_of,
    check,
    expect,
    failed,
    passed,
    skipped,
)

__all__ = ["IDLE_MAX_S"]  # the checks register themselves; this bounds the idle one

IDLE_MAX_S: Final = 30.0
"""Idle timeouts longer than this are not waited for (the check skips)."""


@check("account throttle: 429 LimitExceededException")
async def _throttle(target: ConformanceTarget) -> Verdict:
    rate = (target.config or {}).get("account_rate")
    burst = (target.config or {}).get("account_burst")
    if not rate or not burst:
        return skipped(
            "the target has no account throttle knob (locally: wsfanout dev --account-rate R)"
        )
    limit = int(10 * burst + 10 * rate + 100)
    got: tuple[str, int] = ("", 200)
    async with target.client() as client:
        sent = 0
        while sent < limit:
            sent += 1
            got = await answer_of(client.get_connection(ConnectionId=UNKNOWN_ID))
            if got[1] == 429:
                break
        else:
            return failed(f"{limit} requests at once, none throttled (rate {rate}/s)")
        verdict = expect(got, "LimitExceededException", 429)
        # Let the bucket refill before the next check, and check that it does.
        give_up = anyio.current_time() + burst / rate + WAIT_S
        while (await answer_of(client.get_connection(ConnectionId=UNKNOWN_ID)))[1] == 429:
            if anyio.current_time() > give_up:
                return failed("throttled, and still throttled after the bucket should refill")
            await anyio.sleep(1 / rate)  # polling at the refill rate, bounded by give_up
        # A whole burst back before the next check, whose replies go through the same bucket.
        await anyio.sleep(burst / rate)  # the bucket's own refill time, not a synchronisation
    if verdict.outcome != "pass":
        return verdict
    return passed(f"request {sent} got 429 LimitExceededException (burst {burst}); then refilled")


@check("idle connection: closed with 1001")
async def _idle(target: ConformanceTarget) -> Verdict:
    idle = (target.config or {}).get("idle_timeout_s")
    if not idle or idle > IDLE_MAX_S:
        return skipped(
            f"the idle timeout is {idle or 600:g} s; run the local stack with --idle-timeout 3"
        )
    # No frame at all (not even whoami, whose answer may take longer than a short timeout):
    # the idle clock starts at the handshake.
    async with target.raw_socket() as ws:
        started = anyio.current_time()
        with anyio.fail_after(idle + WAIT_S):
            with suppress(ConnectionClosed):
                await ws.recv()
                return failed("a frame came instead of the close")
        waited = anyio.current_time() - started
    close = ws.protocol.close_rcvd
    if close is None:
        return failed("the connection ended without a close frame")
    if close.code != 1001:
        return failed(f"closed with {close.code}, expected 1001")
    return passed(f"closed with 1001 after {waited:.1f} s idle (timeout {idle:g} s)")
