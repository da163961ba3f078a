"""The SAM template, loaded and transformed offline, and a little help reading what it made.

``transform`` runs aws-sam-translator as CloudFormation's ``AWS::Serverless-2016-10-31``
transform would, after doing what ``sam deploy`` does first: point ``CodeUri`` at S3. ``render``
turns an intrinsic (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``) into a sample string, the same way on
both sides of a comparison, so ARNs and URLs can be matched without an AWS account.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "wsfanout",
}


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain JSON-like data (YAML tags and anchors resolved)."""
    template, matches = decode(str(path))
    if matches:
        raise AssertionError(f"{path} does not parse: {[str(m) for m in matches]}")
    data: dict[str, Any] = json.loads(json.dumps(template))
    return data


def transform(template: dict[str, Any]) -> dict[str, Any]:
    """The SAM transform of ``template`` (a copy), as CloudFormation would run it."""
    sam = json.loads(json.dumps(template))
    sam["Globals"]["Function"]["CodeUri"] = "s3://wsfanout-artifacts/lambda.zip"
    translator = Translator(
        None, Parser(), boto_session=boto3.Session(region_name=PSEUDO["AWS::Region"])
    )
    result: dict[str, Any] = translator.translate(
        sam, parameter_values={}, get_managed_policy_map=dict
    )
    return result


class Renderer:
    """Sample values for intrinsics: parameters take their defaults, resources their names."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.parameters = {
            name: str(spec.get("Default", f"<{name}>"))
            for name, spec in template.get("Parameters", {}).items()
        }

    def name(self, reference: str) -> str:
        if reference in PSEUDO:
            return PSEUDO[reference]
        if reference in self.parameters:
            return self.parameters[reference]
        return f"<{reference}>"  # a resource: its Ref, or "<Resource.Attribute>" for GetAtt

    def __call__(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self.name(argument)
            if function == "Fn::GetAtt":
                return self.name(".".join(argument))
            if function == "Fn::Sub" and isinstance(argument, str):
                return re.sub(r"\$\{([^}!]+)\}", lambda found: self.name(found.group(1)), argument)
        raise ValueError(f"cannot render {value!r}")


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The resources of one type, by logical id."""
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a role's inline policies, with Action and Resource as lists."""
    return [
        {
            **statement,
            "Action": listify(statement["Action"]),
            "Resource": listify(statement["Resource"]),
        }
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
