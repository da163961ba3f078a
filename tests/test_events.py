"""The event fixtures parse with the powertools models of what AWS sends, and stay consistent."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketConnectEventRequestContext,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
    SqsModel,
)
from pydantic import BaseModel

from tests.events import EVENTS_DIR, load_event
from wsfanout.app import events as app_events
from wsfanout.core.models import BroadcastJob, RoomTarget

CONNECTION_ID = "L0SM9cOFvHcCIhw="


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("ws_connect", APIGatewayWebSocketConnectEventModel),
        ("ws_connect_anonymous", APIGatewayWebSocketConnectEventModel),
        ("ws_disconnect", APIGatewayWebSocketDisconnectEventModel),
        ("ws_message", APIGatewayWebSocketMessageEventModel),
        ("sqs_batch", SqsModel),
    ],
)
def test_fixture_parses_with_powertools_model(name: str, model: type[BaseModel]) -> None:
    model.model_validate(load_event(name))


def test_every_fixture_is_covered() -> None:
    names = {p.stem for p in EVENTS_DIR.glob("*.json")}
    assert names == {
        "authorizer_request",
        "sqs_batch",
        "ws_connect",
        "ws_connect_anonymous",
        "ws_disconnect",
        "ws_message",
    }


def test_connect_carries_token_and_authorizer_context() -> None:
    event = load_event("ws_connect")
    ctx = event["requestContext"]
    assert event["queryStringParameters"]["token"]
    assert event["multiValueQueryStringParameters"]["token"] == [
        event["queryStringParameters"]["token"]
    ]
    assert ctx["connectionId"] == CONNECTION_ID
    assert ctx["domainName"] == f"{ctx['apiId']}.execute-api.eu-west-1.amazonaws.com"
    # API Gateway stringifies authorizer context values on the way to the integration.
    assert ctx["authorizer"]["userId"] == ctx["authorizer"]["principalId"] == "u_123"
    assert ctx["authorizer"]["canBroadcast"] == "true"


def test_anonymous_connect_has_no_identity() -> None:
    event = load_event("ws_connect_anonymous")
    assert "authorizer" not in event["requestContext"]
    assert "queryStringParameters" not in event


def test_disconnect_shape() -> None:
    parsed = APIGatewayWebSocketDisconnectEventModel.model_validate(load_event("ws_disconnect"))
    assert parsed.request_context.disconnect_status_code == 1001
    assert parsed.request_context.connection_id == CONNECTION_ID


def test_message_body_is_a_client_frame() -> None:
    event = load_event("ws_message")
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {
        "action": "sendMessage",
        "to": {"room": "lobby"},
        "data": "hi",
    }
    assert event["requestContext"]["authorizer"]["userId"] == "u_123"


def test_sqs_bodies_are_broadcast_jobs_with_true_md5() -> None:
    records = load_event("sqs_batch")["Records"]
    assert len(records) == 2
    jobs = [BroadcastJob.model_validate_json(r["body"]) for r in records]
    assert isinstance(jobs[0].target, RoomTarget)
    assert jobs[0].exclude == [CONNECTION_ID]
    assert (jobs[1].segment, jobs[1].total_segments) == (0, 4)
    for record in records:
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324


def test_authorizer_request_shape() -> None:
    raw = load_event("authorizer_request")
    event = APIGatewayAuthorizerRequestEvent(raw)
    assert event.get_type == "REQUEST"
    assert event.method_arn.endswith("/prod/$connect")
    arn = event.parsed_arn
    assert (arn.region, arn.aws_account_id, arn.api_id, arn.stage) == (
        "eu-west-1",
        "123456789012",
        "abcdef1234",
        "prod",
    )
    assert event.query_string_parameters["token"]
    assert raw["stageVariables"] == {}
    # There is no powertools parser model for a WebSocket authorizer event (its
    # ApiGatewayAuthorizerRequest is REST-shaped); its requestContext is the $connect one.
    APIGatewayWebSocketConnectEventRequestContext.model_validate(raw["requestContext"])


def test_load_event_returns_independent_copies() -> None:
    first = load_event("ws_connect")
    first["requestContext"]["connectionId"] = "changed"
    assert load_event("ws_connect")["requestContext"]["connectionId"] == CONNECTION_ID


def test_load_event_merges_overrides() -> None:
    event: dict[str, Any] = load_event(
        "authorizer_request",
        queryStringParameters={"token": "t", "extra": "x"},
        stageVariables=None,
    )
    assert event["queryStringParameters"] == {"token": "t", "extra": "x"}
    assert event["stageVariables"] is None
    assert event["requestContext"]["routeKey"] == "$connect"


def test_load_event_unknown_name() -> None:
    with pytest.raises(FileNotFoundError, match="ws_connect"):
        load_event("nope")


@pytest.mark.parametrize(
    ("name", "ours", "powertools"),
    [
        ("ws_connect", "ConnectEvent", APIGatewayWebSocketConnectEventModel),
        ("ws_connect_anonymous", "ConnectEvent", APIGatewayWebSocketConnectEventModel),
        ("ws_disconnect", "DisconnectEvent", APIGatewayWebSocketDisconnectEventModel),
        ("ws_message", "MessageEvent", APIGatewayWebSocketMessageEventModel),
    ],
)
def test_the_apps_event_models_read_what_powertools_reads(
    name: str, ours: str, powertools: type[BaseModel]
) -> None:
    """The App's own models (written to keep Powertools' parser out of a cold start) have
    Powertools' fields: every field Powertools reads, ours reads to the same value."""
    model: type[BaseModel] = getattr(app_events, ours)
    event = load_event(name)
    theirs, mine = powertools.model_validate(event), model.model_validate(event)

    def agree(a: BaseModel, b: BaseModel, path: str) -> None:
        for field in type(a).model_fields:
            assert field in type(b).model_fields, f"{path}.{field} is missing from {ours}"
            x, y = getattr(a, field), getattr(b, field)
            if isinstance(x, BaseModel) and isinstance(y, BaseModel):
                agree(x, y, f"{path}.{field}")
            else:
                assert x == y, f"{path}.{field}: {x!r} (Powertools) != {y!r} ({ours})"

    agree(theirs, mine, name)
