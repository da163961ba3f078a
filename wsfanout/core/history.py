"""Durable rooms: per-room sequence numbers and the bounded history a client resumes from.

The rules live here, pure, so the DynamoDB store (:mod:`wsfanout.aws.history`) and the
in-memory one (:mod:`wsfanout.testing.history`) decide alike (docs/contracts.md, "Replay"):

- a room's ``seq`` comes from one atomic counter: assigned once per message, strictly
  increasing from 1, whatever the number of recipients or of concurrent senders;
- the history keeps the last ``messages`` messages and none older than ``seconds``; stored
  items past either bound are ignored on read (TTL deletes them later, in its own time);
- a resume from ``since`` is *covered* when the message just after it is still kept. Its
  witness is the stored message ``since`` (the client saw it, so it was written before its
  fan-out) or ``since + 1``, either still fresh; a resume that is not covered is a ``reset``,
  never a silent gap. A missing message inside a covered window is one still being written
  (its seq taken, its item not yet stored): the client waits for it and asks again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

__all__ = ["MAX_SEQ", "HistoryBounds", "Replay", "StoredMessage", "replay_of", "stamped"]

MAX_SEQ = 10**20 - 1
"""The widest sequence number (20 digits, the width of a message item's sort key)."""


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """How much of a room's history is kept: the last ``messages``, for ``seconds`` at most."""

    messages: int = 100
    seconds: int = 3600

    def first_kept(self, latest: int) -> int:
        """The oldest sequence number the count bound keeps when ``latest`` is the newest."""
        return max(1, latest - self.messages + 1)

    def is_fresh(self, message: StoredMessage, now: float) -> bool:
        """Whether ``message`` is within the time bound at ``now`` (epoch seconds)."""
        return message.sent_at >= now - self.seconds

    def window(self, latest: int, since: int) -> tuple[int, int] | None:
        """The sequence numbers a resume from ``since`` reads (the witness ``since`` included),
        or ``None`` when the count bound alone says it is a reset (or nothing is missed)."""
        if since >= latest or since + 1 < self.first_kept(latest):
            return None
        return max(since, 1), latest


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of a room's history: the frame as sent (without ``room`` and ``seq``, which
    :func:`stamped` adds), when, and from which connection (``None``: from outside a route)."""

    seq: int
    frame: Mapping[str, JsonValue]
    sent_at: float
    sender: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume gets: the kept messages after ``since`` in order, or ``reset``; and the
    room's ``latest`` sequence number (0: nothing was ever sent to it)."""

    latest: int
    messages: tuple[StoredMessage, ...] = ()
    reset: bool = False


def replay_of(
    latest: int,
    since: int,
    stored: Sequence[StoredMessage],
    bounds: HistoryBounds,
    now: float,
) -> Replay:
    """The replay of a resume from ``since``, from the ``stored`` messages of
    :meth:`HistoryBounds.window` (ascending by ``seq``; absent ones simply missing)."""
    if since == latest:
        return Replay(latest)
    if since > latest:  # a history that restarted (a new table): the client's seq means nothing
        return Replay(latest, reset=True)
    first = bounds.first_kept(latest)
    fresh = [m for m in stored if bounds.is_fresh(m, now)]
    covered = since + 1 >= first and any(m.seq in (since, since + 1) for m in fresh)
    if not covered:
        return Replay(latest, reset=True)
    return Replay(latest, tuple(m for m in fresh if m.seq > since and m.seq >= first))


def stamped(frame: Mapping[str, Any], room: str, seq: int) -> dict[str, Any]:
    """``frame`` as a durable room's members get it: ``room`` and ``seq`` after its ``type``
    (``{"type": "message", "room": "lobby", "seq": 42, "from": ..., "data": ...}``); a
    ``room`` or ``seq`` of the frame's own is replaced."""
    head = {"type": frame["type"]} if "type" in frame else {}
    rest = {k: v for k, v in frame.items() if k not in ("type", "room", "seq")}
    return {**head, "room": room, "seq": seq, **rest}
