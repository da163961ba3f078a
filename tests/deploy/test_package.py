"""deploy/package.py and ``wsfanout package``: the Lambda artifact, built with pip's platform
options and no Docker.

The module builds three artifacts at once: wsfanout's own (``make package``) for arm64 and
Python 3.12 and for this machine, and, for this machine, a project made by ``wsfanout new`` with
a route, a package and a dependency of its own. It then imports and runs the handlers from the
local ones in a clean interpreter (only the standard library and the artifact on ``sys.path``),
against moto server for DynamoDB and SQS.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import wsfanout
from tests.deploy import cfn
from tests.events import load_event
from wsfanout.aws import table
from wsfanout.aws.account import CREDENTIALS, KEY_ID, REGION
from wsfanout.aws.table import table_definition
from wsfanout.cli import package as package_cli
from wsfanout.cli.bytecode import find_python, is_unchecked_hash_pyc
from wsfanout.cli.main import main
from wsfanout.cli.new import create_project
from wsfanout.testing import connect_event, message_event

pytestmark = pytest.mark.timeout(600)  # the first test waits for the three builds

SCRIPT = cfn.ROOT / "deploy" / "package.py"
LAMBDA_PYTHON = find_python(None, "3.12")
PYC_312_MAGIC = (3531).to_bytes(2, "little") + b"\r\n"  # Python 3.12's bytecode magic number
INVOKE = Path(__file__).with_name("invoke.py")
BUILD_TIMEOUT_S = 540
ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "arm64": 183}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wsfanout_deploy_package", SCRIPT)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


package = _load_script()


@dataclass(frozen=True)
class Built:
    directory: Path
    zip_path: Path
    report: str


# The project's own route, in a package of its own that imports a dependency of its own.
ROUTE = '''

from topics import room_for


@app.route("follow")
async def follow(ctx: Context) -> None:
    """``{"action": "follow", "topic": "news"}``: the sender joins the topic's room."""
    await ctx.join(room_for(ctx.json["topic"]))
'''
TOPICS = '''"""Rooms by topic."""

import iniconfig  # a dependency of the project's own (pyproject.toml)

PARSER = iniconfig.IniConfig


def room_for(topic: str) -> str:
    return f"topic-{topic}"
