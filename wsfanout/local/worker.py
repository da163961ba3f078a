"""One warm Lambda container's runtime: ``python -u -m wsfanout.local.worker HANDLER FD``.

:class:`wsfanout.local.functions.ProcessFunction` starts this in a process of its own, with the
function's environment, and talks to it over ``FD``, one end of a socket pair: the handler's
prints and logs go to stdout and stderr, which the parent reads as logs, so they can never
corrupt a message. Each message is a 4-byte big-endian length and that many bytes of JSON.

What it does is what Lambda's Python runtime interface client does: import ``HANDLER``
(``package.module.attribute``) once, at start (the init phase), and report ``{"ready": true}``,
or ``{"init_error": {...}}`` with Lambda's error types (``Runtime.ImportModuleError``,
``Runtime.HandlerNotFound``...) and exit 1 when the import fails. It installs Lambda's root
logging handler first, so a handler's ``logging.warning`` is seen as on AWS. Then, for each
``{"event", "request_id", "remaining_ms"}`` it receives, it calls the handler with a
:class:`~wsfanout.aws.events.LambdaContext` whose remaining time runs down from
``remaining_ms``, and answers ``{"result": ...}`` or ``{"error": {"errorType", "errorMessage",
"stackTrace"}}``, plus the duration and peak memory for the parent's ``REPORT`` line. The
result is serialised as the runtime does (``Decimal`` as a number; anything else that JSON
cannot hold is a ``Runtime.MarshalError``). It ends when the parent closes the socket.
"""

from __future__ import annotations

import decimal
import importlib
import json
import logging
import os
import resource
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, Final

from ..aws.events import LambdaContext

__all__ = ["decode", "encode", "receive", "send"]

_HEADER: Final = struct.Struct(">I")
# Lambda's root logging handler, so a handler's logging.warning(...) shows as it would on AWS.
_LOG_FORMAT: Final = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"

Handler = Callable[[Any, Any], Any]


def _decimal(value: object) -> float:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode(message: Any) -> bytes:
    """``message`` as one frame (serialised as Lambda's runtime serialises results).

    :raises TypeError: a value JSON cannot hold. :raises ValueError: a circular reference.
    """
    body = json.dumps(message, default=_decimal).encode()
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> Any:
    """One frame's body, as sent by :func:`encode`."""
    return json.loads(body)


def send(channel: socket.socket, message: Any) -> None:
    """Write one frame."""
    channel.sendall(encode(message))


def receive(channel: socket.socket) -> Any | None:
    """Read one frame (blocking, or until the socket's timeout); ``None`` at the end of the
    stream (the other side closed or died).

    :raises TimeoutError: the socket's timeout passed first.
    """
    header = _read(channel, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    body = _read(channel, size)
    return None if body is None else decode(body)


def _read(channel: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = channel.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _fault(error_type: str, message: str) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message, "stackTrace": []}


def _failure(exc: BaseException) -> dict[str, Any]:
    """Lambda's error result for an exception: its class, message and traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_list(frames[1:] or frames),  # without our own frame
    }


def _load(spec: str) -> Handler | dict[str, Any]:
    """The handler ``spec`` names, or Lambda's error result for why it cannot be had."""
    module_name, dot, attribute = spec.rpartition(".")
    if not dot or not module_name:
        return _fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': no module given")
    if module_name.split(".")[0] in sys.builtin_module_names:
        return _fault(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name} as a handler module",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        return _fault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        )
    except SyntaxError as exc:
        return _fault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
        )
    except Exception as exc:  # any failure of the user's module is reported, as Lambda does
        return _failure(exc)
    handler = getattr(module, attribute, None)
    if handler is None:
        return _fault(
            "Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'"
        )
    return handler  # type: ignore[no-any-return]  # a user's attribute: called, checked by use


class _RequestId(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _log_error(error: dict[str, Any]) -> None:
    """What Lambda's runtime writes to the log for a failed init or invocation."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error["stackTrace"]:
        lines += ["Traceback (most recent call last):", *error["stackTrace"]]
    sys.stderr.write("\n".join(line.rstrip("\n") for line in lines) + "\n")


def _peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux


def serve(spec: str, channel: socket.socket) -> int:
    """Initialise ``spec``, then run invocations from ``channel`` until it closes; return the
    exit status (1 after an init error, as Lambda's runtime exits)."""
    request_ids = _RequestId()
    root = logging.StreamHandler(sys.stderr)
    root.setFormatter(logging.Formatter(_LOG_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    root.formatter.converter = time.gmtime  # type: ignore[union-attr]  # set just above
    root.addFilter(request_ids)
    logging.getLogger().addHandler(root)

    loaded = _load(spec)
    if isinstance(loaded, dict):
        _log_error(loaded)
        send(channel, {"init_error": loaded})
        return 1
    send(channel, {"ready": True})

    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    while (request := receive(channel)) is not None:
        context = LambdaContext(
            request["remaining_ms"] / 1000,
            function_name=name,
            memory_limit_in_mb=memory,
            aws_request_id=request["request_id"],
            log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
        )
        request_ids.request_id = context.aws_request_id
        began = time.perf_counter()
        message: dict[str, Any]
        try:
            message = {"result": loaded(request["event"], context)}
        except Exception as exc:  # the handler's failure is its result
            message = {"error": _failure(exc)}
        report = {
            "duration_ms": (time.perf_counter() - began) * 1000,
            "max_mb": _peak_mb(),
        }
        try:
            frame = encode({**message, **report})
        except (TypeError, ValueError, RecursionError) as exc:  # what json.dumps raises
            message = {
                "error": _fault("Runtime.MarshalError", f"Unable to marshal response: {exc}")
            }
            frame = encode({**message, **report})
        if "error" in message:
            _log_error(message["error"])
        channel.sendall(frame)
    _close_runtimes()
    return 0


def _close_runtimes() -> None:
    """Close wsfanout's container runtime, if the handler made one: a Lambda sandbox is frozen
    and dropped instead, but a local worker exits, and an aiohttp session left open at exit
    prints "Unclosed client session" into the developer's terminal."""
    runtime = sys.modules.get("wsfanout.handlers.runtime")
    if runtime is not None:
        runtime.close_all_runtimes()


def main(argv: list[str] | None = None) -> int:
    """``HANDLER FD``: serve on the inherited socket ``FD``."""
    spec, fd = argv if argv is not None else sys.argv[1:]
    with socket.socket(fileno=int(fd)) as channel:
        return serve(spec, channel)


if __name__ == "__main__":
    sys.exit(main())
