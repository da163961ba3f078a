"""Lambda functions run as Lambda runs them: each warm container is a process of its own.

The emulator and the SQS poller call handlers from container threads; run in-process, every
function would share one environment and one set of module state (Powertools' Metrics
singleton, the stack's process-wide environment swap). A :class:`ProcessFunction` is a
:data:`~wsfanout.local.emulator.Handler` like any other, so they call it unchanged, but each
call is handed to a worker process (:mod:`wsfanout.local.worker`) that plays one sandbox:

* **environment**: exactly the function's ``environment`` plus what Lambda injects
  (``AWS_LAMBDA_FUNCTION_NAME``, ``_HANDLER``, ``LAMBDA_TASK_ROOT``, the region...), never the
  developer's own variables: an ``AWS_PROFILE`` or a real endpoint cannot leak into a local
  run. The role's credentials are the caller's to pass in ``environment``. AWS config files
  point at ``os.devnull``, as a sandbox has none.
* **code**: ``handler`` (``package.module.attribute``) is imported from ``code_dir`` (first on
  ``sys.path``, and the working directory), then from ``import_paths`` (a template's directory,
  when its code runs from the installed environment), then from this environment's import
  path, once per process, when it starts: the cold start, logged as ``Init Duration`` on the
  first ``REPORT`` line. Later invocations reuse the process and its module state (warm).
* **concurrency**: at most ``concurrency`` processes; a call beyond that waits for one to be
  idle (Lambda would throttle; the emulator wants an answer, not a throttle).
* **failures**, with Lambda's ``errorType`` and ``errorMessage`` on an
  :class:`~wsfanout.exceptions.InvocationError` whose ``str()`` is the message: a handler that
  raises (the process stays warm); an import that fails (``Runtime.ImportModuleError`` and
  friends); a process that dies (``Runtime.ExitError``); a call that runs past the function's
  timeout, or past the caller's context's remaining time when that is less
  (:class:`~wsfanout.exceptions.InvocationTimeoutError`, a ``TimeoutError``: the process group is
  killed, as Lambda stops the sandbox). After the last three the next call starts cold.

The handler's stdout and stderr are read as they come, on threads, and logged line by line to
``wsfanout.local.functions.<name>`` prefixed with ``[name]``, so a chatty handler never blocks
on a full pipe and nothing it wrote before exiting is lost. The protocol runs on a socket pair
of its own (see :mod:`wsfanout.local.worker`), which prints cannot reach.

A caller that stops waiting (the emulator's integration timeout) leaves its thread in the call;
the invocation finishes (or times out) there and its process goes back to the pool.
:meth:`ProcessFunction.recycle` retires the warm processes (the code changed): idle ones stop
now, busy ones finish their invocation on the old code and stop then; the next call starts cold.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from ..aws.account import REGION
from ..exceptions import (
    ConfigurationError,
    InvalidInputError,
    InvocationError,
    InvocationTimeoutError,
)
from .worker import receive, send

__all__ = ["ProcessFunction"]

_INIT_TIMEOUT_S: Final = 10.0  # Lambda's limit on the init phase (the handler's import)
_MAX_TIMEOUT_S: Final = 900.0  # Lambda's limit on a function's timeout
_MEMORY_MB: Final = (128, 10240)  # Lambda's range
_STOP_GRACE_S: Final = 5.0  # how long an idle worker may take to exit once told to
_LINE_MAX: Final = 64 * 1024  # a longer line is logged in pieces (bounded memory)
_VERSION: Final = "$LATEST"
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Lambda's function names
# What Lambda sets itself and refuses in a function's configuration: here they follow from
# the constructor's arguments, so setting them in ``environment`` is an error.
_RESERVED: Final = frozenset(
    {
        "_HANDLER",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "LAMBDA_TASK_ROOT",
    }
)


def _import_path() -> list[str]:
    """This process's import path without the standard library (the child's interpreter has
    its own): the running environment's packages, editable installs included, for the child."""
    paths = sysconfig.get_paths()
    stdlib = {
        paths["stdlib"],
        paths["platstdlib"],
        os.path.join(paths["platstdlib"], "lib-dynload"),
    }
    return [p for p in sys.path if p and p not in stdlib and os.path.isdir(p)]


def _error(payload: Mapping[str, Any]) -> InvocationError:
    """The exception for Lambda's error result (``errorType``, ``errorMessage``...)."""
    return InvocationError(
        payload["errorType"], payload["errorMessage"], tuple(payload.get("stackTrace") or ())
    )


def _exit_reason(code: int) -> str:
    """How Lambda words a runtime's exit: ``exit status 1``, ``signal: killed``."""
    if code >= 0:
        return f"exit status {code}"
    name = signal.strsignal(-code) or f"signal {-code}"
    return f"signal: {name.lower()}"


