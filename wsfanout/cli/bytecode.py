"""The Lambda artifact's bytecode: which interpreter compiles it, and the compiling.

Lambda runs the code from ``/var/task``, which is read-only: an artifact that ships no ``.pyc``
files has every cold start compile every module it imports from source, and lose the result.
:func:`compile_tree` compiles the staged tree once, at build time, with the interpreter of the
Lambda runtime's version (bytecode is specific to a minor version: ``*.cpython-312.pyc`` is only
read by a 3.12), which :func:`find_python` looks for.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import InvalidInputError

__all__ = [
    "PYTHON_ENV",
    "TASK_ROOT",
    "BytecodeError",
    "Interpreter",
    "compile_tree",
    "find_python",
    "interpreter_version",
    "is_unchecked_hash_pyc",
    "this_interpreter",
]

PYTHON_ENV = "WSFANOUT_PACKAGE_PYTHON"
"""The environment variable naming the interpreter that compiles the artifact's bytecode."""

TASK_ROOT = "/var/task"
"""Where Lambda unpacks the artifact; the source paths the bytecode records start there."""

_VERSION_TIMEOUT_S = 30.0
_COMPILE_TIMEOUT_S = 600.0


class BytecodeError(Exception):
    """The bytecode could not be compiled; the message says why."""


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter found to compile with: its ``path`` and ``version`` (``3.12.1``)."""

    path: str
    version: str


def interpreter_version(path: str) -> str | None:
    """The full version of the interpreter at ``path``, or None when it does not run (a pyenv
    shim of a version that is not selected exits with an error)."""
    try:
        done = subprocess.run(  # noqa: S603  (an interpreter the user named or PATH holds)
            [path, "-I", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.strip()
    return version if done.returncode == 0 and version else None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _pyenv_candidates(minor: str) -> list[str]:
    """pyenv's installs of ``minor`` (``3.12.1``, not ``3.12-dev``), newest first."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    release = re.compile(rf"{re.escape(minor)}\.(\d+)")
    found = []
    for python in (root / "versions").glob(f"{minor}.*/bin/python{minor}"):
        matched = release.fullmatch(python.parent.parent.name)
        if matched:
            found.append((int(matched.group(1)), str(python)))
    return [path for _, path in sorted(found, reverse=True)]


def this_interpreter() -> Interpreter:
    """The interpreter running this code (a ``--local`` build's)."""
    return Interpreter(sys.executable, platform.python_version())


def find_python(explicit: str | None, minor: str) -> Interpreter | None:
    """The interpreter of version ``minor`` (``3.12``) to compile with, or None when there is
    none: ``explicit`` (``--python``), else :data:`PYTHON_ENV`, else this interpreter when it
    is that version, else ``python3.12`` on ``PATH``, else the newest pyenv install of it.

    :raises InvalidInputError: ``explicit`` or :data:`PYTHON_ENV` names an interpreter that does
        not run or is another version: what the user asked for cannot be done.
    """
    for given, source in ((explicit, "--python"), (os.environ.get(PYTHON_ENV), PYTHON_ENV)):
        if not given:
            continue
        version = interpreter_version(given)
        if version is None:
            raise InvalidInputError(f"{source} {given}: not a Python interpreter that runs")
        if _minor(version) != minor:
            raise InvalidInputError(f"{source} {given} is Python {version}; Lambda runs {minor}")
        return Interpreter(given, version)
    if _minor(platform.python_version()) == minor:
        return this_interpreter()
    on_path = shutil.which(f"python{minor}")
    for candidate in [*([on_path] if on_path else []), *_pyenv_candidates(minor)]:
        version = interpreter_version(candidate)
        if version is not None and _minor(version) == minor:
            return Interpreter(candidate, version)
    return None


def compile_tree(directory: Path, python: str) -> int:
    """Compile every ``.py`` file under ``directory`` with ``python``; return the bytes of the
    ``.pyc`` files written.

    The invalidation mode is ``unchecked-hash``: the tree is immutable once Lambda unpacks it,
    so the interpreter neither stats the source nor hashes it on each import (the default,
    ``timestamp``, would compare the zip's fixed dates; ``checked-hash`` would read and hash
    every source file at each cold start). The recorded source paths are under
    :data:`TASK_ROOT` rather than the build directory, so the bytes do not depend on where the
    artifact was built.

    :raises BytecodeError: a file did not compile (its error says which), or the compiler failed.
    """
    command = [python, "-I", "-m", "compileall", "-q", "-j0"]
    command += ["--invalidation-mode", "unchecked-hash", "-s", str(directory), "-p", TASK_ROOT]
    try:
        done = subprocess.run(  # noqa: S603  (the interpreter find_python checked)
            [*command, str(directory)],
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BytecodeError(f"compiling the bytecode with {python} failed: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise BytecodeError(f"compiling the bytecode failed: {(lines or ['no output'])[-1]}")
    return sum(path.stat().st_size for path in directory.rglob("*.pyc"))


def is_unchecked_hash_pyc(header: bytes) -> bool:
    """Whether a ``.pyc`` file's first 16 bytes say hash-based and never checked (PEP 552:
    the flags word after the magic number has bit 0 set and bit 1, ``check_source``, clear)."""
    flags = int.from_bytes(header[4:8], "little")
    return len(header) >= 16 and flags & 0b11 == 0b01
