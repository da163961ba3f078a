"""The console and progress bars every bench command shows while it works."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["console_for", "run_progress"]


def console_for(file: IO[str] | None = None) -> Console:
    """A console as wide as the terminal, or wide enough for the tables when piped to a file.

    ``file`` binds it to that stream for good (by default it writes to whatever ``sys.stdout``
    is at each print, which a command redirecting the stack's logs must not follow)."""
    return Console(file=file, width=None if Console().is_terminal else 150)


def run_progress(console: Console) -> Progress:
    """One bar per run, advanced by the endpoint's count of POSTs answered."""
    return Progress(
        TextColumn("{task.description:>22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
