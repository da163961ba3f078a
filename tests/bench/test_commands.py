"""The benchmark commands keep working: small runs, checked for correctness, not for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WSFANOUT = str(Path(sys.executable).parent / "wsfanout")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  (our own console script)
        [WSFANOUT, *args], capture_output=True, text=True, timeout=240, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_core_compares_seed_and_engine(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    result = run(
        "bench",
        "core",
        "--connections",
        "120",
        "--latency",
        "0.001",
        "--gone-rate",
        "0.1",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    document = json.loads(out.read_text())
    names = [r["name"] for r in document["results"]]
    assert names == ["seed", "engine (lean)", "engine (botocore)"]
    for entry in document["results"]:
        assert entry["correct"], entry
        assert entry["delivered"] + entry["gone_removed"] == 120
        assert entry["gone_removed"] > 0
    assert document["engine_over_seed"] > 0
    assert "x seed" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_jobs_carries_a_job_across_invocations(tmp_path: Path) -> None:
    out = tmp_path / "jobs.json"
    result = run(
        "bench",
        "jobs",
        "--connections",
        "600",
        "--segments",
        "2",
        "--workers",
        "2",
        "--worker-seconds",
        "0.7",
        "--latency",
        "0.003",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    document = json.loads(out.read_text())
    assert document["missed"] == 0
    assert document["duplicated"] == 0
    assert document["gone_left"] == 0
    assert document["actions"]["split"] == 1
    assert document["actions"]["completed"] == 2


def test_bench_rejects_bad_arguments() -> None:
    result = run("bench", "jobs", "--worker-seconds", "0.2")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "worker-seconds" in result.stderr
