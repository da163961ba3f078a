"""The conformance runner against the local stack: every behaviour it checks must pass here.

The stack runs with short limits and an account throttle so that no check has to skip; the
same runner, pointed at a real stage, checks the claims against AWS itself.
"""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.table import Table

from wsfanout.exceptions import ConfigurationError, InvalidInputError
from wsfanout.local.conformance import (
    CHECKS,
    Result,
    Target,
    Verdict,
    check,
    open_target,
    passed,
    run_checks,
    skipped,
)
from wsfanout.local.emulator import Limits
from wsfanout.local.management import AccountThrottle
from wsfanout.local.stack import local_stack

pytestmark = pytest.mark.timeout(300)


def show(results: list[Result]) -> None:
    table = Table("behaviour", "result", "detail", title="conformance of the local stack")
    for result in results:
        table.add_row(result.name, result.outcome, result.detail)
    Console(width=160).print(table)


async def test_every_behaviour_passes_on_the_local_stack() -> None:
    async with (
        local_stack(
            limits=Limits(idle_timeout_s=5), throttle=AccountThrottle(rate=20, burst=20)
        ) as stack,
        open_target(stack.ws_url, stack.management_url) as target,
    ):
        assert target.config is not None
        results = await run_checks(target)
    show(results)
    assert [r.name for r in results] == list(CHECKS)
    assert len(results) >= 12
    failures = [r for r in results if r.outcome != "pass"]
    assert not failures, failures


async def test_checks_that_need_a_knob_skip_without_it() -> None:
    names = ["account throttle: 429 LimitExceededException", "idle connection: closed with 1001"]
    async with local_stack() as stack, open_target(stack.ws_url, stack.management_url) as target:
        results = await run_checks(target, names)
        no_config = Target(**{**target.__dict__, "config": None})
        assert {r.outcome for r in await run_checks(no_config, names)} == {"skip"}
    assert [r.outcome for r in results] == ["skip", "skip"]
    assert "--account-rate" in results[0].detail
    assert "--idle-timeout" in results[1].detail


async def test_a_check_that_raises_or_is_unknown() -> None:
    name = "test-only: a check that breaks"

    @check(name)
    async def broken(_target: Target) -> Verdict:
        raise RuntimeError("boom")

    try:
        with pytest.raises(ConfigurationError):
            check(name)(broken)
        async with (
            local_stack() as stack,
            open_target(stack.ws_url, stack.management_url) as target,
        ):
            [result] = await run_checks(target, [name])
            with pytest.raises(InvalidInputError):
                await run_checks(target, ["no such behaviour"])
    finally:
        del CHECKS[name]
    assert (result.outcome, result.detail) == ("fail", "RuntimeError: boom")
    assert passed("x").outcome == "pass"
    assert skipped("x").outcome == "skip"


async def test_bad_urls_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="--ws"):
        async with open_target("http://x/local", "http://x/local"):
            pass
    with pytest.raises(InvalidInputError, match="--management"):
        async with open_target("ws://x/local", "ftp://x/local"):
            pass
