"""``wsfanout dev --template PATH``: a template's WebSocket API on this machine until Ctrl-C.

The template is read (and refused, with its one line, before anything starts), then run by
:func:`~wsfanout.local.templated.templated_stack`. A template that declares a ``JwtSecret``
parameter (this project's, whose rule wants ``JwtSecret`` or ``JwtPublicKey`` when
``UseAuthorizer`` is ``"true"``) gets a random secret for the run unless ``--parameter`` gives
one of the two; the secret is exported as ``AUTH_JWT_SECRET``, so the token commands mint tokens
this stack accepts, and a development token for the user ``dev`` (allowed to broadcast) is
printed for the demo page's Token field.

With ``reload`` a change under the template's directory retires the functions' warm worker
processes (:meth:`~wsfanout.local.functions.ProcessFunction.recycle`): the next invocation starts
cold with the new code; one in flight finishes on the old code first. The stack itself (moto's
data, the open connections) stays up; a change to the template itself needs a restart.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Final, TextIO

import anyio
import anyio.to_thread
import jwt
from watchfiles import awatch

from ..exceptions import InvalidInputError
from ..settings import Settings
from .stack import (
    STOP_SIGNALS,
    DevOptions,
    Stack,
    _printer,
    describe,
    throttle_of_options,
    until_signalled,
)
from .template import LocalTemplate, load_template
from .template.source import read_template
from .templated import templated_stack

__all__ = ["DEV_USER", "dev_token", "run_template_dev"]

DEV_USER: Final = "dev"
"""The user of the printed development token."""
_TOKEN_LIFETIME_S: Final = 12 * 3600  # a working day; a restart mints a new one
_SECRET_PARAMETER: Final = "JwtSecret"  # noqa: S105  (a parameter's name, no secret)
_PUBLIC_KEY_PARAMETER: Final = "JwtPublicKey"
_Say = Callable[..., None]  # one line out (none: an empty line)


def dev_token(secret: str, parameters: Mapping[str, object], *, user: str = DEV_USER) -> str:
    """An HS256 token for ``user`` that the template's authorizer accepts: signed with
    ``secret``, carrying the broadcast claim, and the ``JwtIssuer``/``JwtAudience`` parameters
    as ``iss``/``aud`` when the template was given them."""
    claims: dict[str, object] = {
        "sub": user,
        "exp": int(time.time()) + _TOKEN_LIFETIME_S,
        str(Settings.model_fields["auth_broadcast_claim"].default): True,
    }
    for parameter, claim in (("JwtIssuer", "iss"), ("JwtAudience", "aud")):
        value = parameters.get(parameter)
        if isinstance(value, str) and value:
            claims[claim] = value
    return jwt.encode(claims, secret, algorithm="HS256")


def _with_dev_secret(path: Path, parameters: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The parameters, with a random ``JwtSecret`` when the template declares one and neither
    it nor ``JwtPublicKey`` is given; and the secret in force (``""``: none)."""
    values = dict(parameters)
    declared = read_template(path).get("Parameters") or {}
    if _SECRET_PARAMETER not in declared:
        return values, ""
    if _SECRET_PARAMETER not in values and not values.get(_PUBLIC_KEY_PARAMETER):
        values[_SECRET_PARAMETER] = secrets.token_urlsafe(32)
    return values, values.get(_SECRET_PARAMETER, "")


def run_template_dev(options: DevOptions, *, out: TextIO | None = None) -> int:
    """Run ``options.template`` until SIGINT, SIGTERM or SIGHUP, printing where everything is;
    returns 0. ``options.stage`` overrides the template's stage; ``options.reload`` restarts
    the functions cold when a file under the template's directory changes.

    :raises TemplateError: the template cannot be read or run (nothing has started).
    :raises InvalidInputError: a stage or function setting AWS would refuse.
    """
    if options.template is None:
        raise InvalidInputError("no template to run")
    values, secret = _with_dev_secret(options.template, options.parameters)
    template = load_template(options.template, values)
    return anyio.run(_dev, template, secret, options, out or sys.stdout)


async def _dev(template: LocalTemplate, secret: str, options: DevOptions, out: TextIO) -> int:
    say = _printer(out)
    throttle = throttle_of_options(options)
    # Signals are taken before anything starts, so Ctrl-C during start-up still shuts down in
    # order (it is acted on once the stack is up) instead of leaving moto running.
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with templated_stack(
            template,
            port=options.port,
            stage=options.stage,
            limits=options.limits,
            moto_port=options.moto_port,
            throttle=throttle,
        ) as stack:
            shown = (
                replace(stack, env={**stack.env, "AUTH_JWT_SECRET": secret}) if secret else stack
            )
            first = [("template", str(template.path))]
            if secret:
                token = dev_token(secret, template.parameters)
                first.append(("token", f"{token}  (user {DEV_USER})"))
            describe(
                shown, say, first, limits=options.limits, throttle=throttle, notes=template.notes
            )
            async with anyio.create_task_group() as tasks:
                if options.reload:
                    tasks.start_soon(_recycle_on_change, template.path.parent.resolve(), stack, say)
                await until_signalled(signals, say)
                tasks.cancel_scope.cancel()
    say("wsfanout dev: stopped")
    return 0


async def _recycle_on_change(directory: Path, stack: Stack, say: _Say) -> None:
    say(f"wsfanout dev: watching {directory} (a change restarts the functions cold)")
    async for changes in awatch(directory):
        names = sorted({Path(path).name for _change, path in changes})
        for function in stack.functions.values():
            await anyio.to_thread.run_sync(function.recycle)
        say(f"wsfanout dev: {', '.join(names)} changed, functions restart cold")
