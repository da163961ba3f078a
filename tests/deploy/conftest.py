"""The deploy template, parsed and SAM-transformed once per session."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy import cfn


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return cfn.load()


@pytest.fixture(scope="session")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    return cfn.transform(template)


@pytest.fixture(scope="session")
def render(template: dict[str, Any]) -> cfn.Renderer:
    return cfn.Renderer(template)


@pytest.fixture(scope="session")
def handlers(transformed: dict[str, Any]) -> dict[str, str]:
    """Each Lambda function's handler string, by logical id."""
    return {
        name: function["Properties"]["Handler"]
        for name, function in cfn.of_type(transformed, "AWS::Lambda::Function").items()
    }
