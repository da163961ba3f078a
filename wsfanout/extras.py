"""Which optional extra brings which import, and the one-line error that names it.

``pip install wsfanout`` brings what a sender needs (the fan-out engine, the registry, the
gateways, the job queue and the App's ``async with app: await app.send(...)``). The rest is an
extra, imported only where it is used, so a module that needs one says which when it is missing:

- ``lambda``: AWS Lambda Powertools and PyJWT, for the handlers, the App's Lambda side
  (``app.lambda_handler``, ``app.handle``, the test client) and token verification;
- ``cli``: rich, for the ``wsfanout`` command;
- ``local``: moto, websockets and watchfiles, for ``wsfanout dev`` and ``wsfanout demo``;
- ``client``: websockets, for the Python client (:mod:`wsfanout.client`).
"""

from __future__ import annotations

from .exceptions import ConfigurationError

__all__ = ["EXTRAS", "install_hint", "missing_extra"]

EXTRAS: dict[str, frozenset[str]] = {
    "lambda": frozenset({"aws_lambda_powertools", "jwt", "cryptography"}),
    "cli": frozenset({"rich"}),
    "local": frozenset({"moto", "websockets", "watchfiles"}),
    "client": frozenset({"websockets"}),
}
"""Each extra and the top-level modules it installs that wsfanout imports."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, quoted for a POSIX shell."""
    return f"pip install 'wsfanout[{extra}]'"


def missing_extra(extra: str, error: ModuleNotFoundError) -> Exception:
    """What to raise for ``error``: a one-line :class:`ConfigurationError` naming ``extra`` when
    the missing module is one that extra installs, else ``error`` itself (a bug or a broken
    install is not hidden behind advice to install an extra).

    Use as ``except ModuleNotFoundError as exc: raise missing_extra("lambda", exc) from None``.
    """
    root = (error.name or "").partition(".")[0]
    if root not in EXTRAS[extra]:
        return error
    return ConfigurationError(
        f"{root} is not installed; it comes with the [{extra}] extra: {install_hint(extra)}"
    )