class _Worker:
    """One sandbox: the process, the parent's end of its socket, and its two log readers."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: str, log: logging.Logger
    ) -> None:
        self.name = name
        self.log = log
        parent, child = socket.socketpair()
        try:
            self.process = subprocess.Popen(  # noqa: S603  (our interpreter and module; no shell)
                [*argv, str(child.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                pass_fds=(child.fileno(),),
                # Its own process group: Ctrl-C reaches the parent, which stops it in order, and
                # a kill takes whatever the handler started along with it.
                start_new_session=True,
            )
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        self.started = time.perf_counter()
        self.generation = 0  # the function's generation it was started in
        self.init_ms: float | None = None  # set once ready; reported on the first REPORT line
        self.channel = parent
        self.alive = True
        self._lock = threading.Lock()
        self._stopped = False
        assert self.process.stdout is not None  # noqa: S101  (PIPE was requested)
        assert self.process.stderr is not None  # noqa: S101  (PIPE was requested)
        self._readers = [
            threading.Thread(target=self._drain, args=(pipe,), daemon=True, name=f"{log.name}-log")
            for pipe in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _drain(self, pipe: IO[bytes]) -> None:
        prefix = f"[{self.name}]"
        for line in iter(lambda: pipe.readline(_LINE_MAX), b""):
            self.log.info("%s %s", prefix, line.decode(errors="replace").rstrip("\r\n"))

    def wait_ready(self, limit_s: float) -> None:
        """Wait for the handler's import (the init phase).

        :raises InvocationError: the import failed, or the process died.
        :raises InvocationTimeoutError: it took longer than ``limit_s``.
        """
        self.channel.settimeout(limit_s)
        try:
            message = receive(self.channel)
        except TimeoutError:
            self.alive = False
            raise InvocationTimeoutError(
                "Sandbox.Timedout", f"Init phase timed out after {limit_s:.2f} seconds"
            ) from None
        except OSError:
            message = None
        if message is None:
            self.alive = False
            raise self._exited("init")
        if "init_error" in message:
            self.alive = False
            raise _error(message["init_error"])
        self.init_ms = (time.perf_counter() - self.started) * 1000

    def invoke(self, event: Any, request_id: str, budget_s: float) -> dict[str, Any]:
        """Run one invocation; return the worker's answer (``result`` or ``error``, and the
        figures of the ``REPORT`` line). ``alive`` turns false when the sandbox is done for.

        :raises InvocationTimeoutError: no answer within ``budget_s`` (the worker is killed).
        :raises InvocationError: the event is not JSON, or the process died.
        """
        request = {"event": event, "request_id": request_id, "remaining_ms": budget_s * 1000}
        self.channel.settimeout(None)
        try:
            send(self.channel, request)
        except (TypeError, ValueError):
            raise InvocationError(
                "InvalidRequestContentException", "Could not parse request body into json"
            ) from None
        except OSError:
            self.alive = False
            raise self._exited(request_id) from None
        self.channel.settimeout(budget_s)  # per read: the first byte comes when the call ends
        try:
            answer = receive(self.channel)
        except TimeoutError:
            self.alive = False
            self.kill()
            self.log.warning("%s Task timed out after %.2f seconds", request_id, budget_s)
            raise InvocationTimeoutError(
                "Sandbox.Timedout", f"Task timed out after {budget_s:.2f} seconds"
            ) from None
        except OSError:
            answer = None
        if answer is None:
            self.alive = False
            raise self._exited(request_id)
        return answer  # type: ignore[no-any-return]  # the worker's answer, a JSON object

    def _exited(self, request_id: str) -> InvocationError:
        try:
            code = self.process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:  # the socket broke but the process lives on
            self.kill()
            code = -signal.SIGKILL
        return InvocationError(
            "Runtime.ExitError",
            f"RequestId: {request_id} Error: Runtime exited with error: {_exit_reason(code)}",
        )

    def kill(self) -> None:
        """Kill its process group now, as Lambda stops a sandbox."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, grace_s: float) -> None:
        """End the process: an idle one is told to (the end of its stream) and given
        ``grace_s`` to exit; then it, and anything the handler left running, is killed. Waits
        for its log readers, bounded. Idempotent, from any thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if grace_s > 0:
            with suppress(OSError):
                self.channel.shutdown(socket.SHUT_WR)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        self.kill()
        self.process.wait()
        self.channel.close()
        for reader in self._readers:
            reader.join(_STOP_GRACE_S)  # a child the handler started may still hold a pipe
        for reader, pipe in zip(
            self._readers, (self.process.stdout, self.process.stderr), strict=True
        ):
            if pipe is not None and not reader.is_alive():
                pipe.close()


class ProcessFunction:
    """A Lambda function whose warm containers are processes; call it as a handler.

    ``name`` is the function's name (its logs, ``context.function_name``, the injected
    variables); ``handler`` is Lambda's ``Handler`` setting, ``package.module.attribute``;
    ``timeout_s`` is the function's timeout; ``python`` the interpreter the workers run;
    ``import_paths`` are directories put on its import path after ``code_dir``.
    See the module docstring for what a call does.

    :raises InvalidInputError: a setting Lambda would refuse (an empty name, a handler without
        a module, a timeout outside (0, 900] s, memory outside 128..10240 MB, a concurrency
        below 1, a ``code_dir`` that is not a directory, an ``environment`` that sets one of
        Lambda's own variables or holds a value that is not a string).
    """

    def __init__(
        self,
        name: str,
        handler: str,
        *,
        code_dir: Path | None,
        environment: Mapping[str, str],
        timeout_s: float,
        memory_mb: int = 128,
        concurrency: int = 1,
        python: str = sys.executable,
        import_paths: Sequence[Path] = (),
    ) -> None:
        if not _NAME.fullmatch(name):
            raise InvalidInputError(
                f"not a function name: {name!r} (1 to 64 letters, digits, '-' or '_')"
            )
        module, dot, attribute = handler.rpartition(".")
        if not dot or not module or not attribute or any(c.isspace() for c in handler):
            raise InvalidInputError(
                f"{name}: handler must be module.attribute (as in app.handler), got {handler!r}"
            )
        if not 0 < timeout_s <= _MAX_TIMEOUT_S:
            raise InvalidInputError(f"{name}: timeout must be in (0, 900] seconds, not {timeout_s}")
        if not _MEMORY_MB[0] <= memory_mb <= _MEMORY_MB[1]:
            raise InvalidInputError(f"{name}: memory must be 128 to 10240 MB, not {memory_mb}")
        if concurrency < 1:
            raise InvalidInputError(f"{name}: concurrency must be at least 1")
        if code_dir is not None and not code_dir.is_dir():
            raise InvalidInputError(f"{name}: code directory {code_dir} is not a directory")
        reserved = sorted(_RESERVED & set(environment))
        if reserved:
            raise InvalidInputError(f"{name}: Lambda sets {', '.join(reserved)} itself")
        bad = sorted(k for k, v in environment.items() if not isinstance(v, str))
        if bad:
            raise InvalidInputError(f"{name}: environment values must be strings: {bad}")
        self.name = name
        self.handler = handler
        self.code_dir = code_dir.resolve() if code_dir is not None else None
        self.import_paths = tuple(path.resolve() for path in import_paths)
        self.environment = dict(environment)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.concurrency = concurrency
        self.python = python
        self.log = logging.getLogger(f"{__name__}.{name}")
        self._scratch: str | None = None  # the task root when there is no code_dir
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self._generation = 0  # bumped by recycle(): workers of an older one are not kept

    @property
    def pids(self) -> frozenset[int]:
        """The process ids of the running workers (busy or idle)."""
        with self._cond:
            return frozenset(w.pid for w in self._workers)

    # -- a call ----------------------------------------------------------------------------------

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        """One invocation: ``event`` to an idle worker (or a new one), its result back.

        ``context`` lends its ``aws_request_id`` and ``get_remaining_time_in_millis()``, when
        it has them. Returns the handler's result, decoded from JSON.

        :raises InvocationError: the handler raised, failed to import, its result is not JSON
            (``Runtime.MarshalError``), or its process died; ``str(exc)`` is Lambda's message.
        :raises InvocationTimeoutError: the call outran its time; the worker was killed.
        :raises ConfigurationError: the function was closed, or its interpreter cannot start.
        """
        request_id = str(getattr(context, "aws_request_id", "") or uuid.uuid4())
        worker = self._checkout()
        try:
            remaining = getattr(context, "get_remaining_time_in_millis", None)
            budget = self.timeout_s
            if callable(remaining):
                budget = min(budget, remaining() / 1000)
            if budget <= 0:  # the caller's time ran out while it queued: nothing to run
                raise InvocationTimeoutError(
                    "Sandbox.Timedout", f"Task timed out after {max(budget, 0):.2f} seconds"
                )
            started = time.perf_counter()
            self.log.debug("[%s] START RequestId: %s Version: %s", self.name, request_id, _VERSION)
            answer = worker.invoke(event, request_id, budget)
            self._report(worker, request_id, answer, (time.perf_counter() - started) * 1000)
        finally:
            self._checkin(worker)
        if "error" in answer:
            raise _error(answer["error"])
        return answer["result"]

    def _report(self, worker: _Worker, request_id: str, answer: dict[str, Any], ms: float) -> None:
        """Lambda's ``REPORT`` line (the handler's own duration, measured in the worker)."""
        duration = float(answer.get("duration_ms", ms))
        init = f" Init Duration: {worker.init_ms:.2f} ms" if worker.init_ms is not None else ""
        worker.init_ms = None  # only the first invocation of a sandbox reports its init
        self.log.debug("[%s] END RequestId: %s", self.name, request_id)
        self.log.info(
            "[%s] REPORT RequestId: %s Duration: %.2f ms Billed Duration: %d ms "
            "Memory Size: %d MB Max Memory Used: %d MB%s",
            self.name,
            request_id,
            duration,
            max(1, int(duration + 0.999)),
            self.memory_mb,
            int(answer.get("max_mb", 0)),
            init,
        )

    # -- the pool --------------------------------------------------------------------------------

    def _checkout(self) -> _Worker:
        """An idle worker, else a new one (started cold, here, outside the lock), else wait."""
        doomed: list[_Worker] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise ConfigurationError(f"function {self.name} is closed")
                    while self._idle:
                        worker = self._idle.pop()
                        if worker.process.poll() is None:
                            return worker
                        self._workers.discard(worker)  # died while idle: replace it
                        doomed.append(worker)
                    if len(self._workers) + self._starting < self.concurrency:
                        self._starting += 1
                        break
                    self._cond.wait()
        finally:
            for worker in doomed:
                worker.stop(0)
        return self._start()

    def _start(self) -> _Worker:
        with self._cond:
            generation = self._generation
        try:
            worker = _Worker(self.name, self._argv(), self._env(), self._task_root(), self.log)
            worker.generation = generation
        except OSError as exc:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            raise ConfigurationError(f"{self.name}: cannot start {self.python}: {exc}") from None
        with self._cond:
            self._starting -= 1
            self._workers.add(worker)
            closed = self._closed
        if closed:
            self._checkin(worker)
            raise ConfigurationError(f"function {self.name} is closed")
        try:
            worker.wait_ready(_INIT_TIMEOUT_S)
        except BaseException:
            self._checkin(worker)
            raise
        return worker

    def _checkin(self, worker: _Worker) -> None:
        """Back to the idle pool, or, when its sandbox is done for (or the function closed),
        stopped; either way one waiting caller may go on."""
        with self._cond:
            keep = (
                worker.alive
                and not self._closed
                and worker in self._workers
                and worker.generation == self._generation
            )
            if keep:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
            self._cond.notify()
        if not keep:
            worker.stop(_STOP_GRACE_S if worker.alive else 0)

    def close(self) -> None:
        """Stop every worker: idle ones exit, busy ones are killed (their callers get a
        ``Runtime.ExitError``), and callers still waiting for a worker get
        :class:`ConfigurationError`. Returns once every process has ended. Idempotent, from
        any thread."""
        with self._cond:
            self._closed = True
            idle = set(self._idle)
            workers, self._workers, self._idle = list(self._workers), set(), []
            self._cond.notify_all()
        for worker in workers:
            worker.stop(_STOP_GRACE_S if worker in idle else 0)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def recycle(self) -> None:
        """Retire every warm process so that the next call starts cold (its code changed):
        idle ones stop now; a busy one finishes its invocation on the code it loaded, then
        stops instead of going back to the pool. Unlike :meth:`close`, the function stays
        usable. Returns once the idle ones have ended; from any thread."""
        with self._cond:
            self._generation += 1
            idle, self._idle = self._idle, []
            self._workers.difference_update(idle)
        for worker in idle:
            worker.stop(_STOP_GRACE_S)

    def __enter__(self) -> ProcessFunction:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- a worker's process ----------------------------------------------------------------------

    def _argv(self) -> list[str]:
        # -u: unbuffered, as Lambda's runtime makes stdout and stderr, so prints are logged now
        # and survive a kill.
        return [self.python, "-u", "-m", "wsfanout.local.worker", self.handler]

    def _task_root(self) -> str:
        if self.code_dir is not None:
            return str(self.code_dir)
        with self._cond:
            if self._scratch is None:
                self._scratch = tempfile.mkdtemp(prefix=f"wsfanout-{self.name}-")
            return self._scratch

    def _env(self) -> dict[str, str]:
        """What the sandbox's environment holds: Lambda's variables, then ``environment``."""
        root = self._task_root()
        paths = [str(self.code_dir)] if self.code_dir is not None else []
        paths += [str(path) for path in self.import_paths]
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return {
            "PATH": os.pathsep.join(
                [str(Path(self.python).parent), "/usr/local/bin:/usr/bin:/bin"]
            ),
            "PYTHONPATH": os.pathsep.join([*paths, *_import_path()]),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": root,
            "_HANDLER": self.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": _VERSION,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{day}/[{_VERSION}]{secrets.token_hex(16)}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # A sandbox has no AWS config files; the developer's must not apply.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **self.environment,
        }
