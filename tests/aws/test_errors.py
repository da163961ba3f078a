"""The botocore error map: built-by-hand ClientError/BotoCoreError, no server."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from wsfanout.aws.errors import (
    CONDITION_FAILED,
    ConditionFailedError,
    classify_exception,
    error_code,
    is_throttling,
    map_botocore_errors,
)
from wsfanout.core.outcomes import Outcome
from wsfanout.exceptions import (
    ConfigurationError,
    ConnectionExistsError,
    QueueError,
    RegistryError,
)


def client_error(code: str | None, message: str = "from the test") -> ClientError:
    error: dict[str, Any] = {"Message": message}
    if code is not None:
        error["Code"] = code
    response: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, "PutItem")


def raised_by(exc: BaseException, **kwargs: Any) -> BaseException:
    """What ``map_botocore_errors`` turns ``exc`` into (RegistryError on table ``t1``)."""
    with (
        pytest.raises(BaseException) as info,  # noqa: PT011  (each test checks the type)
        map_botocore_errors("DynamoDB PutItem", "t1", RegistryError, **kwargs),
    ):
        raise exc
    return info.value


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("GoneException"), "GoneException"),
        (client_error(None), None),
        (client_error(""), None),
        (EndpointConnectionError(endpoint_url="https://x"), None),
        (ValueError("not botocore"), None),
    ],
    ids=["code", "no-code", "empty-code", "botocore", "other"],
)
def test_error_code(exc: BaseException, expected: str | None) -> None:
    assert error_code(exc) == expected


@pytest.mark.parametrize(
    ("original", "expected", "mentions"),
    [
        pytest.param(
            client_error("ProvisionedThroughputExceededException", "slow down"),
            RegistryError,
            ("DynamoDB PutItem", "t1", "slow down"),
            id="client-error-names-operation-and-resource",
        ),
        pytest.param(
            EndpointConnectionError(endpoint_url="https://dynamodb.local"),
            RegistryError,
            ("https://dynamodb.local",),
            id="botocore-error",
        ),
        pytest.param(
            NoCredentialsError(), RegistryError, (), id="any-botocore-error-not-only-network"
        ),
        pytest.param(
            client_error("ResourceNotFoundException", "Requested resource not found"),
            ConfigurationError,
            ("t1", "not found"),
            id="missing-table-is-configuration",
        ),
        pytest.param(
            client_error(CONDITION_FAILED), ConditionFailedError, (), id="failed-condition"
        ),
    ],
)
def test_a_botocore_error_becomes_the_mapped_error_chained_to_it(
    original: BaseException, expected: type[Exception], mentions: tuple[str, ...]
) -> None:
    mapped = raised_by(original)
    assert type(mapped) is expected
    assert mapped.__cause__ is original
    for text in mentions:
        assert text in str(mapped)


def test_a_failed_condition_is_its_own_registry_error() -> None:
    assert issubclass(ConditionFailedError, RegistryError)


def test_on_code_comes_before_the_shared_table() -> None:
    original = client_error(CONDITION_FAILED)
    mapped = raised_by(original, on_code={CONDITION_FAILED: lambda _: ConnectionExistsError("a=")})
    assert type(mapped) is ConnectionExistsError
    assert mapped.connection_id == "a="
    assert mapped.__cause__ is original


def test_on_code_leaves_other_codes_to_the_default() -> None:
    mapped = raised_by(
        client_error("InternalServerError"),
        on_code={CONDITION_FAILED: lambda _: ConnectionExistsError("a=")},
    )
    assert type(mapped) is RegistryError


def test_the_error_type_is_the_callers() -> None:
    original = client_error("AWS.SimpleQueueService.NonExistentQueue")
    with (
        pytest.raises(QueueError, match="SQS SendMessage on https://sqs/q failed") as info,
        map_botocore_errors("SQS SendMessage", "https://sqs/q", QueueError),
    ):
        raise original
    assert info.value.__cause__ is original


@pytest.mark.parametrize("exc", [KeyError("Item"), ValueError("bug"), TimeoutError()], ids=repr)
def test_anything_else_passes_through_untouched(exc: Exception) -> None:
    assert raised_by(exc) is exc


def test_nothing_raised_nothing_mapped() -> None:
    with map_botocore_errors("DynamoDB GetItem", "t1", RegistryError):
        answer: dict[str, Any] = {"Item": {}}
    assert answer == {"Item": {}}


# -- classify_exception: what a failed post comes to ---------------------------------------------


def answered(code: str, status: int | None) -> ClientError:
    """A PostToConnection error answer; ``None``: no status in the response metadata."""
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "from the test"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "PostToConnection")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("GoneException", 410, Outcome.GONE),
        ("GoneException", None, Outcome.GONE),
        ("LimitExceededException", 429, Outcome.THROTTLED),
        ("InternalServerErrorException", 500, Outcome.SERVER_ERROR),
        ("502", 502, Outcome.SERVER_ERROR),
        ("PayloadTooLargeException", 413, Outcome.TOO_LARGE),
        ("ForbiddenException", 403, Outcome.FORBIDDEN),
        ("BadRequestException", 400, Outcome.REJECTED),
    ],
)
def test_classify_client_error(code: str, status: int | None, expected: Outcome) -> None:
    assert classify_exception(answered(code, status)) is expected


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionClosedError(endpoint_url="https://x/prod"),
        ReadTimeoutError(endpoint_url="https://x/prod"),
        EndpointConnectionError(endpoint_url="https://x/prod"),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_network_failures_are_network_errors(exc: BaseException) -> None:
    assert classify_exception(exc) is Outcome.NETWORK_ERROR


@pytest.mark.parametrize("exc", [KeyError("ConnectionId"), ValueError("bug")], ids=repr)
def test_unrelated_exceptions_are_re_raised(exc: Exception) -> None:
    with pytest.raises(type(exc)) as raised:
        classify_exception(exc)
    assert raised.value is exc


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ProvisionedThroughputExceededException", True),
        ("ThrottlingException", True),
        ("RequestLimitExceeded", True),
        ("ValidationException", False),
        ("ConditionalCheckFailedException", False),
        (None, False),
    ],
)
def test_is_throttling_tells_throttling_apart(code: str | None, expected: bool) -> None:
    assert is_throttling(client_error(code)) is expected


def test_is_throttling_of_no_client_error_is_false() -> None:
    assert is_throttling(OSError("reset")) is False
