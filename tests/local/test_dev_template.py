"""``wsfanout dev`` on a template, through the console script as a user runs it.

The project's own ``deploy/template.yaml`` (the default in the project's directory): real
WebSocket clients connect with the printed development token, talk in a room and receive a
``broadcast`` that went through SQS to the broadcast function's worker process; then boto3 and
the AWS CLI, in a shell that has nothing but the printed exports, read the registry table and
the queue and post to a connection without ``--endpoint-url``. And a template the local stack
cannot run is refused with exit 2 and one line, before anything starts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from tests.helpers import WSFANOUT
from tests.local.dev_process import Output, running_dev
from tests.local.test_stack import _frame_of_type
from tests.local.test_templated import project
from wsfanout.cli.main import main

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
AWS = shutil.which("aws") or str(ROOT / ".venv-awscli" / "bin" / "aws")


class Dev:
    """A running ``wsfanout dev``: its printed URLs, token and exports."""

    def __init__(self, out: Output) -> None:
        self.out = out
        lines = out.lines
        self.ws_url = next(line.split()[-1] for line in lines if "WebSocket" in line)
        tokens = (line.split()[1] for line in lines if line.strip().startswith("token"))
        self.token = next(tokens, "")  # printed only for a template with a JwtSecret
        self.exports = "\n".join(line for line in lines if line.startswith("export "))
        self.template = next(line.split()[-1] for line in lines if "template" in line)

    def shell(self, command: str) -> str:
        """Run ``command`` in bash with only PATH, HOME and the exports (``eval``ed); its
        stdout."""
        clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
        script = f"eval {shlex.quote(self.exports)}\n{command}"
        done = subprocess.run(  # noqa: S603  (bash running the test's own script)
            ["/bin/bash", "-c", script],
            env=clean,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Dev]:
    """``wsfanout dev`` in the project's directory, no flags: its own template."""
    async with running_dev([WSFANOUT, "dev"], tmp_path / "stderr.txt", cwd=ROOT) as running:
        await running.out.until("to stop")
        yield Dev(running.out)
        await running.stop(signal.SIGINT)


async def test_dev_runs_the_projects_template_for_clients_boto3_and_the_aws_cli(dev: Dev) -> None:
    assert dev.template == "deploy/template.yaml"
    assert dev.ws_url.endswith("/prod")  # the template's stage
    url = f"{dev.ws_url}?token={dev.token}"
    async with connect(url) as alice, connect(url) as bob:
        for ws in (alice, bob):
            await ws.send(json.dumps({"action": "joinRoom", "room": "lobby"}))
            assert (await _frame_of_type(ws, "ack", seconds=60))["action"] == "joinRoom"
        await alice.send(
            json.dumps({"action": "sendMessage", "to": {"room": "lobby"}, "data": {"n": 1}})
        )
        assert (await _frame_of_type(alice, "ack", seconds=60))["action"] == "sendMessage"
        message = await _frame_of_type(bob, "message", seconds=60)
        assert message["data"] == {"n": 1}
        assert message["from"]["userId"] == "dev"  # the authorizer read the printed token

        # the token may broadcast: a job on SQS, run by the broadcast function's process
        await alice.send(json.dumps({"action": "broadcast", "data": "all hands"}))
        assert (await _frame_of_type(alice, "ack", seconds=60))["action"] == "broadcast"
        assert (await _frame_of_type(bob, "message", seconds=60))["data"] == "all hands"

        # the AWS CLI, through the exports alone
        scan = json.loads(
            await anyio.to_thread.run_sync(
                dev.shell, f"{AWS} dynamodb scan --table-name $CONNECTIONS_TABLE --output json"
            )
        )
        connections = [i["connectionId"]["S"] for i in scan["Items"] if i["SK"]["S"] == "CONN"]
        assert len(connections) == 2
        # AWS CLI v1 ignores AWS_ENDPOINT_URL_SQS in the older regions (it pins SQS to their
        # legacy hosts): the stack's region is a newer one, so the exports are enough here too.
        queue = json.loads(
            await anyio.to_thread.run_sync(
                dev.shell,
                f"{AWS} sqs get-queue-attributes "
                "--queue-url $BROADCAST_QUEUE_URL --attribute-names All --output json",
            )
        )["Attributes"]
        assert queue["VisibilityTimeout"] == "1800"
        assert json.loads(queue["RedrivePolicy"])["maxReceiveCount"] == 5
        for connection_id in connections:
            await anyio.to_thread.run_sync(
                dev.shell,
                f"{AWS} apigatewaymanagementapi post-to-connection "
                f"--connection-id '{connection_id}' --data from-the-cli",
            )
        # and boto3, with no endpoint_url either
        script = textwrap.dedent(
            f"""
            import os, boto3
            sqs = boto3.client("sqs")
            assert sqs.get_queue_url(QueueName=os.environ["BROADCAST_QUEUE_URL"].rsplit("/", 1)[1])
            client = boto3.client("apigatewaymanagementapi")
            for connection_id in {connections!r}:
                client.post_to_connection(ConnectionId=connection_id, Data=b"from-boto3")
            """
        )
        await anyio.to_thread.run_sync(dev.shell, f"{sys.executable} -c {shlex.quote(script)}")
        for ws in (alice, bob):
            assert await _text(ws) == "from-the-cli"
            assert await _text(ws) == "from-boto3"


async def _text(ws: Any) -> str:
    """The next frame that is not a presence event (bob's join reaches alice as a room job,
    whenever that job runs)."""
    with anyio.fail_after(30):
        while True:
            text = str(await ws.recv())
            if not text.startswith('{"type":"presence"'):
                return text


