"""The artifact case of ``wsfanout bench coldstart`` (``--artifact``): each entrypoint imported
from the Lambda artifact itself, as a cold container does, with its bytecode and without.

The artifact is a ``lambda.zip`` from ``wsfanout package``, given or built here by the same
code path (:func:`wsfanout.cli.package.build`). It is unpacked twice, once whole and once
without its ``.pyc`` files (an artifact as it was before it shipped bytecode), and each copy is
made read-only. Every sample is a fresh Python 3.12 (Lambda's) run as ``python -I -S -B``: only
the standard library and the copy on ``sys.path`` (the copy first, as ``/var/task`` is on
Lambda), and no bytecode written, as Lambda cannot write to ``/var/task``.
"""

from __future__ import annotations

import os
import platform
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli.bytecode import Interpreter, find_python
from ..cli.package import LAMBDA_PYTHON, BuildError, build
from ..exceptions import ConfigurationError, InvalidInputError
from . import ENTRYPOINTS
from .coldstart import ImportSample, import_summary, sample_import

__all__ = [
    "ArtifactCopy",
    "host_architecture",
    "measure_artifact",
    "shipped_architectures",
    "unpacked",
]

_ELF_MACHINES = {62: "x86_64", 183: "arm64"}
_HOST_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_FLAGS = ("-I", "-S", "-B")


def host_architecture() -> str:
    """This machine's Lambda architecture (``arm64`` or ``x86_64``).

    :raises ConfigurationError: Lambda has no architecture of this machine's.
    """
    machine = platform.machine().lower()
    found = _HOST_MACHINES.get(machine)
    if found is None:
        raise ConfigurationError(f"Lambda runs no {platform.machine()} code: nothing to measure")
    return found


def shipped_architectures(zip_path: Path) -> set[str]:
    """The architectures of the compiled extensions (ELF ``.so`` files) in a zip."""
    found: set[str] = set()
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            if name.endswith(".so") or ".so." in name.rsplit("/", 1)[-1]:
                header = zf.open(name).read(20)
                if header[:4] == b"\x7fELF":
                    machine = int.from_bytes(header[18:20], "little")
                    found.add(_ELF_MACHINES.get(machine, f"ELF machine {machine}"))
    return found


@dataclass(frozen=True)
class ArtifactCopy:
    """The artifact unpacked twice: ``whole`` as shipped, ``source_only`` without ``.pyc``."""

    whole: Path
    source_only: Path
    pyc_files: int


def _extract(zf: zipfile.ZipFile, into: Path, keep: Callable[[str], bool]) -> None:
    for name in zf.namelist():
        if keep(name):
            zf.extract(name, into)
    for path in into.rglob("*"):  # read-only, as /var/task (directories last, below)
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for path in sorted(into.rglob("*"), reverse=True):
        if path.is_dir():
            path.chmod(0o555)
    into.chmod(0o555)


def _writable(directory: Path) -> None:
    for path in [directory, *directory.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)


@contextmanager
def unpacked(zip_path: Path) -> Iterator[ArtifactCopy]:
    """Unpack ``zip_path`` whole and without its ``.pyc``, read-only; removed on exit."""
    with tempfile.TemporaryDirectory(prefix="wsfanout-artifact-") as scratch:
        copy = ArtifactCopy(Path(scratch, "whole"), Path(scratch, "source-only"), 0)
        try:
            with zipfile.ZipFile(zip_path) as zf:
                _extract(zf, copy.whole, lambda name: True)
                _extract(zf, copy.source_only, lambda name: not name.endswith(".pyc"))
                pyc = sum(1 for name in zf.namelist() if name.endswith(".pyc"))
            yield ArtifactCopy(copy.whole, copy.source_only, pyc)
        finally:
            for directory in (copy.whole, copy.source_only):
                if directory.exists():
                    _writable(directory)


def _ratio(without: Mapping[str, Any], with_: Mapping[str, Any]) -> dict[str, float]:
    """How many times longer the import takes without bytecode, by median."""
    return {
        key: without[key]["median"] / max(with_[key]["median"], 1e-3)
        for key in ("total_ms", "wall_ms", "cpu_ms")
    }


