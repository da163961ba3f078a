"""``wsfanout bench quota``: one "all" job by S workers under an account-level request quota.

API Gateway's quota is one token bucket for every PostToConnection of the account and region,
whoever sends it; S workers of one job share it with no coordinator. For each S the command
first measures what the local endpoint serves with no bucket, then restarts it with a bucket of
rate R (a share of that rate, so the workers can overrun it) and burst B, and runs the job with
each pacing (``aimd``: the concurrency limiter; ``learnt``: the rate learnt from 429s), one
after the other. R is measured per S, seconds before its runs, because on this shared machine
what it can serve changes by a factor of two or more within minutes, and with the number of
worker processes. Per run it reports the delivered rate over R, the share of
requests answered 429 by the bucket, and the endpoint's records of missed and duplicated
deliveries. The rate is given twice: over the wall time of the job, and over the span the
account's bucket was in use (the endpoint's first POST to its last answer), which leaves out the
registry's first page: moto sorts the whole table for every Scan page, so at S = 4 its first
page takes seconds that no pacer governs (DynamoDB answers in milliseconds). The goal is judged
on the second. For the same reason the engine's first registry page is as big as the others
here: a small one only adds a Scan, as slow as a big one, before the second page.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from rich.console import Console
from rich.table import Table

from ..core.pacing import PACINGS, Pacing
from ..exceptions import InvalidInputError
from ..local.processes import endpoint_process, moto_server
from .algorithms import bench_session
from .harness import STAGE, Bench, Run, Scenario, Services, bench_ids
from .progress import console_for, run_progress

__all__ = ["QuotaOptions", "QuotaRow", "run_quota"]

GOAL_RATE = 0.95  # the bar, for S >= 2: delivered rate / R ...
GOAL_429 = 0.05  # ... with at most this share of requests answered 429
_PAGE = 1000  # the engine's registry page size, its first page's too (see the module's doc)


@dataclass(frozen=True, slots=True)
class QuotaOptions:
    """What ``wsfanout bench quota`` measures.

    :raises InvalidInputError: a share outside (0, 1], no segments or no pacing.
    """

    connections: int = 20_000  # the N; about a minute per run here
    segments: tuple[int, ...] = (1, 2, 4)
    concurrency: int = 32
    latency_s: float = 0.020
    share: float = 0.65  # R as a share of the unthrottled rate measured first
    account_rate: float | None = None  # R itself: no calibration run
    burst_s: float = 0.1  # B as seconds of R
    pacings: tuple[Pacing, ...] = PACINGS
    seed: int = 1
    json_path: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise InvalidInputError(f"--share must be in (0, 1], got {self.share}")
        if not self.segments or not self.pacings:
            raise InvalidInputError("give at least one segment count and one pacing")


@dataclass(slots=True)
class QuotaRow:
    """One run: S workers with one pacing, and what the endpoint counted."""

    segments: int
    pacing: str
    account_rate: float
    burst: int
    run: Run
    answered_429: int  # the bucket's refusals (the endpoint's ``account_throttled``)
    span_s: float  # the endpoint's first POST to its last answer
    unthrottled: Run | None  # the run R was derived from (None: R was given)

    @property
    def rate_over_r(self) -> float:
        return self.run.rate / self.account_rate

    @property
    def span_rate_over_r(self) -> float:
        """The delivered rate over the span the account was in use, over R."""
        return self.run.delivered / self.span_s / self.account_rate if self.span_s > 0 else 0.0

    @property
    def share_429(self) -> float:
        requests = self.run.requests or 0
        return self.answered_429 / requests if requests else 0.0

    @property
    def failed(self) -> int:
        return self.run.outcome.get("failed", 0)

    @property
    def correct(self) -> bool:
        return self.run.correct and not self.failed

    @property
    def meets_goal(self) -> bool:
        return self.correct and self.span_rate_over_r >= GOAL_RATE and self.share_429 <= GOAL_429

    def as_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "pacing": self.pacing,
            "account_rate": self.account_rate,
            "account_burst": self.burst,
            "unthrottled_rate": self.unthrottled.rate if self.unthrottled else None,
            "rate_over_r": self.rate_over_r,
            "span_s": self.span_s,
            "span_rate_over_r": self.span_rate_over_r,
            "answered_429": self.answered_429,
            "share_429": self.share_429,
            "failed": self.failed,
            "meets_goal": self.meets_goal,
            "run": self.run.as_dict(),
        }


async def _measure(options: QuotaOptions, console: Console) -> list[QuotaRow]:
    scenario = Scenario(latency_s=options.latency_s, seed=options.seed)
    size = options.connections
    ids = bench_ids(size)
    with moto_server() as moto_url:
        async with (
            bench_session().client("dynamodb", endpoint_url=moto_url) as dynamodb,
            aiohttp.ClientSession() as http,
        ):

            def bench_at(base_url: str) -> Bench:
                where = Services(moto_url, f"{base_url}/{STAGE}", base_url)
                return Bench(scenario, where, dynamodb, http)

            async def measure(bench: Bench, name: str, count: int, pacing: Pacing) -> Run:
                specs = bench.segment_specs(
                    table,
                    size,
                    count,
                    concurrency=options.concurrency,
                    pacing=pacing,
                    first_page_size=_PAGE,
                )
                with run_progress(console) as progress:
                    task = progress.add_task(name, total=size)
                    advance = partial(progress.advance, task)
                    return await bench.measure(
                        name, specs, table=table, ids=ids, advance=advance, check_registry=False
                    )

            rows: list[QuotaRow] = []
            with endpoint_process(scenario.endpoint_args()) as base_url:
                open_bench = bench_at(base_url)
                with console.status(f"seeding {size:,} registry items in moto server"):
                    table = await open_bench.create_table("quota", ids)
            for count in options.segments:
                rate, unthrottled = options.account_rate, None
                if rate is None:  # what this machine serves now, with this many workers
                    with endpoint_process(scenario.endpoint_args()) as base_url:
                        name = f"S={count} no quota"
                        unthrottled = await measure(bench_at(base_url), name, count, "aimd")
                    rate = round(unthrottled.rate * options.share, 1)
                burst = max(1, round(rate * options.burst_s))
                quota = ["--account-rate", str(rate), "--account-burst", str(burst)]
                with endpoint_process([*scenario.endpoint_args(), *quota]) as base_url:
                    bench = bench_at(base_url)
                    for pacing in options.pacings:  # one after the other, minutes apart at most
                        run = await measure(bench, f"S={count} {pacing}", count, pacing)
                        stats = await bench.stats() or {}
                        refused = int(stats.get("account_throttled", 0))
                        span = float(stats["last_answer_at"]) - float(stats["first_post_at"])
                        rows.append(
                            QuotaRow(count, pacing, rate, burst, run, refused, span, unthrottled)
                        )
            await dynamodb.delete_table(TableName=table)
    return rows


def quota_table(rows: list[QuotaRow], options: QuotaOptions) -> Table:
    """The rows as the docs show them."""
    table = Table(
        title=f'bench quota: one "all" job, N={options.connections:,}, '
        f"{options.concurrency} senders per worker, latency {options.latency_s * 1000:g} ms"
    )
    columns = ("S", "unthrottled /s", "R /s", "B", "pacing", "wall s", "deliveries/s")
    rates = ("wall rate / R", "posting s", "posting rate / R")
    for column in (*columns, *rates, "requests", "429 share", "missed", "duplicated"):
        table.add_column(column, justify="right")
    table.add_column("failed", justify="right")
    for row in rows:
        run = row.run
        table.add_row(
            str(row.segments),
            f"{row.unthrottled.rate:,.0f}" if row.unthrottled else "-",
            f"{row.account_rate:,.0f}",
            f"{row.burst:,}",
            row.pacing,
            f"{run.elapsed_s:.2f}",
            f"{run.rate:,.0f}",
            f"{row.rate_over_r:.3f}",
            f"{row.span_s:.2f}",
            f"{row.span_rate_over_r:.3f}",
            f"{run.requests or 0:,}",
            f"{row.share_429:.1%}",
            str(run.missed),
            str(run.duplicated),
            str(row.failed),
        )
    return table


def run_quota(options: QuotaOptions) -> int:
    """Measure, print the table and whether each pacing met the goal at S >= 2; write JSON.

    Exit status 1 when any run missed, duplicated or failed a delivery; the rate goal is
    reported, not gated (the machine is shared, so rates vary from run to run).
    """
    console = console_for()
    rows = anyio.run(_measure, options, console)
    console.print(quota_table(rows, options))
    for pacing in options.pacings:
        many = [row for row in rows if row.pacing == pacing and row.segments >= 2]
        if many:
            met = all(row.meets_goal for row in many)
            console.print(
                f"{pacing}: S >= 2, posting rate >= {GOAL_RATE:g} R, <= {GOAL_429:.0%} 429s, "
                f"none missed or duplicated: {'met' if met else 'not met'}"
            )
    if options.json_path:
        document = {"options": asdict(options), "rows": [row.as_dict() for row in rows]}
        Path(options.json_path).write_text(json.dumps(document, indent=2) + "\n")
    wrong = [f"S={r.segments} {r.pacing}" for r in rows if not r.correct]
    if wrong:
        console.print(f"[red]runs that missed, duplicated or failed: {', '.join(wrong)}[/red]")
        return 1
    return 0
