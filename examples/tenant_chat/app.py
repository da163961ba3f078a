"""A multi-tenant chat on wsfanout: ``wss://...?tenant=acme``, then JSON frames::

    {"action": "join",   "room": "lobby"}                 -> {"type": "joined", "room": "lobby"}
    {"action": "say",    "room": "lobby", "text": "hi"}   -> every member: {"type": "said", ...}
    {"action": "typing", "room": "lobby"}                 -> the other members: {"type": "typing"}
    {"action": "leave",  "room": "lobby"}                 -> {"type": "left", "room": "lobby"}

Rooms are scoped to the tenant the connection gave at ``$connect`` (see ``rooms.py``);
anything else is answered ``unknown_action``. ``handler`` is the Lambda entrypoint.
"""

from __future__ import annotations

from wsfanout import App, ConnectionRefused
from wsfanout.app import Context

from .presence import presence
from .rooms import TenantRules, scoped_room

__all__ = ["announce", "app", "handler"]

app = App(rules=TenantRules())
app.include_router(presence)


@app.on_connect
async def connect(ctx: Context) -> None:
    """Refuse (400) a connection that names no tenant; store the tenant on it.

    :raises ConnectionRefused: no ``tenant`` query parameter.
    """
    tenant = ctx.query.get("tenant")
    if not tenant:
        raise ConnectionRefused(400, "connect with ?tenant=...")
    ctx.attributes["tenant"] = tenant


@app.route("join")
async def join(ctx: Context) -> None:
    """Join a room of the sender's tenant (refused ``forbidden`` by :class:`TenantRules`)."""
    if (room := await scoped_room(ctx)) is None:
        return
    await ctx.join(room)
    await ctx.reply({"type": "joined", "room": ctx.json["room"]})


@app.route("leave")
async def leave(ctx: Context) -> None:
    """Leave a room; ``was_member`` says whether the sender was in it."""
    if (room := await scoped_room(ctx)) is None:
        return
    was_member = await ctx.leave(room)
    await ctx.reply({"type": "left", "room": ctx.json["room"], "was_member": was_member})


@app.route("say")
async def say(ctx: Context) -> None:
    """Post ``text`` to a room the sender is a member of (the default rule); every member,
    the sender included, receives ``{"type": "said", "room", "who", "text"}``."""
    if (room := await scoped_room(ctx)) is None:
        return
    text = ctx.json.get("text")
    if not isinstance(text, str):
        await ctx.error("bad_request", 'say something: {"text": "hi"}')
        return
    frame = {
        "type": "said",
        "room": ctx.json["room"],
        "who": ctx.user_id or ctx.connection_id,
        "text": text,
    }
    await ctx.send(frame, room=room)


@app.on_default
async def unknown(ctx: Context) -> None:
    """Any other frame (or one that is not JSON) is answered ``unknown_action``."""
    await ctx.error("unknown_action", "use one of: " + ", ".join(sorted(app.routes)))


async def announce(tenant: str, room: str, text: str) -> None:
    """Post to a tenant's room from a backend (a cron job, another service), inside
    ``async with app:``: no connection sends it, so no rule is asked.

    :raises RuntimeError: outside ``async with app:``.
    """
    await app.send({"type": "announcement", "room": room, "text": text}, room=f"{tenant}:{room}")


handler = app.lambda_handler
