"""A local stack built from a SAM or CloudFormation template: what ``wsfanout dev --template``
runs.

Where :func:`~wsfanout.local.stack.local_stack` runs this project's handlers in this process,
here every resource comes from a :class:`~wsfanout.local.template.LocalTemplate`:

* moto server (its own, per stack) holds the template's DynamoDB tables (with their TTL) and SQS
  queues (dead-letter queues first, each redrive policy pointing at its local ARN);
* every Lambda function is a :class:`~wsfanout.local.functions.ProcessFunction`: warm worker
  processes with the function's own environment (its ``Environment`` resolved to the local
  stand-ins, plus the stack's credentials and moto's endpoints as Lambda injects the role's),
  timeout and memory; at most its ``ReservedConcurrentExecutions`` processes, else
  :data:`DEFAULT_CONCURRENCY`;
* the emulator serves the API's route table (selection expression, route keys, two-way routes,
  the REQUEST authorizer of a ``$connect`` with ``CUSTOM`` authorization);
* one :class:`~wsfanout.local.poller.SqsPoller` per enabled SQS event source mapping, with its
  batch size (received ten at a time above ten; no batching window), ``MaximumConcurrency``
  (at most the function's concurrency), ``ReportBatchItemFailures``, the function's timeout and
  the queue's own visibility timeout.

Nothing touches the process environment and nothing is process-wide, so two templated stacks
may run in one process. The emulator's port is chosen before anything starts, because the
functions' environments name the management endpoint. Closing runs in the order AWS would
tear down: the emulator first (so every ``$disconnect`` still reaches its function), then the
pollers, then the functions' processes, then moto.
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

import aioboto3
from aiobotocore.session import AioSession

from ..aws.account import CREDENTIALS, KEY_ID, REGION, SECRET
from .emulator import Emulator, Limits, serve_emulator
from .functions import ProcessFunction
from .management import AccountThrottle
from .poller import SqsPoller
from .processes import free_port
from .routes import CONNECT_ROUTE, Authorizer, Route, RouteTable
from .stack import Stack, _enter_moto, _in_background, _in_thread, check_stage
from .template import LocalQueue, LocalResources, LocalTemplate, TemplateError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

__all__ = ["DEFAULT_CONCURRENCY", "templated_stack"]

DEFAULT_CONCURRENCY: Final = 4
"""Worker processes of a function without reserved concurrency. Lambda would scale to the
account's limit; locally each worker is a Python interpreter, so a few let a handful of clients
overlap without filling a laptop, and a call beyond them waits for one (it is not throttled)."""

_SQS_VISIBILITY_S: Final = 30  # SQS's default visibility timeout
_MAX_BATCH: Final = 10  # one ReceiveMessage; a larger batch size is received ten at a time
_API_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
# The names the project's handlers read, so Stack.table/queue_url mean the same on either path.
_TABLE_VARIABLE: Final = "CONNECTIONS_TABLE"
_QUEUE_VARIABLE: Final = "BROADCAST_QUEUE_URL"


def _session() -> aioboto3.Session:
    """The stack's own AWS session: its fake credentials and region, and none of the developer's
    configuration (a profile named in ``AWS_PROFILE``, config files), read without changing the
    process environment (another stack, or the caller, may be using it)."""
    ignored = {
        "profile": (None, None, None, None),
        "config_file": (None, None, os.devnull, None),
        "credentials_file": (None, None, os.devnull, None),
    }
    return aioboto3.Session(
        botocore_session=AioSession(session_vars=ignored),
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )


@asynccontextmanager
async def templated_stack(
    template: LocalTemplate,
    *,
    port: int = 0,
    stage: str | None = None,
    limits: Limits | None = None,
    moto_port: int = 0,
    throttle: AccountThrottle | None = None,
    stack_name: str = "wsfanout",
) -> AsyncIterator[Stack]:
    """Run ``template`` locally until the block ends (see the module docstring).

    ``limits`` are the emulator's (AWS's by default), ``throttle`` its management endpoint's
    account-level throttle (none by default), ``moto_port`` moto's port (0: a free one).
    ``stage`` defaults to the template's stage (``local`` when it declares none); ``port`` 0
    picks a free one. A table or queue without a
    ``TableName``/``QueueName`` is called ``{stack_name}-{LogicalId}`` (``.fifo`` appended for a
    FIFO queue). The :class:`Stack`'s ``table``/``queue_url``/``dlq_url`` are what the functions'
    ``CONNECTIONS_TABLE`` and ``BROADCAST_QUEUE_URL`` name (else the only table, the first mapped
    queue), ``""`` when nothing fits; ``tables``/``queues`` hold every one by logical id.

    :raises InvalidInputError: a stage name API Gateway would refuse, or a function setting
        Lambda would refuse.
    :raises TemplateError: an environment value with no local stand-in, or a mapping whose
        queue's visibility timeout is shorter than its function's timeout (AWS refuses it).
    """
    stage = check_stage(stage or template.stage or "local")
    _check_mappings(template)
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    management_url = f"{base}/{stage}"
    async with AsyncExitStack() as exits:
        moto_url = await _enter_moto(exits, moto_port)
        session = _session()
        tables = await _create_tables(session, moto_url, template, stack_name)
        sqs: SQSClient = await exits.enter_async_context(
            session.client("sqs", endpoint_url=moto_url)
        )
        queues = await _create_queues(sqs, template, stack_name)
        api_id = "".join(secrets.choice(_API_ID_ALPHABET) for _ in range(10))
        local = LocalResources(tables, queues, api_id, management_url)

        functions: dict[str, ProcessFunction] = {}
        environments: dict[str, dict[str, str]] = {}
        for function_id, function in template.functions.items():
            environments[function_id] = template.environment_of(function_id, local)
            functions[function_id] = ProcessFunction(
                function_id,
                function.handler,
                code_dir=function.code_uri,
                # code from the installed environment: the template's directory comes first,
                # so a project's own modules next to its template import
                import_paths=() if function.code_uri else (template.path.parent,),
                environment={
                    **CREDENTIALS,
                    "AWS_REGION": template.region,
                    "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
                    "AWS_ENDPOINT_URL_SQS": moto_url,
                    **environments[function_id],
                },
                timeout_s=function.timeout_s,
                memory_mb=function.memory_mb,
                concurrency=function.reserved_concurrency or DEFAULT_CONCURRENCY,
            )
            exits.push_async_callback(_in_thread, functions[function_id].close)

        pollers: dict[str, SqsPoller] = {}
        for mapping_id, mapping in template.mappings.items():
            if not mapping.enabled:
                continue
            target = functions[mapping.function]
            pollers[mapping_id] = SqsPoller(
                sqs,
                queues[mapping.queue].url,
                target,
                batch_size=min(mapping.batch_size, _MAX_BATCH),
                visibility_timeout_s=None,  # the queue's own, as the real mapping uses
                function_timeout_s=target.timeout_s,
                concurrency=min(
                    mapping.maximum_concurrency or target.concurrency, target.concurrency
                ),
                wait_s=20,  # Lambda's long poll; cancelling it at shutdown is harmless
                function_name=mapping.function,
                report_batch_item_failures=(
                    "ReportBatchItemFailures" in mapping.function_response_types
                ),
            )
            await exits.enter_async_context(_in_background(pollers[mapping_id].run))

        emulator = Emulator(
            routes=_route_table(template, functions),
            stage=stage,
            limits=limits or Limits(),
            api_id=api_id,
        )
        emulator.management.throttle = throttle
        emulator.management.config.update(asdict(emulator.limits))  # for wsfanout conformance
        await exits.enter_async_context(serve_emulator(emulator, port=port))

        named = {k: v for env in environments.values() for k, v in env.items()}
        table = named.get(_TABLE_VARIABLE) or (
            next(iter(tables.values())) if len(tables) == 1 else ""
        )
        queue_url = named.get(_QUEUE_VARIABLE) or next(
            (queues[m.queue].url for m in template.mappings.values()), ""
        )
        dlq_url = _dead_letter_url(template, queues, queue_url)
        yield Stack.serving(
            base,
            stage,
            region=template.region,
            moto_url=moto_url,
            management_url=management_url,
            table=table,
            queue_url=queue_url,
            dlq_url=dlq_url,
            emulator=emulator,
            poller=next(
                (p for p in pollers.values() if p.queue_url == queue_url),
                next(iter(pollers.values()), None),
            ),
            tables=tables,
            queues={logical_id: queue.url for logical_id, queue in queues.items()},
            functions=functions,
            pollers=pollers,
        )


def _check_mappings(template: LocalTemplate) -> None:
    """Refuse, before anything starts, a mapping AWS would refuse: a queue that would hand a
    message to a second invocation while the first may still run."""
    for mapping_id, mapping in template.mappings.items():
        queue = template.queues[mapping.queue]
        visibility = int(queue.attributes.get("VisibilityTimeout", _SQS_VISIBILITY_S))
        timeout = template.functions[mapping.function].timeout_s
        if visibility < timeout:
            raise TemplateError(
                f"{mapping_id}: queue {mapping.queue} has a visibility timeout of {visibility}s, "
                f"shorter than function {mapping.function}'s timeout ({timeout}s); AWS refuses "
                "such a mapping"
            )


def _route_table(template: LocalTemplate, functions: Mapping[str, ProcessFunction]) -> RouteTable:
    """The API's routes, each served by its function's processes; the authorizer only when
    ``$connect`` asks for it (``CUSTOM``), as API Gateway runs it nowhere else."""
    api = template.api
    routes = {
        key: Route(key, functions[route.function], route.function, route.two_way)
        for key, route in api.routes.items()
    }
    authorizer = None
    connect = api.routes.get(CONNECT_ROUTE)
    if api.authorizer is not None and connect is not None and connect.authorization == "CUSTOM":
        authorizer = Authorizer(
            functions[api.authorizer.function],
            api.authorizer.function,
            api.authorizer.identity_source,
        )
    return RouteTable(routes, api.route_selection_expression, authorizer)


async def _create_tables(
    session: aioboto3.Session, moto_url: str, template: LocalTemplate, stack_name: str
) -> dict[str, str]:
    """Each table (and its TTL) in moto; their names by logical id."""
    names: dict[str, str] = {}
    async with session.client("dynamodb", endpoint_url=moto_url) as dynamodb:
        for logical_id, table in template.tables.items():
            name = table.name or f"{stack_name}-{logical_id}"
            await dynamodb.create_table(**table.create_table(name))
            if table.time_to_live is not None:
                await dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification=table.time_to_live,
                )
            names[logical_id] = name
    return names


async def _create_queues(
    sqs: SQSClient, template: LocalTemplate, stack_name: str
) -> dict[str, LocalQueue]:
    """Each queue in moto, in the template's order (dead-letter queues first, so a redrive
    policy can name its target's ARN); URL and ARN by logical id."""
    made: dict[str, LocalQueue] = {}
    for logical_id, queue in template.queues.items():
        name = queue.name or f"{stack_name}-{logical_id}"
        if queue.attributes.get("FifoQueue") == "true" and not name.endswith(".fifo"):
            name += ".fifo"
        target = made[queue.redrive.dead_letter_queue].arn if queue.redrive else None
        attributes: Any = queue.create_attributes(target)  # SQS's own attribute names
        url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        made[logical_id] = LocalQueue(url=url, arn=answer["Attributes"]["QueueArn"])
    return made


def _dead_letter_url(
    template: LocalTemplate, queues: Mapping[str, LocalQueue], queue_url: str
) -> str:
    """The URL of the dead-letter queue ``queue_url`` redrives into, ``""`` if none."""
    for logical_id, queue in template.queues.items():
        if queues[logical_id].url == queue_url and queue.redrive is not None:
            return queues[queue.redrive.dead_letter_queue].url
    return ""
