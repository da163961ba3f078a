"""The conformance runner against the local stack (the chat app) and against the conformance
template run by the templated stack: every behaviour passes, but on the chat stack the three
that need the conformance API's shapes, which skip saying so.

The stacks run with a short idle timeout, and an account throttle for the throttle's check, so
that nothing else has to skip; the same runner, pointed at a real stage, checks the claims
against AWS itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest
from rich.console import Console
from rich.table import Table

from wsfanout.exceptions import ConfigurationError, InvalidInputError
from wsfanout.local.conformance import (
    CHECKS,
    ConformanceTarget,
    Result,
    Verdict,
    check,
    open_target,
    passed,
    run_checks,
    runner,
    skipped,
)
from wsfanout.local.conformance.api import TEMPLATE
from wsfanout.local.emulator import Limits
from wsfanout.local.management import AccountThrottle
from wsfanout.local.stack import Stack, local_stack
from wsfanout.local.template import load_template
from wsfanout.local.templated import templated_stack

pytestmark = pytest.mark.timeout(300)


THROTTLE = "account throttle: 429 LimitExceededException"
IDENTITY = "missing identity source: 401, authorizer not invoked"
NEEDS_API = {
    "no route and no $default: Forbidden",
    "two-way route answers, one-way route does not",
    IDENTITY,
}
ONE_WAY_RESPONSE = """\
  OneWayRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Api
      RouteId: !Ref OneWayRoute
      RouteResponseKey: $default
"""
LIMITS = Limits(idle_timeout_s=5)  # the idle check waits this long; 5 s leaves slack under load


def show(results: list[Result], title: str) -> None:
    table = Table("behaviour", "result", "detail", title=f"conformance of {title}")
    for result in results:
        table.add_row(result.name, result.outcome, result.detail)
    Console(width=200).print(table)


async def run_every_check(stack: Stack) -> list[Result]:
    """Every check against ``stack``: the throttle's last, once an account throttle is on (with
    it on throughout, the other checks' replies would wait in its bucket)."""
    async with open_target(stack.ws_url, stack.management_url) as target:
        assert target.config is not None
        results = await run_checks(target, [name for name in CHECKS if name != THROTTLE])
    stack.emulator.management.throttle = AccountThrottle(rate=20, burst=20)
    async with open_target(stack.ws_url, stack.management_url) as target:
        results += await run_checks(target, [THROTTLE])
    assert sorted(r.name for r in results) == sorted(CHECKS)
    return results


async def test_every_behaviour_passes_on_the_local_stack_or_needs_the_conformance_api() -> None:
    async with local_stack(limits=LIMITS) as stack:
        results = await run_every_check(stack)
    show(results, "the local stack (chat)")
    assert len(results) >= 23
    skips = {r.name: r.detail for r in results if r.outcome == "skip"}
    assert set(skips) == NEEDS_API  # the chat API has a $default, no two-way route, no authorizer
    assert all(detail.startswith("needs the conformance API") for detail in skips.values())
    failures = [r for r in results if r.outcome == "fail"]
    assert not failures, failures


async def test_every_behaviour_passes_on_the_conformance_template() -> None:
    async with templated_stack(load_template(TEMPLATE), limits=LIMITS) as stack:
        results = await run_every_check(stack)
    show(results, "the conformance template (wsfanout dev --template)")
    not_passed = [r for r in results if r.outcome != "pass"]
    assert not not_passed, not_passed


async def test_the_frame_checks_fail_on_a_target_whose_limits_are_not_what_it_claims() -> None:
    """Each frame check can fail: told limits other than the ones enforced (32 KB frames, 128 KB
    messages), each sees the target act otherwise and says how."""
    names = [
        "a 96 KB message in 24 KB frames: routed whole",
        "a 33 KB frame: closed with 1009",
        "a message over 128 KB in 32 KB frames: closed with 1009",
    ]
    async with local_stack() as stack, open_target(stack.ws_url, stack.management_url) as target:
        assert target.config is not None
        looser = {**target.config, "frame_bytes": 64 * 1024, "message_bytes": 256 * 1024}
        stricter = {**target.config, "frame_bytes": 16 * 1024, "message_bytes": 64 * 1024}
        [whole] = await run_checks(
            ConformanceTarget(**{**target.__dict__, "config": looser}), names[:1]
        )
        refused = await run_checks(
            ConformanceTarget(**{**target.__dict__, "config": stricter}), names[1:]
        )
    assert (whole.outcome, whole.detail.split(":")[0]) == ("fail", "closed with 1009")
    for result in refused:  # a frame or message under the real limits is routed, and answered
        assert result.outcome == "fail"
        assert result.detail.startswith("the target answered"), result.detail
        assert result.detail.endswith("first: it was routed")


