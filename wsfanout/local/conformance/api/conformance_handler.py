"""The conformance API's functions: only what the checks observe, on AWS as locally.

Stdlib and boto3 only (Lambda's Python runtime ships boto3), and no wsfanout import: this
directory is the function's whole code package when the template is deployed with ``sam
deploy``. The routes speak the two actions of the chat protocol the checks use (``whoami`` and
``sendMessage`` to a connection, answered through the management API as the chat app answers)
and two of their own: ``conformance`` (two-way: names the API, echoes the event's
``domainName`` and says whether the authorizer saw a probe) and ``oneway`` (its return value
must never reach the client). The API has no ``$default`` route on purpose.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Final

import boto3

__all__ = ["PROBE_TTL_S", "authorize", "route"]

PROBE_TTL_S: Final = 3600
"""How long the probe table keeps an authorizer's trace (its items expire by TTL)."""

_client: Any = None  # the management API client, made once per container as Lambda reuses it


def _management() -> Any:
    global _client  # noqa: PLW0603  (one client per warm container, as Lambda code keeps it)
    if _client is None:
        _client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["ENDPOINT"])
    return _client


def _post(connection_id: str, frame: dict[str, Any]) -> None:
    _management().post_to_connection(
        ConnectionId=connection_id, Data=json.dumps(frame, separators=(",", ":")).encode()
    )


def authorize(event: dict[str, Any], _context: object) -> dict[str, Any]:
    """Allow every client that sent the identity source; leave a trace of the ``probe`` query
    parameter so a check can tell whether this function ran for a handshake."""
    probe = (event.get("queryStringParameters") or {}).get("probe")
    if probe:
        boto3.client("dynamodb").put_item(
            TableName=os.environ["PROBES"],
            Item={"probe": {"S": probe}, "ttl": {"N": str(int(time.time()) + PROBE_TTL_S)}},
        )
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
    return {
        "principalId": "conformance",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
    }


def route(event: dict[str, Any], _context: object) -> dict[str, Any]:
    """Every route of the API, by its key."""
    context = event["requestContext"]
    key, connection_id = context["routeKey"], context["connectionId"]
    if key == "$connect":
        return {"statusCode": 200}
    body = json.loads(event.get("body") or "{}")
    if key == "whoami":
        _post(connection_id, {"type": "ack", "action": "whoami", "connectionId": connection_id})
    elif key == "sendMessage":
        sender = {"connectionId": connection_id}
        _post(body["to"]["connection"], {"type": "message", "from": sender, "data": body["data"]})
    elif key == "conformance":
        answer: dict[str, Any] = {"type": "conformance", "domainName": context["domainName"]}
        if "probe" in body:
            seen = boto3.client("dynamodb").get_item(
                TableName=os.environ["PROBES"],
                Key={"probe": {"S": str(body["probe"])}},
                ConsistentRead=True,
            )
            answer["authorized"] = "Item" in seen
        return {"statusCode": 200, "body": json.dumps(answer)}
    elif key == "oneway":
        # A one-way route: API Gateway discards this body, so the client must never see it.
        return {"statusCode": 200, "body": json.dumps({"type": "oneway"})}
    return {"statusCode": 200}
