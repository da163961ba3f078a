"""The conformance API: a small WebSocket API whose shape the chat stack lacks, for
``wsfanout conformance`` (see :mod:`wsfanout.local.conformance`).

``template.yaml`` deploys it to AWS (``sam deploy``) and runs locally (``wsfanout dev
--template``); its functions are :mod:`.conformance_handler`, which needs nothing but the
Python runtime and the boto3 that Lambda ships, so its directory is the whole code package.
"""

from pathlib import Path
from typing import Final

__all__ = ["TEMPLATE"]

TEMPLATE: Final = Path(__file__).with_name("template.yaml")
"""The conformance API's SAM template (its ``CodeUri`` is this directory)."""
