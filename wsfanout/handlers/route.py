"""``wsfanout.handlers.route.handler``: API Gateway WebSocket route events.

``$connect`` stores the connection, ``$disconnect`` removes it with its memberships, and every
message route (``joinRoom``, ``leaveRoom``, ``sendMessage``, ``broadcast``, ``$default``) is a
client frame. Small targets (a user, one connection) are sent inline through the engine; rooms
and everyone become broadcast jobs on SQS. A bad frame gets an error frame back and API Gateway
a 200: nothing a client sends raises out of here or changes the registry.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketEventRequestContextBase,
)
from pydantic import ValidationError

from ..app.events import ConnectEvent, MessageEvent, deadline_of, endpoint_of
from ..aws.clients import Clients
from ..core.models import BroadcastJob, Connection, ConnectionsTarget, UsersTarget
from ..core.protocol import (
    Broadcast,
    ClientFrame,
    JoinRoom,
    LeaveRoom,
    SendMessage,
    ToConnection,
    ToRoom,
    ToUser,
    ack_frame,
    error_frame,
    message_frame,
    parse_frame,
)
from ..exceptions import (
    ConnectionExistsError,
    ConnectionNotFoundError,
    FrameError,
    WsFanoutError,
)
from .runtime import Runtime, bind_log_keys, logger, runtime

__all__ = ["handler"]

_INLINE_MARGIN_S = 1.0  # leave this much of the invocation for the ack and the logs
OK: dict[str, Any] = {"statusCode": 200}


def _endpoint(rt: Runtime, context: APIGatewayWebSocketEventRequestContextBase) -> str:
    return endpoint_of(rt.settings, context)


# log_event=False pins it off even if POWERTOOLS_LOGGER_LOG_EVENT is set: a $connect event
# carries the client's token in its query string.
@logger.inject_lambda_context(log_event=False, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entrypoint for every route of the WebSocket API."""
    request = event.get("requestContext") or {}
    bind_log_keys(connection_id=request.get("connectionId"), route=request.get("routeKey"))
    rt = runtime()
    kind = request.get("eventType")
    try:
        if kind == "CONNECT":
            return rt.run(_connect(rt, parse(event=event, model=ConnectEvent)))
        if kind == "DISCONNECT":
            disconnect = parse(event=event, model=APIGatewayWebSocketDisconnectEventModel)
            return rt.run(_disconnect(rt, disconnect))
        return rt.run(
            _message(
                rt, parse(event=event, model=MessageEvent), deadline_of(context, _INLINE_MARGIN_S)
            )
        )
    except ValidationError as exc:  # API Gateway's envelope, not the client's frame, is wrong
        logger.error("not an API Gateway WebSocket event", extra={"problems": str(exc)[:2000]})
        return {"statusCode": 400}


async def _connect(rt: Runtime, event: ConnectEvent) -> dict[str, Any]:
    context = event.request_context
    authorizer = context.authorizer
    user = authorizer.user if authorizer else None
    if rt.settings.auth_required and not user:
        logger.warning("connection refused: no authorizer identified a user")
        return {"statusCode": 401}
    connected_at = context.connected_at
    if connected_at.tzinfo is None:
        connected_at = connected_at.replace(tzinfo=UTC)
    connection = Connection(
        connection_id=context.connection_id,
        connected_at=connected_at,
        user_id=user,
        endpoint=_endpoint(rt, context),
        can_broadcast=bool(authorizer and authorizer.can_broadcast),
    )
    clients = await rt.clients()
    try:
        await (await clients.registry()).put(connection)
    except ConnectionExistsError:
        logger.info("connection already registered")
    except WsFanoutError:
        logger.exception("could not register the connection")
        return {"statusCode": 500}
    logger.info("connected", extra={"user_id": user})
    return OK


async def _disconnect(
    rt: Runtime, event: APIGatewayWebSocketDisconnectEventModel
) -> dict[str, Any]:
    context = event.request_context
    clients = await rt.clients()
    try:
        removed = await (await clients.registry()).delete(context.connection_id)
    except WsFanoutError:
        # API Gateway ignores the answer to $disconnect; the items' ttl reaps what is left.
        logger.exception("could not remove the connection; its ttl will")
        return OK
    logger.info(
        "disconnected",
        extra={
            "items_removed": removed,
            "status_code": context.disconnect_status_code,
            "reason": context.disconnect_reason,
        },
    )
    return OK


