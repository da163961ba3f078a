"""Test doubles for code built on wsfanout, shipped with it as httpx ships ``MockTransport``.

Everything here runs in memory: no DynamoDB, no SQS, no HTTP, no clock but the real monotonic
one. The doubles implement the protocols of :mod:`wsfanout.core.interfaces`, so the engine and
the job runner run on them unchanged; the event builders make what API Gateway and SQS hand a
Lambda handler, in the shapes AWS sends (one implementation, shared with the local emulator)::

    from wsfanout.core.fanout import Fanout
    from wsfanout.core.models import AllTarget
    from wsfanout.core.outcomes import Outcome
    from wsfanout.testing import MemorySource, ScriptedGateway, set_testing

    source = MemorySource(["a=", "b=", "c="], page_size=2)
    gateway = ScriptedGateway(lambda cid, data: Outcome.GONE if cid == "b=" else Outcome.DELIVERED)
    with set_testing():  # retries wait for nothing
        report = await Fanout(source, gateway).run(AllTarget(all=True), b"hi")
    assert report.delivered == 2 and source.ids() == ["a=", "c="]

An app (:class:`wsfanout.App`) runs on :class:`TestClient`: fake connections, frames in, what
each connection received out, all in memory::

    from wsfanout.testing import TestClient

    async with TestClient(app) as client:
        alice = await client.connect(user="alice", query={"tenant": "acme"})
        await alice.send({"action": "typing", "room": "lobby"})
        assert alice.received == [...]

:class:`LambdaContext` is the context Lambda's Python runtime passes a handler; the event
builders (:func:`connect_event`, :func:`message_event`, :func:`disconnect_event`,
:func:`sqs_event`) take plain arguments and fill in the rest as API Gateway and the SQS event
source mapping do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .doubles import (
    LambdaContext,
    MemoryJobSink,
    MemoryProgressStore,
    MemorySource,
    Post,
    ScriptedGateway,
    connect_event,
    disconnect_event,
    message_event,
    set_testing,
    sqs_event,
)
from .history import MemoryHistory

if TYPE_CHECKING:  # loaded on first use: an app brings Powertools (and with it botocore)
    from .apps import AppConnection, MemoryRegistry, MemoryServices, TestClient

_APPS = frozenset({"AppConnection", "MemoryRegistry", "MemoryServices", "TestClient"})


def __getattr__(name: str) -> Any:
    if name not in _APPS:
        raise AttributeError(f"module 'wsfanout.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(".apps", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AppConnection",
    "LambdaContext",
    "MemoryHistory",
    "MemoryJobSink",
    "MemoryProgressStore",
    "MemoryRegistry",
    "MemoryServices",
    "MemorySource",
    "Post",
    "ScriptedGateway",
    "TestClient",
    "connect_event",
    "disconnect_event",
    "message_event",
    "set_testing",
    "sqs_event",
]
