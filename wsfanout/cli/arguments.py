"""Command-line argument types shared by every wsfanout command.

Bad arguments exit 2 with one line (no usage dump), so scripts and benchmarks that start these
commands can show the reason verbatim.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

__all__ = [
    "OneLineParser",
    "add_throttle_arguments",
    "add_version_option",
    "identifier",
    "non_negative",
    "port",
    "positive_float",
    "positive_int",
    "positive_ints",
    "rate",
]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr and exit status 2, and a connection id
    that starts with ``-`` (API Gateway's ids may: ``-gfm9P0AcpoOv3w=``) is an argument, not
    an unknown option, wherever it stands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse reads a token that looks like a negative number as a positional when the
        # parser has no option that looks like one; widening its matcher to connection ids
        # is the one hook it offers (no option of ours is 16 characters ending in "=").
        self._negative_number_matcher = _NEGATIVE_OR_CONNECTION_ID

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


_NEGATIVE_OR_CONNECTION_ID = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[A-Za-z0-9_-]{14}=$")


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """``--version``: the installed distribution's version (``unknown`` when run from a tree
    that was never installed)."""
    try:
        installed = version("wsfanout")
    except PackageNotFoundError:  # pragma: no cover - a source tree on PYTHONPATH only
        installed = "unknown"
    parser.add_argument("--version", action="version", version=f"wsfanout {installed}")


def identifier(what: str) -> Callable[[str], str]:
    """An argument type for an id (a connection's, a job's, a user's) of 1 to 512 characters,
    the bound the registry's keys keep; its error names ``what`` the id is of."""

    def checked(text: str) -> str:
        if not 1 <= len(text) <= 512:
            raise argparse.ArgumentTypeError(f"not a {what} id (1 to 512 characters): {text!r}")
        return text

    return checked


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def non_negative(text: str) -> float:
    """A number of seconds (or anything else) that is not negative; NaN is refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (seconds, requests per second); NaN and infinity are refused."""
    value = non_negative(text)
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def rate(text: str) -> float:
    """A fraction between 0 and 1."""
    value = non_negative(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def port(text: str) -> int:
    """A TCP port; 0 asks the system for a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def positive_ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers of at least 1 (``1000,10000``); ``_`` allowed."""
    parts = [part.strip().replace("_", "") for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}")
    return tuple(positive_int(part) for part in parts)


def add_throttle_arguments(parser: argparse.ArgumentParser) -> None:
    """``--account-rate R --account-burst B``: the local management endpoint's account-level
    throttle (``wsfanout.local.management.throttle_of`` builds it), for ``python -m
    wsfanout.local.management`` and ``wsfanout dev`` alike."""
    parser.add_argument(
        "--account-rate",
        type=positive_float,
        metavar="R",
        help="account-level throttle: R requests/s to @connections, then 429 (default: off)",
    )
    parser.add_argument(
        "--account-burst",
        type=positive_int,
        metavar="B",
        help="the throttle's burst (default: one second of --account-rate, at least 1)",
    )
