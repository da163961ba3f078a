"""The events AWS hands a Lambda function, and the context it runs in, built as AWS builds them.

API Gateway's WebSocket events, its REQUEST authorizer call, the SQS event source mapping's
batch and Lambda's context object: the local emulator and poller hand these to the handlers,
and :mod:`wsfanout.testing` builds them for tests (it ships with the package, so this module
does too; it needs nothing beyond the standard library).

The route handler and the authorizer parse these events with the same models they use on AWS, so
every field API Gateway sends is here, named, ordered and typed as it sends it (compare
``tests/events/*.json``): headers and multi-value headers, query strings only when there is
one, epoch milliseconds, ``requestTime`` in API Gateway's access-log format, base64-like ids.
An authorizer's answer becomes ``requestContext.authorizer`` the way API Gateway forwards it:
its ``context`` values as strings, plus ``principalId`` and ``integrationLatency``.

The SQS batch event is built from a ``ReceiveMessage`` answer as the event source mapping
builds it.

Pure functions with no aiohttp and no clock of their own beyond "now", so they can be tested
and reused (a replay tool, a fixture generator) without a server.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from ..exceptions import InvalidInputError
from .account import ACCOUNT_ID, REGION

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_ROUTE",
    "DEFAULT_SELECTION_PATH",
    "REGION",
    "AuthorizerRejection",
    "LambdaContext",
    "Origin",
    "Upgrade",
    "authorizer_context",
    "authorizer_request",
    "connect_event",
    "connect_outcome",
    "disconnect_event",
    "error_frame",
    "message_event",
    "new_id",
    "now_ms",
    "request_time",
    "select_route",
    "selection_path",
    "sqs_event",
    "sqs_record",
]


DEFAULT_ROUTE: Final = "$default"

# Hop-by-hop headers of the upgrade request: the authorizer sees them, the $connect route not.
_HOP_BY_HOP: Final = frozenset({"connection", "upgrade"})
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
_SELECTION: Final = re.compile(
    r"\$request\.body\.(?P<plain>[^.${}\s]+(?:\.[^.${}\s]+)*)"
    r"|\$\{request\.body\.(?P<braced>[^.${}\s]+(?:\.[^.${}\s]+)*)\}"
)
DEFAULT_SELECTION_PATH: Final = ("action",)


def new_id() -> str:
    """An id shaped like API Gateway's connection and request ids: 16 characters, URL-safe
    base64 of 11 random bytes (so one ``=`` of padding), ``-`` and ``_`` included as in API
    Gateway's own ids (``L0SM9cOFvHcCIhw=``, ``Uz-H_eXLoAMCJ7g=``)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def now_ms() -> int:
    """Wall-clock epoch milliseconds, the unit of ``connectedAt`` and ``requestTimeEpoch``."""
    return time.time_ns() // 1_000_000


def request_time(epoch_ms: int) -> str:
    """API Gateway's ``requestTime``: ``01/Jan/2025:12:00:00 +0000`` (no locale involved)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return (
        f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} +0000"
    )


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The client's upgrade request as API Gateway saw it, headers in the order they came."""

    headers: tuple[tuple[str, str], ...]
    query: tuple[tuple[str, str], ...] = ()
    port: int = 80
    proto: str = "http"
    trace_id: str = field(default_factory=_trace_id)
    """One ``X-Amzn-Trace-Id`` per upgrade: the authorizer and ``$connect`` share it."""


@dataclass(frozen=True, slots=True)
class Origin:
    """One connection as API Gateway knows it; every event of the connection repeats this."""

    connection_id: str
    connected_at_ms: int
    domain_name: str
    stage: str
    api_id: str
    source_ip: str
    user_agent: str
    authorizer: Mapping[str, Any] | None = field(default=None, hash=False)
    """``requestContext.authorizer`` of every route event, once an authorizer allowed it."""

    @property
    def method_arn(self) -> str:
        """The ARN an authorizer's policy must allow for this connection to open."""
        return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{self.api_id}/{self.stage}/$connect"


