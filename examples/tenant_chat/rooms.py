"""Rooms belong to a tenant: a client names ``lobby``, the registry holds ``acme:lobby``.

The tenant comes from the connection's attributes (stored by the ``$connect`` hook), never
from the frame, so a client cannot name its way into another tenant's room.
"""

from __future__ import annotations

from wsfanout.app import Context, Rules

__all__ = ["TenantRules", "scoped_room"]


async def scoped_room(ctx: Context) -> str | None:
    """The frame's ``room``, scoped to the sender's tenant (``f"{tenant}:{room}"``); ``None``
    after answering the sender a ``bad_request`` error frame when the frame names no room."""
    frame = ctx.json
    room = frame.get("room") if isinstance(frame, dict) else None
    if not isinstance(room, str) or not room:
        await ctx.error("bad_request", 'name a room: {"room": "lobby"}')
        return None
    return f"{ctx.attributes['tenant']}:{room}"


class TenantRules(Rules):
    """A connection joins only rooms of its own tenant, whose names hold no further ``:``
    (``acme:evil:lobby`` would read as tenant ``acme`` to one reader and ``evil`` to another).

    Posting keeps the default rule (members only), so joining is the one gate to guard.
    """

    async def may_join(self, ctx: Context, room: str) -> bool:
        """Whether ``room`` is ``{own tenant}:{name}`` with a non-empty name and no ``:`` in it."""
        tenant, _, name = room.partition(":")
        return tenant == ctx.attributes.get("tenant") and bool(name) and ":" not in name
