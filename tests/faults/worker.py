"""A broadcast worker in a process of its own: ``python -m tests.faults.worker EVENT SECONDS``.

Runs :func:`wsfanout.handlers.broadcast.handler` once on the SQS event given as JSON, with a
Lambda context of ``SECONDS``, and prints the handler's response as one JSON line. The fault
suite SIGKILLs it mid-step, or runs two at once on one message.
"""

from __future__ import annotations

import json
import sys

from wsfanout.handlers import broadcast
from wsfanout.testing import LambdaContext


def main() -> int:
    """Invoke the handler on ``argv[1]`` with ``float(argv[2])`` seconds; print its answer."""
    event, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
    print(json.dumps(broadcast.handler(event, LambdaContext(seconds=seconds))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
