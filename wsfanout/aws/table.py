"""The registry table layout of docs/contracts.md, in one place.

The registry code, the local stack, the tests and the deploy checks all derive keys and the table
definition from here, so the layout cannot drift between them.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "CONNECTION_SK",
    "GSI1",
    "connection_id_from_pk",
    "connection_pk",
    "job_pk",
    "message_sk",
    "room_gsi1pk",
    "room_pk",
    "room_sk",
    "segment_sk",
    "table_definition",
    "user_gsi1pk",
]

PK: Final = "PK"
SK: Final = "SK"
GSI1: Final = "GSI1"
GSI1PK: Final = "GSI1PK"
GSI1SK: Final = "GSI1SK"
TTL_ATTRIBUTE: Final = "ttl"

CONN_PREFIX: Final = "CONN#"
ROOM_PREFIX: Final = "ROOM#"
USER_PREFIX: Final = "USER#"
JOB_PREFIX: Final = "JOB#"
SEG_PREFIX: Final = "SEG#"
CONNECTION_SK: Final = "CONN"
ROOM_SEQ_SK: Final = "SEQ"
MESSAGE_PREFIX: Final = "MSG#"


def connection_pk(connection_id: str) -> str:
    """Partition key of a connection and of its memberships."""
    return CONN_PREFIX + connection_id


def connection_id_from_pk(pk: str) -> str:
    """Inverse of :func:`connection_pk`."""
    return pk[len(CONN_PREFIX) :]


def room_sk(room: str) -> str:
    """Sort key of a membership item under its connection."""
    return ROOM_PREFIX + room


def room_gsi1pk(room: str) -> str:
    """GSI1 partition of a room: all its membership items."""
    return ROOM_PREFIX + room


def room_pk(room: str) -> str:
    """Partition key of a durable room's history: its ``SEQ`` counter and ``MSG#`` items."""
    return ROOM_PREFIX + room


def message_sk(seq: int) -> str:
    """Sort key of a durable room's message: zero-padded, so the items sort by ``seq``."""
    return f"{MESSAGE_PREFIX}{seq:020d}"


def user_gsi1pk(user_id: str) -> str:
    """GSI1 partition of a user: all their connection items."""
    return USER_PREFIX + user_id


def job_pk(job_id: str) -> str:
    """Partition key of a broadcast job's progress items."""
    return JOB_PREFIX + job_id


def segment_sk(segment: int | None) -> str:
    """Sort key of one segment's progress item (``SEG#-`` for a job that is not sharded)."""
    return f"{SEG_PREFIX}{'-' if segment is None else segment}"


def table_definition(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments for the registry (on-demand; TTL is enabled separately)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"} for name in (PK, SK, GSI1PK, GSI1SK)
        ],
        "KeySchema": [
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": GSI1,
                "KeySchema": [
                    {"AttributeName": GSI1PK, "KeyType": "HASH"},
                    {"AttributeName": GSI1SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }
