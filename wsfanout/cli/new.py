"""``wsfanout new DIR``: write a ready project for an app, from templates shipped in the package.

The project (``templates/project/``) holds ``app.py`` (an :class:`~wsfanout.App` with one
route), its tests on :class:`~wsfanout.testing.TestClient`, a ``pyproject.toml``, a
``Makefile`` (``make test``, ``make dev``), a SAM ``template.yaml`` whose route function runs
``app.handler``, and a README. ``{{name}}`` in a template becomes the project's name, made from
DIR's last part.
"""

from __future__ import annotations

import argparse
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ..exceptions import InvalidInputError

__all__ = ["add_new_command", "create_project", "project_name"]

TEMPLATES = files("wsfanout.cli") / "templates" / "project"
_PLACEHOLDER = "{{name}}"


_HELP = "write a ready project for an app into DIR"
_DESCRIPTION = (
    "Write app.py (an App with one route), its tests, pyproject.toml, a Makefile (make test, "
    "make dev), a SAM template.yaml and a README into DIR, which must be new or empty."
)


def add_new_command(commands: Any) -> None:
    """Add ``new`` to the ``wsfanout`` subcommands."""
    new = commands.add_parser("new", help=_HELP, description=_DESCRIPTION)
    new.add_argument("directory", metavar="DIR", type=Path, help="where to write the project")
    new.set_defaults(run=_cmd_new)


def project_name(directory: Path) -> str:
    """The project's name: DIR's last part, lowercase, runs of other characters made ``-``
    (a valid distribution name).

    :raises InvalidInputError: nothing of it is a letter or a digit.
    """
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    if not name:
        raise InvalidInputError(f"cannot make a project name of {str(directory)!r}")
    return name


def create_project(directory: Path) -> list[Path]:
    """Write the project into ``directory`` (created, with its parents, when missing) and
    return the files written, relative to it. Nothing is overwritten.

    :raises InvalidInputError: ``directory`` is a file, or a directory that is not empty, or
        cannot be written.
    """
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        raise InvalidInputError(f"{directory} exists and is not empty")
    name = project_name(directory)
    written: list[Path] = []
    try:
        for relative, template in _walk(TEMPLATES, Path()):
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(template.read_text().replace(_PLACEHOLDER, name))
            written.append(relative)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {directory}: {exc.strerror or exc}") from None
    return written


def _walk(folder: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    """Every template file under ``folder``, in name order (caches left out)."""
    found: list[tuple[Path, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found.extend(_walk(entry, relative / entry.name))
        else:
            found.append((relative / entry.name, entry))
    return found


def _cmd_new(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    written = create_project(directory)
    print(f"wrote {len(written)} files into {directory}:")
    for relative in written:
        print(f"  {relative}")
    print(f"next: cd {directory} && make test")
    return 0