class _Origin:
    """The connection a frame came from, and how to answer it."""

    def __init__(self, rt: Runtime, clients: Clients, event: MessageEvent) -> None:
        context = event.request_context
        self.rt = rt
        self.clients = clients
        self.connection_id = context.connection_id
        self.endpoint = _endpoint(rt, context)
        self.authorizer = context.authorizer

    async def reply(self, frame: bytes) -> None:
        outcome = await (await self.clients.sender()).post(self.connection_id, frame, self.endpoint)
        if outcome.value != "delivered":
            logger.warning("could not answer the sender", extra={"outcome": outcome.value})

    async def identity(self) -> tuple[str | None, bool]:
        """Who sent it (user id, may broadcast): the authorizer's word, else the registry's."""
        if self.authorizer is not None:
            return self.authorizer.user, self.authorizer.can_broadcast
        stored = await (await self.clients.registry()).get(self.connection_id)
        if stored is None:
            return None, False
        return stored.user_id, stored.can_broadcast

    async def who(self) -> dict[str, str]:
        user, _ = await self.identity()
        sender = {"connectionId": self.connection_id}
        if user:
            sender["userId"] = user
        return sender


async def _message(rt: Runtime, event: MessageEvent, deadline: float | None) -> dict[str, Any]:
    sender = _Origin(rt, await rt.clients(), event)
    try:
        body = event.body if isinstance(event.body, str) else None
        frame = parse_frame(body, is_base64_encoded=event.is_base64_encoded)
        await _serve(sender, frame, deadline)
    except FrameError as exc:
        logger.info("refused a frame", extra={"code": exc.code, "reason": str(exc)})
        await sender.reply(error_frame(exc.code, str(exc)))
    except WsFanoutError as exc:
        logger.exception("could not serve a frame")
        await sender.reply(error_frame("unavailable", f"could not serve the frame: {exc}"))
    except Exception:  # a bug must cost the sender one error frame, never the connection
        logger.exception("unexpected failure serving a frame")
        await sender.reply(error_frame("internal", "the frame could not be served"))
    return OK


async def _serve(sender: _Origin, frame: ClientFrame, deadline: float | None) -> None:
    clients = sender.clients
    if isinstance(frame, JoinRoom):
        try:
            await (await clients.registry()).join_room(sender.connection_id, frame.room)
        except ConnectionNotFoundError:
            raise FrameError("not_connected", "this connection is not registered") from None
        await sender.reply(ack_frame("joinRoom", room=frame.room))
    elif isinstance(frame, LeaveRoom):
        was_member = await (await clients.registry()).leave_room(sender.connection_id, frame.room)
        await sender.reply(ack_frame("leaveRoom", room=frame.room, wasMember=was_member))
    elif isinstance(frame, SendMessage):
        await _send_message(sender, frame, deadline)
    elif isinstance(frame, Broadcast):
        _, allowed = await sender.identity()
        if not (allowed or sender.rt.settings.broadcast_allowed_by_default):
            raise FrameError("forbidden", "this connection may not broadcast")
        payload = message_frame(await sender.who(), frame.data)
        job = BroadcastJob(
            target={"all": True}, data=payload.decode(), exclude=[sender.connection_id]
        )
        await _enqueue(sender, job)
        await sender.reply(ack_frame("broadcast", jobId=job.job_id))


async def _enqueue(sender: _Origin, job: BroadcastJob) -> None:
    await (await sender.clients.job_queue()).enqueue(job)


async def _send_message(sender: _Origin, frame: SendMessage, deadline: float | None) -> None:
    payload = message_frame(await sender.who(), frame.data)
    to = frame.to
    if isinstance(to, ToRoom):
        job = BroadcastJob(
            target={"room": to.room}, data=payload.decode(), exclude=[sender.connection_id]
        )
        await _enqueue(sender, job)
        await sender.reply(ack_frame("sendMessage", room=to.room, jobId=job.job_id))
        return
    target = (
        UsersTarget(user_ids=[to.user])
        if isinstance(to, ToUser)
        else ConnectionsTarget(connection_ids=[to.connection])
    )
    fanout = await sender.clients.fanout()
    report = await fanout.run(target, payload, deadline=deadline)
    if isinstance(to, ToConnection) and not report.delivered:
        raise FrameError("not_found", f"connection {to.connection!r} is not connected")
    await sender.reply(ack_frame("sendMessage", delivered=report.delivered))
