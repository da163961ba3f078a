"""Build the Lambda artifact without Docker: ``build/lambda.zip`` for arm64 and Python 3.12.

pip installs the wheels built for the target (``--platform manylinux…_aarch64
--implementation cp --python-version 3.12 --only-binary=:all: --target …``), so an x86-64
machine with no Docker builds for Graviton. ``--local`` builds for this interpreter and machine
instead; the tests import the handlers from that build in a clean interpreter.

What goes in, and why:

- wsfanout, from its own wheel, without the ``bench`` and ``local`` subpackages and the command
  line (they import what is not shipped);
- the package's runtime dependencies, pinned to the versions installed where this runs (the
  ones the tests ran against), except the command line's ``rich``;
- botocore and boto3 too, although the Lambda runtime has its own: aiobotocore pins botocore to a
  narrow patch range (aiobotocore 2.25 wants ``botocore>=1.40.46,<1.40.62``) and boto3 pins
  botocore to its own patch line, while the runtime's copies are whatever release AWS last put
  there. Only the bundled pair is known to match aiobotocore.

What is pruned: console scripts, bytecode caches, the test suites some dependencies ship, and
the botocore and boto3 models of every AWS service the handlers do not call (about 24 MB).
"""

from __future__ import annotations

import argparse
import importlib.metadata
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
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent

LAMBDA_PYTHON = "3.12"
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34), so any of these wheels runs there;
# pip prefers them in this order.
LAMBDA_PLATFORMS = (
    "manylinux_2_34_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)

CLI_ONLY = frozenset({"rich"})
"""Dependencies of wsfanout that only the command line imports."""

NOT_SHIPPED = ("wsfanout/bench", "wsfanout/local", "wsfanout/cli")
"""Parts of wsfanout that need what the artifact leaves out (moto, websockets, rich)."""

SERVICES = frozenset({"dynamodb", "sqs", "apigatewaymanagementapi"})
"""The AWS services the handlers call; botocore's and boto3's other models are pruned."""

UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda's limit on a function's unzipped code (layers included)."""


class BuildError(Exception):
    """The artifact could not be built; the message says why."""


@dataclass(frozen=True)
class Artifact:
    """What :func:`build` made."""

    directory: Path
    zip_path: Path
    unzipped_bytes: int
    zipped_bytes: int
    pruned_bytes: int


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form (``PyJWT`` and ``pyjwt`` are one project)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The project name of a PEP 508 requirement string."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not found:
        raise BuildError(f"cannot read the requirement {requirement!r} in pyproject.toml")
    return normalize(found.group(1))


def runtime_requirements(pyproject: Path) -> list[str]:
    """wsfanout's dependencies from pyproject.toml, without the command line's."""
    with pyproject.open("rb") as file:
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    return [each for each in dependencies if requirement_name(each) not in CLI_ONLY]


def installed_pins() -> list[str]:
    """``name==version`` for every distribution installed here, as pip constraints."""
    pins = {
        normalize(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    pins.pop("wsfanout", None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _pip(arguments: Sequence[str]) -> None:
    command = [sys.executable, "-m", "pip", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        reason = lines[-1] if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"pip {arguments[0]} failed: {reason}")


def _target_options(local: bool) -> list[str]:
    if local:
        return []
    options = ["--implementation", "cp", "--python-version", LAMBDA_PYTHON]
    options += ["--only-binary=:all:"]
    for platform in LAMBDA_PLATFORMS:
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


def _check_excluded(directory: Path) -> None:
    for info in directory.glob("*.dist-info"):
        name = normalize(info.name.rsplit("-", 1)[0])
        if name in CLI_ONLY:
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


def build(out: Path, *, local: bool = False, pin: bool = True, pruned: bool = True) -> Artifact:
    """Build ``out/lambda/`` (the tree) and ``out/lambda.zip`` (what is deployed)."""
    directory = out / "lambda"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    quiet = ["--quiet", "--disable-pip-version-check", "--no-input"]
    with tempfile.TemporaryDirectory(prefix="wsfanout-package-") as scratch:
        wheels = Path(scratch) / "wheels"
        _pip(["wheel", *quiet, "--no-deps", "--wheel-dir", str(wheels), str(ROOT)])
        built = sorted(wheels.glob("wsfanout-*.whl"))
        if len(built) != 1:
            raise BuildError(f"expected one wsfanout wheel, pip built {len(built)}")
        install = ["install", *quiet, "--no-compile", "--target", str(directory)]
        install += _target_options(local)
        dependencies = runtime_requirements(ROOT / "pyproject.toml")
        if pin:
            constraints = Path(scratch) / "constraints.txt"
            constraints.write_text("\n".join(installed_pins()) + "\n")
            install += ["--constraint", str(constraints)]
        _pip([*install, *dependencies])
        # its own dependency list would bring the command line's back: installed above instead
        _pip([*install, "--no-deps", str(built[0])])
    _check_excluded(directory)
    saved = prune(directory) if pruned else 0
    unzipped = _tree_size(directory)
    if unzipped > UNZIPPED_LIMIT:
        raise BuildError(f"{unzipped / 2**20:.1f} MiB unzipped: over Lambda's 250 MiB limit")
    zip_path = out / "lambda.zip"
    write_zip(directory, zip_path)
    return Artifact(directory, zip_path, unzipped, zip_path.stat().st_size, saved)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build, then print where the artifact is and how big."""
    parser = _OneLineParser(
        prog="package.py", description="Build the wsfanout Lambda artifact (arm64, Python 3.12)."
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output directory")
    parser.add_argument(
        "--local", action="store_true", help="build for this interpreter and machine (tests)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="resolve the newest versions, not the installed ones"
    )
    parser.add_argument("--no-prune", action="store_true", help="keep everything pip installed")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out is not a directory: {args.out}")
    try:
        artifact = build(args.out, local=args.local, pin=not args.no_pin, pruned=not args.no_prune)
    except BuildError as exc:
        print(f"package.py: {exc}", file=sys.stderr)
        return 1
    target = "this machine" if args.local else f"arm64, Python {LAMBDA_PYTHON}"
    print(
        f"{artifact.zip_path} ({target}): {artifact.zipped_bytes / 2**20:.1f} MiB zipped, "
        f"{artifact.unzipped_bytes / 2**20:.1f} MiB unzipped "
        f"(pruned {artifact.pruned_bytes / 2**20:.1f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
