"""``wsfanout package``: build the Lambda artifact, ``build/lambda.zip`` for arm64 and Python 3.12,
with no Docker.

pip installs the wheels built for the target (``--platform manylinux…_aarch64
--implementation cp --python-version 3.12 --only-binary=:all: --target …``), so an x86-64
machine with no Docker builds for Graviton. ``--local`` builds for this interpreter and machine
instead; the tests import the handlers from that build in a clean interpreter.

Two kinds of directory are packaged (``--app-dir``, whose pyproject.toml says which):

- wsfanout's own checkout (``make package``, ``deploy/package.py``): wsfanout from a wheel built
  from it, for the built-in handlers;
- a project made by ``wsfanout new``: its own code (the top-level modules and packages, not its
  tests, virtualenvs or build output) at the artifact's root, so ``Handler: app.handler``
  resolves; its ``[project] dependencies``; and wsfanout itself, at the installed version (see
  :func:`wsfanout_source`).

What else goes in, and why:

- wsfanout without the ``bench`` and ``local`` subpackages and the command line (they import
  what is not shipped);
- wsfanout's dependencies and those of its ``[lambda]`` extra (Powertools and PyJWT, which the
  handlers import), every requirement pinned to the version installed where this runs (the ones
  the tests ran against); not the command line's ``[cli]`` (rich) or any other extra;
- botocore and boto3 too, although the Lambda runtime has its own: aiobotocore pins botocore to a
  narrow patch range (aiobotocore 2.25 wants ``botocore>=1.40.46,<1.40.62``) and boto3 pins
  botocore to its own patch line, while the runtime's copies are whatever release AWS last put
  there. Only the bundled pair is known to match aiobotocore.

What is pruned: console scripts, the bytecode caches pip or the project left, the test suites
some dependencies ship, and the botocore and boto3 models of every AWS service the handlers do
not call.

What is added: the bytecode of every module, compiled by a Python 3.12 interpreter (the Lambda
runtime's). Lambda's ``/var/task`` is read-only, so an artifact without ``.pyc`` files has every
cold start compile each module it imports, and throw the result away. The interpreter is
``--python``, else ``WSFANOUT_PACKAGE_PYTHON``, else this one when it is 3.12, else
``python3.12`` on ``PATH``, else the newest 3.12 that pyenv installed (its shim refuses to run
a version that is not selected); with none, the artifact ships no bytecode and says so.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import wsfanout

from ..exceptions import InvalidInputError
from .bytecode import PYTHON_ENV, BytecodeError, compile_tree, find_python, this_interpreter

__all__ = [
    "ARCHITECTURES",
    "CLI_ONLY",
    "LAMBDA_PYTHON",
    "SERVICES",
    "Artifact",
    "BuildError",
    "add_package_arguments",
    "add_package_command",
    "app_code",
    "build",
    "installed_pins",
    "lambda_platforms",
    "normalize",
    "project_requirements",
    "prune",
    "requirement_name",
    "run_package",
    "runtime_requirements",
    "write_zip",
    "wsfanout_source",
]

LAMBDA_PYTHON = "3.12"
ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}
"""Lambda's architectures (the template's ``Architectures``), by the machine name of wheels."""


def lambda_platforms(architecture: str) -> tuple[str, ...]:
    """pip's ``--platform`` tags for one of :data:`ARCHITECTURES`, preferred first: Lambda's
    python3.12 runs on Amazon Linux 2023 (glibc 2.34), so any of these wheels runs there."""
    machine = ARCHITECTURES[architecture]
    return tuple(
        f"{tag}_{machine}"
        for tag in ("manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014")
    )


CLI_ONLY = frozenset({"rich"})
"""Dependencies of wsfanout that only the command line imports (left out even where an older
wsfanout lists them among its unconditional dependencies)."""

LAMBDA_EXTRA = "lambda"
"""The extra of wsfanout whose dependencies the handlers import, shipped beside its own."""

NOT_SHIPPED = ("wsfanout/bench", "wsfanout/local", "wsfanout/cli")
"""Parts of wsfanout that need what the artifact leaves out (moto, websockets, rich)."""

SERVICES = frozenset({"dynamodb", "sqs", "apigatewaymanagementapi"})
"""The AWS services the handlers call; botocore's and boto3's other models are pruned."""

UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda's limit on a function's unzipped code (layers included)."""

