"""The whole system on one machine: moto, the API Gateway emulator, the SQS mapping, and the real
handlers running in this process as Lambda would run them.

Nothing here is a second implementation of wsfanout: the route handler, the authorizer and the
broadcast worker are the deployed entrypoints, called with the events and contexts AWS would
build. What differs is only what stands around them:

* moto server (DynamoDB, SQS) in its own process, for the registry table and the broadcast queue
  with its dead-letter queue, created here the way the deploy template creates them;
* the emulator (:mod:`wsfanout.local.emulator`) for API Gateway: sockets, route events, the
  management endpoint and a small test page;
* :class:`~wsfanout.local.poller.SqsPoller` for the event source mapping that feeds the broadcast
  worker.

The handlers read their configuration from the environment, as a deployed function does, so the
stack *sets the process environment* for as long as it runs (table, queue, moto's endpoints,
dummy credentials and region) and restores it afterwards. The developer's own ``AWS_*``
variables and AWS config files are hidden meanwhile, so a profile or a real endpoint can never
leak into a local run. Because the environment belongs to the process, one stack runs at a time.
``APIGW_MANAGEMENT_ENDPOINT`` is left unset unless asked for: on AWS the route handler derives
the endpoint from each event, and the local stack exercises that path.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar
from urllib.parse import urlsplit

import aioboto3
import anyio
import anyio.to_thread

from ..aws.account import CREDENTIALS, REGION
from ..aws.endpoints import STAGE_NAME
from ..aws.table import TTL_ATTRIBUTE, table_definition
from ..exceptions import ConfigurationError, InvalidInputError
from ..handlers import authorizer, broadcast, route
from ..settings import Settings
from . import containers
from .apps import load_handler
from .emulator import Emulator, Handler, Limits, serve_emulator
from .functions import ProcessFunction
from .management import AccountThrottle
from .poller import SqsPoller
from .processes import moto_server

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

__all__ = ["DevOptions", "Stack", "check_stage", "local_stack", "run_dev", "stack_env"]

T = TypeVar("T")

TABLE: Final = "wsfanout-connections"
QUEUE: Final = "wsfanout-broadcast"
DEAD_LETTER_QUEUE: Final = "wsfanout-broadcast-dlq"
# What a deployed function could not see either; hidden while the stack runs.
_HIDDEN: Final = ("CONNECTIONS_TABLE", "BROADCAST_QUEUE_URL", "APIGW_MANAGEMENT_ENDPOINT")
_EXPORTED: Final = (
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SQS",
    "CONNECTIONS_TABLE",
    "BROADCAST_QUEUE_URL",
    "BROADCAST_DLQ_URL",
    "APIGW_MANAGEMENT_ENDPOINT",
    "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AUTH_JWT_SECRET",  # a templated stack's development secret (wsfanout.local.dev_template)
)

_running = False  # one stack per process: the environment it sets is the process's


def check_stage(stage: str) -> str:
    """Return ``stage`` if API Gateway would accept it as a stage name, else raise
    :class:`~wsfanout.exceptions.InvalidInputError`."""
    if not STAGE_NAME.fullmatch(stage):
        raise InvalidInputError(
            f"not a stage name: {stage!r} (1 to 128 letters, digits, '-' or '_')"
        )
    return stage


@dataclass(frozen=True)
class Stack:
    """Where everything of a running local stack is, and what a second shell needs to use it.

    ``table``, ``queue_url`` and ``dlq_url`` are the registry table, the broadcast queue and its
    dead-letter queue; ``tables`` and ``queues`` (URLs) hold every table and queue by the
    template's logical id. ``poller`` is the broadcast queue's mapping (``None`` when a template
    has no mapping), ``pollers`` every mapping by logical id; ``functions`` are a templated
    stack's Lambda functions (:class:`~wsfanout.local.functions.ProcessFunction`) by logical id,
    empty when the handlers run in this process.
    """

    ws_url: str
    management_url: str
    page_url: str
    moto_url: str
    table: str
    queue_url: str
    dlq_url: str
    emulator: Emulator
    poller: SqsPoller | None
    env: Mapping[str, str] = field(default_factory=dict)
    tables: Mapping[str, str] = field(default_factory=dict)
    queues: Mapping[str, str] = field(default_factory=dict)
    functions: Mapping[str, ProcessFunction] = field(default_factory=dict)
    pollers: Mapping[str, SqsPoller] = field(default_factory=dict)

    @classmethod
    def serving(
        cls,
        base: str,
        stage: str,
        *,
        region: str,
        moto_url: str,
        management_url: str,
        table: str,
        queue_url: str,
        dlq_url: str,
        emulator: Emulator,
        poller: SqsPoller | None,
        tables: Mapping[str, str],
        queues: Mapping[str, str],
        pollers: Mapping[str, SqsPoller],
        functions: Mapping[str, ProcessFunction] | None = None,
    ) -> Stack:
        """The stack whose emulator serves at ``base`` (``http://host:port``) with ``stage``: its
        WebSocket and page URLs, and the environment :func:`stack_env` makes of the rest."""
        return cls(
            ws_url=f"ws://{urlsplit(base).netloc}/{stage}",
            management_url=management_url,
            page_url=f"{base}/",
            moto_url=moto_url,
            table=table,
            queue_url=queue_url,
            dlq_url=dlq_url,
            env=stack_env(
                region,
                moto_url=moto_url,
                management_url=management_url,
                table=table,
                queue_url=queue_url,
                dlq_url=dlq_url,
            ),
            emulator=emulator,
            poller=poller,
            tables=tables,
            queues=queues,
            functions=functions or {},
            pollers=pollers,
        )

    def exports(self) -> str:
        """``export NAME=value`` lines for a POSIX shell (``eval`` them in another terminal)."""
        return "\n".join(
            f"export {name}={shlex.quote(self.env[name])}" for name in _EXPORTED if name in self.env
        )


@asynccontextmanager
async def local_stack(
    port: int = 0,
    stage: str = "local",
    *,
    set_management_endpoint: bool = False,
    environ: Mapping[str, str] | None = None,
    route_handler: Handler | None = None,
    # One broadcast "container" by default: Powertools' Metrics keeps one metric set per process,
    # which concurrent invocations in one process would share (on AWS each has its own process).
    concurrency: int = 1,
    function_timeout_s: float = 60.0,
    visibility_timeout_s: int = 60,
    max_receive_count: int = 3,
    moto_port: int = 0,
    limits: Limits | None = None,
    throttle: AccountThrottle | None = None,
) -> AsyncIterator[Stack]:
    """Run the whole stack until the block ends; see the module docstring.

    ``environ`` adds variables for the handlers (``AUTH_JWT_SECRET``, fan-out knobs...); the
    authorizer runs on ``$connect`` only when a JWT secret or public key is configured, as a
    deployment without one would have no authorizer. ``set_management_endpoint`` also sets
    ``APIGW_MANAGEMENT_ENDPOINT`` for the handlers instead of letting them derive it.
    ``visibility_timeout_s`` and ``max_receive_count`` are the broadcast queue's; like AWS, the
    visibility timeout may not be shorter than the function timeout. ``moto_port`` (0: a free
    one) is moto's, ``limits`` the emulator's (default: AWS's), ``throttle`` the management
    endpoint's account-level throttle (default: none).

    :raises ConfigurationError: an impossible queue set-up, a second stack in this process, or
        moto did not start (its port is taken).
    """
    global _running  # noqa: PLW0603  (one stack per process, by design)
    check_stage(stage)
    if visibility_timeout_s < function_timeout_s:
        raise ConfigurationError(
            f"the queue's visibility timeout ({visibility_timeout_s}s) is shorter than the "
            f"function timeout ({function_timeout_s}s); AWS refuses such a mapping"
        )
    if _running:
        raise ConfigurationError("a local stack is already running in this process")
    _running = True
    try:
        async with AsyncExitStack() as exits:
            moto_url = await _enter_moto(exits, moto_port)
            # The handlers' environment first: even our own set-up clients must not see the
            # developer's profile (a missing one fails every session) or config files.
            exits.enter_context(
                _environment(
                    {
                        **(environ or {}),
                        **CREDENTIALS,
                        "AWS_REGION": REGION,
                        "AWS_DEFAULT_REGION": REGION,
                        "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
                        "AWS_ENDPOINT_URL_SQS": moto_url,
                        # A deployed function has no config files; the developer's must not apply.
                        "AWS_CONFIG_FILE": os.devnull,
                        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                    }
                )
            )
            session = aioboto3.Session(region_name=REGION)
            await _create_table(session, moto_url)
            sqs: SQSClient = await exits.enter_async_context(
                session.client("sqs", endpoint_url=moto_url)
            )
            queue_url, dlq_url = await _create_queues(
                sqs, visibility_timeout_s=visibility_timeout_s, max_receive_count=max_receive_count
            )
            resources = {"CONNECTIONS_TABLE": TABLE, "BROADCAST_QUEUE_URL": queue_url}
            exits.enter_context(_environment(resources, hide_others=False))
            # Every container starts cold, with this environment, and is closed at the end, once
            # the poller and the emulator (which run the invocations) have stopped.
            containers.acquire()
            exits.push_async_callback(_in_thread, containers.release)

            settings = Settings()
            has_jwt = bool(settings.auth_jwt_secret or settings.auth_jwt_public_key)
            emulator = Emulator(
                route_handler=route_handler or route.handler,
                authorizer=authorizer.handler if has_jwt else None,
                stage=stage,
                limits=limits or Limits(),
            )
            emulator.management.throttle = throttle
            emulator.management.config.update(asdict(emulator.limits))
            base = await exits.enter_async_context(serve_emulator(emulator, port=port))
            base = base.rstrip("/")
            management_url = f"{base}/{stage}"
            if set_management_endpoint:
                exits.enter_context(
                    _environment({"APIGW_MANAGEMENT_ENDPOINT": management_url}, hide_others=False)
                )

            poller = SqsPoller(
                sqs,
                queue_url,
                broadcast.handler,
                batch_size=10,
                visibility_timeout_s=None,  # the queue's own, as the real mapping uses
                function_timeout_s=function_timeout_s,
                concurrency=concurrency,
                wait_s=20,  # Lambda's long poll; cancelling it at shutdown is harmless
            )
            await exits.enter_async_context(_in_background(poller.run))

            yield Stack.serving(
                base,
                stage,
                region=REGION,
                moto_url=moto_url,
                management_url=management_url,
                table=TABLE,
                queue_url=queue_url,
                dlq_url=dlq_url,
                emulator=emulator,
                poller=poller,
                tables={"ConnectionsTable": TABLE},
                queues={"BroadcastDeadLetterQueue": dlq_url, "BroadcastQueue": queue_url},
                pollers={"BroadcastFunctionJobs": poller},
            )
    finally:
        _running = False


# -- the pieces ----------------------------------------------------------------------------------


def stack_env(
    region: str, *, moto_url: str, management_url: str, table: str, queue_url: str, dlq_url: str
) -> dict[str, str]:
    """The environment a stack gives its functions and exports to a second shell: the local
    credentials and region, moto for DynamoDB and SQS, the management endpoint, and the
    registry table, broadcast queue and dead-letter queue where the stack has them (an empty
    one is left out: a templated stack may have none)."""
    env = {
        **CREDENTIALS,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        "AWS_ENDPOINT_URL_SQS": moto_url,
        "CONNECTIONS_TABLE": table,
        "BROADCAST_QUEUE_URL": queue_url,
        "BROADCAST_DLQ_URL": dlq_url,
        "APIGW_MANAGEMENT_ENDPOINT": management_url,
        # botocore's own variable for the service (its serviceId, upper case): boto3, the AWS
        # CLI and the SDKs reach @connections with no --endpoint-url. The stage is part of it:
        # botocore appends /@connections/{id} to its path.
        "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": management_url,
    }
    return {name: value for name, value in env.items() if value}


async def _in_thread(func: Callable[[], T]) -> T:
    """Run blocking start-up or clean-up work off the loop, to completion even when cancelled
    (half-started processes and half-closed runtimes are what a shield is for)."""
    with anyio.CancelScope(shield=True):
        result = await anyio.to_thread.run_sync(func)
    return result  # noqa: RET504  (returning inside the scope reads to mypy as a missing return)


@asynccontextmanager
async def _in_background(func: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run ``func`` for as long as the block runs, and cancel it (awaiting the end) after.

    The block's own exception does not pass through the task group, which would wrap it in an
    exception group: whoever uses the stack sees what their code raised. A crash of ``func``
    still cancels the block and is raised, as a task group does.
    """
    tasks = anyio.create_task_group()
    await tasks.__aenter__()
    try:
        tasks.start_soon(func)
        yield
    finally:
        tasks.cancel_scope.cancel()
        await tasks.__aexit__(None, None, None)


async def _enter_moto(exits: AsyncExitStack, port: int) -> str:
    """Start moto server (a blocking, bounded start-up) and arrange for it to stop."""
    server = moto_server(port=port)
    url = await _in_thread(server.__enter__)

    async def stop() -> None:
        await _in_thread(lambda: server.__exit__(None, None, None))

    exits.push_async_callback(stop)
    return url


async def _create_table(session: aioboto3.Session, moto_url: str) -> None:
    async with session.client("dynamodb", endpoint_url=moto_url) as dynamodb:
        await dynamodb.create_table(**table_definition(TABLE))
        await dynamodb.update_time_to_live(
            TableName=TABLE,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )


async def _create_queues(
    sqs: SQSClient, *, visibility_timeout_s: int, max_receive_count: int
) -> tuple[str, str]:
    """The broadcast queue and its dead-letter queue, as the deploy template declares them."""
    dlq_url = (
        await sqs.create_queue(
            QueueName=DEAD_LETTER_QUEUE,
            Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
        )
    )["QueueUrl"]
    answer = await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {
        "deadLetterTargetArn": answer["Attributes"]["QueueArn"],
        "maxReceiveCount": str(max_receive_count),
    }
    queue_url = (
        await sqs.create_queue(
            QueueName=QUEUE,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout_s),
                "RedrivePolicy": json.dumps(redrive),
            },
        )
    )["QueueUrl"]
    return queue_url, dlq_url


