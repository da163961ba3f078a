"""The artifact's bytecode (``wsfanout package``): which interpreter compiles it, what it writes,
and the build without one.

Fast: pip is replaced by a stand-in that installs a small tree, so each build is the rest of the
real build (plan, prune, copy, compile, zip) on a few modules; tests/deploy/test_package.py
checks the real artifacts.
"""

from __future__ import annotations

import os
import platform
import stat
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from wsfanout.cli import package as package_cli
from wsfanout.cli.bytecode import (
    PYTHON_ENV,
    TASK_ROOT,
    compile_tree,
    find_python,
    is_unchecked_hash_pyc,
)
from wsfanout.cli.main import main
from wsfanout.exceptions import InvalidInputError

PYTHON_312 = find_python(None, "3.12")
needs_312 = pytest.mark.skipif(PYTHON_312 is None, reason="no Python 3.12 here to compile with")

INSTALLED = {
    "dep/__init__.py": "from .part import VALUE\n",
    "dep/part.py": "VALUE = 1\n",
    "dep/__pycache__/part.cpython-312.pyc": "stale",
    "dep-1.0.dist-info/METADATA": "Name: dep\nVersion: 1.0\n",
    "wsfanout/__init__.py": "",
    "wsfanout/handlers/route.py": "handler = None\n",
}


def fake_pip(arguments: Sequence[str]) -> None:
    """pip as the build calls it: ``wheel`` leaves a wheel, ``install`` writes the small tree."""
    if arguments[0] == "wheel":
        wheels = Path(arguments[list(arguments).index("--wheel-dir") + 1])
        wheels.mkdir(parents=True, exist_ok=True)
        (wheels / "wsfanout-0.0.0-py3-none-any.whl").write_bytes(b"")
        return
    target = Path(arguments[list(arguments).index("--target") + 1])
    for relative, text in INSTALLED.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(text)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with one module, built with the stand-in pip."""
    monkeypatch.setattr(package_cli, "_pip", fake_pip)
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = []\n')
    (directory / "app.py").write_text("import dep\nhandler = dep.VALUE\n")
    return directory


def package(project: Path, out: Path, *options: str) -> int:
    return main(["package", "--app-dir", str(project), "--out", str(out), *options])


def modules(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.py"))


@needs_312
def test_every_module_ships_its_unchecked_312_bytecode(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert PYTHON_312 is not None
    assert package(project, tmp_path / "out", "--python", PYTHON_312.path) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"bytecode compiled by Python {PYTHON_312.version}" in captured.out
    tree = tmp_path / "out" / "lambda"
    expected = {p.parent / "__pycache__" / f"{p.stem}.cpython-312.pyc" for p in modules(tree)}
    assert len(expected) == 5  # app, dep (2), wsfanout (2)
    assert set(tree.rglob("*.pyc")) == expected  # the stale one left by pip is gone
    for pyc in expected:
        assert is_unchecked_hash_pyc(pyc.read_bytes()[:16]), pyc
    with zipfile.ZipFile(tmp_path / "out" / "lambda.zip") as zf:
        assert {p.relative_to(tree).as_posix() for p in expected} <= set(zf.namelist())


@needs_312
def test_the_bytecode_does_not_depend_on_where_it_was_built(project: Path, tmp_path: Path) -> None:
    assert PYTHON_312 is not None
    for out in ("one", "two"):
        assert package(project, tmp_path / out, "--python", PYTHON_312.path) == 0
    one, two = ((tmp_path / out / "lambda.zip").read_bytes() for out in ("one", "two"))
    assert one == two


@needs_312
def test_the_bytecode_names_the_source_under_the_task_root(tmp_path: Path) -> None:
    assert PYTHON_312 is not None
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    written = compile_tree(tmp_path, PYTHON_312.path)
    pyc = tmp_path / "pkg" / "__pycache__" / "mod.cpython-312.pyc"
    assert written == pyc.stat().st_size
    assert f"{TASK_ROOT}/pkg/mod.py".encode() in pyc.read_bytes()
    assert str(tmp_path).encode() not in pyc.read_bytes()


def test_without_a_312_it_packages_without_bytecode_and_says_so(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no python3.12 on PATH
    monkeypatch.setenv("PYENV_ROOT", str(empty))  # nor installed by pyenv
    monkeypatch.setattr(platform, "python_version", lambda: "3.11.9")  # nor running
    assert find_python(None, "3.12") is None
    assert package(project, tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "no Python 3.12 found" in captured.err
    assert "packaged without bytecode" in captured.err
    assert "no bytecode" in captured.out
    tree = tmp_path / "out" / "lambda"
    assert (tree / "app.py").is_file()
    assert not list(tree.rglob("*.pyc"))
    with zipfile.ZipFile(tmp_path / "out" / "lambda.zip") as zf:
        assert "app.py" in zf.namelist()
        assert not [name for name in zf.namelist() if name.endswith(".pyc")]


def test_the_interpreter_is_the_one_asked_for_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    this = platform.python_version()
    minor = ".".join(this.split(".")[:2])
    found = find_python(sys.executable, minor)
    assert found is not None
    assert (found.path, found.version) == (sys.executable, this)
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    found = find_python(None, minor)
    assert found is not None
    assert found.path == sys.executable
    with pytest.raises(InvalidInputError, match=f"{PYTHON_ENV} .* is Python {this}"):
        find_python(None, "3.99")
    with pytest.raises(InvalidInputError, match=r"--python .* that runs"):
        find_python(str(tmp_path / "nothing"), minor)


def test_a_pyenv_shim_that_refuses_is_passed_over_for_pyenv_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyenv's shim of a version that is not selected exits with an error; its installs run."""
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    monkeypatch.setattr(platform, "python_version", lambda: "3.11.9")
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3.99"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.99: command not found' >&2\nexit 127\n")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    for version in ("3.99.1", "3.99.10", "3.99-dev"):
        real = tmp_path / "pyenv" / "versions" / version / "bin" / "python3.99"
        real.parent.mkdir(parents=True)
        real.write_text(f"#!/bin/sh\necho {version.replace('-dev', '.0')}\n")
        real.chmod(real.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    found = find_python(None, "3.99")
    assert found is not None
    assert (found.version, Path(found.path).parent.parent.name) == ("3.99.10", "3.99.10")
