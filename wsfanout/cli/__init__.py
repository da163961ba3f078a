"""The ``wsfanout`` command (the ``[cli]`` extra; :mod:`wsfanout.cli.entry` says so without it)."""

from .entry import main

__all__ = ["main"]
