"""The REQUEST authorizer of the ``$connect`` route: a JWT in ``?token=`` or no connection.

API Gateway calls this before the connection exists. On a valid token it returns an IAM policy
allowing ``execute-api:Invoke`` on the event's ``methodArn``, with ``principalId`` = the user
id and a ``context`` of ``{"userId": ..., "canBroadcast": ...}`` that API Gateway forwards (as
strings) in ``requestContext.authorizer`` of every later route event of the connection.

Every failure is a ``Deny``, never a crash: a bad token is logged with its reason (never the
token), and a misconfigured authorizer (no key) fails closed too, with an error log line to
alarm on. WebSocket APIs do not cache authorizer results, so a Deny issued while misconfigured
does not outlive the fix.

Only what a cold start needs is imported: no AWS SDK, no event loop (this handler makes no
AWS calls). Its settings are those of the container's
:class:`~wsfanout.handlers.runtime.Runtime`, the one the other handlers use, read on first use:
one cache, so whatever resets the runtime (a new local stack, a test) resets them too.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.logging import correlation_paths

from ..core.auth import verify_token
from ..exceptions import ConfigurationError, InvalidInputError
from .runtime import logger, runtime

__all__ = ["handler"]

ANONYMOUS = "anonymous"
"""``principalId`` of a denied request (API Gateway requires one even on Deny)."""


# log_event=False pins it off even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the
# token in its query string.
@logger.inject_lambda_context(
    log_event=False, correlation_id_path=correlation_paths.API_GATEWAY_REST
)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Allow the connection with the token's identity, or deny it."""
    method_arn: str = event["methodArn"]
    request = event.get("requestContext") or {}
    where = {
        "connection_id": request.get("connectionId"),
        "source_ip": (request.get("identity") or {}).get("sourceIp"),
    }
    token = (event.get("queryStringParameters") or {}).get("token")
    try:
        identity = verify_token(token, runtime().settings)
    except ConfigurationError as exc:
        # a known misconfiguration: the reason says it all, a traceback would add nothing
        logger.error("authorizer misconfigured; denying", extra={"reason": str(exc), **where})
        return _policy(ANONYMOUS, "Deny", method_arn)
    except InvalidInputError as exc:
        logger.warning("connection denied", extra={"reason": str(exc), **where})
        return _policy(ANONYMOUS, "Deny", method_arn)

    logger.info(
        "connection allowed",
        extra={"user_id": identity.user_id, "can_broadcast": identity.can_broadcast, **where},
    )
    return _policy(
        identity.user_id,
        "Allow",
        method_arn,
        context={"userId": identity.user_id, "canBroadcast": identity.can_broadcast},
    )


def _policy(
    principal_id: str,
    effect: Literal["Allow", "Deny"],
    resource: str,
    context: dict[str, str | bool] | None = None,
) -> dict[str, Any]:
    """The authorizer response API Gateway expects (context values: strings, numbers, bools)."""
    response: dict[str, Any] = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        response["context"] = context
    return response
