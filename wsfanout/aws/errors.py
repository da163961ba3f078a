"""The one place where botocore's exceptions become wsfanout's."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from ..core.outcomes import Outcome, classify

__all__ = ["classify_exception"]


def classify_exception(exc: BaseException) -> Outcome:
    """Map an exception raised by a botocore call to an :class:`Outcome`."""
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        code = exc.response.get("Error", {}).get("Code")
        return classify(int(meta.get("HTTPStatusCode", 0) or 0), code)
    if isinstance(exc, HTTPClientError | BotoConnectionError | ConnectionClosedError | OSError):
        return Outcome.NETWORK_ERROR
    if isinstance(exc, BotoCoreError):
        return Outcome.NETWORK_ERROR
    raise exc
