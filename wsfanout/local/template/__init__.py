"""A SAM or CloudFormation template of a WebSocket API, read for ``wsfanout dev --template``.

:func:`load_template` parses the template, takes its parameter values (defaults and overrides,
checked as CloudFormation checks them), applies its ``Rules``, expands SAM with
aws-sam-translator (so ``AWS::Serverless::Function``/``WebSocketApi`` and the raw
``AWS::Lambda::Function``/``AWS::ApiGatewayV2::*`` resources are read alike), evaluates
``Conditions`` and returns a :class:`LocalTemplate`: the one WebSocket API and its routes, the
Lambda functions, DynamoDB tables, SQS queues and SQS event source mappings, by logical id.
Values that depend on what the local stack creates stay unresolved until
:meth:`LocalTemplate.resolve` and :meth:`LocalTemplate.environment_of` are given a
:class:`LocalResources`.

A function's code runs from its ``CodeUri`` directory; a ``.zip`` artifact (possibly built for
another architecture, such as arm64), code in S3 or a missing path is never unpacked or fetched:
the handler is imported from the installed environment instead, and :attr:`LocalTemplate.notes`
says so once. Anything the local stack cannot run raises :class:`TemplateError` with one line
naming the resource and what is supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ...aws.account import ACCOUNT_ID, REGION
from ...exceptions import TemplateError
from .intrinsics import Evaluator, ParameterValue, Scope
from .model import (
    Authorizer,
    Function,
    LocalQueue,
    LocalResources,
    LocalTemplate,
    Queue,
    QueueMapping,
    Redrive,
    Route,
    Table,
    WebSocketApi,
)
from .reader import Reader
from .source import check_rules, expand_sam, parameter_values, read_template, scope_of

__all__ = [
    "DEFAULT_STACK_NAME",
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
    "TemplateError",
    "WebSocketApi",
    "load_template",
]

DEFAULT_STACK_NAME: Final = "wsfanout"
"""``AWS::StackName`` of a local run."""


def load_template(
    path: Path | str,
    parameters: Mapping[str, str] | None = None,
    *,
    region: str = REGION,
    stack_name: str = DEFAULT_STACK_NAME,
) -> LocalTemplate:
    """Read the template at ``path`` with ``parameters`` overriding its defaults.

    Pseudo parameters: ``AWS::Region`` is ``region`` (the local stack's), ``AWS::AccountId``
    the local account (123456789012), ``AWS::StackName`` ``stack_name``, ``AWS::Partition``
    ``aws``, ``AWS::URLSuffix`` ``amazonaws.com``. No network and no AWS call is made.

    :raises TemplateError: the file does not parse, a parameter value is refused, a rule fails,
        the SAM transform refuses the template, or it declares something the local stack cannot
        run (the message names the resource and what is supported).
    """
    path = Path(path)
    source = read_template(path)
    values = parameter_values(source, parameters or {})
    pseudo: dict[str, ParameterValue] = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }
    check_rules(source, Evaluator(scope_of(source, values, pseudo), _no_resource, "Rules"))
    expanded, code = expand_sam(source, values, pseudo)
    conditions = Evaluator(scope_of(expanded, values, pseudo), _no_resource, "Conditions")
    present: dict[str, dict[str, object]] = {}
    left_out: set[str] = set()
    for logical_id, resource in expanded["Resources"].items():
        condition = resource.get("Condition")
        if condition is None or conditions.at(logical_id).condition(str(condition)):
            present[logical_id] = resource
        else:
            left_out.add(logical_id)
    scope = Scope(
        parameters=values,
        pseudo=pseudo,
        conditions=expanded.get("Conditions") or {},
        mappings=expanded.get("Mappings") or {},
        resources={
            logical_id: str(resource.get("Type")) for logical_id, resource in present.items()
        },
        left_out=frozenset(left_out),
    )
    reader = Reader(path, present, scope, code)
    api, stage = reader.api()
    return LocalTemplate(
        path=path,
        api=api,
        functions=reader.functions(),
        tables=reader.tables(),
        queues=reader.queues(),
        mappings=reader.mappings(),
        stage=stage,
        region=region,
        parameters=values,
        notes=tuple(reader.notes),
        scope=scope,
    )


def _no_resource(logical_id: str, attribute: str | None) -> object:
    """Conditions and rules cannot refer to resources (CloudFormation refuses them too)."""
    raise TemplateError(f"refers to resource {logical_id}; conditions may use parameters only")
