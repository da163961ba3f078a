"""Plain CloudFormation resources to the typed model (:mod:`.model`).

Which resource points at which is found by evaluating the pointer (an ``IntegrationUri``, a
route's ``Target``, a ``RedrivePolicy``'s ARN) and recording the resources it references, so
any spelling works: ``!Sub ...${Fn.Arn}...``, SAM's ``Fn::Sub`` with a variable map,
``!Join``, ``!If`` (only the branch taken counts).
"""

from __future__ import annotations

import graphlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from ...exceptions import TemplateError
from .intrinsics import Evaluator, Scope, scalar_text
from .model import (
    Authorizer,
    Function,
    Queue,
    QueueMapping,
    Redrive,
    Route,
    Table,
    WebSocketApi,
)

__all__ = ["Reader"]

_FUNCTION: Final = "AWS::Lambda::Function"
_FUNCTION_POINTERS: Final = frozenset({_FUNCTION, "AWS::Lambda::Alias", "AWS::Lambda::Version"})
_QUEUE: Final = "AWS::SQS::Queue"
_TABLE: Final = "AWS::DynamoDB::Table"
_API: Final = "AWS::ApiGatewayV2::Api"
# SQS CreateQueue attributes a template's queue carries over locally. Encryption settings
# (KmsMasterKeyId, SqsManagedSseEnabled) mean nothing to the local SQS and are left out.
_QUEUE_ATTRIBUTES: Final[tuple[str, ...]] = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
)
_INDEX_KEYS: Final = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
_LAMBDA_ONLY: Final = "AWS_PROXY integrations with a Lambda function of this template only"


