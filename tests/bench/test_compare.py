"""The comparison's arithmetic: medians per algorithm, and the engine paired with the floor."""

from __future__ import annotations

import pytest

from wsfanout.bench.compare import Comparison, _summary, paired_table
from wsfanout.bench.harness import Run, median_run


def run(name: str, elapsed_s: float, cpu_s: float) -> Run:
    return Run(
        name=name,
        connections=1000,
        concurrency=128,
        elapsed_s=elapsed_s,
        cpu_s=cpu_s,
        peak_rss_mb=60.0,
        delivered=1000,
        requests=1000,
        missed=0,
        duplicated=0,
        gone_removed=0,
        gone_left=0,
        live_removed=0,
    )


def comparison(floor: list[tuple[float, float]], engine: list[tuple[float, float]]) -> Comparison:
    runs = [run("floor", *f) for f in floor] + [run("engine", *e) for e in engine]
    return Comparison(
        rows=[median_run(runs[: len(floor)]), median_run(runs[len(floor) :])],
        runs=runs,
    )


def test_paired_ratios_follow_the_rounds() -> None:
    """A slow round slows both sides: paired, it cancels; the medians alone would not pair it."""
    floor = [(1.0, 0.20), (2.0, 0.40), (1.0, 0.20), (2.0, 0.40), (1.0, 0.20)]
    engine = [(1.1, 0.22), (2.2, 0.44), (1.1, 0.22), (2.2, 0.44), (1.1, 0.22)]
    paired = comparison(floor, engine).paired()
    assert paired is not None
    assert paired["rounds"] == 5
    assert paired["cpu_over_floor"] == pytest.approx(1.1)
    assert paired["cpu_over_floor_q1"] == pytest.approx(1.1)
    assert paired["cpu_over_floor_q3"] == pytest.approx(1.1)
    assert paired["rate_over_floor"] == pytest.approx(1 / 1.1)


def test_paired_quartiles_spread_with_the_rounds() -> None:
    floor = [(1.0, 0.2)] * 5
    engine = [(1.0, 0.2 * r) for r in (1.0, 1.1, 1.2, 1.3, 1.4)]
    paired = comparison(floor, engine).paired()
    assert paired is not None
    assert paired["cpu_over_floor"] == pytest.approx(1.2)
    assert paired["cpu_over_floor_q1"] < 1.2 < paired["cpu_over_floor_q3"]


def test_paired_needs_five_rounds_and_a_floor() -> None:
    assert comparison([(1.0, 0.2)] * 4, [(1.0, 0.2)] * 4).paired() is None
    only_engine = Comparison(rows=[run("engine", 1.0, 0.2)], runs=[run("engine", 1.0, 0.2)] * 5)
    assert only_engine.paired() is None


def test_summary_prints_the_paired_line() -> None:
    lines = _summary(comparison([(1.0, 0.2)] * 5, [(1.25, 0.22)] * 5))
    assert (
        lines[0]
        == "engine / floor CPU per delivery: 1.10x (deliveries per second: 0.80 of floor's)"
    )
    assert lines[1].startswith("paired by round (5 rounds): engine / floor CPU per delivery 1.10x")
    assert "deliveries per second 0.80" in lines[1]


def three_way(rounds: int) -> Comparison:
    """floor, floor-raw and engine, each round slower or faster alike."""
    runs = []
    for name, cpu in (("floor", 0.20), ("floor-raw", 0.10), ("engine", 0.25)):
        runs += [run(name, 1.0 * (1 + r % 2), cpu * (1 + r % 2)) for r in range(rounds)]
    rows = [median_run([r for r in runs if r.name == n]) for n in ("floor", "floor-raw", "engine")]
    return Comparison(rows=rows, runs=runs)


def test_every_algorithm_is_paired_with_each_floor_but_itself() -> None:
    pairings = three_way(5).pairings()
    assert set(pairings) == {"floor", "floor-raw", "engine"}
    assert set(pairings["engine"]) == {"floor", "floor-raw"}
    assert set(pairings["floor"]) == {"floor-raw"}
    assert set(pairings["floor-raw"]) == {"floor"}
    assert pairings["engine"]["floor-raw"]["cpu_over_floor_raw"] == pytest.approx(2.5)
    assert pairings["engine"]["floor"]["cpu_over_floor"] == pytest.approx(1.25)
    assert pairings["floor"]["floor-raw"]["rate_over_floor_raw"] == pytest.approx(1.0)
    assert three_way(4).pairings() == {}


def test_ratios_are_taken_to_both_floors() -> None:
    ratios = three_way(5).ratios()
    assert ratios["engine"]["cpu_over_floor"] == pytest.approx(1.25)
    assert ratios["engine"]["cpu_over_floor_raw"] == pytest.approx(2.5)
    assert ratios["floor-raw"]["cpu_over_floor_raw"] == pytest.approx(1.0)


def test_the_paired_table_and_summary_name_floor_raw() -> None:
    comparison = three_way(5)
    lines = _summary(comparison)
    assert lines[-1].startswith(
        "paired by round (5 rounds): engine / floor-raw CPU per delivery 2.50x at the median"
    )
    table = paired_table(comparison)
    assert table is not None
    assert [column.header for column in table.columns] == [
        "algorithm",
        "CPU x floor",
        "deliveries/s x floor",
        "CPU x floor-raw",
        "deliveries/s x floor-raw",
    ]
    engine = [list(column.cells)[2] for column in table.columns]  # rows: floor, floor-raw, engine
    assert engine == [
        "engine",
        "1.25 [1.25, 1.25]",
        "1.00 [1.00, 1.00]",
        "2.50 [2.50, 2.50]",
        "1.00 [1.00, 1.00]",
    ]
    assert paired_table(three_way(4)) is None
