"""The resume token of ``wsfanout broadcast``: where an interrupted run stopped, as one argument.

The token is the URL-safe base64 (unpadded) of a small JSON object (docs/contracts.md, "Resume
token"): the target, the SHA-256 of the payload, the engine's watermark cursor and the run's
parallel-scan segment. ``wsfanout broadcast --resume TOKEN`` continues from the cursor, so every
connection gets the message exactly once over the two runs. The payload itself is not in the
token (it may be 128 KiB); it is given again, and a different one is refused: resuming with
another message would leave each connection with only one of the two.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.models import Cursor, Target
from ..exceptions import InvalidInputError

__all__ = ["MAX_TOTAL_SEGMENTS", "ResumeToken", "payload_sha256"]

MAX_TOTAL_SEGMENTS = 1_000_000  # DynamoDB's bound on a parallel scan's TotalSegments


def payload_sha256(payload: bytes) -> str:
    """The payload's SHA-256, hex: what a token pins the message to."""
    return hashlib.sha256(payload).hexdigest()


class ResumeToken(BaseModel):
    """What a resumed broadcast needs to continue exactly where its predecessor stopped
    (docs/contracts.md, "Resume token").

    ``segment``/``total_segments`` are both set or both absent (the run's parallel-scan segment
    of an "all" target, which the resumed run scans again from ``cursor``); the CLI checks that
    before it makes a token, and a decoded token is checked again.

    :raises pydantic.ValidationError: from construction when a field is out of its bounds.
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    v: Literal[1] = 1
    target: Target
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    cursor: Cursor
    segment: Annotated[int, Field(ge=0)] | None = None
    total_segments: Annotated[int, Field(ge=1, le=MAX_TOTAL_SEGMENTS)] | None = Field(
        default=None, alias="totalSegments"
    )

    def encode(self) -> str:
        """The token as one URL-safe argument."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> ResumeToken:
        """Read a token printed by an interrupted broadcast.

        :raises InvalidInputError: the text is not such a token (truncated, say, or edited).
        """
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return cls.model_validate_json(text)
        except (binascii.Error, ValueError, ValidationError):
            # ValidationError is a ValueError; named for the reader
            raise InvalidInputError(
                "--resume: not a resume token printed by wsfanout broadcast"
            ) from None

    def check_payload(self, payload: bytes) -> None:
        """Refuse a resume with another message than the interrupted run's.

        :raises InvalidInputError: ``payload`` is not the one the token was made for.
        """
        if payload_sha256(payload) != self.sha256:
            raise InvalidInputError(
                "--resume: the message differs from the interrupted broadcast's "
                "(its SHA-256 does not match the token's); give the same --data"
            )