@contextmanager
def _environment(values: Mapping[str, str], *, hide_others: bool = True) -> Iterator[None]:
    """Set ``values`` for the handlers and (``hide_others``) hide every other ``AWS_*`` variable
    and the resource variables of another deployment; put the environment back afterwards."""
    hidden = [
        name
        for name in os.environ
        if hide_others and (name.startswith("AWS_") or name in _HIDDEN) and name not in values
    ]
    saved = {name: os.environ.get(name) for name in (*hidden, *values)}
    try:
        for name in hidden:
            del os.environ[name]
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- wsfanout dev --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevOptions:
    """What ``wsfanout dev`` runs: addresses that stay put across restarts, and the knobs."""

    port: int = 0
    """The emulator's port (WebSocket, management API, page); 0 picks a free one."""
    moto_port: int = 0
    """moto's port; 0 picks a free one."""
    stage: str | None = None
    """``None``: the template's stage, else ``local``."""
    app: str | None = None
    """``MODULE:ATTRIBUTE`` serving every route; ``None``: the built-in chat handler."""
    limits: Limits = field(default_factory=Limits)
    account_rate: float | None = None
    """The account-level throttle's requests per second; ``None``: no throttle."""
    account_burst: int = 1
    template: Path | None = None
    """A SAM/CloudFormation template to run (:mod:`wsfanout.local.dev_template`); ``None``: the
    built-in stack, in this process."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """The template's parameter values (overrides of its defaults)."""
    reload: bool = False
    """With a template: restart its functions cold when a file under its directory changes."""

    def __post_init__(self) -> None:
        if self.stage is not None:
            check_stage(self.stage)
        if self.template is None and self.parameters:
            raise InvalidInputError("--parameter needs a template (--template PATH)")
        if self.port and self.port == self.moto_port:
            raise InvalidInputError(f"--port and --moto-port are both {self.port}")
        if self.account_rate is not None:  # checked now, before anything starts
            AccountThrottle(self.account_rate, self.account_burst)


