"""The argument types and parser every command shares."""

from __future__ import annotations

import pytest

from wsfanout.cli.arguments import OneLineParser


def parser() -> OneLineParser:
    made = OneLineParser(prog="wsfanout connections kick")
    made.add_argument("ids", nargs="*")
    made.add_argument("--reason")
    made.add_argument("--limit", type=int)
    return made


def test_a_connection_id_that_starts_with_a_dash_is_an_argument_wherever_it_stands() -> None:
    read = parser().parse_args(["-gfm9P0AcpoOv3w=", "a=", "--reason", "-xfm9P0AcpoOv3w="])
    assert (read.ids, read.reason) == (["-gfm9P0AcpoOv3w=", "a="], "-xfm9P0AcpoOv3w=")
    assert parser().parse_args(["--limit", "-3"]).limit == -3  # negative numbers as before


def test_anything_else_with_a_dash_is_still_an_unknown_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["-gfm9P0AcpoOv3w"])  # no "=": not an id API Gateway makes
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "wsfanout connections kick: error: unrecognized arguments: -gfm9P0AcpoOv3w\n"
    )
