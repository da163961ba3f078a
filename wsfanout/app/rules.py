"""Who may do what: the authorization hooks of an app, with secure defaults, in one place.

Every ``ctx.send``, ``ctx.join`` and broadcast asks the app's :class:`Rules` first; a ``False``
answers the sender a ``forbidden`` error frame and nothing is sent. The defaults:

========================  ===========================================================
may_join(ctx, room)       anyone (a room is an address; posting to it is the guarded act)
may_send to a room        only its members
may_send to a user        anyone connected
may_send to a connection  anyone connected
may_send to everyone      only connections the authorizer allowed to broadcast
                          (``canBroadcast``), or all when ``BROADCAST_ALLOWED_BY_DEFAULT``
may_see_presence          only the room's members (``ctx.presence(room)``)
========================  ===========================================================

Override what the app needs in a subclass, and pass it as ``App(rules=...)``::

    class TenantRules(Rules):
        async def may_join(self, ctx, room):
            return room.startswith(f"{ctx.attributes['tenant']}:")

Sends from outside a route (:meth:`App.send <wsfanout.app.App.send>`, a backend) are the app's
own and are not asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.models import AllTarget, RoomTarget, Target

if TYPE_CHECKING:
    from .context import Context

__all__ = ["Rules"]


class Rules:
    """The default rules (see the module docstring); every method may be overridden."""

    async def may_join(self, ctx: Context, room: str) -> bool:
        """Whether ``ctx``'s connection may join ``room``."""
        return True

    async def may_send_to_room(self, ctx: Context, room: str) -> bool:
        """Whether it may post to ``room``: by default, only when it is a member."""
        return await _is_member(ctx, room)

    async def may_see_presence(self, ctx: Context, room: str) -> bool:
        """Whether it may ask who is in ``room``: by default, only when it is a member."""
        return await _is_member(ctx, room)

    async def may_broadcast(self, ctx: Context) -> bool:
        """Whether it may send to everyone: the authorizer's word, or the settings' default."""
        return ctx.can_broadcast or ctx.services.settings.broadcast_allowed_by_default

    async def may_send_to(self, ctx: Context, target: Target) -> bool:
        """Whether it may send to users or connections named in ``target``: by default, yes."""
        return True

    async def may_send(self, ctx: Context, target: Target) -> bool:
        """The one question ``ctx.send`` asks; it routes to the three above by target kind."""
        if isinstance(target, RoomTarget):
            return await self.may_send_to_room(ctx, target.room)
        if isinstance(target, AllTarget):
            return await self.may_broadcast(ctx)
        return await self.may_send_to(ctx, target)


async def _is_member(ctx: Context, room: str) -> bool:
    return await (await ctx.services.registry()).is_member(ctx.connection_id, room)
