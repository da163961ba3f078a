"""What a template declares, typed: the parts of a WebSocket API stack the local stack runs.

Every resource is named by its logical id, and one resource points at another by logical id
(a route at its function, a queue at its dead-letter queue). Values that depend on what the
local stack creates (table names, queue URLs, the management endpoint) stay unresolved in the
model; :meth:`LocalTemplate.resolve` turns them into strings once a :class:`LocalResources`
says where everything is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...aws.account import ACCOUNT_ID
from ...exceptions import TemplateError
from .intrinsics import NO_VALUE, Evaluator, Reference, Scope, scalar_text

__all__ = [
    "Authorizer",
    "Function",
    "LocalQueue",
    "LocalResources",
    "LocalTemplate",
    "Queue",
    "QueueMapping",
    "Redrive",
    "Route",
    "Table",
    "WebSocketApi",
]


@dataclass(frozen=True)
class Route:
    """One route of the API: ``key`` (``$connect``, ``$default``, ``sendMessage``...) runs the
    Lambda function ``function``; ``two_way`` when a ``$default`` route response sends the
    function's answer back to the client; ``authorization`` is ``NONE``, ``CUSTOM`` (the API's
    authorizer, on ``$connect``) or ``AWS_IAM``."""

    key: str
    function: str
    two_way: bool = False
    authorization: str = "NONE"


@dataclass(frozen=True)
class Authorizer:
    """The REQUEST authorizer of ``$connect``: the Lambda function ``function``, and where the
    identity comes from (``route.request.querystring.token``, ``route.request.header.Auth``...)."""

    logical_id: str
    function: str
    identity_source: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebSocketApi:
    """The template's one WebSocket API and its routes by route key."""

    logical_id: str
    route_selection_expression: str
    routes: Mapping[str, Route]
    authorizer: Authorizer | None = None


@dataclass(frozen=True)
class Function:
    """A Lambda function as the local stack runs it.

    ``code_uri`` is the directory of its code (resolved against the template's directory), or
    ``None``: the handler is then imported from the installed environment. That is the case
    for a ``.zip`` artifact (built for the target, perhaps arm64, so it is never unpacked
    here), for code in S3 and for a path that does not exist; :attr:`LocalTemplate.notes` says
    which. ``environment`` is as written (intrinsics unevaluated): see
    :meth:`LocalTemplate.environment_of`.
    """

    logical_id: str
    handler: str
    runtime: str
    code_uri: Path | None
    timeout_s: int = 3
    memory_mb: int = 128
    environment: Mapping[str, Any] = field(default_factory=dict)
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class Table:
    """A DynamoDB table: ``create_table(name)`` are the ``CreateTable`` arguments (keys, indexes,
    billing), ``time_to_live`` the ``UpdateTimeToLive`` specification when TTL is on. ``name`` is
    the template's ``TableName`` if it sets one."""

    logical_id: str
    definition: Mapping[str, Any]
    time_to_live: Mapping[str, Any] | None = None
    name: str | None = None

    def create_table(self, name: str) -> dict[str, Any]:
        """``CreateTable`` keyword arguments for a table called ``name``."""
        return {"TableName": name, **json.loads(json.dumps(self.definition))}


@dataclass(frozen=True)
class Redrive:
    """Where a queue sends a message received ``max_receive_count`` times: the queue
    ``dead_letter_queue`` (a logical id)."""

    dead_letter_queue: str
    max_receive_count: int


@dataclass(frozen=True)
class Queue:
    """An SQS queue: ``attributes`` are its ``CreateQueue`` attributes (strings) but the redrive
    policy, which needs the dead-letter queue's ARN (:meth:`create_attributes`). ``name`` is the
    template's ``QueueName`` if it sets one; a FIFO queue's name must end in ``.fifo``."""

    logical_id: str
    attributes: Mapping[str, str]
    redrive: Redrive | None = None
    name: str | None = None

    def create_attributes(self, dead_letter_arn: str | None = None) -> dict[str, str]:
        """``CreateQueue`` attributes, with the redrive policy to ``dead_letter_arn``.

        :raises TemplateError: the queue has a redrive policy and no ARN is given.
        """
        attributes = dict(self.attributes)
        if self.redrive is not None:
            if dead_letter_arn is None:
                raise TemplateError(
                    f"{self.logical_id}: create {self.redrive.dead_letter_queue} first, "
                    "its ARN goes into the redrive policy"
                )
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": dead_letter_arn,
                    "maxReceiveCount": self.redrive.max_receive_count,
                }
            )
        return attributes


@dataclass(frozen=True)
class QueueMapping:
    """An SQS event source mapping: ``queue`` feeds ``function`` (logical ids) as Lambda's
    poller would, with its batching and ``MaximumConcurrency``."""

    logical_id: str
    function: str
    queue: str
    batch_size: int = 10
    maximum_batching_window_s: int = 0
    function_response_types: tuple[str, ...] = ()
    maximum_concurrency: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class LocalQueue:
    """A queue as the local stack created it."""

    url: str
    arn: str


@dataclass(frozen=True)
class LocalResources:
    """Where the local stack put what the template declares: table names and queues by logical
    id, the id it gave the API and the URL of its local management (``@connections``)
    endpoint."""

    tables: Mapping[str, str]
    queues: Mapping[str, LocalQueue]
    api_id: str
    management_url: str


