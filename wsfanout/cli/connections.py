"""``wsfanout connections list|count|get|kick``: the registry and the live connections, for
operators.

``list`` and ``count`` read the registry (a Scan for every connection, a Query of ``GSI1`` for
a user or a room); ``get`` adds what API Gateway knows of the connection (GetConnection); ``kick``
closes connections: the application close frame ``{"type": "close", "reason": …}`` first (the
App's ``ctx.close`` frame; API Gateway cannot send a close code of our choosing, so the frame is
how a client learns why), then DeleteConnection, then the registry clean-up (connection item and
memberships), and reports each step per connection.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from ..aws.clients import Clients
from ..core import models
from ..core.interfaces import Recipient
from ..core.outcomes import Outcome
from ..exceptions import DeliveryError, ForbiddenError, RegistryError
from .arguments import identifier
from .output import (
    EXIT_FAILED,
    EXIT_OK,
    add_json_option,
    add_limit_option,
    add_table_option,
    command_group,
    emit,
    progress_on_stderr,
    rows_table,
    settings_of,
)

if TYPE_CHECKING:
    from ..aws.gateway import ManagementGateway
    from ..aws.registry import Registry

__all__ = ["add_connections_command"]

_DEFAULT_LIMIT = 100
_connection_id = identifier("connection")


def add_connections_command(commands: Any) -> None:
    """Add ``connections`` and its subcommands to the ``wsfanout`` subcommands."""
    sub = command_group(
        commands,
        "connections",
        "list, count, inspect and kick connections",
        "Read the connection registry and the management API: list or count "
        "connections (all, a user's or a room's), show one with what API Gateway knows of it, "
        "or close connections.",
    )

    listing = sub.add_parser(
        "list",
        help="list connections (all, a user's or a room's)",
        description="List registered connections with their user, connection time, endpoint "
        "and broadcast right. A room's member whose connection item is gone shows as such.",
    )
    _target_options(listing)
    add_limit_option(listing, _DEFAULT_LIMIT)
    _common(listing)
    listing.set_defaults(run=_cmd_list)

    count = sub.add_parser(
        "count",
        help="count connections (all, a user's or a room's)",
        description="Count registered connections: a full Scan of the table for all of them "
        "(progress on stderr), a Query for a user or a room.",
    )
    _target_options(count)
    _common(count)
    count.set_defaults(run=_cmd_count)

    get = sub.add_parser(
        "get",
        help="one connection: its registry item and rooms, and API Gateway's GetConnection",
        description="Show a connection's registry item and rooms, and what API Gateway's "
        "GetConnection says (connectedAt, lastActiveAt, identity). Exit 1 when neither knows it.",
    )
    get.add_argument("connection_id", metavar="ID", type=_connection_id)
    _endpoint_option(get)
    _common(get)
    get.set_defaults(run=_cmd_get)

    kick = sub.add_parser(
        "kick",
        help="close connections: close frame, DeleteConnection, registry clean-up",
        description="Close each connection: send the application close frame "
        '{"type": "close", "reason": …}, call DeleteConnection, then remove its registry items '
        "(connection and memberships). Reports each step per connection; exit 1 when a step "
        "failed for any of them. A connection already gone is no failure.",
    )
    who = kick.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "connection_ids",
        metavar="ID",
        nargs="*",
        default=[],
        type=_connection_id,
        help="the connections to close",
    )
    who.add_argument("--user", help="every connection of this user")
    kick.add_argument("--reason", help="the close frame's reason (default: none)")
    _endpoint_option(kick)
    _common(kick)
    kick.set_defaults(run=_cmd_kick)


def _target_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--user", help="only this user's connections")
    which.add_argument("--room", help="only this room's members")


def _endpoint_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        help="management endpoint https://{domain}/{stage} for connections stored without one "
        "(default: $APIGW_MANAGEMENT_ENDPOINT)",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    add_table_option(parser)
    add_json_option(parser)


def _target(args: argparse.Namespace) -> models.Target:
    """:raises pydantic.ValidationError: a user id or room name out of bounds."""
    if args.user is not None:
        return models.UsersTarget(user_ids=[args.user])
    if args.room is not None:
        return models.RoomTarget(room=args.room)
    return models.AllTarget(all=True)


def _target_json(target: models.Target) -> dict[str, Any]:
    return target.model_dump(by_alias=True)


def _connection_json(connection: models.Connection) -> dict[str, Any]:
    return connection.model_dump(mode="json", by_alias=True)


# -- list, count ----------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    settings.require_table()
    target = _target(args)

    async def go() -> tuple[list[str], dict[str, models.Connection], bool]:
        ids: list[str] = []
        more = False
        async with Clients(settings) as clients:
            registry = await clients.registry()
            async for page in registry.pages(target):
                ids.extend(r.connection_id for r in page)
                if len(ids) > args.limit:  # one past the limit: there is more than was listed
                    more = True
                    break
            ids = ids[: args.limit]
            return ids, await registry.get_many(ids), more

    ids, found, more = anyio.run(go)
    listed = [
        {"connectionId": cid, "registered": False}
        if cid not in found
        else {**_connection_json(found[cid]), "registered": True}
        for cid in ids
    ]
    rows = [
        [cid, "(no connection item)", "", "", ""]
        if cid not in found
        else [
            cid,
            found[cid].user_id or "-",
            found[cid].connected_at.isoformat(timespec="seconds"),
            found[cid].endpoint or "(default)",
            "yes" if found[cid].can_broadcast else "no",
        ]
        for cid in ids
    ]
    table = rows_table(
        f"connections of {_describe(target)}" + (f" (first {args.limit})" if more else ""),
        ["connection id", "user", "connected at", "endpoint", "broadcast"],
        rows,
    )
    document = {"target": _target_json(target), "connections": listed, "truncated": more}
    emit(args, document, table)
    return EXIT_OK


def _describe(target: models.Target) -> str:
    if isinstance(target, models.UsersTarget):
        return f"user {target.user_ids[0]!r}"
    if isinstance(target, models.RoomTarget):
        return f"room {target.room!r}"
    return "the whole table"


def _cmd_count(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    settings.require_table()
    target = _target(args)

    async def go() -> int:
        total = 0
        async with Clients(settings) as clients:
            registry = await clients.registry()
            with progress_on_stderr("connections counted") as advance:
                async for page in registry.pages(target):
                    total += len(page)
                    advance(len(page))
        return total

    total = anyio.run(go)
    emit(
        args,
        {"target": _target_json(target), "count": total},
        f"{total} connections in {_describe(target)}",
    )
    return EXIT_OK


# -- get ------------------------------------------------------------------------------------------


def _cmd_get(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    settings.require_table()
    cid = args.connection_id

    async def go() -> tuple[models.Connection | None, list[str], dict[str, Any] | None]:
        async with Clients(settings) as clients:
            registry = await clients.registry()
            stored = await registry.get(cid)
            rooms = await registry.rooms(cid)
            gateway = await clients.gateway()
            live = await gateway.get_connection(cid, stored.endpoint if stored else None)
        return stored, rooms, live

    stored, rooms, live = anyio.run(go)
    live_json = _live_json(live) if live is not None else None
    document = {
        "connectionId": cid,
        "registry": _connection_json(stored) if stored else None,
        "rooms": rooms,
        "live": live_json,
    }
    rows: list[list[str]] = []
    if stored is not None:
        rows += [
            ["registry: user", stored.user_id or "-"],
            ["registry: connected at", stored.connected_at.isoformat()],
            ["registry: endpoint", stored.endpoint or "(default)"],
            ["registry: may broadcast", "yes" if stored.can_broadcast else "no"],
            ["registry: ttl", str(stored.ttl)],
            ["registry: attributes", json.dumps(stored.attributes, sort_keys=True)],
        ]
    else:
        rows.append(["registry", "not registered"])
    rows.append(["rooms", ", ".join(rooms) or "-"])
    if live_json is not None:
        rows += [
            ["live: connected at", live_json["connectedAt"] or "-"],
            ["live: last active at", live_json["lastActiveAt"] or "-"],
            ["live: source ip", live_json["identity"]["sourceIp"] or "-"],
            ["live: user agent", live_json["identity"]["userAgent"] or "-"],
        ]
    else:
        rows.append(["live", "gone (GetConnection: 410)"])
    table = rows_table(f"connection {cid}", ["field", "value"], rows)
    emit(args, document, table)
    if stored is None and live is None:
        sys.stderr.write(f"wsfanout: connection {cid} is neither registered nor connected\n")
        return EXIT_FAILED
    return EXIT_OK


def _live_json(answer: dict[str, Any]) -> dict[str, Any]:
    """GetConnection's answer in the management API's own wire names (camelCase, as the rest
    of the JSON here), times as RFC 3339."""

    def when(key: str) -> str | None:
        value = answer.get(key)
        return value.isoformat() if isinstance(value, datetime) else None

    identity = answer.get("Identity", {})
    return {
        "connectedAt": when("ConnectedAt"),
        "lastActiveAt": when("LastActiveAt"),
        "identity": {
            "sourceIp": identity.get("SourceIp"),
            "userAgent": identity.get("UserAgent"),
        },
    }


# -- kick -----------------------------------------------------------------------------------------


def _close_frame(reason: str | None) -> bytes:
    """The App's application close frame (``ctx.close``), which a client reads before the
    socket closes."""
    frame: dict[str, Any] = {"type": "close"}
    if reason is not None:
        frame["reason"] = reason
    return json.dumps(frame).encode()


def _cmd_kick(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    settings.require_table()
    user_target = models.UsersTarget(user_ids=[args.user]) if args.user is not None else None
    frame = _close_frame(args.reason)

    async def go() -> list[dict[str, Any]]:
        async with Clients(settings) as clients:
            registry = await clients.registry()
            gateway = await clients.gateway()
            if user_target is not None:
                recipients = [r async for page in registry.pages(user_target) for r in page]
            else:
                stored = await registry.get_many(args.connection_ids)
                recipients = [
                    Recipient(cid, stored[cid].endpoint if cid in stored else None, None, 0)
                    for cid in dict.fromkeys(args.connection_ids)
                ]
            # one at a time: a 403 on the first stops the command before it touches the rest
            return [await _kick_one(registry, gateway, r, frame) for r in recipients]

    results = anyio.run(go)
    rows = [
        [
            r["connectionId"],
            r["closeFrame"] or "-",
            {True: "closed", False: "already gone", None: "-"}[r["deleted"]],
            "-" if r["registryItemsRemoved"] is None else str(r["registryItemsRemoved"]),
            r["error"] or "",
        ]
        for r in results
    ]
    table = rows_table(
        "kick",
        ["connection id", "close frame", "DeleteConnection", "registry items", "error"],
        rows,
    )
    emit(args, {"kicked": results}, table)
    return EXIT_FAILED if any(r["error"] for r in results) else EXIT_OK


async def _kick_one(
    registry: Registry, gateway: ManagementGateway, recipient: Recipient, frame: bytes
) -> dict[str, Any]:
    """Close frame, DeleteConnection, registry clean-up; the first failure stops this id's steps
    (a 403 stops the whole command: the endpoint or credentials are wrong for every id)."""
    cid, endpoint = recipient.connection_id, recipient.endpoint
    result: dict[str, Any] = {
        "connectionId": cid,
        "closeFrame": None,
        "deleted": None,
        "registryItemsRemoved": None,
        "error": None,
    }
    outcome = await gateway.post(cid, frame, endpoint)
    if outcome is Outcome.FORBIDDEN:
        raise ForbiddenError(
            f"the management endpoint answered 403 for {cid}: check the endpoint and credentials"
        )
    result["closeFrame"] = outcome.value
    try:
        result["deleted"] = await gateway.delete_connection(cid, endpoint)
        result["registryItemsRemoved"] = await registry.delete(cid)
    except ForbiddenError:
        raise
    except (DeliveryError, RegistryError) as exc:
        result["error"] = str(exc)
    return result
