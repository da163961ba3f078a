"""The benchmark commands work end to end: small runs, checked for correctness, not for speed."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_wsfanout
from wsfanout.bench.e2e import Latencies, latencies

Bench = Callable[[str], tuple[Any, subprocess.CompletedProcess[str]]]


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    """Run ``wsfanout bench <command line> --json FILE``, check it exits 0, and return what it
    wrote to FILE (parsed) with the finished process (for its stdout)."""

    def run(command_line: str) -> tuple[Any, subprocess.CompletedProcess[str]]:
        out = tmp_path / "bench.json"
        result = run_wsfanout("bench", *shlex.split(command_line), "--json", str(out), timeout=240)
        assert result.returncode == 0, result.stderr + result.stdout
        return json.loads(out.read_text()), result

    return run


def rows_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in document["rows"]}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_compares_every_algorithm_against_one_endpoint(bench: Bench) -> None:
    document, result = bench("--connections 150 --latency 0.001 --gone-rate 0.1 --repeat 1")
    rows = rows_by_name(document)
    assert list(rows) == ["seed", "gather", "floor", "engine", "engine-botocore"]
    for name in ("seed", "gather", "engine", "engine-botocore"):
        row = rows[name]
        assert row["correct"], row
        assert row["gone_removed"] > 0
        assert row["delivered"] + row["gone_removed"] == 150
        assert row["requests"] >= 150
        assert row["cpu_us"] > 0
        assert row["peak_rss_mb"] > 10
    floor = rows["floor"]
    assert floor["gone_left"] is None  # the floor does not clean up, by definition
    assert floor["missed"] == floor["duplicated"] == 0
    ratios = document["ratios"]
    assert ratios["seed"]["rate_over_seed"] == pytest.approx(1.0)
    assert ratios["floor"]["cpu_over_floor"] == pytest.approx(1.0)
    assert ratios["engine"]["rate_over_seed"] > 0
    assert "x seed" in result.stdout
    assert "engine / floor CPU per delivery" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_under_throttling_the_engine_still_reaches_everyone(bench: Bench) -> None:
    document, _ = bench(
        "--connections 300 --latency 0 --gone-rate 0 --throttle-rate 0.3"
        " --algorithms gather,engine --repeat 1"
    )
    rows = rows_by_name(document)
    engine = rows["engine"]
    assert engine["missed"] == 0
    assert engine["duplicated"] == 0
    assert engine["outcome"]["throttled"] > 0
    assert engine["requests"] > 300  # the 429s were retried
    assert rows["gather"]["requests"] > 300  # botocore's own retries


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_against_motos_management_api(bench: Bench) -> None:
    document, result = bench("--gateway moto --connections 80 --algorithms floor,engine --repeat 1")
    rows = rows_by_name(document)
    for row in rows.values():
        assert row["delivered"] == 80
        assert row["missed"] is None  # moto keeps no delivery records to check against
        assert row["requests"] is None
    assert "n/a" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_bench_floor_raw_beside_floor_and_engine(bench: Bench, tls: bool) -> None:
    """floor-raw posts over bare asyncio connections beside the floor and the engine, over plain
    HTTP and over HTTPS (the endpoint's throwaway certificate trusted by every algorithm).
    (Pairing by round needs five rounds: test_compare has its arithmetic.)"""
    document, result = bench(
        "--connections 200 --latency 0 --gone-rate 0.1 --repeat 1"
        " --algorithms floor,floor-raw,engine" + (" --tls" if tls else "")
    )
    rows = rows_by_name(document)
    assert list(rows) == ["floor", "floor-raw", "engine"]
    gone = 200 - rows["engine"]["delivered"]
    assert 0 < gone < 50
    for name, row in rows.items():
        assert row["missed"] == row["duplicated"] == 0, name
        assert row["delivered"] == 200 - gone, name
        assert row["cpu_us"] > 0, name
    assert rows["floor-raw"]["outcome"] == {"sent": 200 - gone, "gone": gone, "failed": 0}
    assert rows["engine"]["gone_left"] == 0
    ratios = document["ratios"]
    assert ratios["floor-raw"]["cpu_over_floor_raw"] == pytest.approx(1.0)
    assert ratios["engine"]["cpu_over_floor_raw"] > 0
    assert ("HTTPS" if tls else "HTTP,") in result.stdout  # the table's title (its columns
    # wrap in a narrow terminal: the JSON's ratios above are what is checked)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_scaling_writes_json_and_a_plot(bench: Bench, tmp_path: Path) -> None:
    plot = tmp_path / "scaling.png"
    document, result = bench(
        f"scaling --sizes 60,180 --concurrency 4,16 --latency 0.001 --plot {shlex.quote(str(plot))}"
    )
    grid = {(r["connections"], r["concurrency"]) for r in document["runs"]}
    assert grid == {(60, 4), (60, 16), (180, 4), (180, 16)}
    assert all(r["correct"] and r["missed"] == 0 for r in document["runs"])
    assert set(document["memory_growth_mb"]) == {"4", "16"}
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "peak RSS, N=180 minus N=60" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_distributed_splits_one_job_across_workers(bench: Bench) -> None:
    document, _ = bench("distributed --connections 240 --segments 1,3 --latency 0.001")
    runs = document["runs"]
    assert [r["name"] for r in runs] == ["S=1", "S=3"]
    for entry in runs:
        assert entry["delivered"] == 240
        assert entry["missed"] == entry["duplicated"] == 0
    assert runs[1]["outcome"]["sent"] == 240  # three workers' accounts add up


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_jobs_carries_a_job_across_invocations(bench: Bench) -> None:
    document, _ = bench(
        "jobs --connections 600 --segments 2 --workers 2 --worker-seconds 0.7 --latency 0.003"
    )
    assert document["missed"] == 0
    assert document["duplicated"] == 0
    assert document["gone_left"] == 0
    assert document["actions"]["split"] == 1
    assert document["actions"]["completed"] == 2


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("bench", "jobs", "--worker-seconds", "0.2"), "worker-seconds"),
        (("bench", "--algorithms", "seed,fast"), "unknown algorithm 'fast'"),
        (("bench", "--algorithms", "seed,seed"), "listed twice"),
        (("bench", "scaling", "--sizes", "1000,0"), "must be at least 1"),
        (("bench", "distributed", "--segments", "1,,2"), "comma-separated"),
        (("bench", "--gateway", "moto", "--latency", "0.02"), "no latency or fault injection"),
        (("bench", "--gateway", "moto", "--tls"), "plain HTTP"),
        (("bench", "--throttle-rate", "0.7", "--error-rate", "0.7"), "must not exceed 1"),
        (("bench", "--repeat", "0"), "must be at least 1"),
        (("bench", "quota", "--pacing", "aimd,fast"), "unknown pacing 'fast'"),
        (("bench", "quota", "--pacing", "aimd,aimd"), "listed twice"),
        (("bench", "quota", "--share", "0"), "--share must be in (0, 1]"),
        (("bench", "e2e", "--clients", "0"), "must be at least 1"),
    ],
)
def test_bench_rejects_bad_arguments_in_one_line(args: tuple[str, ...], reason: str) -> None:
    result = run_wsfanout(*args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert reason in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_quota_reports_each_pacing_and_segment_count(bench: Bench) -> None:
    document, result = bench("quota --connections 300 --segments 1,2 --latency 0.002")
    rows = document["rows"]
    assert [(r["segments"], r["pacing"]) for r in rows] == [
        (1, "aimd"),
        (1, "learnt"),
        (2, "aimd"),
        (2, "learnt"),
    ]
    for row in rows:
        assert row["account_rate"] == pytest.approx(0.65 * row["unthrottled_rate"], rel=0.01)
        assert row["account_burst"] == max(1, round(row["account_rate"] * 0.1))
        assert row["run"]["missed"] == row["run"]["duplicated"] == row["failed"] == 0
        assert row["run"]["delivered"] == 300
        assert row["run"]["requests"] == 300 + row["answered_429"]
        assert row["share_429"] == pytest.approx(row["answered_429"] / row["run"]["requests"])
        assert row["rate_over_r"] > 0
        assert 0 < row["span_s"] <= row["run"]["elapsed_s"]
        assert row["span_rate_over_r"] >= row["rate_over_r"]
    assert "rate / R" in result.stdout
    assert "learnt: S >= 2" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_e2e_times_a_broadcast_and_messages_to_one_user(bench: Bench) -> None:
    document, result = bench("e2e --clients 50 --messages 5")
    assert document["missed"] == document["duplicated"] == 0
    broadcast, direct = document["broadcast"], document["send_message"]
    assert broadcast["count"] == 49  # everyone but the sender
    assert direct["count"] == 5
    for figures in (broadcast, direct):
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert "sendMessage to one user" in result.stdout
    assert '"level"' not in result.stdout  # the stack's logs went to the log file


def test_latencies_summarise_in_milliseconds() -> None:
    figures = latencies([n / 1000 for n in range(1, 101)])
    assert (figures.count, figures.p50_ms, figures.max_ms) == (100, 50.5, 100.0)
    assert 99.0 <= figures.p99_ms <= 100.0
    assert latencies([0.25]) == Latencies(1, 250.0, 250.0, 250.0)
    with pytest.raises(ValueError, match="no latencies"):
        latencies([])