def _request_context(
    origin: Origin,
    route_key: str,
    event_type: str,
    *,
    epoch_ms: int | None = None,
    authorizer: bool = True,
    disconnect: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """The shared ``requestContext``, keys in the order API Gateway writes them."""
    request_id = new_id()
    epoch = now_ms() if epoch_ms is None else epoch_ms
    context: dict[str, Any] = {"routeKey": route_key}
    if authorizer and origin.authorizer is not None:
        context["authorizer"] = dict(origin.authorizer)
    if event_type == "MESSAGE":
        context["messageId"] = new_id()
    if disconnect is not None:
        context["disconnectStatusCode"] = disconnect[0]
    context.update(
        eventType=event_type,
        extendedRequestId=request_id,
        requestTime=request_time(epoch),
        messageDirection="IN",
    )
    if disconnect is not None:
        context["disconnectReason"] = disconnect[1]
    context.update(
        stage=origin.stage,
        connectedAt=origin.connected_at_ms,
        requestTimeEpoch=epoch,
        identity={"userAgent": origin.user_agent, "sourceIp": origin.source_ip},
        requestId=request_id,
        domainName=origin.domain_name,
        connectionId=origin.connection_id,
        apiId=origin.api_id,
    )
    return context


def _headers(origin: Origin, upgrade: Upgrade, *, hop_by_hop: bool) -> list[tuple[str, str]]:
    """The upgrade's headers plus the ones API Gateway's front end adds, sorted like AWS's."""
    pairs = [(k, v) for k, v in upgrade.headers if hop_by_hop or k.lower() not in _HOP_BY_HOP]
    present = {k.lower() for k, _ in pairs}
    forwarded = [v for k, v in pairs if k.lower() == "x-forwarded-for"]
    pairs = [(k, v) for k, v in pairs if k.lower() != "x-forwarded-for"]
    pairs.append(("X-Forwarded-For", ", ".join([*forwarded, origin.source_ip])))
    if "x-amzn-trace-id" not in present:
        pairs.append(("X-Amzn-Trace-Id", upgrade.trace_id))
    if "x-forwarded-port" not in present:
        pairs.append(("X-Forwarded-Port", str(upgrade.port)))
    if "x-forwarded-proto" not in present:
        pairs.append(("X-Forwarded-Proto", upgrade.proto))
    if hop_by_hop and "content-length" not in present:
        pairs.append(("content-length", "0"))
    return sorted(pairs, key=lambda pair: pair[0].lower())


def _single_and_multi(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """API Gateway's two views of repeated names: the last value, and every value in order."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def authorizer_request(origin: Origin, upgrade: Upgrade) -> dict[str, Any]:
    """The REQUEST authorizer's event: the full upgrade request, before the connection exists."""
    headers, multi_headers = _single_and_multi(_headers(origin, upgrade, hop_by_hop=True))
    query, multi_query = _single_and_multi(upgrade.query)
    return {
        "type": "REQUEST",
        "methodArn": origin.method_arn,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "stageVariables": {},
        # The authorizer runs as the request arrives, and knows of no authorizer output yet.
        "requestContext": _request_context(
            origin, "$connect", "CONNECT", epoch_ms=origin.connected_at_ms, authorizer=False
        ),
    }


def connect_event(origin: Origin, upgrade: Upgrade) -> dict[str, Any]:
    """The ``$connect`` route's event; query string fields only when the URL had a query."""
    headers, multi_headers = _single_and_multi(_headers(origin, upgrade, hop_by_hop=False))
    event: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi_headers}
    if upgrade.query:
        query, multi_query = _single_and_multi(upgrade.query)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = multi_query
    event["requestContext"] = _request_context(origin, "$connect", "CONNECT")
    event["isBase64Encoded"] = False
    return event


def message_event(origin: Origin, route_key: str, data: str | bytes) -> dict[str, Any]:
    """One client frame: text as is, binary base64-encoded with ``isBase64Encoded``."""
    binary = isinstance(data, bytes)
    body = base64.b64encode(data).decode() if isinstance(data, bytes) else data
    return {
        "requestContext": _request_context(origin, route_key, "MESSAGE"),
        "body": body,
        "isBase64Encoded": binary,
    }


def disconnect_event(origin: Origin, status_code: int, reason: str) -> dict[str, Any]:
    """``$disconnect``: API Gateway sends only these (mostly empty) headers, not the client's."""
    headers = {"Host": origin.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": _request_context(
            origin, "$disconnect", "DISCONNECT", disconnect=(status_code, reason)
        ),
        "isBase64Encoded": False,
    }


def selection_path(expression: str) -> tuple[str, ...]:
    """The body path of a route selection expression: ``$request.body.a.b`` (or
    ``${request.body.a.b}``) gives ``("a", "b")``.

    :raises InvalidInputError: any other expression (API Gateway's WebSocket route selection
        reads the message body only).
    """
    found = _SELECTION.fullmatch(expression)
    if found is None:
        raise InvalidInputError(
            f"route selection expression {expression!r} is not $request.body.PATH"
        )
    return tuple((found["plain"] or found["braced"]).split("."))


def select_route(
    data: str | bytes,
    routes: Container[str],
    path: Sequence[str] = DEFAULT_SELECTION_PATH,
) -> str:
    """Evaluate the selection expression ``$request.body.{path}``: a JSON object whose string
    value at ``path`` names one of ``routes`` selects it; anything else (binary, not JSON, JSON
    nested too deeply to parse, no such value, no such route) goes to ``$default``."""
    if isinstance(data, bytes):
        return DEFAULT_ROUTE
    try:
        value: Any = json.loads(data)
    except (ValueError, RecursionError):  # a selection that fails is $default, not a crash
        return DEFAULT_ROUTE
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value in routes else DEFAULT_ROUTE


