"""Pydantic models of the public contracts: connections, targets, broadcast jobs, reports.

Field aliases are the camelCase names of docs/contracts.md, so a job enqueued by any producer
validates as-is; Python code uses the snake_case names.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeInt,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

__all__ = [
    "MAX_ATTRIBUTES_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_SKIP",
    "AllTarget",
    "BroadcastJob",
    "Connection",
    "ConnectionsTarget",
    "Cursor",
    "FanoutReport",
    "RoomTarget",
    "Target",
    "UsersTarget",
    "attributes_from_text",
    "attributes_text",
    "json_bytes",
]

MAX_PAYLOAD_BYTES = 128 * 1024
"""API Gateway's WebSocket message payload limit."""

MAX_SKIP = 2000
"""Most ids a cursor carries in ``skip`` (keeps a continuation message far below SQS's 256 KB)."""

MAX_ATTRIBUTES_BYTES = 16 * 1024
"""Most UTF-8 bytes of a connection's attributes as JSON text: they live on its registry item
and are read on every route of the connection, so they stay small (and far below DynamoDB's
400 KB item limit)."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON of ``value``, as the registry stores and clients receive it.

    NaN and Infinity are refused: they are not JSON, and browsers' ``JSON.parse`` would choke
    on them.

    :raises ValueError: ``value`` holds NaN or Infinity.
    :raises UnicodeEncodeError: ``value`` holds text that is not valid Unicode (a lone
        surrogate, as a ``"\\ud800"`` escape produces).
    """
    text = json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=sort_keys
    )
    return text.encode()


def _bounded(attributes: dict[str, JsonValue]) -> dict[str, JsonValue]:
    try:
        size = len(json_bytes(attributes, sort_keys=True))
    except UnicodeEncodeError:
        raise ValueError("the attributes contain text that is not valid Unicode") from None
    except ValueError as exc:
        raise ValueError(f"the attributes are not JSON: {exc}") from None
    if size > MAX_ATTRIBUTES_BYTES:
        raise ValueError(
            f"the attributes are {size} bytes of JSON; at most {MAX_ATTRIBUTES_BYTES} allowed"
        )
    return attributes


AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Attributes = Annotated[dict[AttributeKey, JsonValue], AfterValidator(_bounded)]
"""A JSON object of at most :data:`MAX_ATTRIBUTES_BYTES`, keys of 1 to 128 characters."""

# Every model here builds its validator on first use, not at import (``defer_build``): a Lambda
# cold start pays only for the models its invocation touches.
_LAZY = ConfigDict(defer_build=True)

_ATTRIBUTES: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(Attributes, config=_LAZY)


def attributes_text(attributes: Mapping[str, JsonValue]) -> str:
    """The stored form of connection attributes: compact JSON text with sorted keys.

    :raises pydantic.ValidationError: the attributes break the bounds of :data:`Attributes`
        (a key empty or over 128 characters, NaN or Infinity, text that is not valid Unicode,
        more than :data:`MAX_ATTRIBUTES_BYTES` of JSON).
    """
    return json_bytes(_ATTRIBUTES.validate_python(dict(attributes)), sort_keys=True).decode()


def attributes_from_text(text: str | bytes) -> dict[str, JsonValue]:
    """Inverse of :func:`attributes_text`, with the same bounds.

    :raises pydantic.ValidationError: ``text`` is not a JSON object, or breaks the bounds.
    """
    return _ATTRIBUTES.validate_json(text)


class _Contract(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True, defer_build=True)


class Connection(_Contract):
    """One live WebSocket connection as the registry stores it.

    ``attributes`` are what the app's ``$connect`` hook stored on the connection (a tenant,
    say), readable on every later route of it. Like every contract model it is frozen (the
    ``attributes`` dict inside is not: treat it as read-only): a changed connection is a
    :meth:`model_copy`, and changed attributes are stored with ``Registry.set_attributes``.

    :raises pydantic.ValidationError: from construction or ``model_validate(_json)`` when a
        field breaks its bounds, among them ``attributes`` as :func:`attributes_text` states.
    """

    connection_id: Name = Field(alias="connectionId")
    connected_at: datetime = Field(alias="connectedAt")
    user_id: Name | None = Field(default=None, alias="userId")
    endpoint: str | None = Field(
        default=None, description="https://{domain}/{stage} it was opened on, when known."
    )
    ttl: int | None = None
    can_broadcast: bool = Field(default=False, alias="canBroadcast")
    attributes: Attributes = Field(default_factory=dict, alias="attributes")
    last_seen: datetime | None = Field(
        default=None,
        alias="lastSeen",
        description="When a keepalive (or, in an app with presence rooms, a frame) last "
        "refreshed it; never written by put.",
    )

    @property
    def seen(self) -> datetime:
        """The latest sign of life: ``lastSeen``, else (or if older) ``connectedAt``; what
        presence's live rule compares (docs/contracts.md, "Presence")."""
        if self.last_seen is None:
            return self.connected_at
        return max(self.last_seen, self.connected_at)


