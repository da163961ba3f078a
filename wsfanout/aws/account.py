"""The made-up AWS account of the local stack, the benchmarks and the tests, in one place.

The credentials only have to be obviously fake (moto's own documentation uses ``testing``) and
the same everywhere: the local management endpoint verifies every SigV4 signature against them,
and exports, ARNs and signatures agree across processes.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACCOUNT_ID", "CREDENTIALS", "KEY_ID", "REGION", "SECRET"]

REGION: Final = "eu-south-2"
"""Region of every local client and of the ARNs the emulator makes up. Not ``us-east-1`` and
not any other region older than 2022: for those, AWS CLI v1 replaces SQS's endpoint with its
legacy ``queue.amazonaws.com`` host whatever ``AWS_ENDPOINT_URL_SQS`` says
(``awscli/customizations/overridesslcommonname.py``), and ``wsfanout dev``'s exports must be
all the AWS CLI needs."""

ACCOUNT_ID: Final = "123456789012"
"""Account in those ARNs: moto's default account, so ARNs agree across the local stack."""

KEY_ID: Final = "testing"
SECRET: Final = "testing"  # noqa: S105  (a dummy every local service accepts, not a secret)

CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
"""The credentials as environment variables, for the stack's exports and its child processes."""
