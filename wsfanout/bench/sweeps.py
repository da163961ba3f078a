"""``wsfanout bench scaling`` and ``wsfanout bench distributed``: how the engine scales.

Scaling: N connections times C senders, each run in a fresh process, to show memory staying flat
as N grows and where throughput stops growing with C. Distributed: one "all" job split into S
parallel-scan segments, run by S worker processes at once (as S Lambda invocations would), to
show how wall time falls with S. Neither needs gone connections, so each table is seeded once and
reused by every run on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from .algorithms import Spec, bench_session
from .harness import Bench, Run, Scenario, bench_ids, control_session, services
from .progress import console_for, run_progress

__all__ = ["DistributedOptions", "ScalingOptions", "run_distributed", "run_scaling"]


# For one seeded table: the runs to measure on it, each a name and the specs run together.
RunsFor = Callable[[Bench, str, int], Iterator[tuple[str, list[Spec]]]]


@dataclass(frozen=True, slots=True)
class ScalingOptions:
    """What ``wsfanout bench scaling`` measures."""

    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    concurrencies: tuple[int, ...] = (8, 32, 128, 512)
    scenario: Scenario = field(default_factory=Scenario)
    json_path: str | None = None
    plot_path: str | None = None


@dataclass(frozen=True, slots=True)
class DistributedOptions:
    """What ``wsfanout bench distributed`` measures."""

    connections: int = 20_000
    segments: tuple[int, ...] = (1, 2, 4, 8)
    concurrency: int = 32
    scenario: Scenario = field(default_factory=Scenario)
    json_path: str | None = None
    plot_path: str | None = None


async def _sweep(
    scenario: Scenario,
    console: Console,
    sizes: Sequence[int],
    runs_for: RunsFor,
) -> list[Run]:
    """Seed one table per size, then measure every (name, specs) that ``runs_for`` yields."""
    results: list[Run] = []
    with services(scenario) as where:
        session = bench_session()
        async with (
            session.client("dynamodb", endpoint_url=where.moto_url) as dynamodb,
            control_session(where) as http,
        ):
            bench = Bench(scenario, where, dynamodb, http)
            for size in sizes:
                ids = bench_ids(size)
                with console.status(f"seeding {size:,} registry items in moto server"):
                    table = await bench.create_table("sweep", ids)
                with run_progress(console) as progress:
                    for name, specs in runs_for(bench, table, size):
                        task = progress.add_task(name, total=size)
                        run = await bench.measure(
                            name,
                            specs,
                            table=table,
                            ids=ids,
                            advance=partial(progress.advance, task),
                            check_registry=False,
                        )
                        progress.update(task, completed=size)
                        results.append(run)
                await bench.drop_table(table)
    return results


def _write_json(path: str | None, options: Any, runs: Sequence[Run], **extra: Any) -> None:
    if path:
        options_dict = {
            k: v for k, v in asdict(options).items() if k not in ("json_path", "plot_path")
        }
        document = {"options": options_dict, "runs": [r.as_dict() for r in runs], **extra}
        Path(path).write_text(json.dumps(document, indent=2) + "\n")


def _checked(runs: Sequence[Run], console: Console) -> int:
    wrong = [f"{r.name} (N={r.connections:,})" for r in runs if not r.correct]
    if wrong:
        console.print(f"[red]runs that missed or duplicated: {', '.join(wrong)}[/red]")
        return 1
    return 0


# -- scaling --------------------------------------------------------------------------------------


def memory_growth(runs: Sequence[Run], small: int, big: int) -> dict[int, float]:
    """Per concurrency: peak RSS at N=big minus at N=small (MB)."""
    rss = {(r.connections, r.concurrency): r.peak_rss_mb for r in runs}
    return {c: rss[(big, c)] - rss[(small, c)] for (n, c) in rss if n == big and (small, c) in rss}


def run_scaling(options: ScalingOptions) -> int:
    """Sweep N x C with the engine; print the grid and the memory growth; plot if asked."""
    console = console_for()

    def runs_for(bench: Bench, table: str, size: int) -> Iterator[tuple[str, list[Spec]]]:
        for concurrency in options.concurrencies:
            spec = bench.spec("engine", table, size, concurrency=concurrency)
            yield f"N={size:,} C={concurrency}", [spec]

    runs = anyio.run(_sweep, options.scenario, console, options.sizes, runs_for)
    table = Table(title=f"bench scaling: engine, latency {options.scenario.latency_s * 1000:g} ms")
    for column in ("N", "concurrency", "deliveries/s", "CPU µs/delivery", "peak RSS MB", "s"):
        table.add_column(column, justify="right")
    table.add_column("missed / dup", justify="right")
    for run in runs:
        table.add_row(
            f"{run.connections:,}",
            str(run.concurrency),
            f"{run.rate:,.0f}",
            f"{run.cpu_us:,.0f}",
            f"{run.peak_rss_mb:.1f}",
            f"{run.elapsed_s:.1f}",
            f"{run.missed} / {run.duplicated}",
        )
    console.print(table)
    growth: dict[int, float] = {}
    sizes = sorted(options.sizes)
    if len(sizes) >= 2:
        growth = memory_growth(runs, sizes[-2], sizes[-1])
        figures = ", ".join(f"C={c}: {mb:+.1f} MB" for c, mb in sorted(growth.items()))
        console.print(f"peak RSS, N={sizes[-1]:,} minus N={sizes[-2]:,}: {figures}")
    _write_json(options.json_path, options, runs, memory_growth_mb=growth)
    if options.plot_path:
        from .plot import plot_scaling  # noqa: PLC0415  (matplotlib is an optional extra)

        plot_scaling(runs, options.plot_path)
        console.print(f"plot written to {options.plot_path}")
    return _checked(runs, console)


# -- distributed ----------------------------------------------------------------------------------


def run_distributed(options: DistributedOptions) -> int:
    """One job in S segments by S concurrent workers, for each S; print wall time and speed-up."""
    console = console_for()

    def runs_for(bench: Bench, table: str, size: int) -> Iterator[tuple[str, list[Spec]]]:
        for count in options.segments:
            specs = bench.segment_specs(table, size, count, concurrency=options.concurrency)
            yield f"S={count}", specs

    runs = anyio.run(_sweep, options.scenario, console, (options.connections,), runs_for)
    table = Table(
        title=f'bench distributed: one "all" job, N={options.connections:,}, '
        f"{options.concurrency} senders per worker, "
        f"latency {options.scenario.latency_s * 1000:g} ms"
    )
    for column in ("segments = workers", "wall s", "deliveries/s", "speed-up", "CPU µs/delivery"):
        table.add_column(column, justify="right")
    table.add_column("missed / dup", justify="right")
    first = runs[0].elapsed_s if runs else 0.0
    for count, run in zip(options.segments, runs, strict=True):
        table.add_row(
            str(count),
            f"{run.elapsed_s:.2f}",
            f"{run.rate:,.0f}",
            f"{first / run.elapsed_s:.2f}x" if run.elapsed_s else "-",
            f"{run.cpu_us:,.0f}",
            f"{run.missed} / {run.duplicated}",
        )
    console.print(table)
    _write_json(options.json_path, options, runs)
    if options.plot_path:
        from .plot import plot_distributed  # noqa: PLC0415  (matplotlib is an optional extra)

        plot_distributed(options.segments, runs, options.plot_path)
        console.print(f"plot written to {options.plot_path}")
    return _checked(runs, console)
