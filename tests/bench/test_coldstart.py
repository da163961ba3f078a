"""``wsfanout bench coldstart``: the -X importtime parsing, and the command end to end (small runs,
checked for what they report, never for how fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_wsfanout
from wsfanout.bench.coldstart import bytecode_env, parse_importtime, sample_import, spread
from wsfanout.exceptions import ConfigurationError, InvalidInputError

START_UP = """import time: self [us] | cumulative | imported package
import time:       500 |        500 | site
"""
MARK = "wsfanout-coldstart: import starts\n"
AFTER = """import time:       100 |        100 |     wsfanout.exceptions
import time:      2000 |       2100 |   wsfanout
import time:      1000 |       3100 | wsfanout.handlers
import time:       400 |        400 | json
"""


def test_the_total_is_what_the_outermost_imports_after_the_mark_cost() -> None:
    total, cumulative, own = parse_importtime(START_UP + MARK + AFTER)
    assert total == pytest.approx(3.5)  # wsfanout.handlers 3.1 + json 0.4; site is start-up
    assert "site" not in cumulative
    assert cumulative["wsfanout"] == pytest.approx(2.1)
    assert own["wsfanout"] == pytest.approx(2.0)


def test_output_without_the_mark_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no start mark"):
        parse_importtime(START_UP + AFTER)
    with pytest.raises(ConfigurationError, match="no import lines"):
        parse_importtime(START_UP + MARK)


def test_spread_gives_median_and_quartiles() -> None:
    assert spread([5.0]) == {"q1": 5.0, "median": 5.0, "q3": 5.0}
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == {"q1": 2.0, "median": 3.0, "q3": 4.0}


def test_bytecode_modes_decide_what_is_compiled(tmp_path: Path) -> None:
    """``cached`` fills its own cache and reads it back; ``none`` writes nothing, so every
    import compiles, whatever the caller's environment says."""
    cached = bytecode_env("cached", tmp_path / "cached")
    assert "PYTHONDONTWRITEBYTECODE" not in cached
    sample_import("wsfanout.exceptions", cached)
    assert list((tmp_path / "cached").rglob("exceptions*.pyc"))
    sample_import("wsfanout.exceptions", bytecode_env("none", tmp_path / "none"))
    assert not (tmp_path / "none").exists()
    with pytest.raises(InvalidInputError, match="bytecode must be"):
        bytecode_env("sometimes", tmp_path)


def test_coldstart_reports_every_entrypoint(tmp_path: Path) -> None:
    out = tmp_path / "cold.json"
    result = run_wsfanout(
        "bench", "coldstart", "--runs", "2", "--top", "5", "--json", str(out), timeout=240
    )
    assert result.returncode == 0, result.stderr + result.stdout
    document = json.loads(out.read_text())
    assert document["runs"] == 2
    assert document["bytecode"] == "cached"
    assert list(document["imports"]) == ["route", "broadcast", "authorizer"]
    for name, row in document["imports"].items():
        assert row["module"] == f"wsfanout.handlers.{name}"
        assert row["total_ms"]["q1"] <= row["total_ms"]["median"] <= row["total_ms"]["q3"]
        assert row["cpu_ms"]["median"] > 0
        assert len(row["top_modules"]) == 5
        # the entrypoint includes everything it imported, so it ranks first
        assert row["top_modules"][0]["name"] == row["module"]
        assert "wsfanout" in {package["name"] for package in row["top_packages"]}
    assert "invocations" not in document
    assert "top packages (self ms)" in result.stdout


def test_an_unknown_entrypoint_is_one_line_and_exit_2() -> None:
    result = run_wsfanout("bench", "coldstart", "--entrypoints", "route,nope")
    assert result.returncode == 2
    assert "unknown entrypoint 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_coldstart_invokes_each_handler_against_moto(tmp_path: Path) -> None:
    out = tmp_path / "cold.json"
    result = run_wsfanout(
        "bench", "coldstart", "--runs", "1", "--invoke", "--json", str(out), timeout=280
    )
    assert result.returncode == 0, result.stderr + result.stdout
    invocations = json.loads(out.read_text())["invocations"]
    assert list(invocations) == ["route", "broadcast", "authorizer"]
    for row in invocations.values():
        # the answers were checked by the bench (a $connect stored, a job with no failure, an
        # Allow); what is left to check is that the timings add up
        first = row["init_plus_first_ms"]["median"]
        assert first == pytest.approx(row["init_ms"]["median"] + row["first_ms"]["median"])
        assert row["init_plus_first_cpu_ms"]["median"] > 0
    assert "init + first invocation" in result.stdout
