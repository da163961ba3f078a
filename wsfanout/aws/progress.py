"""Progress items of broadcast jobs in the registry table (``JOB#{jobId}`` / ``SEG#{segment}``).

Every write is conditional on the state its caller read or on the lease it holds (its
invocation's token), so two copies of one job message can never both hold a step;
:func:`wsfanout.core.jobs.decide` says what to do with what is read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from ..core.jobs import Checkpoint, Claim, Step, Tally
from ..core.models import Cursor, FanoutReport
from ..exceptions import RegistryError
from . import table as t
from .errors import ConditionFailedError, map_botocore_errors

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["Checkpoints"]

_RUNNING, _COMPLETE = "running", "complete"
_TOKEN, _LEASE = "leaseToken", "leaseUntil"
# What the running step had counted at its last checkpoint (removed when the step finishes).
_SO_FAR = {"delivered": "stepDelivered", "gone": "stepGone", "failed": "stepFailed"}


class Checkpoints:
    """Progress items of broadcast jobs, in the registry table (a :class:`ProgressStore`).

    Every method raises :class:`RegistryError` when DynamoDB refuses or cannot be reached, and
    :class:`~wsfanout.exceptions.ConfigurationError` when the table does not exist; a write whose
    condition does not hold is no error but a ``False``.
    """

    def __init__(self, client: DynamoDBClient, table_name: str, *, ttl_seconds: int) -> None:
        self._client = client
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def _key(job_id: str, segment: int | None) -> dict[str, Any]:
        return {t.PK: {"S": t.job_pk(job_id)}, t.SK: {"S": t.segment_sk(segment)}}

    async def load(self, job_id: str, segment: int | None) -> Checkpoint | None:
        """The segment's progress item, read consistently.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        with map_botocore_errors(
            f"DynamoDB GetItem (progress of job {job_id})", self.table_name, RegistryError
        ):
            answer = await self._client.get_item(
                TableName=self.table_name, Key=self._key(job_id, segment), ConsistentRead=True
            )
        item = answer.get("Item")
        return _checkpoint_of(item) if item else None

    async def segments(self, job_id: str) -> list[tuple[int | None, Checkpoint]]:
        """Every progress item of one job, as ``(segment, checkpoint)`` in segment order (the
        segment ``None`` for a job that is not sharded); empty when no step of it has started.

        A segment appears once its first step claimed it: the items do not record how many
        segments the job was split into.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": t.job_pk(job_id)}},
            "ConsistentRead": True,
        }
        found = [
            (segment, checkpoint)
            async for _, segment, checkpoint in self._items("Query", request, job_id)
        ]
        return sorted(found, key=lambda pair: -1 if pair[0] is None else pair[0])

    async def scan(self) -> AsyncIterator[tuple[str, int | None, Checkpoint]]:
        """Every progress item in the table, as ``(job id, segment, checkpoint)``, page by page
        (a full Scan of the registry table, filtered on ``JOB#`` keys: for tools).

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "begins_with(PK, :job)",
            "ExpressionAttributeValues": {":job": {"S": t.JOB_PREFIX}},
        }
        async for found in self._items("Scan", request, "(every job)"):
            yield found

    async def _items(
        self, operation: str, request: dict[str, Any], what: str
    ) -> AsyncIterator[tuple[str, int | None, Checkpoint]]:
        call = self._client.scan if operation == "Scan" else self._client.query
        start: dict[str, Any] | None = None
        while True:
            page = {**request, "ExclusiveStartKey": start} if start else request
            with map_botocore_errors(
                f"DynamoDB {operation} (progress of job {what})", self.table_name, RegistryError
            ):
                answer = await call(**page)
            for item in answer.get("Items", []):
                job_id = item[t.PK]["S"][len(t.JOB_PREFIX) :]
                segment = item[t.SK]["S"][len(t.SEG_PREFIX) :]
                yield job_id, None if segment == "-" else int(segment), _checkpoint_of(item)
            start = answer.get("LastEvaluatedKey")
            if not start:
                return

    async def _update(
        self,
        step: Step,
        *,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str],
    ) -> bool:
        """One conditional UpdateItem on ``step``'s item; ``False`` when ``condition`` did not
        hold."""
        try:
            with map_botocore_errors(
                f"DynamoDB UpdateItem (progress of job {step.job_id})",
                self.table_name,
                RegistryError,
            ):
                await self._client.update_item(
                    TableName=self.table_name,
                    Key=self._key(step.job_id, step.segment),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    ExpressionAttributeNames=names,
                )
        except ConditionFailedError:
            return False
        return True

    def _ttl(self) -> dict[str, str]:
        return {"N": str(int(time.time()) + self.ttl_seconds)}

    async def claim(self, claim: Claim) -> bool:
        """Lease ``claim.step`` to its token until ``lease_until``, if the item is still exactly as
        ``seen`` (owner and token) and, when ``seen`` holds this very step, its lease lapsed by
        ``now`` (both epoch seconds: DynamoDB has no clock of its own to compare with).

        :raises RegistryError: DynamoDB refused or could not be reached (not: the item changed,
            which is ``False``).
        :raises ConfigurationError: the table does not exist.
        """
        step, seen, cursor = claim.step, claim.seen, claim.cursor
        lease_until, now = claim.lease_until, claim.now
        names = {
            "#step": "step",
            "#owner": "owner",
            "#status": "status",
            "#ttl": t.TTL_ATTRIBUTE,
            "#token": _TOKEN,
            "#lease": _LEASE,
        }
        values: dict[str, Any] = {
            ":step": {"N": str(step.number)},
            ":owner": {"S": step.owner},
            ":running": {"S": _RUNNING},
            ":ttl": self._ttl(),
            ":token": {"S": step.token},
            ":lease": {"N": f"{lease_until:.3f}"},
        }
        update = (
            "SET #step = :step, #owner = :owner, #status = :running, #ttl = :ttl,"
            " #token = :token, #lease = :lease"
        )
        if cursor is not None:
            update += ", #cursor = :cursor"
            names["#cursor"] = "cursor"
            values[":cursor"] = {"S": cursor.model_dump_json(exclude_none=True)}
        if seen is None:
            condition = "attribute_not_exists(PK)"
        else:
            values[":seen_step"] = {"N": str(seen.step)}
            values[":complete"] = {"S": _COMPLETE}
            condition = "#step = :seen_step AND #status <> :complete AND "
            if seen.owner is None:
                condition += "attribute_not_exists(#owner)"
            else:
                values[":seen_owner"] = {"S": seen.owner}
                condition += "#owner = :seen_owner"
            if seen.token is None:
                condition += " AND attribute_not_exists(#token)"
            else:
                values[":seen_token"] = {"S": seen.token}
                condition += " AND #token = :seen_token"
            if seen.owner is not None and seen.step == step.number:
                values[":now"] = {"N": f"{now:.3f}"}
                condition += " AND (attribute_not_exists(#lease) OR #lease <= :now)"
        return await self._update(
            step, update=update, condition=condition, values=values, names=names
        )

    def _owned(self, step: Step) -> tuple[str, dict[str, Any], dict[str, str]]:
        """The condition that ``step.token`` still holds the step, with its values and names."""
        return (
            "#step = :step AND #owner = :owner AND #token = :token",
            {
                ":step": {"N": str(step.number)},
                ":owner": {"S": step.owner},
                ":token": {"S": step.token},
            },
            {"#step": "step", "#owner": "owner", "#token": _TOKEN},
        )

    async def save(self, step: Step, cursor: Cursor, so_far: Tally | None = None) -> bool:
        """Record a watermark mid-run, and what the step counted up to it (``so_far``: the
        ``stepDelivered``, ``stepGone`` and ``stepFailed`` attributes, until the step finishes);
        ``False`` when ``step.token`` no longer holds the step (another invocation took it over).

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        condition, values, names = self._owned(step)
        values[":cursor"] = {"S": cursor.model_dump_json(exclude_none=True)}
        names["#cursor"] = "cursor"
        update = "SET #cursor = :cursor"
        if so_far is not None:
            for key, attribute in _SO_FAR.items():
                update += f", {attribute} = :{attribute}"
                values[f":{attribute}"] = {"N": str(getattr(so_far, key))}
        return await self._update(
            step, update=update, condition=condition, values=values, names=names
        )

    async def finish(self, step: Step, report: FanoutReport, next_cursor: Cursor | None) -> bool:
        """Advance to the next step at ``next_cursor``, or mark the segment complete (``None``),
        adding ``report``'s counts and releasing the lease; ``False`` when ``step.token`` no
        longer holds the step.

        :raises RegistryError: DynamoDB refused or could not be reached.
        :raises ConfigurationError: the table does not exist.
        """
        condition, values, names = self._owned(step)
        values.update(
            {
                ":delivered": {"N": str(report.delivered)},
                ":gone": {"N": str(report.gone)},
                ":failed": {"N": str(report.failed)},
                ":ttl": self._ttl(),
            }
        )
        names["#ttl"] = t.TTL_ATTRIBUTE
        names["#lease"] = _LEASE
        if next_cursor is None:
            names["#status"] = "status"
            values[":complete"] = {"S": _COMPLETE}
            update = "SET #status = :complete, #ttl = :ttl"
        else:
            values[":next"] = {"N": str(step.number + 1)}
            values[":cursor"] = {"S": next_cursor.model_dump_json(exclude_none=True)}
            names["#cursor"] = "cursor"
            update = "SET #step = :next, #cursor = :cursor, advancedBy = :owner, #ttl = :ttl"
        update += (
            f" REMOVE #owner, #token, #lease, {', '.join(_SO_FAR.values())}"
            " ADD delivered :delivered, gone :gone, failed :failed"
        )
        return await self._update(
            step, update=update, condition=condition, values=values, names=names
        )


def _checkpoint_of(item: Mapping[str, Any]) -> Checkpoint:
    """A progress item as the :class:`Checkpoint` it records."""
    cursor = item.get("cursor", {}).get("S")
    return Checkpoint(
        step=int(item["step"]["N"]),
        owner=item.get("owner", {}).get("S"),
        cursor=Cursor.model_validate_json(cursor) if cursor else None,
        complete=item.get("status", {}).get("S") == _COMPLETE,
        advanced_by=item.get("advancedBy", {}).get("S"),
        delivered=int(item.get("delivered", {}).get("N", "0")),
        gone=int(item.get("gone", {}).get("N", "0")),
        failed=int(item.get("failed", {}).get("N", "0")),
        token=item.get(_TOKEN, {}).get("S"),
        lease_until=float(item[_LEASE]["N"]) if _LEASE in item else None,
        so_far=Tally(**{k: int(item[a]["N"]) for k, a in _SO_FAR.items() if a in item})
        if _SO_FAR["delivered"] in item
        else None,
    )
