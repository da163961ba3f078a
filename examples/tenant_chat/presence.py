"""Typing indicators, in a module of their own: a :class:`~wsfanout.app.Router` the app
includes with ``app.include_router(presence)``."""

from __future__ import annotations

from wsfanout.app import Context, Router

from .rooms import scoped_room

__all__ = ["presence"]

presence = Router()


@presence.route("typing")
async def typing(ctx: Context) -> None:
    """``{"action": "typing", "room": "lobby"}``: the room's other members see
    ``{"type": "typing", "room": "lobby", "who": ...}``; the sender does not."""
    if (room := await scoped_room(ctx)) is None:
        return
    frame = {"type": "typing", "room": ctx.json["room"], "who": ctx.user_id or ctx.connection_id}
    await ctx.send(frame, room=room, exclude=[ctx.connection_id])