async def test_the_conformance_api_checks_fail_where_the_api_misbehaves(tmp_path: Path) -> None:
    """The template changed so that API Gateway would act otherwise (no identity source, the
    one-way route made two-way): the checks of those behaviours fail, saying what they saw."""
    copy = tmp_path / "api"
    shutil.copytree(TEMPLATE.parent, copy)
    text = TEMPLATE.read_text()
    no_source = text.replace("      IdentitySource: [route.request.header.X-Conformance]\n", "")
    changed = no_source.replace("\nOutputs:\n", "\n" + ONE_WAY_RESPONSE + "\nOutputs:\n")
    assert changed.count("RouteResponseKey") == 2
    assert "IdentitySource" not in changed
    (copy / "template.yaml").write_text(changed)
    names = ["two-way route answers, one-way route does not", IDENTITY]
    async with (
        templated_stack(load_template(copy / "template.yaml")) as stack,
        open_target(stack.ws_url, stack.management_url) as target,
    ):
        two_way, identity = await run_checks(target, names)
    assert (two_way.outcome, two_way.detail) == (
        "fail",
        "a one-way route's integration body reached the client",
    )
    assert (identity.outcome, identity.detail) == (
        "fail",
        "the handshake without the identity source was accepted",
    )


async def test_checks_that_need_a_knob_skip_without_it() -> None:
    names = ["account throttle: 429 LimitExceededException", "idle connection: closed with 1001"]
    async with local_stack() as stack, open_target(stack.ws_url, stack.management_url) as target:
        results = await run_checks(target, names)
        no_config = ConformanceTarget(**{**target.__dict__, "config": None})
        assert {r.outcome for r in await run_checks(no_config, names)} == {"skip"}
    assert [r.outcome for r in results] == ["skip", "skip"]
    assert "--account-rate" in results[0].detail
    assert "--idle-timeout" in results[1].detail


async def test_a_check_that_raises_hangs_or_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    name, waits, hangs = (
        f"test-only: a check that {what}" for what in ("breaks", "waits", "hangs")
    )

    @check(name)
    async def broken(_target: ConformanceTarget) -> Verdict:
        raise RuntimeError("boom")

    @check(waits)
    async def waiting(_target: ConformanceTarget) -> Verdict:
        with anyio.fail_after(0.01):  # one of its own waits runs out: not "no verdict"
            await anyio.sleep_forever()
        return passed("unreachable")

    @check(hangs)
    async def hanging(_target: ConformanceTarget) -> Verdict:
        await anyio.sleep_forever()
        return passed("unreachable")

    monkeypatch.setattr(runner, "CHECK_TIMEOUT_S", 0.5)
    try:
        with pytest.raises(ConfigurationError):
            check(name)(broken)
        async with (
            local_stack() as stack,
            open_target(stack.ws_url, stack.management_url) as target,
        ):
            results = await run_checks(target, [name, waits, hangs])
            with pytest.raises(InvalidInputError):
                await run_checks(target, ["no such behaviour"])
    finally:
        for registered in (name, waits, hangs):
            del CHECKS[registered]
    assert [(r.outcome, r.detail) for r in results] == [
        ("fail", "RuntimeError: boom"),
        ("fail", "TimeoutError"),
        ("fail", "no verdict within 0.5 s"),
    ]
    assert passed("x").outcome == "pass"
    assert skipped("x").outcome == "skip"


async def test_bad_urls_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="--ws"):
        async with open_target("http://x/local", "http://x/local"):
            pass
    with pytest.raises(InvalidInputError, match="--management"):
        async with open_target("ws://x/local", "ftp://x/local"):
            pass
