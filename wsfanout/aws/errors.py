"""The one place where botocore's exceptions become wsfanout's.

Two questions are asked of a failed botocore call, and each is answered here only:

* *what went wrong*, for a caller that raises: :func:`map_botocore_errors` turns the call's
  ``ClientError`` or ``BotoCoreError`` into this package's exception, through one table of error
  codes (the shape of httpx's ``map_httpcore_exceptions``);
* *what to do about one delivery*, for the fan-out engine, which never raises per connection:
  :func:`classify_exception` turns it into an :class:`Outcome`.

The call itself stays outside: ``answer = await client.get_item(...)`` keeps the type its stub
gives it, where a wrapper taking the call as an argument would have to return ``Any``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

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
from ..exceptions import ConfigurationError, RegistryError

__all__ = [
    "BOTOCORE_ERRORS",
    "CONDITION_FAILED",
    "DELIVERY_ERRORS",
    "THROTTLING_CODES",
    "ConditionFailedError",
    "ErrorFactory",
    "classify_exception",
    "error_code",
    "is_throttling",
    "map_botocore_errors",
]

#: What a botocore call raises when AWS answers with an error or cannot be reached; for the
#: edges (local poller) that log and go on rather than raise.
BOTOCORE_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)

#: What :func:`classify_exception` turns into an outcome: botocore's failures and the socket
#: errors an HTTP client can let through.
DELIVERY_ERRORS: tuple[type[Exception], ...] = (*BOTOCORE_ERRORS, OSError)

#: DynamoDB's code when a write's ``ConditionExpression`` does not hold.
CONDITION_FAILED = "ConditionalCheckFailedException"

#: The codes DynamoDB answers a call with when a partition, table or account is over its rate
#: (``ProvisionedThroughputExceededException`` for provisioned capacity, ``ThrottlingException``
#: for the control plane and on-demand tables, ``RequestLimitExceeded`` for the account): the
#: call was refused as it stands and may succeed as sent later.
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)

#: Builds the exception to raise from the message :func:`map_botocore_errors` composed. An
#: exception class is one; so is ``lambda _: ConnectionExistsError(connection_id)``.
ErrorFactory = Callable[[str], Exception]


class ConditionFailedError(RegistryError):
    """Raised when a conditional DynamoDB write finds the item not as its condition requires.

    Callers that asked a question with the condition (is this step still mine?) catch it and
    answer ``False``; one that did not expect it still sees a :class:`RegistryError`.
    """


# The codes that mean the same thing whichever call met them. A missing table is a
# configuration problem (wrong name, wrong region, stack not deployed), not an outage worth
# retrying or paging about.
_BY_CODE: Mapping[str, ErrorFactory] = {
    "ResourceNotFoundException": ConfigurationError,
    CONDITION_FAILED: ConditionFailedError,
}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError`` (``"GoneException"``, ...); ``None`` otherwise."""
    if not isinstance(exc, ClientError):
        return None
    code = exc.response.get("Error", {}).get("Code")
    return str(code) if code else None


def is_throttling(exc: BaseException) -> bool:
    """Whether ``exc`` is DynamoDB refusing a call for its rate (a code in
    :data:`THROTTLING_CODES`), which is worth sending again after a pause."""
    return error_code(exc) in THROTTLING_CODES


@contextmanager
def map_botocore_errors(
    operation: str,
    resource: str,
    error: ErrorFactory,
    *,
    on_code: Mapping[str, ErrorFactory] | None = None,
) -> Iterator[None]:
    """Re-raise a botocore failure inside the block as ``error``, chained ``from`` it.

    ``operation`` names the call (``"DynamoDB PutItem"``) and ``resource`` the table or queue;
    both are in the message. A ``ClientError`` whose code is in ``on_code``, or else in the
    shared table (``ResourceNotFoundException`` → :class:`ConfigurationError`,
    ``ConditionalCheckFailedException`` → :class:`ConditionFailedError`), becomes that instead::

        with map_botocore_errors("DynamoDB PutItem", table, RegistryError):
            await client.put_item(...)

    Anything else passes through untouched: only AWS's answers are translated, never bugs.

    :raises ConfigurationError: the table or queue does not exist (``ResourceNotFoundException``).
    :raises ConditionFailedError: a conditional write's condition did not hold.
    :raises Exception: what ``error`` (or the ``on_code`` entry for the code) builds, for any
        other ``ClientError`` or ``BotoCoreError``.
    """
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        factory = (on_code or {}).get(code or "") or _BY_CODE.get(code or "") or error
        raise factory(f"{operation} on {resource} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise error(f"{operation} on {resource} failed: {exc}") from exc


def classify_exception(exc: BaseException) -> Outcome:
    """Map an exception raised by a botocore call to an :class:`Outcome`.

    :raises BaseException: ``exc`` itself when it is no AWS or network failure (a bug stays one).
    """
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        return classify(int(meta.get("HTTPStatusCode", 0) or 0), error_code(exc))
    if isinstance(exc, HTTPClientError | BotoConnectionError | ConnectionClosedError | OSError):
        return Outcome.NETWORK_ERROR
    if isinstance(exc, BotoCoreError):
        return Outcome.NETWORK_ERROR
    raise exc
