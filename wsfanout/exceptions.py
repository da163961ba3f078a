"""The one exception tree of wsfanout.

Every error the package raises on purpose derives from :class:`WsFanoutError`, grouped by the
layer that detects it::

    WsFanoutError
    ├── ConfigurationError            settings missing or contradictory (no table, no endpoint)
    ├── ConnectionRefused             an app's $connect hook turns a connection away (a 4xx)
    ├── InvalidInputError             a job, frame, target or argument that cannot be accepted
    │   ├── PayloadTooLargeError      payload above API Gateway's 128 KiB, caught before any send
    │   ├── FrameError                a client frame breaks the protocol; carries the error code
    │   └── TemplateError             a SAM/CloudFormation template `wsfanout dev` cannot run
    ├── RegistryError                 a DynamoDB call on the connection registry failed
    │   ├── ConnectionExistsError     a conditional put met an existing connection id
    │   ├── ConnectionNotFoundError   an operation needs a connection the registry lacks
    │   └── MidRunRegistryError       it failed mid-broadcast: carries the report and its resume
    ├── DeliveryError                 the management API refused a job as a whole
    │   └── ForbiddenError            403: wrong endpoint or credentials; the job is aborted
    ├── InvocationError               a local Lambda function failed, with Lambda's errorType
    │   └── InvocationTimeoutError    it outran its timeout and was killed (a TimeoutError too)
    └── QueueError                    SQS would not take a broadcast job

Per-connection outcomes (gone, throttled, transient) are *not* exceptions: the engine counts them
in its report, because one bad connection must never stop a broadcast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core.models import FanoutReport

__all__ = [
    "ConfigurationError",
    "ConnectionExistsError",
    "ConnectionNotFoundError",
    "ConnectionRefused",
    "DeliveryError",
    "ForbiddenError",
    "FrameError",
    "InvalidInputError",
    "InvocationError",
    "InvocationTimeoutError",
    "MidRunRegistryError",
    "PayloadTooLargeError",
    "QueueError",
    "RegistryError",
    "TemplateError",
    "WsFanoutError",
]


class WsFanoutError(Exception):
    """Base of every error wsfanout raises on purpose."""


class ConfigurationError(WsFanoutError):
    """Raised when settings are missing or contradictory, before any AWS call is made."""


class ConnectionRefused(WsFanoutError):  # noqa: N818  (a refusal an app raises, not a failure)
    """Raised by an app's ``$connect`` hook to turn the connection away with ``status`` (a 4xx:
    401 for "who are you?", 403 for "not you", 429 for "not now"); API Gateway answers the
    client's handshake with it and no connection is stored."""

    def __init__(self, status: int = 403, reason: str = "") -> None:
        if not 400 <= status < 500:
            raise ValueError(f"a refused connection is answered with a 4xx status, not {status}")
        super().__init__(reason or f"connection refused ({status})")
        self.status = status
        self.reason = reason

    def __reduce__(self) -> tuple[type[ConnectionRefused], tuple[int, str]]:
        return type(self), (self.status, self.reason)


class InvalidInputError(WsFanoutError, ValueError):
    """Raised when a job, client frame, target or argument cannot be accepted as given."""


class PayloadTooLargeError(InvalidInputError):
    """Raised before the first send when a payload exceeds API Gateway's message limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes; API Gateway accepts at most {limit} bytes")
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[type[PayloadTooLargeError], tuple[int, int]]:
        return type(self), (self.size, self.limit)


class FrameError(InvalidInputError):
    """Raised when a client frame breaks the protocol; ``code`` goes back in the error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[type[FrameError], tuple[str, str]]:
        return type(self), (self.code, str(self))


class TemplateError(InvalidInputError):
    """Raised when a template cannot be run locally; the one-line message names the resource (or
    the template) and says what is supported instead."""


class RegistryError(WsFanoutError):
    """Raised when a DynamoDB call on the connection registry fails."""


class ConnectionExistsError(RegistryError):
    """Raised when storing a connection whose id is already in the registry."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} is already registered")
        self.connection_id = connection_id

    def __reduce__(self) -> tuple[type[ConnectionExistsError], tuple[str]]:
        return type(self), (self.connection_id,)


class ConnectionNotFoundError(RegistryError):
    """Raised when an operation (such as joining a room) needs a connection that is not stored."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} is not in the registry")
        self.connection_id = connection_id

    def __reduce__(self) -> tuple[type[ConnectionNotFoundError], tuple[str]]:
        return type(self), (self.connection_id,)


class MidRunRegistryError(RegistryError):
    """The registry failed mid-run: what had been fetched was sent, then the run stopped.

    ``report`` is what the run did up to there; its ``resume`` is the watermark cursor from which
    a later run reaches exactly the connections not yet attempted (none twice, none missed).
    The message is the registry error's; that error is the ``__cause__``. A subclass of
    :class:`~wsfanout.exceptions.RegistryError`, so callers that catch that still do.
    """

    def __init__(self, message: str, report: FanoutReport) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[type[MidRunRegistryError], tuple[str, FanoutReport]]:
        return type(self), (str(self), self.report)


class DeliveryError(WsFanoutError):
    """Raised when the management API refuses a whole job rather than one connection."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class ForbiddenError(DeliveryError):
    """Raised on a 403 from the management API: the endpoint or credentials are wrong."""


class QueueError(WsFanoutError):
    """Raised when SQS refuses a broadcast job (after retrying the entries it reported failed)."""


class InvocationError(WsFanoutError):
    """Raised by a local Lambda function (:mod:`wsfanout.local.functions`) whose invocation
    failed, carrying what Lambda reports: ``error_type`` (the exception's class name, or a
    runtime fault such as ``Runtime.ImportModuleError``) and ``error_message``, which is also
    ``str(exc)`` (so an authorizer's ``raise Exception("Unauthorized")`` reads as itself)."""

    def __init__(
        self, error_type: str, error_message: str, stack_trace: tuple[str, ...] = ()
    ) -> None:
        super().__init__(error_message)
        self.error_type = error_type
        self.error_message = error_message
        self.stack_trace = stack_trace

    def __reduce__(self) -> tuple[type[InvocationError], tuple[str, str, tuple[str, ...]]]:
        return type(self), (self.error_type, self.error_message, self.stack_trace)


class InvocationTimeoutError(InvocationError, TimeoutError):
    """Raised when a local Lambda function ran past its timeout: its process was killed, as
    Lambda stops the sandbox, and the next invocation starts cold."""
