"""``wsfanout token --sub U``: a development JWT the ``$connect`` authorizer accepts.

Signed HS256 with ``AUTH_JWT_SECRET``, with the claims :func:`wsfanout.core.auth.verify_token`
checks: ``sub``, ``exp`` (and ``iat``), ``iss`` and ``aud`` when ``AUTH_JWT_ISSUER`` /
``AUTH_JWT_AUDIENCE`` are set, and the broadcast claim (``AUTH_BROADCAST_CLAIM``) with
``--broadcast``. Without a secret it refuses (an RS256 deployment signs with a private key this
tool never sees). The secret is never printed. The module is named ``tokens`` so that it can
never shadow the standard library's ``token``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from ..exceptions import ConfigurationError
from .arguments import identifier
from .output import EXIT_OK, add_json_option, emit, epoch_text, settings_of

__all__ = ["add_token_command", "duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd]?)")
_MAX_TTL_S = 366 * 86400
_sub = identifier("user")


def duration(text: str) -> int:
    """Seconds from ``90``, ``90s``, ``30m``, ``1h`` or ``7d``: at least 1 s, at most 366 days."""
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"not a duration such as 3600, 30m, 1h or 7d: {text!r}")
    seconds = int(found[1]) * _UNITS[found[2] or "s"]
    if not 1 <= seconds <= _MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"must be between 1 s and 366 days: {text}")
    return seconds


def add_token_command(commands: Any) -> None:
    """Add ``token`` to the ``wsfanout`` subcommands."""
    token = commands.add_parser(
        "token",
        help="mint a development JWT with the configured AUTH_JWT_SECRET",
        description="Print an HS256 JWT for user SUB, signed with $AUTH_JWT_SECRET and carrying "
        "the issuer and audience when configured, for ?token= on the WebSocket URL. Only the "
        "token is printed (TOKEN=$(wsfanout token --sub u_1) works); never the secret.",
    )
    token.add_argument("--sub", required=True, type=_sub, help="the user id (the token's sub)")
    token.add_argument(
        "--broadcast",
        action="store_true",
        help="let the user broadcast (sets the AUTH_BROADCAST_CLAIM claim, default 'broadcast')",
    )
    token.add_argument(
        "--ttl", type=duration, default=3600, help="lifetime: 3600, 30m, 1h, 7d (default: 1h)"
    )
    add_json_option(token)
    token.set_defaults(run=_cmd_token)


def _cmd_token(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    secret = settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else ""
    if not secret:
        raise ConfigurationError("no secret to sign with: set AUTH_JWT_SECRET (HS256)")
    try:
        import jwt  # noqa: PLC0415  (PyJWT belongs to the Lambda side; only this command needs it)
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "minting tokens needs PyJWT: pip install 'wsfanout[lambda]'"
        ) from None
    now = int(time.time())
    claims: dict[str, Any] = {"sub": args.sub, "iat": now, "exp": now + args.ttl}
    if settings.auth_jwt_issuer is not None:
        claims["iss"] = settings.auth_jwt_issuer
    if settings.auth_jwt_audience is not None:
        claims["aud"] = settings.auth_jwt_audience
    if args.broadcast:
        claims[settings.auth_broadcast_claim] = True
    token = jwt.encode(claims, secret, algorithm="HS256")
    if args.json:
        document = {
            "token": token,
            "sub": args.sub,
            "broadcast": args.broadcast,
            "expiresAt": epoch_text(claims["exp"]),
        }
        emit(args, document)
    else:
        sys.stdout.write(token + "\n")
    return EXIT_OK
