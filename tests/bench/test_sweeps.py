"""The sweeps' arithmetic: memory growth between the two largest registries."""

from __future__ import annotations

from tests.bench.test_harness import a_run
from wsfanout.bench.sweeps import memory_growth


def test_memory_growth_compares_the_same_concurrency_across_sizes() -> None:
    runs = [
        a_run(connections=10_000, concurrency=8, peak_rss_mb=80.0),
        a_run(connections=10_000, concurrency=512, peak_rss_mb=95.0),
        a_run(connections=100_000, concurrency=8, peak_rss_mb=83.5),
        a_run(connections=100_000, concurrency=512, peak_rss_mb=101.0),
        a_run(connections=1_000, concurrency=8, peak_rss_mb=60.0),
    ]
    assert memory_growth(runs, 10_000, 100_000) == {8: 3.5, 512: 6.0}
    assert memory_growth(runs, 1_000, 100_000) == {8: 23.5}
