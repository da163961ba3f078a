"""What the operator's commands (``connections``, ``jobs``, ``dlq``, ``token``) share: their
common options, their output (a rich table for people, one JSON document for scripts) and a
progress display on stderr for the ones that read a whole table.

``--json`` prints exactly one JSON document on stdout and nothing else there; tables, notes and
progress go elsewhere (progress and errors to stderr), so ``wsfanout … --json | jq`` always works.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..settings import Settings
from .arguments import positive_int

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "add_json_option",
    "add_limit_option",
    "add_table_option",
    "command_group",
    "emit",
    "epoch_text",
    "progress_on_stderr",
    "rows_table",
    "settings_of",
]

EXIT_OK, EXIT_FAILED = 0, 1


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: one JSON document on stdout instead of the table."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout, nothing else"
    )


def add_limit_option(parser: argparse.ArgumentParser, default: int, verb: str = "list") -> None:
    """``--limit N``: how many items a listing shows at the most."""
    parser.add_argument(
        "--limit",
        metavar="N",
        type=positive_int,
        default=default,
        help=f"{verb} at most N (default: {default})",
    )


def command_group(commands: Any, name: str, summary: str, description: str) -> Any:
    """Add the command ``name`` to the ``wsfanout`` subcommands and return its (required)
    subcommands, each an operator's action (``connections list``, ``dlq redrive``)."""
    group = commands.add_parser(name, help=summary, description=description)
    return group.add_subparsers(dest="action", required=True, parser_class=type(group))


def add_table_option(parser: argparse.ArgumentParser) -> None:
    """``--table``: the registry table, over ``CONNECTIONS_TABLE``."""
    parser.add_argument("--table", help="registry table (default: $CONNECTIONS_TABLE)")


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings, with the command's ``--table`` and ``--endpoint`` (when it has them) over
    the environment.

    :raises pydantic.ValidationError: a setting is out of its bounds (``--endpoint`` no URL).
    """
    overrides: dict[str, Any] = {}
    if getattr(args, "table", None):
        overrides["connections_table"] = args.table
    if getattr(args, "endpoint", None):
        overrides["apigw_management_endpoint"] = args.endpoint
    return Settings(**overrides)


def emit(args: argparse.Namespace, document: Any, *renderables: RenderableType) -> None:
    """Print ``document`` as JSON (``--json``), else the ``renderables`` for people, one under
    the other. Rich markup is off: ids, rooms and reasons are data, and ``[b]`` in a room name
    must print as it is."""
    if args.json:
        sys.stdout.write(json.dumps(document, default=str) + "\n")
    else:
        Console(markup=False, highlight=False).print(*renderables, sep="\n")


def rows_table(title: str, columns: list[str], rows: list[list[str]]) -> RenderableType:
    """A table with a header row; without rows, one line saying there are none."""
    if not rows:
        return f"{title}: none"
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def epoch_text(seconds: float | None) -> str:
    """Epoch seconds as RFC 3339 UTC (``-`` for none), as the registry writes times."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


@contextmanager
def progress_on_stderr(what: str) -> Iterator[Callable[[int], None]]:
    """A spinner with a running count on stderr (only when stderr is a terminal); yields the
    function that adds to the count."""
    err = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn(f"{what}: {{task.completed}}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(what, total=None)
        yield lambda n: progress.advance(task, n)