def run_dev(options: DevOptions = DevOptions(), *, out: TextIO | None = None) -> int:
    """Run the stack until SIGINT (Ctrl-C), SIGTERM or SIGHUP (its terminal closed); print
    where everything is and the exports a second shell needs. Returns 0.

    ``options.template`` runs that template's API, each function in worker processes of its
    own (see :mod:`wsfanout.local.dev_template`). Otherwise the built-in stack runs in this
    process: ``options.app`` is imported from the current directory before it starts and serves
    every route (see :mod:`wsfanout.local.apps`); without it the built-in handler does.

    :raises InvalidInputError: the app cannot be loaded (nothing has started yet).
    :raises TemplateError: the template cannot be read or run (nothing has started yet).
    :raises ConfigurationError: moto could not start (its port is taken).
    :raises OSError: the emulator's port cannot be bound.
    """
    if options.template is not None:
        from .dev_template import run_template_dev  # noqa: PLC0415  (it builds on this module)

        return run_template_dev(options, out=out)
    handler = load_handler(options.app) if options.app else None
    return anyio.run(_dev, options, handler, out or sys.stdout)


STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def _dev(options: DevOptions, handler: Handler | None, out: TextIO) -> int:
    say = _printer(out)
    throttle = throttle_of_options(options)
    # Signals are taken before anything starts, so Ctrl-C during start-up still shuts down in
    # order (it is acted on once the stack is up) instead of leaving moto running.
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with local_stack(
            options.port,
            options.stage or "local",
            route_handler=handler,
            moto_port=options.moto_port,
            limits=options.limits,
            throttle=throttle,
        ) as stack:
            describe(
                stack,
                say,
                [("app", options.app or "the built-in chat handler")],
                limits=options.limits,
                throttle=throttle,
            )
            await until_signalled(signals, say)
    say("wsfanout dev: stopped")
    return 0


