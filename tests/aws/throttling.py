"""A DynamoDB client that throttles: the moto client, with each read and batch call refused first.

What the registry meets when botocore's own retries of a throttled call are spent: the call
raises a ``ClientError`` with one of DynamoDB's throttling codes. The refusals come before the
real call, so what finally passes runs against real (moto) storage.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

__all__ = ["CODES", "Throttled"]

#: DynamoDB's throttling codes, used in turn by :class:`Throttled`.
CODES = ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded")
_OPERATIONS = {
    "scan": "Scan",
    "query": "Query",
    "batch_write_item": "BatchWriteItem",
    "batch_get_item": "BatchGetItem",
}


class Throttled:
    """``client``, but every Scan, Query, BatchWriteItem and BatchGetItem request is refused
    ``burst`` times in a row before it goes through (counted per request, by its arguments, so
    concurrent callers do not use up one another's refusals); ``code`` fixes the error code, else
    :data:`CODES` take turns. The first ``spare`` calls of each operation pass untouched, so a
    scan is throttled mid-way. ``refused`` and ``passed`` count the calls per operation."""

    def __init__(self, client: Any, burst: int, code: str | None = None, *, spare: int = 0) -> None:
        self._client = client
        self.burst = burst
        self._code = code
        self._spare: Counter[str] = Counter(dict.fromkeys(_OPERATIONS.values(), spare))
        self._in_a_row: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.passed: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        operation = _OPERATIONS.get(name)
        if operation is None:
            return real

        async def call(**kwargs: Any) -> Any:
            if self._spare[operation] > 0:
                self._spare[operation] -= 1
                return await real(**kwargs)
            request = f"{operation} {kwargs!r}"
            if self._in_a_row[request] < self.burst:
                self._in_a_row[request] += 1
                code = self._code or CODES[self.refused.total() % len(CODES)]
                self.refused[operation] += 1
                message = "Rate of requests exceeds the allowed throughput."
                response: Any = {
                    "Error": {"Code": code, "Message": message},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                }
                raise ClientError(response, operation)
            del self._in_a_row[request]
            self.passed[operation] += 1
            return await real(**kwargs)

        return call