async def test_a_new_project_runs_its_template_and_reload_restarts_its_function_cold(
    tmp_path: Path,
) -> None:
    """``wsfanout new``'s project: ``wsfanout dev --reload`` in its directory runs its
    template.yaml, whose app.handler (CodeUri a zip not built yet) imports from beside the
    template; an edit of app.py reaches the next invocation."""
    directory = tmp_path / "chat"
    assert main(["new", str(directory)]) == 0
    command = [WSFANOUT, "dev", "--reload"]
    async with running_dev(command, tmp_path / "stderr.txt", cwd=directory) as dev:
        out = dev.out
        await out.until("to stop")
        ws_url = Dev(out).ws_url
        await out.until(f"watching {directory.resolve()}")
        assert await _echo(ws_url) == {"type": "echo", "text": "hi"}

        app = directory / "app.py"
        app.write_text(app.read_text().replace('"type": "echo"', '"type": "echo-v2"'))
        assert "app.py changed" in await out.until("restart cold")
        assert await _echo(ws_url) == {"type": "echo-v2", "text": "hi"}

        await dev.stop(signal.SIGINT)


async def _echo(ws_url: str) -> dict[str, Any]:
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"action": "echo", "text": "hi"}))
        with anyio.fail_after(60):
            return dict(json.loads(await ws.recv()))


def test_a_template_it_cannot_run_is_refused_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """\
            Transform: AWS::Serverless-2016-10-31
            Parameters:
              Greeting: {Type: String}
            Resources:
              Api:
                Type: AWS::Serverless::WebSocketApi
                Properties:
                  RouteSelectionExpression: $request.body.action
                  Routes:
                    $default:
                      FunctionArn: !GetAtt NodeFn.Arn
              NodeFn:
                Type: AWS::Serverless::Function
                Properties:
                  Runtime: nodejs20.x
                  Handler: index.handler
                  CodeUri: src/
            """
        )
    )
    done = subprocess.run(  # noqa: S603  (our own console script)
        [WSFANOUT, "dev", "--parameter", "Greeting=a=b"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""  # nothing started, nothing printed
    (line,) = done.stderr.splitlines()
    assert line.startswith("wsfanout: error: ")
    assert "NodeFn" in line
    assert "nodejs20.x" in line


SCRATCH_HANDLER = """\
import json
import os

import boto3


def hello(event, context):
    connection_id = event["requestContext"]["connectionId"]
    item = {"id": {"S": connection_id}}
    boto3.client("dynamodb").put_item(TableName=os.environ["TABLE"], Item=item)
    management = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["ENDPOINT"])
    management.post_to_connection(ConnectionId=connection_id, Data=json.dumps(item).encode())
    return {"statusCode": 200}
"""

_SCRATCH_ENVIRONMENT = """\
      Environment:
        Variables:
          TABLE: !Ref Items
          ENDPOINT: !Sub https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/dev
"""
_SCRATCH_TABLE = """\
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
"""
SCRATCH = {
    "raw": f"""\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: scratch
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  Hello:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: app.hello
      Code: src
      Role: arn:aws:iam::123456789012:role/hello
{_SCRATCH_ENVIRONMENT}  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub
        arn:aws:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{Hello.Arn}}/invocations
  HelloRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: hello
      Target: !Sub integrations/${{Integration}}
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Api
      StageName: dev
{_SCRATCH_TABLE}""",
    "sam": f"""\
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::WebSocketApi
    Properties:
      RouteSelectionExpression: $request.body.action
      StageName: dev
      Routes:
        hello:
          FunctionArn: !GetAtt Hello.Arn
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      CodeUri: src/
      Handler: app.hello
{_SCRATCH_ENVIRONMENT}{_SCRATCH_TABLE}""",
}


@pytest.mark.parametrize("form", list(SCRATCH))
async def test_dev_runs_a_template_written_from_scratch_for_boto3_and_the_aws_cli(
    tmp_path: Path, form: str
) -> None:
    """A template from scratch (raw ``AWS::ApiGatewayV2`` + ``AWS::Lambda::Function``, or SAM's
    ``AWS::Serverless::WebSocketApi``): ``wsfanout dev --template`` runs it; its function writes
    to its own table and posts back through the management URL its ``!Sub`` resolved to; then
    the AWS CLI and boto3 reach the same table and connection through the exports alone."""
    project(tmp_path, SCRATCH[form], SCRATCH_HANDLER)
    command = [WSFANOUT, "dev", "--template", "template.yaml"]
    async with running_dev(command, tmp_path / "stderr.txt", cwd=tmp_path) as running:
        await running.out.until("to stop")
        dev = Dev(running.out)
        assert dev.ws_url.endswith("/dev")
        async with connect(dev.ws_url) as ws:
            await ws.send(json.dumps({"action": "hello"}))
            connection_id = json.loads(await _text(ws))["id"]["S"]
            scan = json.loads(
                await anyio.to_thread.run_sync(
                    dev.shell, f"{AWS} dynamodb scan --table-name $CONNECTIONS_TABLE --output json"
                )
            )
            assert scan["Items"] == [{"id": {"S": connection_id}}]
            await anyio.to_thread.run_sync(
                dev.shell,
                f"{AWS} apigatewaymanagementapi post-to-connection "
                f"--connection-id '{connection_id}' --data from-the-cli",
            )
            script = (
                "import boto3; boto3.client('apigatewaymanagementapi').post_to_connection("
                f"ConnectionId={connection_id!r}, Data=b'from-boto3')"
            )
            await anyio.to_thread.run_sync(dev.shell, f"{sys.executable} -c {shlex.quote(script)}")
            assert await _text(ws) == "from-the-cli"
            assert await _text(ws) == "from-boto3"
        await running.stop(signal.SIGINT)
