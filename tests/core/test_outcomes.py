"""The management API's answers classified: the error table of docs/contracts.md."""

from __future__ import annotations

import pytest

from wsfanout.core.outcomes import Outcome, classify


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (200, None, Outcome.DELIVERED),
        (204, None, Outcome.DELIVERED),
        (410, None, Outcome.GONE),
        (410, "GoneException", Outcome.GONE),
        (400, "GoneException", Outcome.GONE),
        (500, "GoneException", Outcome.GONE),
        (429, None, Outcome.THROTTLED),
        (429, "LimitExceededException", Outcome.THROTTLED),
        (400, "LimitExceededException", Outcome.THROTTLED),
        (429, "TooManyRequestsException", Outcome.THROTTLED),
        (400, "TooManyRequestsException", Outcome.THROTTLED),
        (500, None, Outcome.SERVER_ERROR),
        (500, "InternalServerErrorException", Outcome.SERVER_ERROR),
        (502, None, Outcome.SERVER_ERROR),
        (503, None, Outcome.SERVER_ERROR),
        (504, None, Outcome.SERVER_ERROR),
        (413, None, Outcome.TOO_LARGE),
        (413, "PayloadTooLargeException", Outcome.TOO_LARGE),
        (400, "PayloadTooLargeException", Outcome.TOO_LARGE),
        (403, None, Outcome.FORBIDDEN),
        (403, "ForbiddenException", Outcome.FORBIDDEN),
        (400, "ForbiddenException", Outcome.FORBIDDEN),
        (400, None, Outcome.REJECTED),
        (400, "BadRequestException", Outcome.REJECTED),
        (404, None, Outcome.REJECTED),
    ],
)
def test_classify(status: int, error_type: str | None, expected: Outcome) -> None:
    assert classify(status, error_type) is expected


RETRYABLE = {
    Outcome.DELIVERED: False,
    Outcome.GONE: False,
    Outcome.THROTTLED: True,
    Outcome.SERVER_ERROR: True,
    Outcome.NETWORK_ERROR: True,
    Outcome.FORBIDDEN: False,
    Outcome.TOO_LARGE: False,
    Outcome.REJECTED: False,
}


def test_retryable_table_covers_every_outcome() -> None:
    assert set(RETRYABLE) == set(Outcome)


@pytest.mark.parametrize(("outcome", "expected"), RETRYABLE.items(), ids=str)
def test_outcome_retryable(outcome: Outcome, expected: bool) -> None:
    assert outcome.retryable is expected
