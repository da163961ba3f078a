"""The harness: medians of noisy runs, scenarios, and children that fail loudly."""

from __future__ import annotations

import aiohttp
import pytest

from wsfanout.bench.harness import Bench, Run, Scenario, Services, median_run
from wsfanout.exceptions import ConfigurationError, InvalidInputError


def a_run(**changes: object) -> Run:
    fields: dict[str, object] = {
        "name": "engine",
        "connections": 100,
        "concurrency": 8,
        "elapsed_s": 1.0,
        "cpu_s": 0.01,
        "peak_rss_mb": 70.0,
        "delivered": 100,
        "requests": 100,
        "missed": 0,
        "duplicated": 0,
        "gone_removed": 0,
        "gone_left": 0,
        "live_removed": 0,
    }
    return Run(**(fields | changes))  # type: ignore[arg-type]


def test_median_run_takes_median_speed_and_worst_correctness() -> None:
    runs = [
        a_run(elapsed_s=1.0, cpu_s=0.010, peak_rss_mb=70.0),
        a_run(elapsed_s=5.0, cpu_s=0.050, peak_rss_mb=90.0, duplicated=2),
        a_run(elapsed_s=2.0, cpu_s=0.020, peak_rss_mb=71.0),
    ]
    row = median_run(runs)
    assert row.elapsed_s == 2.0
    assert row.rate == 50.0
    assert row.cpu_us == pytest.approx(200.0)
    assert row.peak_rss_mb == 90.0
    assert row.duplicated == 2
    assert not row.correct


def test_unknown_figures_do_not_count_as_failures() -> None:
    run = a_run(missed=None, duplicated=None, gone_left=None, live_removed=None, requests=None)
    assert run.correct
    assert median_run([run, run]).missed is None


def test_a_run_that_delivered_nothing_has_no_cpu_per_delivery() -> None:
    assert a_run(delivered=0).cpu_us == float("inf")


def test_scenario_predicts_the_gone_set_the_endpoint_will_answer() -> None:
    ids = [f"c{i}" for i in range(2000)]
    gone = Scenario(gone_rate=0.1, seed=3).gone(ids)
    assert 150 < len(gone) < 250
    assert gone == Scenario(gone_rate=0.1, seed=3).gone(ids)
    assert gone != Scenario(gone_rate=0.1, seed=4).gone(ids)
    assert Scenario(gone_rate=0.0).gone(ids) == set()


@pytest.mark.parametrize(
    "changes",
    [
        {"gateway": "elsewhere"},
        {"gateway": "moto", "latency_s": 0.01},
        {"gateway": "moto", "latency_s": 0.0, "gone_rate": 0.1},
        {"gateway": "moto", "latency_s": 0.0, "tls": True},
        {"throttle_rate": 0.6, "error_rate": 0.6},
        {"gone_rate": 1.5},
    ],
)
def test_impossible_scenarios_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        Scenario(**changes)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
async def test_a_failing_child_is_reported_with_its_last_error_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on the discard port; one attempt is enough to fail (the child inherits
    # the environment): botocore's legacy DynamoDB policy would back off ten times first.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    where = Services("http://127.0.0.1:9", "http://127.0.0.1:9/bench", None)
    async with aiohttp.ClientSession() as http:
        bench = Bench(Scenario(latency_s=0.0), where, dynamodb=None, http=http)
        spec = bench.spec("engine", "no-such-table", 10)
        with pytest.raises(ConfigurationError, match=r"a benchmark run failed: .+RegistryError"):
            await bench.run_together([spec], advance=None)
