"""Call Lambda handlers from a built artifact as Lambda does, in a clean interpreter.

Run as ``python -I -S invoke.py ARTIFACT_DIR < request.json``: no site-packages, no user site, no
PYTHONPATH, so only the standard library and the artifact can be imported (Lambda puts the
code's directory first on ``sys.path`` in the same way, without processing ``.pth`` files).
Standard library only. The request is JSON::

    {"out": "result.json",
     "calls": [{"handler": "wsfanout.handlers.route.handler", "event": {...} or null}],
     "clients": true}

Each call imports the handler's module and resolves the handler; with an event it also calls it
(one process: one warm container). ``clients`` opens every AWS client the handlers use, without
network. The result, written to ``out``: the handlers' answers, where every loaded module came
from, and the AWS services botocore can load.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from typing import Any


async def open_clients() -> list[str]:
    from wsfanout.aws.clients import Clients  # noqa: PLC0415 - from the artifact, after sys.path
    from wsfanout.settings import Settings  # noqa: PLC0415

    async with Clients(Settings()) as clients:
        await clients.registry()  # DynamoDB
        await clients.sqs()
        gateway = await clients.gateway()
        await gateway.client()  # the management API
        await clients.sender()  # the lean transport
        services: list[str] = clients.session.get_available_services()
    return sorted(services)


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    request = json.load(sys.stdin)
    results: list[Any] = []
    # the package's own stand-in (standard library only), from the artifact
    from wsfanout.aws.events import LambdaContext  # noqa: PLC0415

    for call in request["calls"]:
        module_name, _, name = call["handler"].rpartition(".")
        handler = getattr(importlib.import_module(module_name), name)
        if not callable(handler):
            raise TypeError(f"{call['handler']} is not callable")
        event = call.get("event")
        context = LambdaContext(seconds=60.0, function_name="wsfanout-artifact")
        results.append(None if event is None else handler(event, context))
    services = asyncio.run(open_clients()) if request.get("clients") else None
    origins = {
        name: getattr(module, "__file__", None)
        for name, module in sorted(sys.modules.items())
        if "." not in name and name != "__main__"
    }
    with open(request["out"], "w", encoding="utf-8") as out:
        json.dump({"results": results, "modules": origins, "services": services}, out)


if __name__ == "__main__":
    main()