def _printer(out: TextIO) -> Callable[..., None]:
    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()  # a pipe (a test, a supervisor) must see the URLs now, not at exit

    return say


def throttle_of_options(options: DevOptions) -> AccountThrottle | None:
    """The account-level throttle ``options`` ask for (``None``: off)."""
    if options.account_rate is None:
        return None
    return AccountThrottle(options.account_rate, options.account_burst)


async def until_signalled(signals: AsyncIterator[int], say: Callable[..., None]) -> None:
    """Wait for the first stop signal and say which it was."""
    async for signum in signals:
        say(f"wsfanout dev: {signal.Signals(signum).name}, stopping")
        return


def describe(
    stack: Stack,
    say: Callable[..., None],
    first: Sequence[tuple[str, str]],
    *,
    limits: Limits,
    throttle: AccountThrottle | None,
    notes: Sequence[str] = (),
) -> None:
    """Print where everything of ``stack`` is (``first``: the lines that say what it runs),
    its limits, ``notes`` and the exports for a second shell."""
    say("wsfanout dev: the local stack is running")
    rows = [
        *first,
        ("WebSocket", stack.ws_url),
        ("management", stack.management_url),
        ("page", stack.page_url),
        ("moto", stack.moto_url),
        ("dead letters", stack.dlq_url or "(none)"),
        (
            "limits",
            f"idle {limits.idle_timeout_s:g} s, lifetime {limits.max_lifetime_s:g} s, frames "
            f"{limits.frame_bytes} bytes; account "
            + (
                "throttle off"
                if throttle is None
                else f"throttle {throttle.rate:g}/s, burst {throttle.burst}"
            ),
        ),
        *(("note", note) for note in notes),
    ]
    for name, value in rows:
        say(f"  {name:<12} {value}")
    say()
    say("# in another shell, so that wsfanout, the aws CLI and boto3 use this stack:")
    say(stack.exports())
    say()
    say("Press Ctrl-C (or send SIGTERM or SIGHUP) to stop.")