'''
NOT_CODE = ("tests/test_more.py", "conftest.py", ".venv-x/lib/m.py", "build/old.py", "docs/a.md")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project from ``wsfanout new`` with a route, a package and a dependency of its own, and
    files that are not its code."""
    directory = tmp_path_factory.mktemp("projects") / "chat-app"
    create_project(directory)
    app = directory / "app.py"
    handler = "\nhandler = app.lambda_handler\n"
    app.write_text(app.read_text().replace(handler, ROUTE + handler))
    (directory / "topics").mkdir()
    (directory / "topics" / "__init__.py").write_text(TOPICS)
    (directory / "topics" / "__pycache__").mkdir()
    (directory / "topics" / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"")
    pyproject = directory / "pyproject.toml"
    generated = pyproject.read_text()
    assert '["wsfanout[lambda]"]' in generated, "the project's dependencies, as generated"
    pyproject.write_text(
        generated.replace('["wsfanout[lambda]"]', '["wsfanout[lambda]", "iniconfig"]')
    )
    for relative in NOT_CODE:
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text("")
    return directory


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, project: Path) -> dict[str, Built]:
    """The three artifacts, built in parallel by ``make package``'s script and ``wsfanout
    package``."""
    commands = {
        "arm64": [str(SCRIPT)],
        "local": [str(SCRIPT), "--local"],
        "project": ["-m", "wsfanout.cli", "package", "--app-dir", str(project), "--local"],
    }
    runs = {}
    for kind, arguments in commands.items():
        out = tmp_path_factory.mktemp(f"artifact-{kind}")
        command = [sys.executable, *arguments, "--out", str(out)]
        process = subprocess.Popen(  # noqa: S603  (our interpreter, our script)
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        runs[kind] = (out, process)
    artifacts = {}
    try:
        for kind, (out, process) in runs.items():
            stdout, stderr = process.communicate(timeout=BUILD_TIMEOUT_S)
            assert process.returncode == 0, f"{kind} build failed: {stderr.strip()}"
            artifacts[kind] = Built(out / "lambda", out / "lambda.zip", stdout.strip())
    finally:
        for _, process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return artifacts


def run_in_artifact(
    artifact: Path,
    tmp_path: Path,
    calls: list[dict[str, Any]],
    *,
    env: dict[str, str],
    clients: bool = False,
) -> dict[str, Any]:
    """Run ``invoke.py`` in ``python -I -S`` over the artifact; return what it wrote."""
    out = tmp_path / f"result-{time.monotonic_ns()}.json"
    request = json.dumps({"out": str(out), "calls": calls, "clients": clients})
    done = subprocess.run(  # noqa: S603  (our interpreter, our script)
        [sys.executable, "-I", "-S", str(INVOKE), str(artifact)],
        input=request,
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": str(tmp_path), **env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def lambda_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """What Lambda sets (region, credentials) plus the function's own variables."""
    return {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **CREDENTIALS,
        "AWS_SESSION_TOKEN": KEY_ID,  # Lambda's role credentials carry a session token
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_LAMBDA_FUNCTION_NAME": "wsfanout-artifact",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **settings,
    }


# -- the arm64 artifact ------------------------------------------------------------------------


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def test_the_lambda_build_is_for_arm64_and_python312(built: dict[str, Built]) -> None:
    artifact = built["arm64"]
    libraries = list(artifact.directory.rglob("*.so"))
    assert libraries, "no compiled extension at all: not the dependencies expected"
    assert {elf_machine(path) for path in libraries} == {ELF_MACHINE["aarch64"]}
    extensions = [p.name for p in libraries if ".cpython-" in p.name]
    assert extensions
    assert all("cpython-312-aarch64-linux-gnu" in name for name in extensions), extensions
    assert "(arm64, Python 3.12)" in artifact.report
    assert "MiB zipped" in artifact.report
    assert "MiB unzipped" in artifact.report


@pytest.mark.skipif(sys.platform != "linux", reason="reads ELF headers")
def test_the_local_build_is_for_this_machine(built: dict[str, Built]) -> None:
    libraries = list(built["local"].directory.rglob("*.so"))
    assert {elf_machine(path) for path in libraries} == {ELF_MACHINE[platform.machine()]}
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    assert all(tag in p.name for p in libraries if ".cpython-" in p.name)


@pytest.mark.parametrize("kind", ["arm64", "local"])
def test_within_lambdas_size_limits(built: dict[str, Built], kind: str) -> None:
    artifact = built[kind]
    unzipped = sum(p.stat().st_size for p in artifact.directory.rglob("*") if p.is_file())
    assert unzipped < 250 * 2**20  # Lambda's limit, code and layers together
    assert artifact.zip_path.stat().st_size < 50 * 2**20  # small enough to upload directly


@pytest.mark.parametrize("kind", ["arm64", "local", "project"])
def test_ships_the_versions_the_tests_ran_against(built: dict[str, Built], kind: str) -> None:
    shipped = {}
    for info in built[kind].directory.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        shipped[package.normalize(name)] = version
    assert {"aioboto3", "aiobotocore", "botocore", "boto3", "pydantic", "wsfanout"} <= set(shipped)
    for name, version in shipped.items():
        assert version == importlib.metadata.version(name), name


@pytest.mark.parametrize("kind", ["arm64", "local", "project"])
def test_leaves_out_what_lambda_never_runs(built: dict[str, Built], kind: str) -> None:
    directory = built[kind].directory
    shipped = {
        package.normalize(info.name.rsplit("-", 1)[0]) for info in directory.glob("*.dist-info")
    }
    assert not shipped & {"rich", "moto", "websockets", "pytest", "boto3-stubs", "mypy"}
    for relative in ("wsfanout/bench", "wsfanout/local", "wsfanout/cli", "bin"):
        assert not (directory / relative).exists(), relative
    # the caches pip or the project left are gone: every .pyc is the build's, of a module beside
    tag = "cpython-312" if kind == "arm64" else sys.implementation.cache_tag
    assert set(directory.rglob("*.pyc")) <= set(bytecode_paths(directory, tag))
    models = directory / "botocore" / "data"
    assert {p.name for p in models.iterdir() if p.is_dir()} == package.SERVICES
    for loaded_at_startup in ("endpoints.json", "partitions.json", "_retry.json"):
        assert (models / loaded_at_startup).is_file()


def bytecode_paths(directory: Path, tag: str) -> list[Path]:
    """Where the bytecode of each module of the tree goes, for interpreters of ``tag``."""
    return [
        path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc" for path in directory.rglob("*.py")
    ]


@pytest.mark.skipif(LAMBDA_PYTHON is None, reason="no Python 3.12 here to compile with")
def test_the_lambda_build_ships_unchecked_bytecode_of_every_module(
    built: dict[str, Built],
) -> None:
    assert LAMBDA_PYTHON is not None
    artifact = built["arm64"]
    expected = bytecode_paths(artifact.directory, "cpython-312")
    assert len(expected) > 500, "the handlers' dependencies, not only wsfanout"
    for pyc in expected:
        with pyc.open("rb") as file:
            header = file.read(16)
        assert header[:4] == PYC_312_MAGIC, pyc
        assert is_unchecked_hash_pyc(header), pyc
    with zipfile.ZipFile(artifact.zip_path) as zf:
        shipped = {name for name in zf.namelist() if name.endswith(".pyc")}
    assert shipped == {p.relative_to(artifact.directory).as_posix() for p in expected}
    assert f"bytecode compiled by Python {LAMBDA_PYTHON.version}" in artifact.report


def test_the_local_builds_ship_bytecode_for_this_interpreter(built: dict[str, Built]) -> None:
    for kind in ("local", "project"):
        directory = built[kind].directory
        for pyc in bytecode_paths(directory, sys.implementation.cache_tag):
            assert is_unchecked_hash_pyc(pyc.read_bytes()[:16]), pyc
        version = platform.python_version()
        assert f"bytecode compiled by Python {version}" in built[kind].report


def test_the_zip_holds_exactly_the_tree_readable_by_lambda(built: dict[str, Built]) -> None:
    artifact = built["arm64"]
    files = {
        p.relative_to(artifact.directory).as_posix()
        for p in artifact.directory.rglob("*")
        if p.is_file()
    }
    with zipfile.ZipFile(artifact.zip_path) as zf:
        entries = zf.infolist()
        assert zf.testzip() is None
    assert {e.filename for e in entries} == files
    assert "wsfanout/handlers/route.py" in files
    for entry in entries:
        assert (entry.external_attr >> 16) & 0o444 == 0o444, entry.filename
        assert entry.date_time == (1980, 1, 1, 0, 0, 0)


# -- the handlers, from the local artifact alone -----------------------------------------------


def test_every_handler_imports_from_the_artifact_alone(
    built: dict[str, Built], handlers: dict[str, str], tmp_path: Path
) -> None:
    artifact = built["local"].directory
    calls = [{"handler": handler} for handler in handlers.values()]
    result = run_in_artifact(artifact, tmp_path, calls, env=lambda_env(tmp_path))
    modules = result["modules"]
    assert modules["wsfanout"] == str(artifact / "wsfanout" / "__init__.py")
    for name in ("botocore", "pydantic", "aws_lambda_powertools"):
        assert modules[name].startswith(str(artifact)), name
    # the async AWS clients load with the first invocation that needs them, not at import, and
    # PyJWT where a token is verified (the authorizer's test below finds it in the artifact)
    assert "aioboto3" not in modules
    assert "jwt" not in modules
    assert_only_from(artifact, modules)


def assert_only_from(artifact: Path, modules: dict[str, str | None]) -> None:
    """Every module came from the artifact or the standard library, none from the CLI's extras."""
    outside = {
        name: path
        for name, path in modules.items()
        if path and not path.startswith((str(artifact), sys.base_prefix))
    }
    assert outside == {}
    assert not {"rich", "moto", "websockets"} & set(modules)


def test_the_aws_clients_open_with_the_pruned_models(
    built: dict[str, Built], tmp_path: Path
) -> None:
    env = lambda_env(
        tmp_path,
        CONNECTIONS_TABLE="connections",
        BROADCAST_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        APIGW_MANAGEMENT_ENDPOINT="https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod",
    )
    artifact = built["local"].directory
    result = run_in_artifact(artifact, tmp_path, [], env=env, clients=True)
    assert result["services"] == sorted(package.SERVICES)
    assert result["modules"]["aioboto3"].startswith(str(artifact))


@pytest.fixture
def aws(moto_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A registry table and a broadcast queue in moto server, removed afterwards."""
    name = f"wsfanout-artifact-{time.monotonic_ns()}"
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
    dynamodb.create_table(**table_definition(name))
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    env = lambda_env(
        tmp_path,
        CONNECTIONS_TABLE=name,
        BROADCAST_QUEUE_URL=queue_url,
        BROADCAST_SEGMENTS="2",
        AWS_ENDPOINT_URL_DYNAMODB=moto_url,
        AWS_ENDPOINT_URL_SQS=moto_url,
    )
    yield {"env": env, "table": name, "queue": queue_url, "dynamodb": dynamodb, "sqs": sqs}
    dynamodb.delete_table(TableName=name)
    sqs.delete_queue(QueueUrl=queue_url)


def test_route_and_broadcast_handlers_run_from_the_artifact(
    built: dict[str, Built], aws: dict[str, Any], tmp_path: Path
) -> None:
    artifact = built["local"].directory
    connect = load_event("ws_connect")
    connection_id = connect["requestContext"]["connectionId"]
    batch = load_event("sqs_batch")
    room_job, record = batch["Records"]
    # an "all" job is split into BROADCAST_SEGMENTS messages before anything is sent
    all_job = {**record, "body": json.dumps({"target": {"all": True}, "data": "hi"})}
    bad = {**record, "messageId": "not-a-job", "body": "{nope"}
    batch["Records"] = [room_job, all_job, bad]
    calls = [
        {"handler": "wsfanout.handlers.route.handler", "event": connect},
        {"handler": "wsfanout.handlers.broadcast.handler", "event": batch},
    ]
    first = run_in_artifact(artifact, tmp_path, calls, env=aws["env"])
    assert first["results"] == [
        {"statusCode": 200},
        {"batchItemFailures": [{"itemIdentifier": "not-a-job"}]},
    ]
    # $connect stored the connection with the authorizer's user
    key = {"PK": {"S": f"CONN#{connection_id}"}, "SK": {"S": "CONN"}}
    item = aws["dynamodb"].get_item(TableName=aws["table"], Key=key)["Item"]
    assert item["userId"] == {"S": "u_123"}
    # the room job kept its progress in the table; the "all" job was split into two segments
    job_id = json.loads(room_job["body"])["jobId"]
    progress = aws["dynamodb"].query(
        TableName=aws["table"],
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}},
    )
    assert progress["Count"] == 1
    segments = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)
    bodies = [json.loads(m["Body"]) for m in segments.get("Messages", [])]
    assert sorted(b["segment"] for b in bodies) == [0, 1]

    calls = [{"handler": "wsfanout.handlers.route.handler", "event": load_event("ws_disconnect")}]
    second = run_in_artifact(artifact, tmp_path, calls, env=aws["env"])
    assert second["results"] == [{"statusCode": 200}]
    assert "Item" not in aws["dynamodb"].get_item(TableName=aws["table"], Key=key)


def test_the_authorizer_verifies_rs256_from_the_artifact(
    built: dict[str, Built], tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"sub": "u_42", "exp": int(time.time()) + 300, "broadcast": True}
    token = jwt.encode(claims, key, algorithm="RS256")
    event = load_event("authorizer_request", queryStringParameters={"token": token})
    forged = load_event("authorizer_request")  # a token signed by someone else
    calls = [
        {"handler": "wsfanout.handlers.authorizer.handler", "event": event},
        {"handler": "wsfanout.handlers.authorizer.handler", "event": forged},
    ]
    # on one line, as a CloudFormation parameter carries it
    env = lambda_env(tmp_path, AUTH_JWT_PUBLIC_KEY=public.decode().replace("\n", "\\n"))
    artifact = built["local"].directory
    ran = run_in_artifact(artifact, tmp_path, calls, env=env)
    allowed, denied = ran["results"]
    assert ran["modules"]["jwt"].startswith(str(artifact))
    assert ran["modules"]["cryptography"].startswith(str(artifact))
    assert_only_from(artifact, ran["modules"])
    assert allowed["principalId"] == "u_42"
    assert allowed["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert allowed["context"] == {"userId": "u_42", "canBroadcast": True}
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny"


# -- a project's artifact (wsfanout package) ---------------------------------------------------


def test_a_projects_artifact_holds_its_code_and_not_its_tests(
    built: dict[str, Built], project: Path
) -> None:
    artifact = built["project"]
    directory = artifact.directory
    assert (directory / "app.py").read_text() == (project / "app.py").read_text()
    assert (directory / "topics" / "__init__.py").read_text() == TOPICS
    assert (directory / "iniconfig").is_dir()
    for relative in (*NOT_CODE, "tests", "pyproject.toml", "Makefile", "template.yaml"):
        assert not (directory / relative).exists(), relative
    assert artifact.report.endswith("; the project's code: app.py, topics")
    with zipfile.ZipFile(artifact.zip_path) as zf:
        assert {"app.py", "topics/__init__.py"} <= set(zf.namelist())


def test_a_projects_handler_runs_from_its_artifact_alone(
    built: dict[str, Built], aws: dict[str, Any], tmp_path: Path
) -> None:
    artifact = built["project"].directory
    connection_id = "cProject="
    calls = [
        {"handler": "app.handler", "event": connect_event(connection_id, authorizer=AUTHORIZER)},
        {"handler": "app.handler", "event": message_event(connection_id, FOLLOW)},
    ]
    result = run_in_artifact(artifact, tmp_path, calls, env=aws["env"])
    assert result["results"] == [{"statusCode": 200}, {"statusCode": 200}]
    modules = result["modules"]
    assert modules["app"] == str(artifact / "app.py")
    assert modules["topics"] == str(artifact / "topics" / "__init__.py")
    assert modules["iniconfig"].startswith(str(artifact))
    assert_only_from(artifact, modules)
    # $connect stored the connection; the project's route joined it to the topic's room
    pk = {"S": table.connection_pk(connection_id)}
    item = aws["dynamodb"].get_item(TableName=aws["table"], Key={"PK": pk, "SK": {"S": "CONN"}})
    assert item["Item"]["userId"] == {"S": "u_7"}
    membership = {"PK": pk, "SK": {"S": table.room_sk("topic-news")}}
    assert "Item" in aws["dynamodb"].get_item(TableName=aws["table"], Key=membership)


AUTHORIZER = {"userId": "u_7"}
FOLLOW = json.dumps({"action": "follow", "topic": "news"})


@pytest.mark.parametrize(
    ("files", "arguments", "reason"),
    [
        ([], [], "has no pyproject.toml: not a project to package"),
        (["pyproject.toml"], [], "has no Python code to package (no .py file)"),
        (["pyproject.toml", "tests/t.py", ".venv/m.py"], [], "has no Python code to package"),
        (["pyproject.toml", "app.py"], ["--out", "app.py"], "--out is not a directory"),
        (["app.py"], ["--app-dir", "app.py"], "--app-dir is not a directory"),
    ],
)
def test_what_is_no_project_is_refused_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: list[str],
    arguments: list[str],
    reason: str,
) -> None:
    for relative in files:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("")
    arguments = [str(tmp_path / a) if a == "app.py" else a for a in arguments]
    assert main(["package", "--app-dir", str(tmp_path), "--local", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("wsfanout: error: ")
    assert captured.err.count("\n") == 1
    assert reason in captured.err
    assert not (tmp_path / "build").exists()


def test_app_code_is_the_projects_modules_and_packages(tmp_path: Path) -> None:
    for relative in (
        "app.py",
        "setup.py",
        "conftest.py",
        "shared/util.py",
        "shared/data.json",
        "docs/index.md",
        "tests/test_app.py",
        "test/test_x.py",
        ".venv-3.12/lib/m.py",
        "venv/lib/m.py",
        ".hidden/m.py",
        "build/lambda/app.py",
        "dist/m.py",
        "elsewhere/m.py",
        "thing.egg-info/m.py",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("")
    code = package_cli.app_code(tmp_path, out=tmp_path / "elsewhere")
    assert [path.name for path in code] == ["app.py", "shared"]


def test_a_projects_requirements_leave_wsfanout_out(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["wsfanout>=0.1", "WsFanout[local]", "httpx<1"]\n'
    )
    assert package_cli.project_requirements(pyproject) == ["httpx<1"]
    pyproject.write_text('[project]\nname = "x"\n')
    assert package_cli.project_requirements(pyproject) == []


def test_the_wsfanout_a_project_ships_is_the_one_running_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = package_cli.wsfanout_source()
    assert source.path == cfn.ROOT, "the checkout imported, whatever pip installed"
    assert source.requirements == package.runtime_requirements(cfn.ROOT / "pyproject.toml")

    class Installed(importlib.metadata.Distribution):
        """wsfanout installed from ``url``, imported from site-packages."""

        def __init__(self, url: str | None) -> None:
            self.url = url

        def read_text(self, filename: str) -> str | None:
            if filename == "METADATA":
                requires = [
                    "anyio",
                    "rich",  # an older wsfanout listed it unconditionally
                    "moto; extra == 'local'",
                    'pyjwt[crypto]<3,>=2.9; extra == "lambda"',
                    "rich>=13.7; extra == 'cli'",
                ]
                lines = [
                    "Name: wsfanout",
                    "Version: 9.8.7",
                    *(f"Requires-Dist: {r}" for r in requires),
                ]
                return "\n".join(lines) + "\n"
            if filename == "direct_url.json" and self.url:
                return json.dumps({"url": self.url, "dir_info": {}})
            return None

        def locate_file(self, path: Any) -> Path:
            return tmp_path / str(path)

    site = tmp_path / "site-packages" / "wsfanout" / "__init__.py"
    monkeypatch.setattr(wsfanout, "__file__", str(site))
    wheel = tmp_path / "wsfanout-9.8.7-py3-none-any.whl"
    wheel.write_bytes(b"")
    expected: list[tuple[str | None, Path | None, str | None]] = [
        (cfn.ROOT.as_uri(), cfn.ROOT, None),  # pip install /path/to/checkout
        (wheel.as_uri(), wheel, None),  # pip install wsfanout-….whl
        (None, None, "wsfanout==9.8.7"),  # from an index
        ("https://example.com/wsfanout.tar.gz", None, "wsfanout==9.8.7"),
    ]
    for url, path, requirement in expected:
        distribution = Installed(url)
        monkeypatch.setattr(importlib.metadata, "distribution", lambda name, d=distribution: d)
        source = package_cli.wsfanout_source()
        assert (source.path, source.requirement) == (path, requirement), url
        assert source.requirements == ["anyio", "pyjwt[crypto]<3,>=2.9"]


# -- the script's parts and its command line ---------------------------------------------------


def test_the_command_line_dependency_is_left_out() -> None:
    requirements = package.runtime_requirements(cfn.ROOT / "pyproject.toml")
    names = {package.requirement_name(r) for r in requirements}
    assert "rich" not in names
    assert {"aioboto3", "pydantic", "pydantic-settings", "pyjwt", "aws-lambda-powertools"} <= names
    assert package.requirement_name("PyJWT[crypto]>=2.9,<3") == "pyjwt"
    assert package.requirement_name("pydantic_settings >= 2") == "pydantic-settings"


def test_prune_keeps_what_botocore_loads(tmp_path: Path) -> None:
    data = tmp_path / "botocore" / "data"
    for service in ("dynamodb", "sqs", "apigatewaymanagementapi", "ec2", "s3"):
        (data / service / "2020-01-01").mkdir(parents=True)
        (data / service / "2020-01-01" / "service-2.json.gz").write_bytes(b"x" * 100)
        (data / service / "2020-01-01" / "examples-1.json").write_bytes(b"x" * 10)
    for name in ("endpoints.json", "partitions.json", "_retry.json"):
        (data / name).write_text("{}")
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-312.pyc").write_bytes(b"x" * 5)
    (tmp_path / "pkg" / "tests").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("")
    saved = package.prune(tmp_path)
    assert {p.name for p in data.iterdir()} == {
        "dynamodb",
        "sqs",
        "apigatewaymanagementapi",
        "endpoints.json",
        "partitions.json",
        "_retry.json",
    }
    assert not list(data.rglob("examples-1.json"))
    assert (data / "sqs" / "2020-01-01" / "service-2.json.gz").is_file()
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == ["m.py"]
    assert saved == 2 * 110 + 3 * 10 + 5


def test_the_zip_is_reproducible(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "x.py").write_text("x = 1\n")
    (tree / "b.so").write_bytes(b"\x7fELF")
    (tree / "b.so").chmod(0o700)
    package.write_zip(tree, tmp_path / "one.zip")
    os.utime(tree / "a" / "x.py", (0, 0))
    package.write_zip(tree, tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as zf:
        modes = {e.filename: (e.external_attr >> 16) & 0o777 for e in zf.infolist()}
    assert modes == {"a/x.py": 0o644, "b.so": 0o755}


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--out", "FILE"], "not a directory"),
        (["--python", "/nonexistent/python3.12"], "not a Python interpreter that runs"),
        (["--local", "--arch", "x86_64"], "--arch is for the Lambda build"),
        (["--local", "--python", "python3"], "--python is for the Lambda build"),
        (["--arch", "s390x"], "invalid choice: 's390x'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, arguments: list[str], reason: str
) -> None:
    existing = tmp_path / "a-file"
    existing.write_text("")
    arguments = [str(existing) if a == "FILE" else a for a in arguments]
    done = subprocess.run(  # noqa: S603  (our interpreter, our script)
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert reason in done.stderr