NOT_APP_CODE = frozenset({"tests", "test", "build", "dist", "__pycache__", "node_modules"})
"""Top-level directories of a project that are never its Lambda code."""

NOT_APP_MODULES = frozenset({"conftest.py", "setup.py"})
"""Top-level files of a project that configure its tests or its build, not its Lambda code."""


class BuildError(Exception):
    """The artifact could not be built; the message says why."""


@dataclass(frozen=True)
class Artifact:
    """What :func:`build` made; ``code`` names the project's modules and packages shipped."""

    directory: Path
    zip_path: Path
    unzipped_bytes: int
    zipped_bytes: int
    pruned_bytes: int
    code: tuple[str, ...] = ()
    architecture: str = "arm64"
    bytecode_bytes: int = 0
    bytecode_python: str | None = None  # the compiler's version; None: no bytecode shipped


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form (``PyJWT`` and ``pyjwt`` are one project)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The project name of a PEP 508 requirement string.

    :raises BuildError: the string does not start with a project name.
    """
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not found:
        raise BuildError(f"cannot read the requirement {requirement!r} in pyproject.toml")
    return normalize(found.group(1))


def _read_project(pyproject: Path) -> dict[str, Any]:
    try:
        with pyproject.open("rb") as file:
            project: dict[str, Any] = tomllib.load(file).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"cannot read {pyproject}: {exc}") from None
    return project


def runtime_requirements(pyproject: Path) -> list[str]:
    """wsfanout's dependencies and its ``[lambda]`` extra's, from its pyproject.toml, without
    the command line's."""
    project = _read_project(pyproject)
    dependencies: list[str] = project.get("dependencies", [])
    dependencies += project.get("optional-dependencies", {}).get(LAMBDA_EXTRA, [])
    return [each for each in dependencies if requirement_name(each) not in CLI_ONLY]


def project_requirements(pyproject: Path) -> list[str]:
    """A project's ``[project] dependencies`` other than wsfanout (installed on its own)."""
    dependencies: list[str] = _read_project(pyproject).get("dependencies", [])
    return [each for each in dependencies if requirement_name(each) != "wsfanout"]


_LAMBDA_MARKER = re.compile(rf"""^\s*extra\s*==\s*["']{LAMBDA_EXTRA}["']\s*$""")


def _distribution_requirements(distribution: importlib.metadata.Distribution) -> list[str]:
    """An installed distribution's unconditional requirements and its ``[lambda]`` extra's
    (marker removed), without the command line's."""
    found: list[str] = []
    for each in distribution.requires or []:
        requirement, _, marker = (part.strip() for part in each.partition(";"))
        if requirement_name(requirement) in CLI_ONLY:
            continue
        if "extra" not in marker:
            found.append(each)
        elif _LAMBDA_MARKER.match(marker):
            found.append(requirement)
    return found


