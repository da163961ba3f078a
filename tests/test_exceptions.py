"""The exception tree drawn in ``wsfanout/exceptions.py``, and the context each error carries."""

from __future__ import annotations

import copy
import pickle
import re

import pytest

from wsfanout import exceptions
from wsfanout.core.models import FanoutReport


def _drawn_tree() -> dict[type[Exception], type[Exception]]:
    """child -> parent, read from the drawing in the module docstring itself."""
    tree: dict[type[Exception], type[Exception]] = {}
    stack: list[type[Exception]] = []
    for line in (exceptions.__doc__ or "").splitlines():
        match = re.match(r"^(\s*)((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+(?:Error|Refused))\b", line)
        if not match:
            continue
        depth = len(match.group(2)) // 4 + (1 if "──" in line else 0)
        cls = getattr(exceptions, match.group(3))
        del stack[depth:]
        if stack:
            tree[cls] = stack[-1]
        stack.append(cls)
    return tree


# child -> parent, exactly as the module docstring draws it.
TREE = _drawn_tree()

BRANCHES = (
    exceptions.ConfigurationError,
    exceptions.InvalidInputError,
    exceptions.RegistryError,
    exceptions.DeliveryError,
)


def test_tree_covers_every_exported_class() -> None:
    exported = {getattr(exceptions, name) for name in exceptions.__all__}
    assert exported == set(TREE) | {exceptions.WsFanoutError}


def test_root_is_a_plain_exception() -> None:
    assert issubclass(exceptions.WsFanoutError, Exception)
    assert exceptions.WsFanoutError.__bases__ == (Exception,)


@pytest.mark.parametrize(("child", "parent"), TREE.items(), ids=lambda c: c.__name__)
def test_each_class_hangs_where_the_drawing_says(
    child: type[Exception], parent: type[Exception]
) -> None:
    assert issubclass(child, parent)
    assert issubclass(child, exceptions.WsFanoutError)
    assert parent in child.__bases__


@pytest.mark.parametrize("branch", BRANCHES, ids=lambda c: c.__name__)
def test_branches_do_not_overlap(branch: type[Exception]) -> None:
    for other in BRANCHES:
        if other is not branch:
            assert not issubclass(branch, other)
            assert not issubclass(other, branch)


def test_invalid_input_is_also_a_value_error() -> None:
    assert issubclass(exceptions.InvalidInputError, ValueError)
    assert issubclass(exceptions.PayloadTooLargeError, ValueError)
    with pytest.raises(ValueError, match="bad frame"):
        raise exceptions.InvalidInputError("bad frame")


@pytest.mark.parametrize(
    "cls",
    [
        exceptions.ConfigurationError,
        exceptions.RegistryError,
        exceptions.DeliveryError,
        exceptions.ForbiddenError,
    ],
    ids=lambda c: c.__name__,
)
def test_other_branches_are_not_value_errors(cls: type[Exception]) -> None:
    assert not issubclass(cls, ValueError)


@pytest.mark.parametrize(
    "cls",
    [exceptions.ConnectionExistsError, exceptions.ConnectionNotFoundError],
    ids=lambda c: c.__name__,
)
def test_connection_errors_carry_the_connection_id(cls: type[exceptions.RegistryError]) -> None:
    error = cls("L0SM9cOFvHcCIhw=")
    assert error.connection_id == "L0SM9cOFvHcCIhw="  # type: ignore[attr-defined]
    assert "L0SM9cOFvHcCIhw=" in str(error)


def test_exists_and_not_found_say_different_things() -> None:
    assert str(exceptions.ConnectionExistsError("a")) != str(
        exceptions.ConnectionNotFoundError("a")
    )


def test_payload_too_large_carries_size_and_limit() -> None:
    error = exceptions.PayloadTooLargeError(200_001, 131_072)
    assert (error.size, error.limit) == (200_001, 131_072)
    assert "200001" in str(error)
    assert "131072" in str(error)


@pytest.mark.parametrize(
    "cls", [exceptions.DeliveryError, exceptions.ForbiddenError], ids=lambda c: c.__name__
)
def test_delivery_errors_carry_the_endpoint(cls: type[exceptions.DeliveryError]) -> None:
    url = "https://abc123.execute-api.eu-west-2.amazonaws.com/prod"
    error = cls(f"{url} answered 403", endpoint=url)
    assert error.endpoint == url
    assert url in str(error)


def test_delivery_error_endpoint_defaults_to_none() -> None:
    assert exceptions.DeliveryError("refused").endpoint is None
    assert exceptions.ForbiddenError("refused").endpoint is None


def test_endpoint_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        exceptions.DeliveryError("refused", "https://example.com/prod")  # type: ignore[call-arg]  # on purpose


@pytest.mark.parametrize(
    ("error", "context"),
    [
        pytest.param(
            exceptions.DeliveryError("refused", endpoint="https://x/prod"),
            {"endpoint": "https://x/prod"},
            id="DeliveryError",
        ),
        pytest.param(
            exceptions.ForbiddenError("refused", endpoint="https://x/prod"),
            {"endpoint": "https://x/prod"},
            id="ForbiddenError",
        ),
        pytest.param(
            exceptions.ConnectionExistsError("abc="),
            {"connection_id": "abc="},
            id="ConnectionExistsError",
        ),
        pytest.param(
            exceptions.ConnectionNotFoundError("abc="),
            {"connection_id": "abc="},
            id="ConnectionNotFoundError",
        ),
        pytest.param(
            exceptions.MidRunRegistryError("Scan failed", FanoutReport(delivered=3)),
            {"report": FanoutReport(delivered=3)},
            id="MidRunRegistryError",
        ),
        pytest.param(
            exceptions.ConnectionRefused(401, "who are you?"),
            {"status": 401, "reason": "who are you?"},
            id="ConnectionRefused",
        ),
        pytest.param(
            exceptions.PayloadTooLargeError(200_001, 131_072),
            {"size": 200_001, "limit": 131_072},
            id="PayloadTooLargeError",
        ),
        pytest.param(
            exceptions.InvocationError("KeyError", "'room'", ('  File "app.py", line 3\n',)),
            {"error_type": "KeyError", "error_message": "'room'"},
            id="InvocationError",
        ),
        pytest.param(
            exceptions.InvocationTimeoutError(
                "Sandbox.Timedout", "Task timed out after 3.00 seconds"
            ),
            {"error_type": "Sandbox.Timedout", "stack_trace": ()},
            id="InvocationTimeoutError",
        ),
    ],
)
def test_errors_survive_pickle_and_copy(
    error: exceptions.WsFanoutError, context: dict[str, object]
) -> None:
    """Errors cross process boundaries (workers, subprocess benchmarks) and get copied."""
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):  # noqa: S301
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        for name, value in context.items():
            assert getattr(clone, name) == value