class Reader:
    """Reads the resources of one expanded template; ``resources`` are those whose
    ``Condition`` holds, ``code`` the SAM functions' own ``CodeUri`` values."""

    def __init__(
        self, path: Path, resources: Mapping[str, Any], scope: Scope, code: Mapping[str, Any]
    ) -> None:
        self.path = path
        self.resources = resources
        self.scope = scope
        self.code = code
        self.notes: list[str] = []
        self._referenced: list[str] = []

    # -- evaluation ----------------------------------------------------------------------------

    def _reference(self, logical_id: str, attribute: str | None) -> str:
        self._referenced.append(logical_id)
        return logical_id if attribute is None else f"{logical_id}.{attribute}"

    def value(self, node: Any, where: str) -> Any:
        """``node`` evaluated; a resource's ``Ref`` stands for its logical id."""
        return Evaluator(self.scope, self._reference, where)(node)

    def text(self, node: Any, where: str) -> str:
        """``node`` evaluated to a string."""
        return scalar_text(self.value(node, where), where)

    def number(self, node: Any, where: str) -> int:
        """``node`` evaluated to a whole number.

        :raises TemplateError: it is not one.
        """
        text = self.text(node, where)
        try:
            return int(text)
        except ValueError:
            raise TemplateError(f"{where}: expected a whole number, got {text!r}") from None

    def points_at(self, node: Any, where: str, kinds: Iterable[str], supported: str) -> str:
        """The one resource of a type in ``kinds`` that ``node`` references.

        :raises TemplateError: it references none (a literal ARN, another resource type) or
            several; ``supported`` says what would do.
        """
        self._referenced = []
        self.value(node, where)
        wanted = set(kinds)
        found = list(dict.fromkeys(i for i in self._referenced if self._type(i) in wanted))
        if len(found) != 1:
            raise TemplateError(f"{where}: points at {node!r}; supported: {supported}")
        return found[0]

    def function_behind(self, node: Any, where: str, supported: str) -> str:
        """The Lambda function ``node`` points at, through an alias or a version."""
        found = self.points_at(node, where, _FUNCTION_POINTERS, supported)
        seen = {found}
        while self._type(found) != _FUNCTION:
            pointer = self._properties(found).get("FunctionName")
            found = self.points_at(pointer, f"{found}.FunctionName", _FUNCTION_POINTERS, supported)
            if found in seen:
                raise TemplateError(f"{found}: its FunctionName leads back to itself")
            seen.add(found)
        return found

    def _type(self, logical_id: str) -> str:
        return str(self.resources[logical_id].get("Type", ""))

    def _properties(self, logical_id: str) -> dict[str, Any]:
        properties = self.resources[logical_id].get("Properties") or {}
        if not isinstance(properties, dict):
            raise TemplateError(f"{logical_id}: Properties must be a mapping")
        return properties

    def of_type(self, kind: str) -> list[str]:
        """The logical ids of the resources of one type, in template order."""
        return [logical_id for logical_id in self.resources if self._type(logical_id) == kind]

    # -- the API -------------------------------------------------------------------------------

    def api(self) -> tuple[WebSocketApi, str | None]:
        """The one WebSocket API and its stage name.

        :raises TemplateError: an HTTP or REST API, none or several WebSocket APIs, a route
            that does not go to a Lambda function of the template, a non-REQUEST authorizer.
        """
        for logical_id in self.of_type("AWS::ApiGateway::RestApi"):
            raise TemplateError(
                f"{logical_id}: REST APIs (AWS::ApiGateway::RestApi, AWS::Serverless::Api) are "
                "not supported locally (one WebSocket API)"
            )
        apis = self.of_type(_API)
        for logical_id in apis:
            # without a ProtocolType an API is imported from its OpenAPI Body: an HTTP API
            protocol = self._properties(logical_id).get("ProtocolType", "HTTP")
            if self.value(protocol, logical_id) != "WEBSOCKET":
                raise TemplateError(
                    f"{logical_id}: ProtocolType {protocol} (an HTTP API) is not supported "
                    "locally (WEBSOCKET APIs only)"
                )
        if not apis:
            raise TemplateError(
                f"{self.path}: no WebSocket API (an AWS::ApiGatewayV2::Api with ProtocolType "
                "WEBSOCKET, or an AWS::Serverless::WebSocketApi)"
            )
        if len(apis) > 1:
            raise TemplateError(
                f"{self.path}: {len(apis)} WebSocket APIs ({', '.join(sorted(apis))}); "
                "one per template is supported"
            )
        (api_id,) = apis
        properties = self._properties(api_id)
        routes = self._routes(api_id)
        authorizer = None
        _, connect_authorizer = routes.get("$connect", (None, None))
        if connect_authorizer is not None:
            authorizer = self._authorizer(connect_authorizer)
        api = WebSocketApi(
            logical_id=api_id,
            route_selection_expression=self.text(
                properties.get("RouteSelectionExpression", "$request.body.action"),
                f"{api_id}.RouteSelectionExpression",
            ),
            routes={key: route for key, (route, _) in routes.items()},
            authorizer=authorizer,
        )
        return api, self._stage(api_id)

    def _of_api(self, kind: str, api_id: str) -> list[str]:
        return [
            logical_id
            for logical_id in self.of_type(kind)
            if self.value(self._properties(logical_id).get("ApiId"), f"{logical_id}.ApiId")
            == api_id
        ]

    def _routes(self, api_id: str) -> dict[str, tuple[Route, str | None]]:
        """Route key to its route and (for a CUSTOM route) its authorizer's logical id."""
        integrations = {
            logical_id: self._integration(logical_id)
            for logical_id in self._of_api("AWS::ApiGatewayV2::Integration", api_id)
        }
        two_way = {
            self._responding_route(logical_id)
            for logical_id in self._of_api("AWS::ApiGatewayV2::RouteResponse", api_id)
        }
        routes: dict[str, tuple[Route, str | None]] = {}
        for logical_id in self._of_api("AWS::ApiGatewayV2::Route", api_id):
            properties = self._properties(logical_id)
            key = self.text(properties.get("RouteKey"), f"{logical_id}.RouteKey")
            if key in routes:
                raise TemplateError(f"{logical_id}: a second route for {key}")
            if properties.get("Target") is None:
                raise TemplateError(f"{logical_id}: route {key} has no Target ({_LAMBDA_ONLY})")
            integration = self.points_at(
                properties["Target"],
                f"{logical_id}.Target",
                {"AWS::ApiGatewayV2::Integration"},
                f"integrations/<an integration of this API> ({_LAMBDA_ONLY})",
            )
            if integration not in integrations:
                raise TemplateError(
                    f"{logical_id}: its integration {integration} is of another API"
                )
            authorization = self.text(
                properties.get("AuthorizationType", "NONE"), f"{logical_id}.AuthorizationType"
            )
            authorizer = None
            if authorization == "CUSTOM":
                authorizer = self.points_at(
                    properties.get("AuthorizerId"),
                    f"{logical_id}.AuthorizerId",
                    {"AWS::ApiGatewayV2::Authorizer"},
                    "an AWS::ApiGatewayV2::Authorizer of this template",
                )
            route = Route(key, integrations[integration], logical_id in two_way, authorization)
            routes[key] = (route, authorizer)
        return routes

    def _responding_route(self, logical_id: str) -> str | None:
        """The route a ``$default`` route response makes two-way (``None`` for other keys)."""
        properties = self._properties(logical_id)
        key = self.value(properties.get("RouteResponseKey"), f"{logical_id}.RouteResponseKey")
        if key != "$default":
            return None
        return self.points_at(
            properties.get("RouteId"),
            f"{logical_id}.RouteId",
            {"AWS::ApiGatewayV2::Route"},
            "a route of this template",
        )

    def _integration(self, logical_id: str) -> str:
        """The Lambda function an integration invokes."""
        properties = self._properties(logical_id)
        kind = self.text(
            properties.get("IntegrationType", "unset"), f"{logical_id}.IntegrationType"
        )
        if kind != "AWS_PROXY":
            raise TemplateError(
                f"{logical_id}: IntegrationType {kind} is not supported locally ({_LAMBDA_ONLY})"
            )
        return self.function_behind(
            properties.get("IntegrationUri"),
            f"{logical_id}.IntegrationUri",
            f"the invocation ARN of a function of this template ({_LAMBDA_ONLY})",
        )

    def _authorizer(self, logical_id: str) -> Authorizer:
        properties = self._properties(logical_id)
        kind = self.text(properties.get("AuthorizerType", "unset"), f"{logical_id}.AuthorizerType")
        if kind != "REQUEST":
            raise TemplateError(
                f"{logical_id}: AuthorizerType {kind} is not supported locally (REQUEST "
                "authorizers with a Lambda function of this template only)"
            )
        sources = self.value(properties.get("IdentitySource", []), f"{logical_id}.IdentitySource")
        return Authorizer(
            logical_id=logical_id,
            function=self.function_behind(
                properties.get("AuthorizerUri"),
                f"{logical_id}.AuthorizerUri",
                "the invocation ARN of a function of this template",
            ),
            identity_source=tuple(
                scalar_text(source, f"{logical_id}.IdentitySource")
                for source in (sources if isinstance(sources, list) else [sources])
            ),
        )

    def _stage(self, api_id: str) -> str | None:
        stages = self._of_api("AWS::ApiGatewayV2::Stage", api_id)
        if not stages:
            return None
        name = self.text(self._properties(stages[0]).get("StageName"), f"{stages[0]}.StageName")
        if len(stages) > 1:
            self.notes.append(f"{', '.join(stages)}: only the first stage, {name}, runs locally")
        return name

    # -- functions -----------------------------------------------------------------------------

    def functions(self) -> dict[str, Function]:
        """Every Lambda function, by logical id.

        :raises TemplateError: an image function, a runtime other than Python, inline code.
        """
        functions: dict[str, Function] = {}
        no_code: dict[str, list[str]] = {}
        for logical_id in self.of_type(_FUNCTION):
            properties = self._properties(logical_id)
            if self.value(properties.get("PackageType", "Zip"), logical_id) == "Image":
                raise TemplateError(
                    f"{logical_id}: PackageType Image is not supported locally "
                    "(zip functions with a Python runtime only)"
                )
            runtime = self.text(properties.get("Runtime", "unset"), f"{logical_id}.Runtime")
            if not runtime.startswith("python"):
                raise TemplateError(
                    f"{logical_id}: runtime {runtime} is not supported locally "
                    "(Python runtimes only, such as python3.12)"
                )
            code_uri, reason = self._code(logical_id, properties)
            if reason is not None:
                no_code.setdefault(reason, []).append(logical_id)
            environment = (properties.get("Environment") or {}).get("Variables") or {}
            if not isinstance(environment, dict) or _is_intrinsic(environment):
                raise TemplateError(
                    f"{logical_id}: Environment.Variables must be a mapping of names to values"
                )
            reserved = properties.get("ReservedConcurrentExecutions")
            functions[logical_id] = Function(
                logical_id=logical_id,
                handler=self.text(properties.get("Handler"), f"{logical_id}.Handler"),
                runtime=runtime,
                code_uri=code_uri,
                timeout_s=self.number(properties.get("Timeout", 3), f"{logical_id}.Timeout"),
                memory_mb=self.number(
                    properties.get("MemorySize", 128), f"{logical_id}.MemorySize"
                ),
                environment=environment,
                reserved_concurrency=None
                if reserved is None
                else self.number(reserved, f"{logical_id}.ReservedConcurrentExecutions"),
            )
        for reason, ids in no_code.items():
            whose = "its handler runs" if len(ids) == 1 else "their handlers run"
            self.notes.append(f"{', '.join(ids)}: {reason}; {whose} from the installed environment")
        return functions

    def _code(
        self, logical_id: str, properties: Mapping[str, Any]
    ) -> tuple[Path | None, str | None]:
        """The function's code directory, or ``None`` and why not."""
        if logical_id in self.code:
            uri = self.code[logical_id]
        else:
            uri = properties.get("Code")
            if isinstance(uri, dict) and "ZipFile" in uri:
                raise TemplateError(
                    f"{logical_id}: inline code (InlineCode, ZipFile) is not supported locally "
                    "(CodeUri a directory, or the handler importable here)"
                )
        if uri is None:
            return None, "no CodeUri"
        location = self.value(uri, f"{logical_id}.CodeUri")
        if isinstance(location, dict):
            bucket = location.get("Bucket", location.get("S3Bucket"))
            key = location.get("Key", location.get("S3Key"))
            return None, f"code in S3 (s3://{bucket}/{key}) is not fetched"
        text = scalar_text(location, f"{logical_id}.CodeUri")
        if text.startswith("s3://"):
            return None, f"code in S3 ({text}) is not fetched"
        directory = (self.path.parent / text).resolve()
        if directory.is_dir():
            return directory, None
        if directory.exists():
            return None, (
                f"CodeUri {text} is a built artifact, never unpacked here "
                "(it may be built for another architecture)"
            )
        return None, f"CodeUri {text} does not exist"

    # -- tables, queues, mappings --------------------------------------------------------------

    def tables(self) -> dict[str, Table]:
        """Every DynamoDB table, by logical id."""
        tables: dict[str, Table] = {}
        for logical_id in self.of_type(_TABLE):
            properties = self.value(self._properties(logical_id), logical_id)
            definition: dict[str, Any] = {
                key: properties[key]
                for key in ("AttributeDefinitions", "KeySchema")
                if key in properties
            }
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if properties.get(key):
                    definition[key] = [
                        {name: _numbers(index[name]) for name in _INDEX_KEYS if name in index}
                        for index in properties[key]
                    ]
            definition["BillingMode"] = properties.get("BillingMode", "PROVISIONED")
            if "ProvisionedThroughput" in properties:
                definition["ProvisionedThroughput"] = _numbers(properties["ProvisionedThroughput"])
            stream = properties.get("StreamSpecification") or {}
            if "StreamViewType" in stream:
                definition["StreamSpecification"] = {
                    "StreamEnabled": True,
                    "StreamViewType": stream["StreamViewType"],
                }
            ttl = properties.get("TimeToLiveSpecification") or {}
            enabled = scalar_text(ttl.get("Enabled", False), logical_id) == "true"
            name = properties.get("TableName")
            tables[logical_id] = Table(
                logical_id=logical_id,
                definition=definition,
                time_to_live={"Enabled": True, "AttributeName": ttl["AttributeName"]}
                if enabled
                else None,
                name=None if name is None else scalar_text(name, f"{logical_id}.TableName"),
            )
        return tables

    def queues(self) -> dict[str, Queue]:
        """Every SQS queue, by logical id, dead-letter queues before the queues using them.

        :raises TemplateError: a redrive policy to a queue not in the template, or a cycle.
        """
        queues: dict[str, Queue] = {}
        for logical_id in self.of_type(_QUEUE):
            properties = self._properties(logical_id)
            attributes: dict[str, str] = {
                name: self.text(properties[name], f"{logical_id}.{name}")
                for name in _QUEUE_ATTRIBUTES
                if name in properties
            }
            name = properties.get("QueueName")
            queues[logical_id] = Queue(
                logical_id=logical_id,
                attributes=attributes,
                redrive=self._redrive(logical_id, properties.get("RedrivePolicy")),
                name=None if name is None else self.text(name, f"{logical_id}.QueueName"),
            )
        order = graphlib.TopologicalSorter(
            {
                logical_id: {queue.redrive.dead_letter_queue} if queue.redrive else set()
                for logical_id, queue in queues.items()
            }
        )
        try:
            return {logical_id: queues[logical_id] for logical_id in order.static_order()}
        except graphlib.CycleError as error:
            raise TemplateError(f"queues redrive into each other: {error.args[1]}") from None

    def _redrive(self, logical_id: str, policy: Any) -> Redrive | None:
        if policy is None:
            return None
        where = f"{logical_id}.RedrivePolicy"
        if isinstance(policy, str):
            policy = json.loads(policy)
        if not isinstance(policy, dict) or _is_intrinsic(policy):
            raise TemplateError(f"{where}: must be a mapping with deadLetterTargetArn")
        return Redrive(
            dead_letter_queue=self.points_at(
                policy.get("deadLetterTargetArn"),
                f"{where}.deadLetterTargetArn",
                {_QUEUE},
                "the Arn of a queue of this template",
            ),
            max_receive_count=self.number(
                policy.get("maxReceiveCount"), f"{where}.maxReceiveCount"
            ),
        )

    def mappings(self) -> dict[str, QueueMapping]:
        """Every event source mapping, by logical id.

        :raises TemplateError: a source other than a queue of the template.
        """
        mappings: dict[str, QueueMapping] = {}
        for logical_id in self.of_type("AWS::Lambda::EventSourceMapping"):
            properties = self._properties(logical_id)
            scaling = self.value(
                properties.get("ScalingConfig") or {}, f"{logical_id}.ScalingConfig"
            )
            concurrency = scaling.get("MaximumConcurrency")
            types = self.value(properties.get("FunctionResponseTypes", []), logical_id)
            mappings[logical_id] = QueueMapping(
                logical_id=logical_id,
                function=self.function_behind(
                    properties.get("FunctionName"),
                    f"{logical_id}.FunctionName",
                    "a function of this template",
                ),
                queue=self.points_at(
                    properties.get("EventSourceArn"),
                    f"{logical_id}.EventSourceArn",
                    {_QUEUE},
                    "the Arn of an SQS queue of this template (other event sources do not run "
                    "locally)",
                ),
                batch_size=self.number(properties.get("BatchSize", 10), f"{logical_id}.BatchSize"),
                maximum_batching_window_s=self.number(
                    properties.get("MaximumBatchingWindowInSeconds", 0),
                    f"{logical_id}.MaximumBatchingWindowInSeconds",
                ),
                function_response_types=tuple(scalar_text(t, logical_id) for t in types),
                maximum_concurrency=None
                if concurrency is None
                else self.number(concurrency, f"{logical_id}.ScalingConfig.MaximumConcurrency"),
                enabled=self.text(properties.get("Enabled", True), f"{logical_id}.Enabled")
                == "true",
            )
        return mappings


def _is_intrinsic(node: Mapping[str, Any]) -> bool:
    """Whether ``node`` is a function call (``Ref``, ``Fn::...``) rather than a mapping."""
    (key, *others) = node or {"": None}
    return not others and (key in {"Ref", "Condition"} or key.startswith("Fn::"))


def _numbers(node: Any) -> Any:
    """A ``ProvisionedThroughput``-like mapping with its counts as integers (CloudFormation
    accepts ``"5"``; ``CreateTable`` does not)."""
    if isinstance(node, dict):
        return {key: _numbers(value) for key, value in node.items()}
    if isinstance(node, str) and node.isdigit():
        return int(node)
    return node
