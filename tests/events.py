"""Realistic AWS events for tests, loaded from ``tests/events/*.json``.

The JSON files carry every field AWS sends (shapes checked against the samples in
aws-powertools/powertools-lambda-python ``tests/events/`` and the API Gateway developer guide).
Each call returns a fresh deep copy, so a test may mutate what it gets.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["EVENTS_DIR", "load_event"]

EVENTS_DIR = Path(__file__).parent / "events"


@functools.cache
def _read(name: str) -> dict[str, Any]:
    path = EVENTS_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in EVENTS_DIR.glob("*.json")))
        raise FileNotFoundError(f"no event fixture {name!r}; known: {known}")
    event: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return event


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """Return a deep copy of ``tests/events/{name}.json`` with ``overrides`` merged in.

    A dict override merges key by key into the dict it meets (so
    ``queryStringParameters={"token": t}`` keeps the other parameters); any other value,
    ``None`` included, replaces the field. To drop a key, ``del`` it from the returned copy.
    """
    event = copy.deepcopy(_read(name))
    _merge(event, overrides)
    return event
