"""A template file to plain CloudFormation: parse, take parameter values, expand SAM.

YAML short forms (``!Ref``, ``!GetAtt``, ``!Sub``...) and anchors are parsed by cfn-lint's
decoder, as ``tests/deploy`` parses the project's template. SAM (``Transform:
AWS::Serverless-2016-10-31``) is expanded by aws-sam-translator itself, so a
``AWS::Serverless::Function`` or ``AWS::Serverless::WebSocketApi`` and its raw
``AWS::Lambda::Function`` / ``AWS::ApiGatewayV2::*`` spelling are read by one code path
afterwards.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cfnlint.decode import decode
from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from ...exceptions import TemplateError
from .intrinsics import Evaluator, ParameterValue, Scope

__all__ = [
    "SAM_TRANSFORM",
    "check_rules",
    "expand_sam",
    "parameter_values",
    "read_template",
    "scope_of",
]

SAM_TRANSFORM: Final = "AWS::Serverless-2016-10-31"
_CODE_PLACEHOLDER: Final = "s3://wsfanout-local-code/{}"
_NUMBER: Final = re.compile(r"-?\d+(\.\d+)?")


def read_template(path: Path) -> dict[str, Any]:
    """The template at ``path`` as plain JSON-like data (YAML tags and anchors resolved).

    :raises TemplateError: no such file, it does not parse, or it has no ``Resources``.
    """
    if not path.is_file():
        raise TemplateError(f"no template at {path}")
    template, matches = decode(str(path))
    if matches:
        first = matches[0]
        raise TemplateError(f"{path}:{first.linenumber}: {first.message}")
    # cfn-lint's node types carry line numbers; plain data is what the translator expects.
    data: Any = json.loads(json.dumps(template, default=str))
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources mapping)")
    for logical_id, resource in data["Resources"].items():
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise TemplateError(f"{path}: resource {logical_id} is not a mapping with a Type")
    return data


def parameter_values(
    template: Mapping[str, Any], overrides: Mapping[str, str]
) -> dict[str, ParameterValue]:
    """Each declared parameter's value: its override, else its ``Default``; list types
    (``CommaDelimitedList``, ``List<...>``) as lists. Checked as CloudFormation checks them:
    ``AllowedValues``, ``AllowedPattern``, ``MinLength``/``MaxLength``, ``Number`` with
    ``MinValue``/``MaxValue``.

    :raises TemplateError: an override of an undeclared parameter, a parameter with neither,
        or a value its constraints refuse.
    """
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(
            f"parameter {unknown[0]} is not declared in the template "
            f"(declared: {', '.join(declared) or 'none'})"
        )
    values: dict[str, ParameterValue] = {}
    for name, spec in declared.items():
        if name in overrides:
            text = overrides[name]
        elif "Default" in spec:
            default = spec["Default"]
            text = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        else:
            raise TemplateError(f"parameter {name} has no Default: give it a value")
        kind = str(spec.get("Type", "String"))
        if kind.startswith("AWS::SSM::"):
            raise TemplateError(
                f"parameter {name}: type {kind} reads SSM, which is not available locally "
                "(String, Number and list parameters are supported)"
            )
        is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
        items = [item.strip() for item in text.split(",")] if is_list else [text]
        for item in items:
            _check_parameter(name, spec, kind, item)
        values[name] = items if is_list else text
    return values


def _check_parameter(name: str, spec: Mapping[str, Any], kind: str, value: str) -> None:
    # a NoEcho parameter (a secret) is never repeated in a message
    shown = (
        f"{name}=****"
        if str(spec.get("NoEcho", "false")).lower() == "true"
        else f"{name}={value!r}"
    )
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(option) for option in allowed]:
        raise TemplateError(
            f"parameter {shown} is not one of its AllowedValues "
            f"({', '.join(str(option) for option in allowed)})"
        )
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        raise TemplateError(f"parameter {shown} does not match {pattern}")
    if len(value) < int(spec.get("MinLength", 0)):
        raise TemplateError(f"parameter {shown} is shorter than {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {shown} is longer than {spec['MaxLength']}")
    if kind in {"Number", "List<Number>"}:
        if not _NUMBER.fullmatch(value):
            raise TemplateError(f"parameter {shown} is not a number")
        number = float(value)
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {shown} is below its MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {shown} is above its MaxValue {spec['MaxValue']}")


def check_rules(template: Mapping[str, Any], conditions: Evaluator) -> None:
    """Apply the template's ``Rules`` as CloudFormation does before it creates anything: where a
    rule's ``RuleCondition`` holds, each ``Assert`` must. A rule using a function evaluated only
    by CloudFormation (``Fn::EachMemberEquals``, ``Fn::ValueOf``...) is left to it.

    :raises TemplateError: an assertion fails (its ``AssertDescription`` is the message).
    """
    for name, rule in (template.get("Rules") or {}).items():
        evaluator = conditions.at(f"rule {name}")
        try:
            applies = "RuleCondition" not in rule or evaluator.truth(rule["RuleCondition"])
            failed = [
                assertion
                for assertion in rule.get("Assertions", [])
                if applies and not evaluator.truth(assertion["Assert"])
            ]
        except TemplateError:
            continue  # not evaluable here; CloudFormation will check it
        if failed:
            description = failed[0].get("AssertDescription", "an assertion fails")
            raise TemplateError(f"rule {name}: {description}")


def expand_sam(
    template: Mapping[str, Any],
    parameters: Mapping[str, ParameterValue],
    pseudo: Mapping[str, ParameterValue],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``template`` as plain CloudFormation, and each SAM function's own ``CodeUri`` (or
    ``Globals``', unevaluated; ``None`` when it has none) by logical id.

    A template without the SAM transform comes back as it is. Before translating, each
    function's ``CodeUri`` is replaced by an S3 placeholder, as ``sam package`` would replace
    it, because the translator accepts only S3 locations; the original is returned for the
    local run.

    :raises TemplateError: another transform (a macro, ``AWS::LanguageExtensions``), or the
        translator refuses the template (its first complaint, which names the resource).
    """
    transforms = template.get("Transform") or []
    transforms = transforms if isinstance(transforms, list) else [transforms]
    others = [str(name) for name in transforms if name != SAM_TRANSFORM]
    if others:
        raise TemplateError(
            f"Transform {others[0]} is not supported locally (only {SAM_TRANSFORM})"
        )
    sam = copy.deepcopy(dict(template))
    if not transforms:
        return sam, {}
    for logical_id, resource in sam["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Application":
            # the translator would ask the Serverless Application Repository (a network call)
            raise TemplateError(
                f"{logical_id}: nested applications (AWS::Serverless::Application) are not "
                "supported locally (one template with its own functions)"
            )
    function_globals = (sam.get("Globals") or {}).get("Function") or {}
    shared_code = function_globals.pop("CodeUri", None)
    code: dict[str, Any] = {}
    for logical_id, resource in sam["Resources"].items():
        properties = resource.setdefault("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            if "InlineCode" in properties or properties.get("PackageType") == "Image":
                continue  # refused when the function is read, with its own message
            code[logical_id] = properties.get("CodeUri", shared_code)
            properties["CodeUri"] = _CODE_PLACEHOLDER.format(logical_id)
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = _CODE_PLACEHOLDER.format(logical_id)  # layers: not run
    session = _RegionOnly(str(pseudo["AWS::Region"]))
    # The translator times itself into a Metrics object that logs a warning when it is
    # collected unpublished; its default publisher discards them, so publish at the end.
    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())
    translator = Translator(None, Parser(), boto_session=session, metrics=metrics)
    try:
        expanded: dict[str, Any] = translator.translate(
            sam,
            parameter_values={**parameters, **pseudo},
            # IAM is not enforced locally, so no managed policy ARNs are looked up (the SDK's
            # ManagedPolicyLoader would call IAM); SAM then writes policy names as given.
            get_managed_policy_map=dict,
        )
    except InvalidDocumentException as error:
        causes = [getattr(cause, "message", str(cause)) for cause in error.causes]
        more = f" (and {len(causes) - 1} more)" if len(causes) > 1 else ""
        raise TemplateError(f"{causes[0] if causes else error}{more}") from None
    finally:
        metrics.publish()
    return expanded, code


@dataclass(frozen=True)
class _RegionOnly:
    """The translator's ``boto_session``: it reads only ``region_name`` from it (for ARNs and the
    partition). A boto3 Session would read the developer's AWS config files on creation, and
    fail on an ``AWS_PROFILE`` they lack; a local run never depends on either."""

    region_name: str


def scope_of(
    template: Mapping[str, Any],
    parameters: Mapping[str, ParameterValue],
    pseudo: Mapping[str, ParameterValue],
) -> Scope:
    """The :class:`Scope` of ``template`` before its resources are known (for conditions)."""
    return Scope(
        parameters=parameters,
        pseudo=pseudo,
        conditions=template.get("Conditions") or {},
        mappings=template.get("Mappings") or {},
    )
