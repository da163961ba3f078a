"""The comparison's arithmetic: medians per algorithm, and the engine paired with the floor."""

from __future__ import annotations

import pytest

from wsfanout.bench.compare import Comparison, _summary
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
