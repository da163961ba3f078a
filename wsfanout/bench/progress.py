"""The console and progress bars every bench command shows while it works."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["console_for", "run_progress"]


def console_for() -> Console:
    """A console as wide as the terminal, or wide enough for the tables when piped to a file."""
    return Console(width=None if Console().is_terminal else 150)


def run_progress(console: Console) -> Progress:
    """One bar per run, advanced by the endpoint's count of POSTs answered."""
    return Progress(
        TextColumn("{task.description:>22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
