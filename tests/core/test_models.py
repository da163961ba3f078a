"""The public contracts as pydantic models: broadcast jobs, cursors, reports, connections.

Jobs are validated from JSON with the camelCase keys of docs/contracts.md, exactly as any
producer (another service, another language, the CLI) puts them on the queue.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import JsonValue, ValidationError

from wsfanout.core import models
from wsfanout.core.models import (
    MAX_ATTRIBUTES_BYTES,
    MAX_PAYLOAD_BYTES,
    BroadcastJob,
    Connection,
    Cursor,
    FanoutReport,
    attributes_from_text,
    attributes_text,
)


def job_json(**fields: Any) -> str:
    body: dict[str, Any] = {"target": {"all": True}, "data": "hello"}
    body.update(fields)
    return json.dumps({key: value for key, value in body.items() if value is not None})


def parse(**fields: Any) -> BroadcastJob:
    return BroadcastJob.model_validate_json(job_json(**fields))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- BroadcastJob: accepted forms --------------------------------------------------------------


def test_max_payload_is_api_gateways_128_kib() -> None:
    assert MAX_PAYLOAD_BYTES == 131072


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"all": True}, models.AllTarget(all=True)),
        ({"userIds": ["u1", "u2"]}, models.UsersTarget(user_ids=["u1", "u2"])),
        ({"room": "lobby"}, models.RoomTarget(room="lobby")),
        (
            {"connectionIds": ["abc=", "d/e+f="]},
            models.ConnectionsTarget(connection_ids=["abc=", "d/e+f="]),
        ),
    ],
    ids=["all", "users", "room", "connections"],
)
def test_every_target_form_parses(target: dict[str, Any], expected: object) -> None:
    job = parse(target=target)
    assert type(job.target) is type(expected)
    assert job.target == expected


def test_full_job_with_camel_case_keys() -> None:
    job = parse(
        jobId="8b1f",
        exclude=["sender="],
        segment=3,
        totalSegments=8,
        cursor={"after": {"PK": "CONN#x=", "SK": "CONN"}, "offset": None, "user": 0},
    )
    assert job.job_id == "8b1f"
    assert job.exclude == ["sender="]
    assert (job.segment, job.total_segments) == (3, 8)
    assert job.cursor == Cursor(after={"PK": "CONN#x=", "SK": "CONN"})


def test_binary_job_with_data_base64() -> None:
    job = parse(data=None, dataBase64=b64(b"\x00\xff\x10"))
    assert job.data is None
    assert job.payload == b"\x00\xff\x10"


def test_data_is_sent_as_utf8() -> None:
    assert parse(data="héllo ✓").payload == "héllo ✓".encode()


def test_job_id_is_generated_when_absent() -> None:
    first, second = parse(), parse()
    assert first.job_id
    assert second.job_id
    assert first.job_id != second.job_id


def test_optional_fields_default_to_nothing() -> None:
    job = parse()
    assert job.exclude == []
    assert job.segment is None
    assert job.total_segments is None
    assert job.cursor is None


def test_payload_of_exactly_the_limit_is_accepted() -> None:
    assert len(parse(data="x" * MAX_PAYLOAD_BYTES).payload) == MAX_PAYLOAD_BYTES


def test_limit_counts_utf8_bytes_not_characters() -> None:
    assert len(parse(data="é" * (MAX_PAYLOAD_BYTES // 2)).payload) == MAX_PAYLOAD_BYTES
    with pytest.raises(ValidationError, match="payload"):
        parse(data="é" * (MAX_PAYLOAD_BYTES // 2) + "x")


def test_base64_limit_is_on_decoded_bytes() -> None:
    exact = b"\x01" * MAX_PAYLOAD_BYTES
    encoded = b64(exact)
    assert len(encoded) > MAX_PAYLOAD_BYTES  # the text is larger; only the decoded size counts
    assert parse(data=None, dataBase64=encoded).payload == exact
    with pytest.raises(ValidationError, match="payload"):
        parse(data=None, dataBase64=b64(exact + b"\x01"))


# -- BroadcastJob: rejected forms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"data": "x" * (MAX_PAYLOAD_BYTES + 1)}, "payload", id="data-too-large"),
        pytest.param({"dataBase64": b64(b"x")}, "exactly one", id="both-data-forms"),
        pytest.param({"data": None}, "exactly one", id="no-data"),
        pytest.param({"data": None, "dataBase64": "not base64!"}, "base64", id="bad-base64"),
        pytest.param({"data": None, "dataBase64": "abc"}, "base64", id="bad-padding"),
        pytest.param({"segment": 0}, "together", id="segment-alone"),
        pytest.param({"totalSegments": 4}, "together", id="total-segments-alone"),
        pytest.param({"segment": 4, "totalSegments": 4}, "below", id="segment-equals-total"),
        pytest.param({"segment": 5, "totalSegments": 4}, "below", id="segment-above-total"),
        pytest.param({"segment": -1, "totalSegments": 4}, "greater", id="negative-segment"),
        pytest.param({"segment": 0, "totalSegments": 0}, "greater", id="zero-total-segments"),
        pytest.param(
            {"target": {"room": "lobby"}, "segment": 0, "totalSegments": 2},
            "'all' target",
            id="segment-on-room",
        ),
        pytest.param(
            {"target": {"userIds": ["u1"]}, "segment": 0, "totalSegments": 2},
            "'all' target",
            id="segment-on-users",
        ),
        pytest.param({"priority": "high"}, "Extra inputs", id="unknown-key"),
        pytest.param({"target": {"userIds": []}}, "at least 1", id="empty-user-ids"),
        pytest.param({"target": {"connectionIds": []}}, "at least 1", id="empty-connection-ids"),
        pytest.param({"target": {"all": False}}, "all", id="all-false"),
        pytest.param({"target": {}}, "target", id="empty-target"),
        pytest.param({"target": {"all": True, "room": "lobby"}}, "target", id="two-targets"),
        pytest.param({"target": {"room": ""}}, "at least 1", id="empty-room"),
        pytest.param({"target": None}, "target", id="no-target"),
        pytest.param({"exclude": [""]}, "at least 1", id="empty-excluded-id"),
        pytest.param({"jobId": ""}, "at least 1", id="empty-job-id"),
    ],
)
def test_invalid_jobs_are_rejected(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(**fields)


def test_unknown_key_inside_cursor_is_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        parse(cursor={"after": None, "page": 3})


def test_job_is_immutable() -> None:
    job = parse()
    with pytest.raises(ValidationError):
        job.data = "other"  # type: ignore[misc]


# -- BroadcastJob: round trip ------------------------------------------------------------------


ROUND_TRIP_JOBS = [
    job_json(),
    job_json(target={"userIds": ["u1", "u2"]}, exclude=["a="]),
    job_json(target={"room": "lobby"}, data=None, dataBase64=b64(b"\x00\x01")),
    job_json(target={"connectionIds": ["a=", "b="]}, cursor={"offset": 1}),
    job_json(segment=1, totalSegments=2, cursor={"after": {"PK": "CONN#a", "SK": "CONN"}}),
]


@pytest.mark.parametrize("body", ROUND_TRIP_JOBS)
def test_round_trip_through_the_wire_format(body: str) -> None:
    job = BroadcastJob.model_validate_json(body)
    dumped = job.model_dump(by_alias=True, exclude_none=True)
    assert "job_id" not in dumped
    assert dumped["jobId"] == job.job_id
    assert BroadcastJob.model_validate(dumped) == job
    wire = job.model_dump_json(by_alias=True, exclude_none=True)
    assert BroadcastJob.model_validate_json(wire) == job


def test_dump_uses_design_md_key_names() -> None:
    job = parse(
        target={"userIds": ["u1"]},
        data=None,
        dataBase64=b64(b"hi"),
    )
    dumped = job.model_dump(by_alias=True, exclude_none=True)
    assert set(dumped) == {"jobId", "target", "dataBase64", "exclude"}
    assert dumped["target"] == {"userIds": ["u1"]}


# -- Cursor ------------------------------------------------------------------------------------


def test_cursor_defaults_and_fields() -> None:
    assert Cursor() == Cursor(after=None, offset=None, user=0)
    cursor = Cursor.model_validate({"after": {"PK": "CONN#a"}, "offset": 0, "user": 2})
    assert cursor.after == {"PK": "CONN#a"}
    assert (cursor.offset, cursor.user) == (0, 2)


@pytest.mark.parametrize(
    "body",
    [{"offset": -1}, {"user": -1}, {"after": {"PK": 1}}, {"page": 1}],
    ids=["negative-offset", "negative-user", "non-string-key", "unknown-key"],
)
def test_invalid_cursors_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Cursor.model_validate(body)


def test_cursor_round_trips_through_json() -> None:
    cursor = Cursor(after={"PK": "CONN#a=", "SK": "CONN", "GSI1PK": "ROOM#x"}, user=1)
    assert Cursor.model_validate_json(cursor.model_dump_json()) == cursor


# -- FanoutReport ------------------------------------------------------------------------------


def test_report_attempted_counts_sends_but_not_exclusions() -> None:
    report = FanoutReport(delivered=7, gone=2, failed=1, excluded=5, retries=9, throttled=4)
    assert report.attempted == 10


def test_report_rate_is_attempted_per_second() -> None:
    assert FanoutReport(delivered=90, gone=10, elapsed_s=2.0).rate == 50.0


def test_report_rate_is_zero_without_elapsed_time() -> None:
    assert FanoutReport(delivered=5).rate == 0.0


def test_report_defaults_describe_an_empty_complete_run() -> None:
    report = FanoutReport()
    assert report.attempted == 0
    assert report.complete is True
    assert report.resume is None
    assert report.failed_by_reason == {}


def test_report_json_has_the_documented_keys() -> None:
    report = FanoutReport(
        delivered=3,
        gone=1,
        failed=2,
        failed_by_reason={"server_error": 2},
        retries=5,
        throttled=4,
        elapsed_s=0.5,
        complete=False,
        resume=Cursor(offset=6),
    )
    dumped = json.loads(report.model_dump_json())
    assert {"delivered", "gone", "failed", "retries", "throttled", "elapsed_s"} <= set(dumped)
    assert (dumped["delivered"], dumped["gone"], dumped["failed"]) == (3, 1, 2)
    assert (dumped["retries"], dumped["throttled"], dumped["elapsed_s"]) == (5, 4, 0.5)
    assert dumped["failed_by_reason"] == {"server_error": 2}
    assert dumped["resume"]["offset"] == 6
    assert FanoutReport.model_validate_json(report.model_dump_json()) == report


def test_report_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        FanoutReport.model_validate({"delivered": 1, "sent": 1})


# -- Connection --------------------------------------------------------------------------------


def test_connection_from_camel_case() -> None:
    conn = Connection.model_validate_json(
        json.dumps(
            {
                "connectionId": "L0SM9cOFvHcCIhw=",
                "connectedAt": "2026-11-26T10:00:00Z",
                "userId": "u_456",
                "endpoint": "https://abc.execute-api.eu-west-2.amazonaws.com/prod",
                "ttl": 1_700_000_000,
            }
        )
    )
    assert conn.connection_id == "L0SM9cOFvHcCIhw="
    assert conn.connected_at == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert conn.user_id == "u_456"
    assert conn.endpoint == "https://abc.execute-api.eu-west-2.amazonaws.com/prod"
    assert conn.ttl == 1_700_000_000


def test_connection_by_python_names_and_dump_by_alias() -> None:
    moment = datetime(2026, 11, 26, tzinfo=UTC)
    conn = Connection(connection_id="a=", connected_at=moment)
    assert (conn.user_id, conn.endpoint, conn.ttl, conn.can_broadcast) == (None, None, None, False)
    dumped = conn.model_dump(by_alias=True, exclude_none=True)
    assert dumped == {
        "connectionId": "a=",
        "connectedAt": moment,
        "canBroadcast": False,
        "attributes": {},
    }
    assert Connection.model_validate(dumped) == conn


@pytest.mark.parametrize(
    "body",
    [
        {"connectedAt": "2026-11-26T10:00:00Z"},
        {"connectionId": "", "connectedAt": "2026-11-26T10:00:00Z"},
        {"connectionId": "a=", "connectedAt": "yesterday"},
        {"connectionId": "a=", "connectedAt": "2026-11-26T10:00:00Z", "room": "x"},
    ],
    ids=["no-id", "empty-id", "bad-time", "unknown-key"],
)
def test_invalid_connections_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Connection.model_validate(body)


# -- Connection attributes ---------------------------------------------------------------------

MOMENT = datetime(2026, 11, 26, tzinfo=UTC)


def with_attributes(attributes: Any) -> Connection:
    return Connection(connection_id="a=", connected_at=MOMENT, attributes=attributes)


def padded_to(size: int) -> dict[str, Any]:
    """Attributes whose JSON text is exactly ``size`` bytes: ``{"k":"xxx…"}``."""
    return {"k": "x" * (size - len('{"k":""}'))}


def test_max_attributes_is_16_kib() -> None:
    assert MAX_ATTRIBUTES_BYTES == 16384


def test_attributes_of_exactly_the_limit_are_accepted() -> None:
    attributes = padded_to(MAX_ATTRIBUTES_BYTES)
    assert len(attributes_text(attributes).encode()) == MAX_ATTRIBUTES_BYTES
    assert with_attributes(attributes).attributes == attributes


def test_attributes_limit_counts_utf8_bytes() -> None:
    with pytest.raises(ValidationError, match=f"at most {MAX_ATTRIBUTES_BYTES}"):
        with_attributes(padded_to(MAX_ATTRIBUTES_BYTES + 1))
    # "é" is two bytes: half as many characters reach the same limit
    text = "é" * ((MAX_ATTRIBUTES_BYTES - len('{"k":""}')) // 2 + 1)
    with pytest.raises(ValidationError, match="bytes of JSON"):
        with_attributes({"k": text})


@pytest.mark.parametrize("key", ["k", "k" * 128, "ключ", "a.b#c d"])
def test_attribute_keys_of_1_to_128_characters(key: str) -> None:
    assert with_attributes({key: 1}).attributes == {key: 1}


@pytest.mark.parametrize("key", ["", "k" * 129], ids=["empty", "129-chars"])
def test_attribute_keys_out_of_bounds_are_refused(key: str) -> None:
    with pytest.raises(
        ValidationError, match=r"\[key\][\s\S]*String should have at (least 1|most 128) character"
    ):
        with_attributes({key: 1})


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), {"deep": [1, float("nan")]}],
    ids=["nan", "infinity", "minus-infinity", "nested-nan"],
)
def test_attributes_refuse_nan_and_infinity(value: Any) -> None:
    with pytest.raises(ValidationError, match="not JSON"):
        with_attributes({"k": value})
    with pytest.raises(ValidationError, match="not JSON"):
        attributes_text({"k": value})


def test_attributes_refuse_text_that_is_not_unicode() -> None:
    with pytest.raises(ValidationError, match="not valid Unicode"):
        with_attributes({"k": "\ud800"})


@pytest.mark.parametrize("attributes", [{"k": object()}, {"k": b"bytes"}, ["not", "an", "object"]])
def test_attributes_are_a_json_object(attributes: Any) -> None:
    with pytest.raises(ValidationError):
        with_attributes(attributes)


def test_attributes_default_to_empty_and_validate_by_alias() -> None:
    assert Connection(connection_id="a=", connected_at=MOMENT).attributes == {}
    conn = Connection.model_validate_json(
        json.dumps(
            {
                "connectionId": "a=",
                "connectedAt": "2026-11-26T00:00:00Z",
                "attributes": {"tenant": "acme", "roles": ["admin"], "n": 1.5},
            }
        )
    )
    assert conn.attributes == {"tenant": "acme", "roles": ["admin"], "n": 1.5}


def test_json_text_of_attributes_refuses_nan() -> None:
    with pytest.raises(ValidationError, match="not JSON"):
        Connection.model_validate_json(
            '{"connectionId": "a=", "connectedAt": "2026-11-26T00:00:00Z",'
            ' "attributes": {"k": NaN}}'
        )


def test_attributes_text_is_compact_sorted_and_round_trips() -> None:
    attributes: dict[str, JsonValue] = {"b": {"y": [1, None, True]}, "a": "héllo ✓"}
    text = attributes_text(attributes)
    assert text == '{"a":"héllo ✓","b":{"y":[1,null,true]}}'
    assert attributes_from_text(text) == attributes
    with pytest.raises(ValidationError):
        attributes_from_text("[1]")


def test_a_connection_is_seen_at_its_latest_sign_of_life() -> None:
    connected = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    fresh = Connection(connection_id="c=", connected_at=connected)
    assert fresh.last_seen is None
    assert fresh.seen == connected
    later = connected + timedelta(minutes=5)
    assert fresh.model_copy(update={"last_seen": later}).seen == later
    earlier = connected - timedelta(minutes=5)  # a clock skew: connectedAt still counts
    assert fresh.model_copy(update={"last_seen": earlier}).seen == connected
    parsed = Connection.model_validate(
        {"connectionId": "c=", "connectedAt": connected.isoformat(), "lastSeen": later.isoformat()}
    )
    assert parsed.last_seen == later
