"""The made-up AWS account of the local stack, the benchmarks and the tests, in one place.

moto and the local management endpoint accept any signed request, so the credentials only have
to be obviously fake (moto's own documentation uses ``testing``) and the same everywhere: then
exports, ARNs and signatures agree across processes.
"""

from __future__ import annotations

from typing import Final

from .endpoints import DEFAULT_REGION

__all__ = ["ACCOUNT_ID", "CREDENTIALS", "KEY_ID", "REGION", "SECRET"]

REGION: Final = DEFAULT_REGION
"""Region of every local client and of the ARNs the emulator makes up."""

ACCOUNT_ID: Final = "123456789012"
"""Account in those ARNs: moto's default account, so ARNs agree across the local stack."""

KEY_ID: Final = "testing"
SECRET: Final = "testing"  # noqa: S105  (a dummy every local service accepts, not a secret)

CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
"""The credentials as environment variables, for the stack's exports and its child processes."""