def _measure(
    copy: ArtifactCopy,
    entrypoints: Sequence[str],
    runs: int,
    top: int,
    python: Interpreter,
) -> dict[str, Any]:
    roots = {"without_bytecode": copy.source_only}
    if copy.pyc_files:
        roots["with_bytecode"] = copy.whole
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # -B says the same; -I ignores env
    samples: dict[tuple[str, str], list[ImportSample]] = {
        (name, kind): [] for name in entrypoints for kind in roots
    }
    command = (python.path, *_FLAGS)
    for _ in range(runs):  # interleaved, so a busy moment touches every entrypoint and copy
        for name in entrypoints:
            for kind, root in roots.items():
                samples[name, kind].append(
                    sample_import(ENTRYPOINTS[name], env, python=command, root=root)
                )
    if any(copy.source_only.rglob("*.pyc")):
        raise ConfigurationError("the interpreter wrote bytecode into the read-only copy")
    imports: dict[str, Any] = {}
    for name in entrypoints:
        row = {kind: import_summary(ENTRYPOINTS[name], samples[name, kind], top) for kind in roots}
        with_ = row.get("with_bytecode")
        imports[name] = {
            "with_bytecode": with_,
            "without_bytecode": row["without_bytecode"],
            "ratio": None if with_ is None else _ratio(row["without_bytecode"], with_),
        }
    return imports


def measure_artifact(
    zip_path: str,
    entrypoints: Sequence[str],
    *,
    runs: int,
    top: int,
    python: str | None = None,
) -> dict[str, Any]:
    """Import each entrypoint from the artifact ``zip_path`` (``""``: build one here with
    ``wsfanout package`` of this checkout, for this machine's architecture) in fresh Python
    3.12 interpreters, ``runs`` times each, with its bytecode and without.

    :raises InvalidInputError: ``zip_path`` is no zip, or ``python`` is no 3.12 interpreter.
    :raises ConfigurationError: no Python 3.12 is found, the artifact's compiled extensions are
        for another machine, the build failed, or an import failed.
    """
    interpreter = find_python(python, LAMBDA_PYTHON)
    if interpreter is None:
        raise ConfigurationError(
            f"the artifact case needs a Python {LAMBDA_PYTHON} (--python, "
            f"$WSFANOUT_PACKAGE_PYTHON, python{LAMBDA_PYTHON} on PATH or pyenv's)"
        )
    host = host_architecture()
    document: dict[str, Any] = {"python": interpreter.version, "interpreter": interpreter.path}
    document["command"] = (
        f'{interpreter.path} {" ".join(_FLAGS)} -X importtime -c "import MODULE" '
        "(the read-only copy first on sys.path)"
    )
    with tempfile.TemporaryDirectory(prefix="wsfanout-artifact-build-") as scratch:
        if zip_path:
            given = Path(zip_path)
            if not zipfile.is_zipfile(given):
                raise InvalidInputError(f"--artifact {zip_path}: not a zip file")
            foreign = shipped_architectures(given) - {host}
            if foreign:
                raise ConfigurationError(
                    f"{zip_path} holds {', '.join(sorted(foreign))} extensions, which do not "
                    f"load on this {host} machine: run --artifact without a file to build one "
                    "for this machine"
                )
            document.update(zip=str(given), built=False, architecture=host)
        else:
            given = _build_here(Path(scratch), host, interpreter, document)
        with unpacked(given) as copy:
            document["pyc_files"] = copy.pyc_files
            document["imports"] = _measure(copy, entrypoints, runs, top, interpreter)
    return document


def _build_here(scratch: Path, host: str, python: Interpreter, document: dict[str, Any]) -> Path:
    """``wsfanout package`` of the checkout this wsfanout runs from, for ``host``."""
    from ..cli.package import wsfanout_source  # noqa: PLC0415  (only here)

    source = wsfanout_source()
    if source.path is None or source.path.suffix == ".whl":
        raise ConfigurationError("wsfanout runs from no checkout: give --artifact a lambda.zip")
    try:
        artifact = build(scratch, app_dir=source.path, architecture=host, python=python.path)
    except BuildError as exc:
        raise ConfigurationError(f"building the artifact failed: {exc}") from None
    note = None
    if host != "arm64":
        note = (
            f"built for {host}, this machine, not for the template's arm64: the arm64 wheels of "
            "its compiled dependencies (pydantic-core and others) do not load here"
        )
    document.update(zip=str(artifact.zip_path), built=True, architecture=host, note=note)
    return artifact.zip_path
