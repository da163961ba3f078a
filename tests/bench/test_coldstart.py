"""``wsfanout bench coldstart``: the -X importtime parsing, and the command end to end (small runs,
checked for what they report, never for how fast)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.helpers import run_wsfanout
from wsfanout.bench.coldartifact import host_architecture, unpacked
from wsfanout.bench.coldstart import bytecode_env, parse_importtime, sample_import, spread
from wsfanout.cli.bytecode import compile_tree, find_python
from wsfanout.cli.package import write_zip
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


# -- the artifact case ---------------------------------------------------------------------------

PYTHON_312 = find_python(None, "3.12")
needs_312 = pytest.mark.skipif(PYTHON_312 is None, reason="no Python 3.12 here")
# an artifact of three modules: the route entrypoint imports nothing else
ARTIFACT = {
    "wsfanout/__init__.py": "",
    "wsfanout/handlers/__init__.py": "",
    "wsfanout/handlers/route.py": "def handler(event, context):\n    return None\n",
}


def small_artifact(tmp_path: Path, *, compiled: bool = True) -> Path:
    tree = tmp_path / "tree"
    for relative, text in ARTIFACT.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(text)
    if compiled:
        assert PYTHON_312 is not None
        compile_tree(tree, PYTHON_312.path)
    write_zip(tree, tmp_path / "lambda.zip")
    return tmp_path / "lambda.zip"


@needs_312
def test_an_artifact_unpacks_read_only_with_and_without_its_bytecode(tmp_path: Path) -> None:
    with unpacked(small_artifact(tmp_path)) as copy:
        assert copy.pyc_files == 3
        assert len(list(copy.whole.rglob("*.cpython-312.pyc"))) == 3
        assert not list(copy.source_only.rglob("*.pyc"))
        for tree in (copy.whole, copy.source_only):
            route = tree / "wsfanout" / "handlers" / "route.py"
            assert route.read_text() == ARTIFACT["wsfanout/handlers/route.py"]
            assert route.stat().st_mode & 0o222 == 0
            assert route.parent.stat().st_mode & 0o222 == 0
    assert not copy.whole.exists()


@needs_312
def test_coldstart_imports_from_the_artifact_alone(tmp_path: Path) -> None:
    assert PYTHON_312 is not None
    out = tmp_path / "cold.json"
    zip_path = small_artifact(tmp_path)
    result = run_wsfanout(
        "bench", "coldstart", "--entrypoints", "route", "--runs", "2", "--top", "3",
        "--artifact", str(zip_path), "--python", PYTHON_312.path, "--json", str(out),
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    artifact = json.loads(out.read_text())["artifact"]
    assert (artifact["zip"], artifact["built"], artifact["pyc_files"]) == (str(zip_path), False, 3)
    assert artifact["python"] == PYTHON_312.version
    row = artifact["imports"]["route"]
    for case in ("with_bytecode", "without_bytecode"):
        # the artifact's three modules, not the wsfanout this test runs
        assert row[case]["modules_loaded"] == 3
        assert {m["name"] for m in row[case]["top_modules"]} == {
            "wsfanout", "wsfanout.handlers", "wsfanout.handlers.route"
        }  # fmt: skip
        assert row[case]["cpu_ms"]["q1"] <= row[case]["cpu_ms"]["median"]
    assert set(row["ratio"]) == {"total_ms", "wall_ms", "cpu_ms"}
    assert row["ratio"]["cpu_ms"] > 0
    assert "import from the artifact in Python 3.12" in result.stdout


@needs_312
def test_an_artifact_without_bytecode_is_measured_without_only(tmp_path: Path) -> None:
    assert PYTHON_312 is not None
    out = tmp_path / "cold.json"
    zip_path = small_artifact(tmp_path, compiled=False)
    result = run_wsfanout(
        "bench", "coldstart", "--entrypoints", "route", "--runs", "1",
        "--artifact", str(zip_path), "--python", PYTHON_312.path, "--json", str(out),
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    row = json.loads(out.read_text())["artifact"]["imports"]["route"]
    assert (row["with_bytecode"], row["ratio"]) == (None, None)
    assert row["without_bytecode"]["modules_loaded"] == 3
    assert "the artifact ships no bytecode" in result.stdout


@pytest.mark.parametrize("problem", ["not a zip", "foreign"])
def test_an_artifact_that_cannot_be_measured_here_is_one_line_and_exit_2(
    tmp_path: Path, problem: str
) -> None:
    given = tmp_path / "lambda.zip"
    if problem == "not a zip":
        given.write_text("no")
        expected = "not a zip file"
    else:
        other = {"x86_64": 183, "arm64": 62}[host_architecture()]  # the other architecture's
        header = b"\x7fELF" + bytes(14) + other.to_bytes(2, "little")
        with zipfile.ZipFile(given, "w") as zf:
            zf.writestr("pydantic_core/_core.cpython-312.so", header)
        expected = "do not load on this"
    result = run_wsfanout(
        "bench", "coldstart", "--entrypoints", "route", "--runs", "1", "--artifact", str(given)
    )
    if PYTHON_312 is None:
        expected = "needs a Python 3.12"
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@needs_312
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_coldstart_builds_and_measures_the_real_artifact(tmp_path: Path) -> None:
    out = tmp_path / "cold.json"
    result = run_wsfanout(
        "bench", "coldstart", "--entrypoints", "route", "--runs", "1", "--artifact",
        "--json", str(out), timeout=580,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    artifact = json.loads(out.read_text())["artifact"]
    assert artifact["built"] is True
    assert artifact["architecture"] == host_architecture()
    assert artifact["pyc_files"] > 500
    row = artifact["imports"]["route"]
    assert row["with_bytecode"]["modules_loaded"] > 100
    # compiling every module from source costs more CPU than reading its bytecode
    assert row["ratio"]["cpu_ms"] > 1
