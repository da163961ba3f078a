"""Durable rooms' history in the registry table (docs/contracts.md, "Replay").

Under ``PK=ROOM#{room}``: the counter item ``SK=SEQ`` (``seq``, N; never expires, so a room's
sequence numbers never restart) and one item per message, ``SK=MSG#{seq:020d}``, with ``seq``
(N), ``data`` (S, the frame as sent, JSON text, without ``room`` and ``seq``), optional ``from``
(S, JSON of the sender's ``connectionId``/``userId``), ``sentAt`` (N, epoch seconds with
milliseconds) and ``ttl`` (N, ``sentAt`` + the time bound). The rules of what is kept and what
a resume gets are :mod:`wsfanout.core.history`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from ..core.history import HistoryBounds, Replay, StoredMessage, replay_of
from ..core.models import json_bytes
from ..exceptions import RegistryError
from . import table as t
from .errors import map_botocore_errors

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["RoomHistory"]


def _key(room: str, sk: str) -> dict[str, Any]:
    return {t.PK: {"S": t.room_pk(room)}, t.SK: {"S": sk}}


class RoomHistory:
    """A :class:`~wsfanout.core.interfaces.HistoryStore` on DynamoDB.

    A message costs two writes (the counter's UpdateItem, the message's PutItem); a resume
    one consistent GetItem of the counter and, when something was missed within the bounds, one
    consistent Query of the missed items (paged at DynamoDB's 1 MB). Every DynamoDB failure is
    a :class:`~wsfanout.exceptions.RegistryError` (a missing table a ``ConfigurationError``).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        bounds: HistoryBounds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.table_name = table_name
        self.bounds = bounds or HistoryBounds()
        self._clock = clock

    async def append(
        self, room: str, frame: Mapping[str, JsonValue], sender: Mapping[str, str] | None
    ) -> int:
        """Take the room's next ``seq`` (an atomic ADD, so concurrent senders get distinct,
        increasing numbers) and store the message under it; returns the ``seq``.

        A message whose item could not be written after its ``seq`` was taken leaves a hole
        that a resume across it skips (the sender got an error and nobody the message).

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        with self._errors("UpdateItem"):
            answer = await self._client.update_item(
                TableName=self.table_name,
                Key=_key(room, t.ROOM_SEQ_SK),
                UpdateExpression="ADD #seq :one",
                ExpressionAttributeNames={"#seq": "seq"},
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
        seq = int(answer["Attributes"]["seq"]["N"])
        now = self._clock()
        item: dict[str, Any] = {
            **_key(room, t.message_sk(seq)),
            "seq": {"N": str(seq)},
            "data": {"S": json_bytes(dict(frame)).decode()},
            "sentAt": {"N": f"{now:.3f}"},
            t.TTL_ATTRIBUTE: {"N": str(int(now) + self.bounds.seconds)},
        }
        if sender:
            item["from"] = {"S": json_bytes(dict(sender)).decode()}
        with self._errors("PutItem"):
            await self._client.put_item(TableName=self.table_name, Item=item)
        return seq

    async def latest(self, room: str) -> int:
        """The room's newest ``seq`` (0 when nothing was sent to it), read consistently.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        with self._errors("GetItem"):
            answer = await self._client.get_item(
                TableName=self.table_name,
                Key=_key(room, t.ROOM_SEQ_SK),
                ConsistentRead=True,
                ProjectionExpression="#seq",
                ExpressionAttributeNames={"#seq": "seq"},
            )
        item = answer.get("Item")
        return int(item["seq"]["N"]) if item else 0

    async def since(self, room: str, since: int) -> Replay:
        """What a resume from ``since`` gets (:func:`~wsfanout.core.history.replay_of`).

        :raises RegistryError: DynamoDB refused, could not be reached, or a stored item is not
            one this module wrote.
        :raises ConfigurationError: the table does not exist.
        """
        latest = await self.latest(room)
        window = self.bounds.window(latest, since)
        stored: list[StoredMessage] = []
        if window is not None:
            low, high = window
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
                "ExpressionAttributeValues": {
                    ":pk": {"S": t.room_pk(room)},
                    ":low": {"S": t.message_sk(low)},
                    ":high": {"S": t.message_sk(high)},
                },
                "ConsistentRead": True,
            }
            while True:
                with self._errors("Query"):
                    answer = await self._client.query(**request)
                stored.extend(self._message_of(room, item) for item in answer.get("Items", []))
                start = answer.get("LastEvaluatedKey")
                if not start:
                    break
                request["ExclusiveStartKey"] = start
        return replay_of(latest, since, stored, self.bounds, self._clock())

    def _message_of(self, room: str, item: Mapping[str, Any]) -> StoredMessage:
        try:
            sender = item.get("from")
            return StoredMessage(
                seq=int(item["seq"]["N"]),
                frame=json.loads(item["data"]["S"]),
                sent_at=float(item["sentAt"]["N"]),
                sender=json.loads(sender["S"]) if sender else None,
            )
        except (KeyError, ValueError) as exc:
            raise RegistryError(
                f"a history item of room {room!r} on {self.table_name} is not one wsfanout "
                f"wrote: {exc!r}"
            ) from exc

    def _errors(self, operation: str) -> AbstractContextManager[None]:
        return map_botocore_errors(f"DynamoDB {operation}", self.table_name, RegistryError)
