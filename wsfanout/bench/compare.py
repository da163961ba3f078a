"""``wsfanout bench``: seed, gather, floor and the engine, side by side in one run.

Every algorithm broadcasts to the same registry table (restored after each run) through the same
endpoint process, one run at a time, interleaved round by round so that a noisy moment on this
shared machine hits every algorithm alike; the table shows each one's median. The algorithms
that read no registry run beside one that does (see ``NO_REGISTRY``). Ratios are to
``seed`` (the classic loop), to ``floor`` (the cheapest correct sender over aiohttp, the
practical limit) and to ``floor-raw`` (the same over bare asyncio connections, the physical one).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from . import DEFAULT_ALGORITHMS, NO_REGISTRY
from .algorithms import bench_session
from .harness import Bench, Run, Scenario, bench_ids, control_session, median_run, services
from .progress import console_for, run_progress

__all__ = ["CompareOptions", "run_compare"]

_PAIRED_MIN_ROUNDS = 5
FLOORS = ("floor", "floor-raw")  # the baselines every ratio is taken to


@dataclass(frozen=True, slots=True)
class CompareOptions:
    """What ``wsfanout bench`` measures."""

    connections: int = 5000
    concurrency: int = 128
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    repeat: int = 3
    scenario: Scenario = field(default_factory=lambda: Scenario(gone_rate=0.05))
    json_path: str | None = None


@dataclass(slots=True)
class Comparison:
    """The rows (medians) and every run behind them."""

    rows: list[Run]
    runs: list[Run]

    def row(self, name: str) -> Run | None:
        return next((r for r in self.rows if r.name == name), None)

    def ratios(self) -> dict[str, dict[str, float]]:
        """Per algorithm: rate over seed's and each floor's, CPU per delivery over each floor's
        (keys ``rate_over_floor``, ``cpu_over_floor_raw``, ...)."""
        seed = self.row("seed")
        ratios: dict[str, dict[str, float]] = {}
        for row in self.rows:
            entry: dict[str, float] = {}
            if seed is not None and seed.rate:
                entry["rate_over_seed"] = row.rate / seed.rate
            for base in FLOORS:
                floor = self.row(base)
                if floor is not None and floor.rate:
                    entry[f"rate_over_{_key(base)}"] = row.rate / floor.rate
                    entry[f"cpu_over_{_key(base)}"] = row.cpu_us / floor.cpu_us
            ratios[row.name] = entry
        return ratios

    def paired(self, name: str = "engine", base: str = "floor") -> dict[str, float] | None:
        """``name`` against ``base`` round by round: medians and quartiles of the ratios.

        Runs of one round are seconds apart, so a noisy minute on this shared machine moves
        both sides of a round's ratio alike; the ratio of the two medians does not pair them.
        ``None`` with fewer than :data:`_PAIRED_MIN_ROUNDS` rounds: quartiles of fewer say little.
        Keys name the base: ``cpu_over_floor``, ``cpu_over_floor_q1``, ``rate_over_floor_raw``...
        """
        mine = [run for run in self.runs if run.name == name]
        floors = [run for run in self.runs if run.name == base]
        rounds = [(a, b) for a, b in zip(mine, floors, strict=False) if a.delivered and b.rate]
        if len(rounds) < _PAIRED_MIN_ROUNDS:
            return None
        cpu = [a.cpu_us / b.cpu_us for a, b in rounds]
        rate = [a.rate / b.rate for a, b in rounds]
        cpu_q, rate_q = statistics.quantiles(cpu, n=4), statistics.quantiles(rate, n=4)
        key = _key(base)
        return {
            "rounds": len(rounds),
            f"cpu_over_{key}": cpu_q[1],
            f"cpu_over_{key}_q1": cpu_q[0],
            f"cpu_over_{key}_q3": cpu_q[2],
            f"rate_over_{key}": rate_q[1],
            f"rate_over_{key}_q1": rate_q[0],
            f"rate_over_{key}_q3": rate_q[2],
        }

    def pairings(self) -> dict[str, dict[str, dict[str, float]]]:
        """Every algorithm paired with each floor that ran (not with itself): name -> base ->
        :meth:`paired`; algorithms with too few rounds are absent."""
        found: dict[str, dict[str, dict[str, float]]] = {}
        for row in self.rows:
            for base in FLOORS:
                if base != row.name and (paired := self.paired(row.name, base)) is not None:
                    found.setdefault(row.name, {})[base] = paired
        return found


def _key(base: str) -> str:
    return base.replace("-", "_")


async def _measure(options: CompareOptions, console: Console) -> Comparison:
    ids = bench_ids(options.connections)
    runs: dict[str, list[Run]] = {name: [] for name in options.algorithms}
    with services(options.scenario) as where:
        session = bench_session()
        async with (
            session.client("dynamodb", endpoint_url=where.moto_url) as dynamodb,
            control_session(where) as http,
        ):
            bench = Bench(options.scenario, where, dynamodb, http)
            with console.status(f"seeding {len(ids):,} classic registry items in moto server"):
                table = await bench.create_table("bench", ids)
            with run_progress(console) as progress:
                for round_ in range(options.repeat):
                    for name in options.algorithms:
                        if name == "seed" and round_:
                            continue  # minutes per run, and its rate is set by latency, not CPU
                        label = name if options.repeat == 1 else f"{name} #{round_ + 1}"
                        task = progress.add_task(label, total=len(ids))
                        spec = bench.spec(name, table, len(ids), concurrency=options.concurrency)
                        companions = []
                        # A registry reader beside them, at their pace, loads moto server as
                        # in the engine's runs, so the CPU figures compare like with like.
                        if name in NO_REGISTRY:
                            control = bench.where.control_url
                            companions = [bench.spec("scan", table, len(ids), control_url=control)]
                        run = await bench.measure(
                            name,
                            [spec],
                            table=table,
                            ids=ids,
                            advance=partial(progress.advance, task),
                            companions=companions,
                        )
                        progress.update(task, completed=len(ids))
                        runs[name].append(run)
            await bench.drop_table(table)
    return Comparison(
        rows=[median_run(runs[name]) for name in options.algorithms],
        runs=[run for name in options.algorithms for run in runs[name]],
    )


def _cell(value: int | None, bad: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"[red]{value:,}[/red]" if value and bad else f"{value:,}"


def comparison_table(comparison: Comparison, title: str) -> Table:
    ratios = comparison.ratios()
    raw = comparison.row("floor-raw") is not None
    table = Table(title=title)
    columns = (
        "algorithm",
        "deliveries/s",
        "x seed",
        "x floor",
        "CPU µs/delivery",
        "CPU x floor",
        *(("CPU x floor-raw",) if raw else ()),
        "peak RSS MB",
        "requests",
        "missed",
        "duplicated",
        "gone left",
        "runs",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "algorithm" else "right")
    counts = dict.fromkeys((r.name for r in comparison.rows), 0)
    for run in comparison.runs:
        counts[run.name] += 1
    for row in comparison.rows:
        ratio = ratios[row.name]
        table.add_row(
            row.name,
            f"{row.rate:,.0f}",
            f"{ratio['rate_over_seed']:.1f}" if "rate_over_seed" in ratio else "-",
            f"{ratio['rate_over_floor']:.2f}" if "rate_over_floor" in ratio else "-",
            f"{row.cpu_us:,.0f}",
            f"{ratio['cpu_over_floor']:.2f}" if "cpu_over_floor" in ratio else "-",
            *((f"{ratio['cpu_over_floor_raw']:.2f}",) if raw else ()),
            f"{row.peak_rss_mb:.0f}",
            _cell(row.requests, bad=False),
            _cell(row.missed),
            _cell(row.duplicated),
            _cell(row.gone_left),
            str(counts[row.name]),
        )
    return table


def paired_table(comparison: Comparison) -> Table | None:
    """Each algorithm's CPU per delivery and rate over each floor, paired by round: the median
    and, in brackets, the quartiles; ``None`` when no pairing has enough rounds."""
    pairings = comparison.pairings()
    bases = [base for base in FLOORS if any(base in by_base for by_base in pairings.values())]
    if not bases:
        return None
    rounds = max(int(p["rounds"]) for by_base in pairings.values() for p in by_base.values())
    table = Table(title=f"paired by round ({rounds} rounds): median [quartiles]")
    table.add_column("algorithm")
    for base in bases:
        table.add_column(f"CPU x {base}", justify="right")
        table.add_column(f"deliveries/s x {base}", justify="right")
    for name, by_base in pairings.items():
        cells = [name]
        for base in bases:
            paired, key = by_base.get(base), _key(base)
            for measure in ("cpu", "rate"):
                if paired is None:
                    cells.append("-")
                    continue
                stem = f"{measure}_over_{key}"
                cells.append(
                    f"{paired[stem]:.2f} [{paired[stem + '_q1']:.2f}, {paired[stem + '_q3']:.2f}]"
                )
        table.add_row(*cells)
    return table


def _summary(comparison: Comparison) -> list[str]:
    ratios = comparison.ratios()
    lines = []
    engine = comparison.row("engine")
    if engine is not None and "rate_over_seed" in ratios["engine"]:
        lines.append(
            f"engine / seed deliveries per second: {ratios['engine']['rate_over_seed']:.1f}x"
        )
    if engine is not None and "cpu_over_floor" in ratios["engine"]:
        lines.append(
            f"engine / floor CPU per delivery: {ratios['engine']['cpu_over_floor']:.2f}x "
            f"(deliveries per second: {ratios['engine']['rate_over_floor']:.2f} of floor's)"
        )
    paired = comparison.paired()  # None without engine and floor runs
    if paired is not None:
        lines.append(
            f"paired by round ({paired['rounds']:.0f} rounds): engine / floor CPU per delivery "
            f"{paired['cpu_over_floor']:.2f}x at the median (quartiles "
            f"{paired['cpu_over_floor_q1']:.2f}x to {paired['cpu_over_floor_q3']:.2f}x), "
            f"deliveries per second {paired['rate_over_floor']:.2f} "
            f"({paired['rate_over_floor_q1']:.2f} to {paired['rate_over_floor_q3']:.2f})"
        )
    raw = comparison.paired(base="floor-raw")
    if raw is not None:
        lines.append(
            f"paired by round ({raw['rounds']:.0f} rounds): engine / floor-raw CPU per delivery "
            f"{raw['cpu_over_floor_raw']:.2f}x at the median (quartiles "
            f"{raw['cpu_over_floor_raw_q1']:.2f}x to {raw['cpu_over_floor_raw_q3']:.2f}x)"
        )
    return lines


def describe(options: CompareOptions) -> str:
    scenario = options.scenario
    parts = [f"N={options.connections:,}", f"concurrency {options.concurrency}"]
    if scenario.gateway == "moto":
        parts.append("moto's management API")
    else:
        parts.append("HTTPS" if scenario.tls else "HTTP")
        parts.append(f"latency {scenario.latency_s * 1000:g} ms")
        if scenario.jitter_s:
            parts.append(f"+0..{scenario.jitter_s * 1000:g} ms jitter")
        for name, value in (
            ("gone", scenario.gone_rate),
            ("429", scenario.throttle_rate),
            ("5xx", scenario.error_rate),
        ):
            if value:
                parts.append(f"{value:.0%} {name}")
    return ", ".join(parts)


def document(options: CompareOptions, comparison: Comparison) -> dict[str, Any]:
    """The JSON written by ``--json``."""
    return {
        "options": {k: v for k, v in asdict(options).items() if k != "json_path"},
        "rows": [row.as_dict() for row in comparison.rows],
        "runs": [run.as_dict() for run in comparison.runs],
        "ratios": comparison.ratios(),
        "paired": comparison.paired(),
        "pairings": comparison.pairings(),
    }


def run_compare(options: CompareOptions) -> int:
    """Measure, print the table and the ratios; exit 1 when an engine run was incorrect.

    The baselines may fail (``gather`` under 429s does, which is the point of showing it); the
    engine may not.
    """
    console = console_for()
    comparison = anyio.run(_measure, options, console)
    console.print(comparison_table(comparison, f"wsfanout bench: {describe(options)}"))
    paired = paired_table(comparison)
    if paired is not None:
        console.print(paired)
    for line in _summary(comparison):
        console.print(line)
    if options.json_path:
        text = json.dumps(document(options, comparison), indent=2)
        Path(options.json_path).write_text(text + "\n")
    wrong = _incorrect(comparison.runs)
    if wrong:
        console.print(f"[red]incorrect engine runs: {', '.join(wrong)}[/red]")
        return 1
    return 0


def _incorrect(runs: Sequence[Run]) -> list[str]:
    return [run.name for run in runs if run.name.startswith("engine") and not run.correct]
