"""The layers stay apart: read from every module's imports, so a path says what a module may touch.

- ``wsfanout/core/`` is pure: no botocore, aiohttp, aioboto3, Powertools, and nothing of
  ``wsfanout.aws`` or of the edges;
- ``core/``, ``aws/``, ``handlers/``, ``app/``, ``apps/`` and ``testing/`` never import the
  edges that need the ``local`` and ``bench`` extras (``local/``, ``bench/``) or the command line
  (``cli/``).

Imports under ``if TYPE_CHECKING:`` count too: a type that names botocore is a dependency on it.

And the sender path (what ``pip install wsfanout`` must run: every public name of ``wsfanout``,
the registry, the gateways, the job queue, the App's backend send, the in-memory doubles) loads
no module of an extra, checked by importing it in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import wsfanout
from wsfanout.extras import EXTRAS

PACKAGE = Path(wsfanout.__file__).parent

THIRD_PARTY_OUT_OF_CORE = (
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "aws_lambda_powertools",
    "boto3",
    "botocore",
    "types_aiobotocore",
)
EDGES = ("wsfanout.bench", "wsfanout.cli", "wsfanout.local")
RULES: dict[str, tuple[str, ...]] = {
    "core": (
        *THIRD_PARTY_OUT_OF_CORE,
        "wsfanout.aws",
        "wsfanout.handlers",
        "wsfanout.app",
        "wsfanout.testing",
        *EDGES,
    ),
    "aws": (*EDGES, "wsfanout.handlers", "wsfanout.app"),
    "handlers": EDGES,
    "app": EDGES,
    "apps": EDGES,
    "testing": EDGES,
}


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the code of ``module``) imports, relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            if node.module is None:  # ``from .. import aws`` imports the modules it names
                found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def violations(layer: str, module: str, source: str, *, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that its layer forbids."""
    forbidden = RULES[layer]
    return sorted(
        name
        for name in imported_modules(source, module, is_package=is_package)
        if any(name == bad or name.startswith((f"{bad}.", f"{bad}_")) for bad in forbidden)
    )


def modules_of(layer: str) -> list[tuple[str, Path]]:
    return [
        (".".join(("wsfanout", *path.relative_to(PACKAGE).with_suffix("").parts)), path)
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    ]


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_nothing_it_must_not(layer: str) -> None:
    modules = modules_of(layer)
    assert modules, f"no modules found in wsfanout/{layer}/"
    found = {
        module: bad
        for module, path in modules
        if (
            bad := violations(
                layer, module, path.read_text(), is_package=path.name == "__init__.py"
            )
        )
    }
    assert found == {}


def test_core_is_the_engine_and_its_contracts() -> None:
    """The layout the rules speak of exists: the engine and its seams live in core/."""
    names = {path.stem for _, path in modules_of("core")}
    assert {"fanout", "pacing", "jobs", "outcomes", "interfaces", "models", "protocol"} <= names


@pytest.mark.parametrize(
    ("layer", "source", "expected"),
    [
        ("core", "import botocore.exceptions", ["botocore.exceptions"]),
        ("core", "from aiohttp import ClientSession", ["aiohttp"]),
        ("core", "from ..aws.registry import Registry", ["wsfanout.aws.registry"]),
        ("core", "from .. import aws", ["wsfanout.aws"]),
        ("core", "from types_aiobotocore_sqs import SQSClient", ["types_aiobotocore_sqs"]),
        (
            "core",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import aioboto3",
            ["aioboto3"],
        ),
        ("core", "from ..exceptions import WsFanoutError\nfrom .models import Cursor", []),
        ("aws", "from ..local.emulator import serve", ["wsfanout.local.emulator"]),
        ("aws", "import botocore", []),
        ("handlers", "from ..bench import harness", ["wsfanout.bench"]),
        ("handlers", "from .. import local", ["wsfanout.local"]),
        ("handlers", "from ..aws.clients import Clients", []),
    ],
)
def test_the_check_sees_each_kind_of_import(layer: str, source: str, expected: list[str]) -> None:
    """The rule itself can fail: each forbidden spelling is caught, allowed ones pass."""
    assert violations(layer, f"wsfanout.{layer}.example", source) == expected


SENDER_PATH = (
    "wsfanout.aws.clients",
    "wsfanout.aws.gateway",
    "wsfanout.aws.lean",
    "wsfanout.aws.queue",
    "wsfanout.aws.registry",
    "wsfanout.app",
    "wsfanout.core.auth",
    "wsfanout.core.fanout",
    "wsfanout.core.jobs",
    "wsfanout.testing",
    "wsfanout.cli.entry",
    "wsfanout.cli.package",
)
_LOADED = """
import importlib, json, sys
import wsfanout
for name in wsfanout.__all__:
    getattr(wsfanout, name)
for module in sys.argv[1:]:
    importlib.import_module(module)
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def test_the_sender_path_loads_no_extra() -> None:
    done = subprocess.run(  # noqa: S603  (this interpreter, fixed code)
        [sys.executable, "-c", _LOADED, *SENDER_PATH],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(done.stdout))
    assert "aioboto3" in loaded, "the check imported the sender path"
    extras_modules = set().union(*EXTRAS.values()) | {"matplotlib", "moto"}
    assert loaded & extras_modules == set()


def test_the_client_imports_nothing_of_the_server_side() -> None:
    """``wsfanout.client`` runs where only ``[client]`` is installed: of wsfanout, it imports the
    exception tree and the extras' hint alone."""
    source = (PACKAGE / "client.py").read_text()
    ours = {name for name in imported_modules(source, "wsfanout.client") if "wsfanout" in name}
    assert ours == {"wsfanout.exceptions", "wsfanout.extras"}
    third_party = {
        name.partition(".")[0]
        for name in imported_modules(source, "wsfanout.client")
        if name.partition(".")[0] not in sys.stdlib_module_names
    } - {"wsfanout", "__future__"}
    assert third_party == {"websockets"}
