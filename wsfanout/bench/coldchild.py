"""One cold Lambda container, timed: ``python -P coldchild.py SPEC_JSON`` (run by the bench).

Run as a file with ``-P``, not with ``-m``: ``-m`` would import the ``wsfanout`` package (and
this one's) before the clock starts, and ``-P`` keeps this file's directory off ``sys.path``.
Nothing of wsfanout is imported before the clock starts; the Lambda context is a stand-in
defined here for the same reason (``wsfanout.testing`` would load part of what is measured).

The spec is ``{"module", "events"}``: the child imports ``module`` (Lambda's init), then calls
its ``handler`` with each event in turn (the first invocation, then warm ones), and prints one
JSON line: ``{"init_ms", "init_cpu_ms", "invocations": [{"ms", "cpu_ms", "response"}]}``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

__all__ = ["Context", "main"]


class Context:
    """The attributes of a Lambda context that the handlers and Powertools read."""

    function_name = "wsfanout-coldstart"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:wsfanout-coldstart"
    log_group_name = "/aws/lambda/wsfanout-coldstart"
    log_stream_name = "coldstart"

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._until = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """What is left of the invocation's time, as Lambda's own context answers."""
        return max(0, int((self._until - time.monotonic()) * 1000))


def main(argv: Sequence[str] | None = None) -> int:
    """Import the spec's module, call its handler with each event, print the timings."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -P coldchild.py SPEC_JSON", file=sys.stderr)
        return 2
    spec: dict[str, Any] = json.loads(args[0])
    wall, cpu = time.perf_counter(), time.process_time()
    handler = importlib.import_module(spec["module"]).handler
    init_ms = (time.perf_counter() - wall) * 1000
    init_cpu_ms = (time.process_time() - cpu) * 1000
    invocations = []
    for event in spec["events"]:
        wall, cpu = time.perf_counter(), time.process_time()
        response = handler(event, Context())
        invocations.append(
            {
                "ms": (time.perf_counter() - wall) * 1000,
                "cpu_ms": (time.process_time() - cpu) * 1000,
                "response": response,
            }
        )
    result = {"init_ms": init_ms, "init_cpu_ms": init_cpu_ms, "invocations": invocations}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