class AllTarget(_Contract):
    """Every connection in the registry (connection items only)."""

    all: Literal[True]


class UsersTarget(_Contract):
    """Every connection of the given users (GSI1 ``USER#``)."""

    user_ids: list[Name] = Field(alias="userIds", min_length=1, max_length=1000)


class RoomTarget(_Contract):
    """Every member of one room (GSI1 ``ROOM#``)."""

    room: Name


class ConnectionsTarget(_Contract):
    """An explicit list of connection ids."""

    connection_ids: list[Name] = Field(alias="connectionIds", min_length=1, max_length=10000)


Target = AllTarget | UsersTarget | RoomTarget | ConnectionsTarget


class Cursor(_Contract):
    """Where a fan-out stopped: a later run from here reaches exactly the ids not yet attempted.

    ``after`` is the key of the last attempted registry item (a DynamoDB ``ExclusiveStartKey``);
    ``offset`` counts attempted ids of an explicit list; ``user`` indexes the user being read for
    a multi-user target. ``skip`` lists connections just past that point that were already
    attempted (sends that finished while an earlier one was still retrying), so a resumed run
    sends to them neither twice nor never. ``step`` numbers the continuations of a broadcast job,
    so that workers hand a job over exactly once (see :mod:`wsfanout.core.jobs`).
    """

    after: dict[str, str] | None = None
    offset: NonNegativeInt | None = None
    user: NonNegativeInt = 0
    skip: list[str] | None = Field(default=None, max_length=MAX_SKIP)
    step: NonNegativeInt = 0


class BroadcastJob(_Contract):
    """The SQS message body of docs/contracts.md: who gets what, optionally one shard or resumed.

    :raises pydantic.ValidationError: from construction or ``model_validate(_json)`` when the
        job breaks a rule: not exactly one of ``data``/``dataBase64``, invalid base64, a payload
        over 128 KiB, ``segment`` without ``totalSegments`` (or the reverse, or not below it, or
        on a target other than "all"), an unknown key, a field out of its bounds.
    """

    job_id: Name = Field(default_factory=lambda: uuid.uuid4().hex, alias="jobId")
    target: Target
    data: str | None = None
    data_base64: str | None = Field(default=None, alias="dataBase64")
    exclude: list[Name] = Field(default_factory=list, max_length=1000)
    segment: NonNegativeInt | None = None
    total_segments: Annotated[int, Field(ge=1, le=1000000)] | None = Field(
        default=None, alias="totalSegments"
    )
    cursor: Cursor | None = None

    @model_validator(mode="after")
    def _check(self) -> BroadcastJob:
        if (self.data is None) == (self.data_base64 is None):
            raise ValueError("give exactly one of 'data' and 'dataBase64'")
        if self.data_base64 is not None:
            try:
                base64.b64decode(self.data_base64, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"'dataBase64' is not valid base64: {exc}") from None
        if (self.segment is None) != (self.total_segments is None):
            raise ValueError("'segment' and 'totalSegments' go together")
        if self.segment is not None:
            if not isinstance(self.target, AllTarget):
                raise ValueError("segments apply only to an 'all' target")
            assert self.total_segments is not None  # noqa: S101  (narrowed by the check above)
            if self.segment >= self.total_segments:
                raise ValueError("'segment' must be below 'totalSegments'")
        size = len(self.payload)
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload is {size} bytes; at most {MAX_PAYLOAD_BYTES} allowed")
        return self

    @property
    def payload(self) -> bytes:
        """The frame to send, decoded once."""
        if self.data_base64 is not None:
            return base64.b64decode(self.data_base64)
        assert self.data is not None  # noqa: S101  (guaranteed by the validator)
        return self.data.encode()


class FanoutReport(BaseModel):
    """What one fan-out run did. ``resume`` is set when it stopped early at its deadline."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    delivered: int = 0
    gone: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    excluded: int = 0
    retries: int = 0
    throttled: int = 0
    cleaned_up: int = 0
    cleanup_failed: int = 0
    elapsed_s: float = 0.0
    complete: bool = True
    resume: Cursor | None = None

    @property
    def attempted(self) -> int:
        """Connections a send was attempted to (each exactly once)."""
        return self.delivered + self.gone + self.failed

    @property
    def rate(self) -> float:
        """Attempted connections per second."""
        return self.attempted / self.elapsed_s if self.elapsed_s > 0 else 0.0
