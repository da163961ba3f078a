"""What importing each Lambda entrypoint loads, checked in a fresh interpreter, as a cold
container imports it: the cuts of ``wsfanout bench coldstart`` guarded without timing anything.

Each name below was measured on a cold start and moved off it; one that comes back fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wsfanout.bench import ENTRYPOINTS

NEVER_AT_IMPORT = frozenset(
    {
        # the AWS SDK and its HTTP client: the runtime opens the clients on first use
        "aioboto3",
        "aiobotocore",
        "aiohttp",
        "boto3",
        "botocore.session",  # Powertools imports the bare package, which is cheap
        "botocore.client",
        # token verification loads on the authorizer's first token
        "jwt",
        "cryptography",
        # Powertools' batch processor and its data classes of every event source: the broadcast
        # handler answers SQS's partial batch response itself
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.data_classes",
        # the command line and the local stack are never shipped
        "rich",
        "moto",
    }
)
PARSER = "aws_lambda_powertools.utilities.parser"
"""Powertools' parser and its pydantic event models: the App has its own models of the
WebSocket events, and the broadcast handler reads SQS records as they come."""

DEFERRED = (
    "wsfanout.core.models:Connection",
    "wsfanout.core.models:BroadcastJob",
    "wsfanout.core.models:FanoutReport",
    "wsfanout.core.models:AllTarget",
    "wsfanout.core.protocol:SendMessage",
    "wsfanout.core.protocol:_Envelope",
    "wsfanout.app.events:ConnectEvent",
    "wsfanout.app.events:MessageEvent",
    "wsfanout.app.events:DisconnectEvent",
)
"""Models that build their validators on first use (``defer_build``), not at import."""

PROBE = """
import importlib, json, sys
import {module}
built = []
for spec in {deferred!r}:
    where, name = spec.split(":")
    owner = sys.modules.get(where)
    if owner is not None and getattr(owner, name).__pydantic_complete__:
        built.append(spec)
print(json.dumps({{"modules": sorted(sys.modules), "built": built}}))
"""


def loaded_by(module: str) -> tuple[set[str], list[str]]:
    """The modules a fresh interpreter holds after importing ``module``, and which of the
    deferred models were built by then."""
    probe = PROBE.format(module=module, deferred=DEFERRED)
    done = subprocess.run(  # noqa: S603  (our interpreter, our probe)
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(done.stdout)
    return set(found["modules"]), found["built"]


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_a_cold_import_leaves_the_sdk_and_the_extras_for_later(entrypoint: str) -> None:
    modules, built = loaded_by(ENTRYPOINTS[entrypoint])
    assert ENTRYPOINTS[entrypoint] in modules
    assert "botocore" in modules, "the probe sees what Powertools imports"
    assert not NEVER_AT_IMPORT & modules
    assert built == []


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_powertools_parser_is_not_imported(entrypoint: str) -> None:
    modules, _ = loaded_by(ENTRYPOINTS[entrypoint])
    assert "aws_lambda_powertools.logging" in modules, "the probe sees Powertools' modules"
    assert not {name for name in modules if name == PARSER or name.startswith(PARSER + ".")}
