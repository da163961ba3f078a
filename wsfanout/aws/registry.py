"""The connection registry in DynamoDB, streamed page by page.

Reads go through the low-level client and pick attributes by hand: a broadcast reads every
connection in the table, and boto3's resource layer (or TypeDeserializer) converts every
attribute of every item into Python values only for this module to read two strings out of
them. For the same reason the registry's Scan and Query pages skip botocore's model-driven
parser (see :func:`_items_as_sent`). Nothing collects the registry into a list: each target is
a paginated Scan or Query, one page in memory at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import JsonValue, ValidationError

from ..core.interfaces import Recipient
from ..core.models import (
    AllTarget,
    Connection,
    ConnectionsTarget,
    Cursor,
    RoomTarget,
    Target,
    UsersTarget,
    attributes_from_text,
    attributes_text,
)
from ..core.pacing import LeftOverError, RetryPolicy
from ..exceptions import (
    ConnectionExistsError,
    ConnectionNotFoundError,
    InvalidInputError,
    RegistryError,
)
from . import table as t
from .errors import (
    CONDITION_FAILED,
    ConditionFailedError,
    ErrorFactory,
    is_throttling,
    map_botocore_errors,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeValueTypeDef,
        KeysAndAttributesTypeDef,
        UniversalAttributeValueTypeDef,
        WriteRequestUnionTypeDef,
    )

    _KeyTypeDef = Mapping[str, UniversalAttributeValueTypeDef]

__all__ = ["Registry"]

_Item = TypeVar("_Item")
_Answer = TypeVar("_Answer")

_BATCH_WRITE_MAX = 25
_BATCH_GET_MAX = 100
# DynamoDB leaves part of a batch unprocessed, or throttles a call outright, when a partition is
# over its throughput: more patience than a delivery gets (eight attempts, backing off to a
# second), since giving up means a failed clean-up or a broadcast that cannot read its targets.
_UNPROCESSED = RetryPolicy(max_attempts=8, base_s=0.05, max_s=1.0)
_FIRST_PAGE = 100  # a small first page gets the senders going while the big pages load
_RAW_PAGES_ID = "wsfanout-registry-raw-pages"
# The type keys of a binary value, the one type botocore decodes (base64 into bytes). A string
# or a name that reads the same only sends its page through botocore's parse.
_BINARY_MARKERS = (b'"B"', b'"BS"')
_ATTRIBUTES = "attributes"  # the app's attributes of a connection, JSON text (S)


def _items_as_sent(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """Hand a Scan or Query page to the caller as DynamoDB sent it, without botocore's parse.

    botocore walks every attribute of every item against the service model, in Python, to
    build the same dicts ``json.loads`` already made in C, and does so on the read that
    precedes every delivery of a broadcast. For every attribute type but binary the two results
    are equal, so a page with a binary value (or anything that looks like one) is left to
    botocore, as are errors. Registered on ``before-parse``, the hook botocore itself uses to
    customise parsing: the body is parsed here, botocore parses an empty object, and merges
    this result into its own.
    """
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not isinstance(body, bytes):
        return
    if any(marker in body for marker in _BINARY_MARKERS):
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return
    if isinstance(parsed, dict):
        customized_response_dict.update(parsed)
        response_dict["body"] = b"{}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {t.PK: _s(pk), t.SK: _s(sk)}


def _plain_key(
    item: dict[str, Any], names: Sequence[str], implied: dict[str, str] | None = None
) -> dict[str, str]:
    key = {name: item[name]["S"] for name in names}
    if implied:
        key.update(implied)
    return key


def _low_level_key(key: dict[str, str]) -> dict[str, Any]:
    return {name: _s(value) for name, value in key.items()}


def _endpoint(item: Mapping[str, Any]) -> str | None:
    value = item.get("endpoint")
    return value["S"] if value else None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Registry:
    """Connections, room memberships and targeted streams over one DynamoDB table.

    The table layout is the one in docs/contracts.md (see :mod:`wsfanout.aws.table`). Items
    written by a classic ``$connect`` handler (only ``PK``, ``SK``, ``connectionId``,
    ``connectedAt``, ``ttl``) are read like any other connection.

    It registers :func:`_items_as_sent` on ``client`` for Scan and Query (once per client), so
    any Scan or Query through that client is answered without botocore's parse, with equal
    results.

    Every DynamoDB failure surfaces as :class:`RegistryError` (or a subclass), except a missing
    table, which is a :class:`~wsfanout.exceptions.ConfigurationError`; the ``:raises:`` lines
    below name only what a method adds to that. ``unprocessed`` bounds the retries of the
    items a batch call leaves undone, and of a Scan, Query or batch call DynamoDB still
    throttles after botocore's own retries (see :meth:`_call`).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        page_size: int = 1000,
        ttl_seconds: int = 7800,
        unprocessed: RetryPolicy = _UNPROCESSED,
    ) -> None:
        self._client = client
        self._unprocessed = unprocessed
        for operation in ("Scan", "Query"):  # a unique id is the emitter's, not the event's
            client.meta.events.register(
                f"before-parse.dynamodb.{operation}",
                _items_as_sent,
                unique_id=f"{_RAW_PAGES_ID}-{operation}",
            )
        self.table_name = table_name
        self.page_size = page_size
        self.ttl_seconds = ttl_seconds

    # -- single connections -------------------------------------------------------------------

    async def put(self, connection: Connection) -> Connection:
        """Store a new connection; refuses to overwrite one with the same id.

        Sets ``ttl`` from ``ttl_seconds`` when the connection has none; returns what was stored.
        Its ``attributes`` are stored as one JSON text attribute, and only when there are some,
        so a connection without them costs no more than before they existed.

        :raises ConnectionExistsError: a connection with this id is already stored.
        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        if connection.ttl is None:
            connection = connection.model_copy(update={"ttl": int(time.time()) + self.ttl_seconds})
        item: dict[str, Any] = {
            **_key(t.connection_pk(connection.connection_id), t.CONNECTION_SK),
            "connectionId": _s(connection.connection_id),
            "connectedAt": _s(_rfc3339(connection.connected_at)),
            t.TTL_ATTRIBUTE: {"N": str(connection.ttl)},
        }
        if connection.endpoint:
            item["endpoint"] = _s(connection.endpoint)
        if connection.can_broadcast:
            item["canBroadcast"] = {"BOOL": True}
        if connection.attributes:
            item[_ATTRIBUTES] = _s(attributes_text(connection.attributes))
        if connection.user_id:
            item["userId"] = _s(connection.user_id)
            item[t.GSI1PK] = _s(t.user_gsi1pk(connection.user_id))
            item[t.GSI1SK] = _s(t.connection_pk(connection.connection_id))
        exists = {CONDITION_FAILED: lambda _: ConnectionExistsError(connection.connection_id)}
        with self._errors("PutItem", on_code=exists):
            await self._client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(PK)",
            )
        return connection

    async def get(self, connection_id: str) -> Connection | None:
        """The stored connection, or ``None``.

        An item without ``attributes`` (classic layout, or stored before they existed) reads
        as a connection with none.

        :raises RegistryError: DynamoDB refused or could not be reached, or the stored
            ``attributes`` are not a JSON object within the bounds of
            :class:`~wsfanout.core.models.Connection` (written by something else than this).
        :raises ConfigurationError: the table does not exist.
        """
        with self._errors("GetItem"):
            answer = await self._client.get_item(
                TableName=self.table_name,
                Key=_key(t.connection_pk(connection_id), t.CONNECTION_SK),
                ConsistentRead=True,
            )
        item = answer.get("Item")
        return self._connection_of(item) if item else None

    async def get_many(self, connection_ids: Sequence[str]) -> dict[str, Connection]:
        """The stored connections among ``connection_ids``, by id (an id not stored is absent),
        read 100 to a BatchGetItem call, consistently: for tools that show a page of them.

        :raises RegistryError: as :meth:`get`, or keys were still unprocessed after every retry.
        :raises ConfigurationError: the table does not exist.
        """
        found: dict[str, Connection] = {}

        async def send(keys: Sequence[_KeyTypeDef]) -> list[_KeyTypeDef]:
            request: KeysAndAttributesTypeDef = {"Keys": keys, "ConsistentRead": True}
            answer = await self._call(
                "BatchGetItem",
                partial(self._client.batch_get_item, RequestItems={self.table_name: request}),
            )
            for item in answer.get("Responses", {}).get(self.table_name, []):
                connection = self._connection_of(item)
                found[connection.connection_id] = connection
            left = answer.get("UnprocessedKeys", {}).get(self.table_name)
            return list(left["Keys"]) if left else []

        unique = list(dict.fromkeys(connection_ids))
        for first in range(0, len(unique), _BATCH_GET_MAX):
            keys: list[_KeyTypeDef] = [
                _key(t.connection_pk(cid), t.CONNECTION_SK)
                for cid in unique[first : first + _BATCH_GET_MAX]
            ]
            await self._until_done(send, keys, "BatchGetItem keys")
        return found

    def _connection_of(self, item: Mapping[str, Any]) -> Connection:
        """A connection item (our layout or the classic one) as a :class:`Connection`."""
        ttl = item.get(t.TTL_ATTRIBUTE)
        connection_id = item.get("connectionId", {}).get("S") or t.connection_id_from_pk(
            item[t.PK]["S"]
        )
        return Connection(
            connection_id=connection_id,
            connected_at=_parse_connected_at(item.get("connectedAt")),
            user_id=item.get("userId", {}).get("S"),
            endpoint=_endpoint(item),
            ttl=int(ttl["N"]) if ttl else None,
            can_broadcast=bool(item.get("canBroadcast", {}).get("BOOL", False)),
            attributes=self._attributes_of(connection_id, item),
            last_seen=_parse_last_seen(item.get("lastSeen")),
        )

    def _attributes_of(self, connection_id: str, item: Mapping[str, Any]) -> dict[str, JsonValue]:
        value = item.get(_ATTRIBUTES)
        if not value:
            return {}
        try:
            return attributes_from_text(value["S"])
        except ValidationError as exc:
            raise RegistryError(
                f"connection {connection_id!r} on {self.table_name} has invalid attributes: "
                f"{exc.errors()[0]['msg']}"
            ) from exc

    async def set_attributes(self, connection_id: str, attributes: Mapping[str, JsonValue]) -> None:
        """Replace the stored attributes of a connection (none left when ``attributes`` is empty).

        For the app, which stores what its ``$connect`` hook set after :meth:`put` wrote the
        connection. Memberships do not carry attributes, so only the connection item changes.

        :raises pydantic.ValidationError: ``attributes`` break the bounds of
            :class:`~wsfanout.core.models.Connection` (checked before anything is written).
        :raises ConnectionNotFoundError: the connection is not stored.
        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": _key(t.connection_pk(connection_id), t.CONNECTION_SK),
            # never creates an item: a connection gone meanwhile stays gone
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeNames": {"#attributes": _ATTRIBUTES},
        }
        if attributes:
            request["UpdateExpression"] = "SET #attributes = :attributes"
            request["ExpressionAttributeValues"] = {":attributes": _s(attributes_text(attributes))}
        else:
            request["UpdateExpression"] = "REMOVE #attributes"
        missing = {CONDITION_FAILED: lambda _: ConnectionNotFoundError(connection_id)}
        with self._errors("UpdateItem", on_code=missing):
            await self._client.update_item(**request)

    async def touch(self, connection_id: str) -> bool:
        """Set the connection item's ``lastSeen`` (N, epoch seconds) to now: one UpdateItem,
        conditional on the item, so a connection gone meanwhile is not brought back. A
        keepalive ``ping`` calls it; ``False`` when the connection is not stored.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        try:
            with self._errors("UpdateItem"):
                await self._client.update_item(
                    TableName=self.table_name,
                    Key=_key(t.connection_pk(connection_id), t.CONNECTION_SK),
                    ConditionExpression="attribute_exists(PK)",
                    UpdateExpression="SET lastSeen = :now",
                    ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
                )
        except ConditionFailedError:
            return False
        return True

    async def delete(self, connection_id: str) -> int:
        """Remove a connection and all its room memberships; return the items deleted.

        :raises RegistryError: DynamoDB refused, could not be reached, or left deletes
            unprocessed after every retry.
        :raises ConfigurationError: the table does not exist.
        """
        keys = [key async for key in self._keys_of(connection_id)]
        await self._batch_delete(keys)
        return len(keys)

    async def remove_connections(self, connection_ids: Sequence[str]) -> int:
        """Remove several connections with all their memberships (one Query each).

        :raises RegistryError: as :meth:`delete`.
        :raises ConfigurationError: the table does not exist.
        """
        keys: list[dict[str, Any]] = []
        for connection_id in connection_ids:
            keys.extend([key async for key in self._keys_of(connection_id)])
        await self._batch_delete(keys)
        return len(keys)

    async def remove_gone(self, recipients: Sequence[Recipient]) -> int:
        """Forget connections that answered 410, without reading anything first.

        Deletes each connection item and the item the broadcast found it through (a room
        membership, say), in batches of 25. Looking up every other membership would cost a Query
        per gone connection in the middle of a broadcast; instead a membership left behind is
        met by the next broadcast to its room, answers 410 in turn and is deleted then, and its
        ttl reaps it regardless.

        :raises RegistryError: as :meth:`delete`.
        :raises ConfigurationError: the table does not exist.
        """
        keys: dict[tuple[str, str], dict[str, Any]] = {}
        for recipient in recipients:
            pk = t.connection_pk(recipient.connection_id)
            keys[pk, t.CONNECTION_SK] = _key(pk, t.CONNECTION_SK)
            found = recipient.key
            if found and t.PK in found and t.SK in found:
                keys[found[t.PK], found[t.SK]] = _key(found[t.PK], found[t.SK])
        await self._batch_delete(list(keys.values()))
        return len(keys)

    async def _keys_of(self, connection_id: str) -> AsyncIterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "PK = :pk",
                "ExpressionAttributeValues": {":pk": _s(t.connection_pk(connection_id))},
                "ProjectionExpression": "PK, SK",
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            answer = await self._call("Query", partial(self._client.query, **kwargs))
            for item in answer.get("Items", []):
                yield {t.PK: item[t.PK], t.SK: item[t.SK]}
            start = answer.get("LastEvaluatedKey")
            if not start:
                return

    async def _batch_delete(self, keys: Sequence[dict[str, Any]]) -> None:
        async def send(
            requests: Sequence[WriteRequestUnionTypeDef],
        ) -> list[WriteRequestUnionTypeDef]:
            answer = await self._call(
                "BatchWriteItem",
                partial(self._client.batch_write_item, RequestItems={self.table_name: requests}),
            )
            return list(answer.get("UnprocessedItems", {}).get(self.table_name, []))

        for first in range(0, len(keys), _BATCH_WRITE_MAX):
            chunk = keys[first : first + _BATCH_WRITE_MAX]
            requests: list[WriteRequestUnionTypeDef] = [
                {"DeleteRequest": {"Key": key}} for key in chunk
            ]
            await self._until_done(send, requests, "BatchWriteItem deletes")

    async def _until_done(
        self,
        send: Callable[[Sequence[_Item]], Awaitable[Sequence[_Item]]],
        pending: Sequence[_Item],
        what: str,
    ) -> None:
        """Retry what a batch call left unprocessed; a :class:`RegistryError` after the bound."""
        try:
            await self._unprocessed.until_done(send, pending, what=f"{what} on {self.table_name}")
        except LeftOverError as exc:
            raise RegistryError(f"DynamoDB {exc}") from exc

    # -- rooms ----------------------------------------------------------------------------------

    async def join_room(self, connection_id: str, room: str) -> bool:
        """Add a membership that carries its connection's ttl, endpoint and user; ``True`` when
        it is new, ``False`` when the connection was in the room already (the PutItem's old
        image says, at no extra cost): presence tells a room of joins, not of re-joins.

        The connection must exist. A ``$disconnect`` racing with this call can leave one orphan
        membership behind; that is cheaper to tolerate than to prevent: the first room broadcast
        meets it as a 410 and removes it (and its ttl reaps it regardless), whereas a transaction
        would double the write cost of every join.

        :raises ConnectionNotFoundError: the connection is not stored.
        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        connection = await self.get(connection_id)
        if connection is None:
            raise ConnectionNotFoundError(connection_id)
        pk = t.connection_pk(connection_id)
        item: dict[str, Any] = {
            **_key(pk, t.room_sk(room)),
            "connectionId": _s(connection_id),
            "room": _s(room),
            t.GSI1PK: _s(t.room_gsi1pk(room)),
            t.GSI1SK: _s(pk),
        }
        if connection.ttl is not None:
            item[t.TTL_ATTRIBUTE] = {"N": str(connection.ttl)}
        if connection.endpoint:
            item["endpoint"] = _s(connection.endpoint)
        if connection.user_id:
            item["userId"] = _s(connection.user_id)
        with self._errors("PutItem"):
            answer = await self._client.put_item(
                TableName=self.table_name, Item=item, ReturnValues="ALL_OLD"
            )
        return not answer.get("Attributes")

    async def leave_room(self, connection_id: str, room: str) -> bool:
        """Remove a membership; ``False`` when the connection was not in the room.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        with self._errors("DeleteItem"):
            answer = await self._client.delete_item(
                TableName=self.table_name,
                Key=_key(t.connection_pk(connection_id), t.room_sk(room)),
                ReturnValues="ALL_OLD",
            )
        return bool(answer.get("Attributes"))

    async def is_member(self, connection_id: str, room: str) -> bool:
        """Whether the connection has joined ``room``: one consistent read of the membership key.

        Cheap enough for a rule checked on every post to a room ("only members post"); an
        unknown connection is a member of nothing.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        key = _key(t.connection_pk(connection_id), t.room_sk(room))
        with self._errors("GetItem"):
            answer = await self._client.get_item(
                TableName=self.table_name, Key=key, ConsistentRead=True, ProjectionExpression="PK"
            )
        return "Item" in answer

    async def rooms(self, connection_id: str) -> list[str]:
        """The rooms a connection has joined.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        prefix = t.ROOM_PREFIX
        return [
            key[t.SK]["S"][len(prefix) :]
            async for key in self._keys_of(connection_id)
            if key[t.SK]["S"].startswith(prefix)
        ]

    rooms_of = rooms
    """:meth:`rooms` by the name :class:`~wsfanout.core.interfaces.ConnectionStore` gives it
    (an app's ``$disconnect`` reads them for presence rooms' leave events)."""

    # -- streams --------------------------------------------------------------------------------

    async def pages(
        self,
        target: Target,
        *,
        segment: int | None = None,
        total_segments: int | None = None,
        cursor: Cursor | None = None,
    ) -> AsyncIterator[Sequence[Recipient]]:
        """Stream the recipients of ``target`` page by page, starting after ``cursor``.

        The order is stable for a given table, so a :class:`Cursor` taken from any recipient
        resumes exactly after it: Scan and Query accept the key of an item that has since been
        deleted (a gone connection) as ``ExclusiveStartKey``.

        :raises InvalidInputError: ``segment`` is given for a target other than ``all``.
        :raises RegistryError: a page could not be read (or, for listed ids, their endpoints
            were still unprocessed after every retry).
        :raises ConfigurationError: the table does not exist.
        """
        if segment is not None and not isinstance(target, AllTarget):
            raise InvalidInputError("parallel-scan segments apply only to an 'all' target")
        if isinstance(target, AllTarget):
            async for page in self._scan_connections(segment, total_segments, cursor):
                yield page
        elif isinstance(target, RoomTarget):
            async for page in self._query_gsi1(t.room_gsi1pk(target.room), cursor, 0):
                yield page
        elif isinstance(target, UsersTarget):
            first = cursor.user if cursor else 0
            for index in range(first, len(target.user_ids)):
                start = cursor if cursor and index == first else None
                gsi1pk = t.user_gsi1pk(target.user_ids[index])
                async for page in self._query_gsi1(gsi1pk, start, index):
                    yield page
        else:
            async for page in self._listed(target, cursor):
                yield page

    async def _scan_connections(
        self, segment: int | None, total_segments: int | None, cursor: Cursor | None
    ) -> AsyncIterator[Sequence[Recipient]]:
        request: dict[str, Any] = {
            # Connection items only: memberships and job items share the table. Their SK is
            # known, so it is not read: every attribute read is parsed for every item, and the
            # whole registry is read once per broadcast.
            "FilterExpression": "SK = :conn",
            "ProjectionExpression": "PK, #ep",
            "ExpressionAttributeValues": {":conn": _s(t.CONNECTION_SK)},
        }
        if segment is not None:
            request["Segment"] = segment
            request["TotalSegments"] = total_segments
        implied = {t.SK: t.CONNECTION_SK}
        async for page in self._paginate("Scan", request, (t.PK,), cursor, 0, implied=implied):
            yield page

    async def _query_gsi1(
        self, gsi1pk: str, cursor: Cursor | None, index: int
    ) -> AsyncIterator[Sequence[Recipient]]:
        request: dict[str, Any] = {
            "IndexName": t.GSI1,
            "KeyConditionExpression": "GSI1PK = :pk",
            "ProjectionExpression": "PK, SK, GSI1PK, GSI1SK, #ep",
            "ExpressionAttributeValues": {":pk": _s(gsi1pk)},
        }
        names = (t.PK, t.SK, t.GSI1PK, t.GSI1SK)
        async for page in self._paginate("Query", request, names, cursor, index):
            yield page

    async def _paginate(
        self,
        operation: str,
        request: dict[str, Any],
        key_names: Sequence[str],
        cursor: Cursor | None,
        index: int,
        *,
        implied: dict[str, str] | None = None,
    ) -> AsyncIterator[Sequence[Recipient]]:
        """Page through a Scan or Query from ``cursor``, yielding non-empty pages of recipients.

        A recipient's key is its ``key_names`` attributes read from the item plus the
        ``implied`` ones, which every item of the request has (and so are not read).
        """
        call = self._client.scan if operation == "Scan" else self._client.query
        request = {
            **request,
            "TableName": self.table_name,
            "ExpressionAttributeNames": {"#ep": "endpoint"},
            "Limit": min(self.page_size, _FIRST_PAGE),
        }
        start = _low_level_key(cursor.after) if cursor and cursor.after else None
        while True:
            if start:
                request["ExclusiveStartKey"] = start
            answer = await self._call(operation, partial(call, **request))
            request["Limit"] = self.page_size
            page = [
                Recipient(
                    t.connection_id_from_pk(item[t.PK]["S"]),
                    _endpoint(item),
                    _plain_key(item, key_names, implied),
                    index,
                )
                for item in answer.get("Items", [])
            ]
            start = answer.get("LastEvaluatedKey")
            del answer  # not held (with its raw items) while the consumer works through the page
            if page:
                yield page
            if not start:
                return

    async def _listed(
        self, target: ConnectionsTarget, cursor: Cursor | None
    ) -> AsyncIterator[Sequence[Recipient]]:
        """Explicit ids in the given order; the registry only lends each its endpoint.

        An id the registry does not know is still sent to (on the default endpoint): API Gateway,
        not the registry, is the authority on whether a connection is alive.
        """
        ids = target.connection_ids
        first = cursor.offset if cursor and cursor.offset else 0
        for start in range(first, len(ids), _BATCH_GET_MAX):
            chunk = ids[start : start + _BATCH_GET_MAX]
            endpoints = await self._endpoints_of(chunk)
            yield [
                Recipient(connection_id, endpoints.get(connection_id), None, start + offset)
                for offset, connection_id in enumerate(chunk)
            ]

    async def _endpoints_of(self, connection_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}

        async def send(keys: Sequence[_KeyTypeDef]) -> list[_KeyTypeDef]:
            request: KeysAndAttributesTypeDef = {
                "Keys": keys,
                "ProjectionExpression": "PK, #ep",
                "ExpressionAttributeNames": {"#ep": "endpoint"},
            }
            answer = await self._call(
                "BatchGetItem",
                partial(self._client.batch_get_item, RequestItems={self.table_name: request}),
            )
            for item in answer.get("Responses", {}).get(self.table_name, []):
                endpoint = _endpoint(item)
                if endpoint:
                    found[t.connection_id_from_pk(item[t.PK]["S"])] = endpoint
            left = answer.get("UnprocessedKeys", {}).get(self.table_name)
            return list(left["Keys"]) if left else []

        keys: list[_KeyTypeDef] = [
            _key(t.connection_pk(cid), t.CONNECTION_SK) for cid in dict.fromkeys(connection_ids)
        ]
        await self._until_done(send, keys, "BatchGetItem keys")
        return found

    # -- plumbing -------------------------------------------------------------------------------

    async def _call(self, operation: str, call: Callable[[], Awaitable[_Answer]]) -> _Answer:
        """``await call()``, a Scan, Query or batch call of ``operation`` on this table.

        botocore's standard retry mode already retries a throttled call, but only three
        attempts in all, and from a retry quota a throttle storm empties (then not at all):
        too little for a broadcast that must read every page and delete every gone
        connection. So a call still throttled after botocore is sent again, with
        ``unprocessed``'s bound and jittered backoff; anything else fails at once.
        """
        with self._errors(operation):
            return await self._unprocessed.retrying(call, retry_if=is_throttling)

    def _errors(
        self, operation: str, *, on_code: Mapping[str, ErrorFactory] | None = None
    ) -> AbstractContextManager[None]:
        """DynamoDB failures of ``operation`` on this table as :class:`RegistryError`."""
        return map_botocore_errors(
            f"DynamoDB {operation}", self.table_name, RegistryError, on_code=on_code
        )

    async def connection_ids(self) -> set[str]:
        """Every registered connection id, from a full Scan (for tests, tools and small tables:
        it holds them all in memory, where a broadcast streams them).

        :raises RegistryError: a page could not be read.
        :raises ConfigurationError: the table does not exist.
        """
        return {r.connection_id async for page in self.pages(AllTarget(all=True)) for r in page}

    async def count_connections(self) -> int:
        """Count connection items with a full Scan (for tests, tools and small tables).

        :raises RegistryError: a page could not be read.
        :raises ConfigurationError: the table does not exist.
        """
        total = 0
        async for page in self.pages(AllTarget(all=True)):
            total += len(page)
        return total


def _parse_last_seen(value: AttributeValueTypeDef | None) -> datetime | None:
    """``lastSeen`` as :meth:`Registry.touch` writes it (N, epoch seconds); ``None`` if unset."""
    if not value or "N" not in value:
        return None
    return datetime.fromtimestamp(float(value["N"]), UTC)


def _parse_connected_at(value: AttributeValueTypeDef | None) -> datetime:
    """``connectedAt`` as RFC 3339 (our layout) or epoch milliseconds (API Gateway's number)."""
    if not value:
        return datetime.fromtimestamp(0, UTC)
    if "N" in value:
        number = float(value["N"])
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
    return datetime.fromisoformat(value["S"].replace("Z", "+00:00"))