def error_frame(message: str, origin: Origin, request_id: str) -> str:
    """The frame API Gateway itself sends a client whose route integration failed."""
    return json.dumps(
        {"message": message, "connectionId": origin.connection_id, "requestId": request_id}
    )


def connect_outcome(response: Any) -> tuple[int, str | None]:
    """The ``$connect`` answer: its status (no status means 200, as with API Gateway's proxy
    integration) and the ``Sec-WebSocket-Protocol`` it chose, if any."""
    if not isinstance(response, dict):
        return 200, None
    try:
        status = int(response.get("statusCode", 200))
    except (TypeError, ValueError):
        return 502, None
    if not 200 <= status <= 599:
        return 502, None  # nothing API Gateway could answer a handshake with
    headers = response.get("headers") or {}
    chosen = {str(k).lower(): v for k, v in headers.items()}.get("sec-websocket-protocol")
    return status, chosen if isinstance(chosen, str) else None


# -- the authorizer's answer ---------------------------------------------------------------------


class AuthorizerRejection(Exception):  # noqa: N818  (a rejection, not an error of ours)
    """The authorizer refused the connection (or answered nonsense): the handshake's answer."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


_DENIED: Final = (403, "Forbidden", "AccessDeniedException")
_MISCONFIGURED: Final = (500, "Internal server error", "AuthorizerConfigurationException")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: Any, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's ``*``/``?`` matching."""
    if not isinstance(pattern, str):
        return False
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _allows(policy: Any, method_arn: str) -> bool:
    """IAM evaluation in small: an explicit Deny wins, else some Allow must match."""
    if not isinstance(policy, dict):
        raise AuthorizerRejection(*_MISCONFIGURED)
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, dict):
            raise AuthorizerRejection(*_MISCONFIGURED)
        actions = _as_list(statement.get("Action"))
        resources = _as_list(statement.get("Resource"))
        if not any(_wildcard(a, "execute-api:Invoke", ignore_case=True) for a in actions):
            continue
        if not any(_wildcard(r, method_arn) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _stringify(value: Any) -> str:
    """A context value as API Gateway forwards it: ``true``/``false``, numbers as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise AuthorizerRejection(*_MISCONFIGURED)  # objects and arrays are not allowed


def authorizer_context(response: Any, method_arn: str, latency_ms: int) -> dict[str, Any]:
    """Turn a REQUEST authorizer's answer into ``requestContext.authorizer``.

    Raises :class:`AuthorizerRejection` with 403 when the policy does not allow ``method_arn``,
    and with 500 when the answer is malformed (API Gateway's AuthorizerConfigurationException).
    """
    if not isinstance(response, dict) or not isinstance(response.get("principalId"), str):
        raise AuthorizerRejection(*_MISCONFIGURED)
    if not _allows(response.get("policyDocument"), method_arn):
        raise AuthorizerRejection(*_DENIED)
    context = response.get("context") or {}
    if not isinstance(context, dict):
        raise AuthorizerRejection(*_MISCONFIGURED)
    forwarded: dict[str, Any] = {str(key): _stringify(value) for key, value in context.items()}
    forwarded["principalId"] = response["principalId"]
    forwarded["integrationLatency"] = latency_ms
    return forwarded


# -- SQS, as Lambda's event source mapping builds the event ----------------------------------------


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The ``{"Records": [...]}`` event Lambda builds from one ``ReceiveMessage`` answer."""
    return {"Records": [sqs_record(message, queue_arn) for message in messages]}


def sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record: the SQS message in Lambda's field names and shapes."""
    attributes = message.get("MessageAttributes") or {}
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value) for name, value in attributes.items()
        },
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": _region_of(queue_arn),
    }


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """``{"StringValue": ..., "DataType": ...}`` → Lambda's lower-camel shape; botocore has
    already decoded binary values to bytes, and Lambda hands them over base64-encoded."""
    shaped: dict[str, Any] = {}
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shaped["binaryValue"] = _b64(value["BinaryValue"])
    shaped["stringListValues"] = list(value.get("StringListValues", []))
    shaped["binaryListValues"] = [_b64(item) for item in value.get("BinaryListValues", [])]
    shaped["dataType"] = value["DataType"]
    return shaped


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else "us-east-1"


# -- Lambda's side -------------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """The context object Lambda's Python runtime passes handlers, with a remaining time that
    runs down from ``seconds`` on the real clock. ``memory_limit_in_mb`` is a string because the
    real runtime copies it from ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``."""

    seconds: float = 29.0
    function_name: str = "wsfanout-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: str = "512"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.seconds
        name = self.function_name
        if not self.invoked_function_arn:
            self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{name}"
        if not self.log_stream_name:
            day = datetime.now(UTC).strftime("%Y/%m/%d")
            self.log_stream_name = f"{day}/[{self.function_version}]{secrets.token_hex(16)}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before this invocation would time out (never negative)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