def installed_pins() -> list[str]:
    """``name==version`` for every distribution installed here, as pip constraints."""
    pins = {
        normalize(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    pins.pop("wsfanout", None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _is_wsfanout_checkout(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return False
    return normalize(str(_read_project(pyproject).get("name", ""))) == "wsfanout"


@dataclass(frozen=True)
class Source:
    """Where the artifact's wsfanout comes from: a local ``path`` (a checkout to build a wheel
    of, or a wheel) or a ``requirement`` for the index; and wsfanout's runtime requirements."""

    requirements: list[str]
    path: Path | None = None
    requirement: str | None = None


def wsfanout_source() -> Source:
    """The wsfanout a project's artifact ships: the one installed here, which its tests ran on.

    In order: the checkout the running ``wsfanout`` package is imported from (an editable
    install, or a checkout on ``PYTHONPATH``); else the local directory or wheel the
    distribution was installed from (its ``direct_url.json``), since an unreleased version is on
    no index; else ``wsfanout==<installed version>`` from the index.

    :raises BuildError: wsfanout is imported from no checkout and not installed either.
    """
    checkout = Path(wsfanout.__file__).resolve().parent.parent
    if _is_wsfanout_checkout(checkout):
        return Source(runtime_requirements(checkout / "pyproject.toml"), path=checkout)
    try:
        distribution = importlib.metadata.distribution("wsfanout")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError("wsfanout is not installed: no version to ship") from None
    requirements = _distribution_requirements(distribution)
    direct = json.loads(distribution.read_text("direct_url.json") or "{}")
    url = urlparse(str(direct.get("url", "")))
    if url.scheme == "file":
        local = Path(url2pathname(unquote(url.path)))
        if _is_wsfanout_checkout(local) or (local.is_file() and local.suffix == ".whl"):
            return Source(requirements, path=local)
    return Source(requirements, requirement=f"wsfanout=={distribution.version}")


def _excluded_directory(name: str) -> bool:
    return name in NOT_APP_CODE or name.startswith((".", "venv")) or name.endswith(".egg-info")


def app_code(app_dir: Path, *, out: Path | None = None) -> list[Path]:
    """A project's Lambda code: its top-level ``.py`` modules (not ``conftest.py`` or
    ``setup.py``) and the top-level directories holding Python code, leaving out tests,
    virtualenvs (``.venv*``, ``venv*``), build output, hidden directories, caches and ``out``."""
    skip = out.resolve() if out is not None else None
    return [path for path in sorted(app_dir.iterdir()) if _is_code(path, skip)]


def _is_code(path: Path, skip: Path | None) -> bool:
    if path.is_file():
        return path.suffix == ".py" and path.name not in NOT_APP_MODULES
    return (
        path.is_dir()
        and not _excluded_directory(path.name)
        and path.resolve() != skip
        and any(path.rglob("*.py"))
    )


def _ignore_caches(directory: str, names: list[str]) -> set[str]:
    return {name for name in names if name == "__pycache__" or name.endswith(".pyc")}


def _copy_code(code: Iterable[Path], directory: Path) -> None:
    for path in code:
        target = directory / path.name
        if target.exists():
            raise BuildError(f"{path.name} in the project has the name of a dependency's files")
        if path.is_dir():
            shutil.copytree(path, target, ignore=_ignore_caches)
        else:
            shutil.copy2(path, target)


def _pip(arguments: Sequence[str]) -> None:
    command = [sys.executable, "-m", "pip", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  (our interpreter's pip)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        reason = lines[-1] if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"pip {arguments[0]} failed: {reason}")


def _target_options(local: bool, architecture: str) -> list[str]:
    if local:
        return []
    options = ["--implementation", "cp", "--python-version", LAMBDA_PYTHON]
    options += ["--only-binary=:all:"]
    for platform in lambda_platforms(architecture):
        options += ["--platform", platform]
    return options


def _size(paths: Iterable[Path]) -> int:
    return sum(path.stat().st_size for path in paths if path.is_file() and not path.is_symlink())


def _tree_size(directory: Path) -> int:
    return _size(directory.rglob("*"))


def _remove(path: Path) -> int:
    """Delete a file or a directory tree; return the bytes it held."""
    if path.is_dir() and not path.is_symlink():
        size = _tree_size(path)
        shutil.rmtree(path)
        return size
    size = path.stat().st_size
    path.unlink()
    return size


def prune(directory: Path) -> int:
    """Remove from an installed tree what the handlers never load; return the bytes saved."""
    saved = 0
    for relative in (*NOT_SHIPPED, "bin"):
        path = directory / relative
        if path.exists():
            saved += _remove(path)
    for cache in [*directory.rglob("__pycache__")]:
        saved += _remove(cache)
    for tests in [*directory.glob("*/tests"), *directory.glob("*/test")]:
        if tests.is_dir():
            saved += _remove(tests)
    # botocore loads the top-level files of data/ (endpoints, partitions, retry and SDK
    # defaults) and one directory per service; boto3's data/ holds resource models per service.
    for models in (directory / "botocore" / "data", directory / "boto3" / "data"):
        if not models.is_dir():
            continue
        for service in models.iterdir():
            if service.is_dir() and service.name not in SERVICES:
                saved += _remove(service)
        for examples in models.glob("*/*/examples-1.json"):
            saved += _remove(examples)
    return saved


def _check_excluded(directory: Path, wanted: Iterable[str]) -> None:
    left_out = CLI_ONLY - {requirement_name(each) for each in wanted}
    for info in directory.glob("*.dist-info"):
        name = normalize(info.name.rsplit("-", 1)[0])
        if name in left_out:
            raise BuildError(f"{name} was installed as a dependency of a runtime dependency")


def write_zip(directory: Path, zip_path: Path) -> None:
    """Zip a tree reproducibly: sorted entries, fixed dates, modes Lambda can read."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            entry = zipfile.ZipInfo(path.relative_to(directory).as_posix(), (1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            entry.external_attr = (0o100000 | mode) << 16
            zf.writestr(entry, path.read_bytes(), compresslevel=9)
    partial.replace(zip_path)


@dataclass(frozen=True)
class _Plan:
    """What one build installs and copies."""

    source: Source
    requirements: list[str]  # the project's own, installed beside wsfanout's
    code: list[Path]


def _plan(app_dir: Path, out: Path) -> _Plan:
    if not app_dir.is_dir():
        raise InvalidInputError(f"--app-dir is not a directory: {app_dir}")
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out is not a directory: {out}")
    pyproject = app_dir / "pyproject.toml"
    if not pyproject.is_file():
        raise InvalidInputError(f"{app_dir} has no pyproject.toml: not a project to package")
    if _is_wsfanout_checkout(app_dir):
        return _Plan(Source(runtime_requirements(pyproject), path=app_dir), [], [])
    code = app_code(app_dir, out=out)
    if not code:
        raise InvalidInputError(f"{app_dir} has no Python code to package (no .py file)")
    return _Plan(wsfanout_source(), project_requirements(pyproject), code)


def _install_wsfanout(source: Source, install: list[str], scratch: Path, quiet: list[str]) -> None:
    if source.path is None or source.path.suffix == ".whl":
        wheel = str(source.path) if source.path is not None else str(source.requirement)
    else:
        wheels = scratch / "wheels"
        _pip(["wheel", *quiet, "--no-deps", "--wheel-dir", str(wheels), str(source.path)])
        built = sorted(wheels.glob("wsfanout-*.whl"))
        if len(built) != 1:
            raise BuildError(f"expected one wsfanout wheel, pip built {len(built)}")
        wheel = str(built[0])
    # its own dependency list would bring the command line's back: installed before instead
    _pip([*install, "--no-deps", wheel])


def build(
    out: Path,
    *,
    app_dir: Path | None = None,
    local: bool = False,
    pin: bool = True,
    pruned: bool = True,
    architecture: str | None = None,
    python: str | None = None,
) -> Artifact:
    """Build ``out/lambda/`` (the tree) and ``out/lambda.zip`` (what is deployed) for the project
    in ``app_dir`` (default: the current directory), for Lambda's ``architecture`` (one of
    :data:`ARCHITECTURES`; arm64 when None) or, with ``local``, for this interpreter and
    machine.

    The tree ships the bytecode of every module, compiled by the interpreter
    :func:`~wsfanout.cli.bytecode.find_python` finds for Python 3.12 (``python`` first), or by
    this one for a ``local`` build; with no 3.12 found the artifact ships none, and
    :attr:`Artifact.bytecode_python` is None.

    :raises InvalidInputError: ``app_dir`` is no project (no pyproject.toml, no Python code),
        ``out`` is a file, ``architecture`` is none of Lambda's, or ``python`` is given with
        ``local`` or is no 3.12 interpreter, or ``architecture`` is given with ``local``.
    :raises BuildError: pip failed, the project's code clashes with a dependency, a module did
        not compile, or the tree is over Lambda's size limit.
    """
    app_dir = Path.cwd() if app_dir is None else app_dir
    if local and (python is not None or architecture is not None):
        given = "--python" if python is not None else "--arch"
        raise InvalidInputError(f"{given} is for the Lambda build; --local builds for this one")
    architecture = architecture or "arm64"
    if architecture not in ARCHITECTURES:
        raise InvalidInputError(f"--arch {architecture!r} is none of {', '.join(ARCHITECTURES)}")
    compiler = this_interpreter() if local else find_python(python, LAMBDA_PYTHON)
    plan = _plan(app_dir, out)
    directory = out / "lambda"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    quiet = ["--quiet", "--disable-pip-version-check", "--no-input"]
    with tempfile.TemporaryDirectory(prefix="wsfanout-package-") as scratch:
        install = ["install", *quiet, "--no-compile", "--target", str(directory)]
        install += _target_options(local, architecture)
        if pin:
            constraints = Path(scratch) / "constraints.txt"
            constraints.write_text("\n".join(installed_pins()) + "\n")
            install += ["--constraint", str(constraints)]
        _pip([*install, *plan.source.requirements, *plan.requirements])
        _install_wsfanout(plan.source, install, Path(scratch), quiet)
    _check_excluded(directory, plan.requirements)
    saved = prune(directory) if pruned else 0
    _copy_code(plan.code, directory)
    bytecode = 0
    if compiler is not None:
        try:
            bytecode = compile_tree(directory, compiler.path)
        except BytecodeError as exc:
            raise BuildError(str(exc)) from None
    unzipped = _tree_size(directory)
    if unzipped > UNZIPPED_LIMIT:
        raise BuildError(f"{unzipped / 2**20:.1f} MiB unzipped: over Lambda's 250 MiB limit")
    zip_path = out / "lambda.zip"
    write_zip(directory, zip_path)
    code = tuple(path.name for path in plan.code)
    return Artifact(
        directory,
        zip_path,
        unzipped,
        zip_path.stat().st_size,
        saved,
        code,
        architecture,
        bytecode,
        None if compiler is None else compiler.version,
    )


def add_package_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wsfanout package`` (and of ``deploy/package.py``, with its defaults)."""
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the project to package (default: the current directory)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: DIR/build)"
    )
    parser.add_argument(
        "--local", action="store_true", help="build for this interpreter and machine (tests)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="resolve the newest versions, not the installed ones"
    )
    parser.add_argument("--no-prune", action="store_true", help="keep everything pip installed")
    parser.add_argument(
        "--arch",
        choices=tuple(ARCHITECTURES),
        default=None,
        help="the functions' Lambda architecture (default arm64, as deploy/template.yaml)",
    )
    parser.add_argument(
        "--python",
        default=None,
        metavar="PYTHON",
        help=f"the Python {LAMBDA_PYTHON} that compiles the bytecode (default: ${PYTHON_ENV}, "
        f"python{LAMBDA_PYTHON} on PATH or pyenv's; with none, the artifact ships no bytecode)",
    )


def run_package(args: argparse.Namespace, prog: str) -> int:
    """Build from parsed arguments, then print where the artifact is and how big.

    Exit status 0; 2 for a directory that is no project or options that contradict each other, 1
    when the build failed, each with one line on stderr that starts with ``prog``. With no
    Python 3.12 to compile the bytecode, one line on stderr says the artifact ships none (exit
    status 0).
    """
    app_dir: Path = Path.cwd() if args.app_dir is None else args.app_dir
    out: Path = app_dir / "build" if args.out is None else args.out
    try:
        artifact = build(
            out,
            app_dir=app_dir,
            local=args.local,
            pin=not args.no_pin,
            pruned=not args.no_prune,
            architecture=args.arch,
            python=args.python,
        )
    except InvalidInputError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    except BuildError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    if artifact.bytecode_python is None:
        sys.stderr.write(
            f"{prog}: no Python {LAMBDA_PYTHON} found (--python, ${PYTHON_ENV}, "
            f"python{LAMBDA_PYTHON} on PATH, pyenv): packaged without bytecode, so each cold "
            "start compiles every module it imports\n"
        )
    target = "this machine" if args.local else f"{artifact.architecture}, Python {LAMBDA_PYTHON}"
    code = f"; the project's code: {', '.join(artifact.code)}" if artifact.code else ""
    bytecode = (
        "no bytecode"
        if artifact.bytecode_python is None
        else f"{artifact.bytecode_bytes / 2**20:.1f} MiB of it bytecode compiled by Python "
        f"{artifact.bytecode_python}"
    )
    print(
        f"{artifact.zip_path} ({target}): {artifact.zipped_bytes / 2**20:.1f} MiB zipped, "
        f"{artifact.unzipped_bytes / 2**20:.1f} MiB unzipped, {bytecode} "
        f"(pruned {artifact.pruned_bytes / 2**20:.1f} MiB){code}"
    )
    return 0


_HELP = "build the Lambda artifact (DIR/build/lambda.zip) for arm64, Python 3.12"
_DESCRIPTION = (
    "Install the project's code, wsfanout and their dependencies into DIR/build/lambda/ with "
    "pip's platform options (no Docker), prune what Lambda never loads, compile the bytecode "
    "with a Python 3.12 (Lambda cannot write it: /var/task is read-only) and zip it "
    "reproducibly into DIR/build/lambda.zip."
)


def add_package_command(commands: Any) -> None:
    """Add ``package`` to the ``wsfanout`` subcommands."""
    package = commands.add_parser("package", help=_HELP, description=_DESCRIPTION)
    add_package_arguments(package)
    package.set_defaults(run=lambda args: run_package(args, "wsfanout"))