@dataclass(frozen=True)
class LocalTemplate:
    """A template read for a local run (build one with
    :func:`~wsfanout.local.template.load_template`).

    ``queues`` is ordered so that every dead-letter queue comes before the queues that redrive
    into it (create them in this order). ``stage`` is the API's stage name (its
    ``AWS::ApiGatewayV2::Stage``), ``None`` if the template declares none. ``notes`` are what
    the CLI should print once (code run from the installed environment, a second stage...).
    ``parameters`` are the values the template was read with (defaults and overrides).
    """

    path: Path
    api: WebSocketApi
    functions: Mapping[str, Function]
    tables: Mapping[str, Table]
    queues: Mapping[str, Queue]
    mappings: Mapping[str, QueueMapping]
    stage: str | None
    region: str
    parameters: Mapping[str, str | list[str]] = field(repr=False)  # NoEcho values too
    notes: tuple[str, ...] = ()
    scope: Scope = field(repr=False, compare=False, kw_only=True)

    def resolve(self, value: Any, local: LocalResources, *, where: str = "value") -> str:
        """``value`` (a template value: a string or an intrinsic) as a string for the local run.

        ``Ref`` of a table is its local name, of a queue its URL, of a function its name (the
        logical id), of the API its id, of the stage its name; ``Fn::GetAtt`` gives a table's,
        queue's or function's ``Arn`` (local ARNs), a queue's ``QueueUrl``/``QueueName``, the
        API's ``ApiId``. The template's own execute-api URL
        (``https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}``, however it is
        written) becomes ``local.management_url``.

        :raises TemplateError: a reference to anything else, an unsupported function, or a
            value that is not a scalar; the message names ``where``.
        """
        evaluator = Evaluator(self.scope, self._local_reference(local), where)
        return self._localize(scalar_text(evaluator(value), where), local)

    def environment_of(self, function_id: str, local: LocalResources) -> dict[str, str]:
        """The environment variables of function ``function_id``, resolved (see :meth:`resolve`);
        a variable whose value is ``AWS::NoValue`` (an ``!If`` branch) is left out.

        :raises TemplateError: no such function, or a value :meth:`resolve` refuses.
        """
        if function_id not in self.functions:
            raise TemplateError(
                f"no function {function_id!r} in {self.path} "
                f"(functions: {', '.join(self.functions)})"
            )
        environment: dict[str, str] = {}
        for name, value in self.functions[function_id].environment.items():
            where = f"{function_id}.Environment.{name}"
            evaluated = Evaluator(self.scope, self._local_reference(local), where)(value)
            if evaluated is not NO_VALUE:
                environment[name] = self._localize(scalar_text(evaluated, where), local)
        return environment

    def function_arn(self, function_id: str) -> str:
        """The local ARN of function ``function_id`` (what ``!GetAtt Fn.Arn`` resolves to): its
        name locally is its logical id."""
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{function_id}"

    def _localize(self, text: str, local: LocalResources) -> str:
        """The template's execute-api URL (and anything under it) moved to the local endpoint."""
        suffix = str(self.scope.pseudo["AWS::URLSuffix"])
        remote = f"https://{local.api_id}.execute-api.{self.region}.{suffix}/{self.stage}"
        if text == remote or text.startswith(remote + "/"):
            return local.management_url.rstrip("/") + text[len(remote) :]
        return text

    def _local_reference(self, local: LocalResources) -> Reference:
        def reference(logical_id: str, attribute: str | None) -> str:
            kind = self.scope.resources[logical_id]
            values = self._local_values(logical_id, kind, local)
            if attribute not in values:
                what = f"Fn::GetAtt {logical_id}.{attribute}" if attribute else f"Ref {logical_id}"
                raise TemplateError(
                    f"{what} ({kind}) has no local value (supported: Ref and Arn of tables, "
                    "queues and functions, a queue's QueueUrl and QueueName, the API's Ref and "
                    "ApiId, the stage's Ref)"
                )
            return values[attribute]

        return reference

    def _local_values(
        self, logical_id: str, kind: str, local: LocalResources
    ) -> dict[str | None, str]:
        """What ``Ref`` (``None``) and each attribute of one resource are locally."""
        if kind == "AWS::DynamoDB::Table" and logical_id in local.tables:
            name = local.tables[logical_id]
            return {None: name, "Arn": f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{name}"}
        if kind == "AWS::SQS::Queue" and logical_id in local.queues:
            queue = local.queues[logical_id]
            name = queue.url.rstrip("/").rsplit("/", 1)[-1]
            return {None: queue.url, "QueueUrl": queue.url, "Arn": queue.arn, "QueueName": name}
        if kind == "AWS::Lambda::Function" and logical_id in self.functions:
            return {None: logical_id, "Arn": self.function_arn(logical_id)}
        if kind == "AWS::ApiGatewayV2::Api" and logical_id == self.api.logical_id:
            return {None: local.api_id, "ApiId": local.api_id}
        if kind == "AWS::ApiGatewayV2::Stage" and self.stage is not None:
            return {None: self.stage}
        return {}
