"""``wsfanout broadcast`` interrupted mid-run (SIGINT, SIGTERM) and resumed with its token.

The real console script against moto and the local endpoint (5% of connections gone): the
interrupted run prints its partial report and a resume token, and the resumed run reaches
exactly the rest. The engine's watermark promises none twice: the bound is 0.
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace

import pytest

from tests.cli.test_main import SLOW, SLOW_SENDERS, json_report, run_cli, run_cli_interrupted, seed
from tests.faults.conftest import Figures, settle
from tests.helpers import registered_ids
from wsfanout.core.models import FanoutReport

pytestmark = pytest.mark.faults

N = 3000


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_interrupted_and_resumed(
    registry, dynamodb, table_name, endpoint, signum, figures: list[Figures]
) -> None:
    fake, url = endpoint
    fake.faults = replace(SLOW, gone_rate=0.05, seed=6)
    ids = await seed(dynamodb, table_name, N)
    where = ("--table", table_name, "--endpoint", url, *SLOW_SENDERS, "--json")
    started = time.monotonic()
    first = await run_cli_interrupted(fake, signum, "broadcast", "--data", "m", *where)
    assert first.returncode == 1, first
    partial = json_report(first)
    assert partial["complete"] is False
    rest = await run_cli("broadcast", "--data", "m", "--resume", partial["resume_token"], *where)
    assert rest.returncode == 0, rest
    second = json_report(rest)
    seconds = time.monotonic() - started
    fields = ("delivered", "gone", "failed", "cleanup_failed")
    settle(
        figures,
        f"CLI {signum.name} mid-run, then --resume",
        fake=fake,
        ids=ids,
        remaining=await registered_ids(registry),
        report=FanoutReport(**{f: partial[f] + second[f] for f in fields}),
        bound=0,
        seconds=seconds,
    )
