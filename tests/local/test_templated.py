"""Templated stacks in this process: a raw ``AWS::ApiGatewayV2`` template and a SAM
``AWS::Serverless::WebSocketApi`` one, each written from scratch with its Python handlers in
tmp_path, run side by side (two stacks in one process, each with its own moto and function
processes) and driven by real WebSocket clients.

The handlers use boto3 as a deployed function would, with nothing but the environment the
stack gave them: the raw one writes to the table its ``!Ref`` names and answers on a two-way
route; the SAM one posts back through the management endpoint its ``!Sub`` execute-api URL
became, and its authorizer leaves a trace on disk so a 401 can be shown to have invoked nothing.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.local import test_template as template_tests
from wsfanout.aws.account import KEY_ID, REGION, SECRET
from wsfanout.local.stack import Stack
from wsfanout.local.template import TemplateError, load_template
from wsfanout.local.templated import templated_stack

pytestmark = pytest.mark.timeout(120)

HANDLERS = """\
import json
import os
from pathlib import Path

import boto3


def echo(event, context):
    text = json.loads(event["body"])["text"]
    boto3.client("dynamodb").put_item(TableName=os.environ["TABLE"], Item={"id": {"S": text}})
    answer = {"echo": text, "table": os.environ["TABLE"], "function": context.function_name}
    return {"statusCode": 200, "body": json.dumps(answer)}


def authorize(event, context):
    with Path(__file__).with_name("authorized.log").open("a") as log:
        log.write(event["headers"]["Authorization"] + "\\n")
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
    return {
        "principalId": "ada",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
        "context": {"user": "ada"},
    }


def connect(event, context):
    return {"statusCode": 200}


def default(event, context):
    client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["ENDPOINT"])
    data = {
        "default": json.loads(event["body"]),
        "user": event["requestContext"]["authorizer"]["user"],
        "queue": os.environ["QUEUE"],
    }
    connection_id = event["requestContext"]["connectionId"]
    client.post_to_connection(ConnectionId=connection_id, Data=json.dumps(data).encode())
    return {"statusCode": 200}
"""

RAW = """\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: raw
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  Echo:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: app.echo
      Code: src
      Role: arn:aws:iam::123456789012:role/r
      Environment:
        Variables:
          TABLE: !Ref Items
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub
        arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Echo.Arn}/invocations
  EchoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: echo
      Target: !Sub integrations/${Integration}
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Api
      RouteId: !Ref EchoRoute
      RouteResponseKey: $default
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Api
      StageName: dev
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
"""

SAM = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: src/
    Timeout: 10
Resources:
  Chat:
    Type: AWS::Serverless::WebSocketApi
    Properties:
      RouteSelectionExpression: $request.body.type
      StageName: beta
      Auth:
        AuthType: CUSTOM
        AuthArn: !GetAtt AuthFn.Arn
        IdentitySource: [route.request.header.Authorization]
      Routes:
        $connect:
          FunctionArn: !GetAtt ConnectFn.Arn
        $default:
          FunctionArn: !GetAtt DefaultFn.Arn
  ConnectFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.connect
  DefaultFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.default
      Environment:
        Variables:
          ENDPOINT: !Sub https://${Chat}.execute-api.${AWS::Region}.${AWS::URLSuffix}/beta
          QUEUE: !Ref Work
  AuthFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.authorize
  Work:
    Type: AWS::SQS::Queue
"""


def project(directory: Path, template: str, handlers: str = HANDLERS) -> Path:
    """A project directory: ``template.yaml`` and its handlers in ``src/app.py``."""
    (directory / "src").mkdir(parents=True)
    (directory / "src" / "app.py").write_text(handlers)
    path = directory / "template.yaml"
    path.write_text(textwrap.dedent(template))
    return path


async def _frame(ws: Any, seconds: float = 30) -> dict[str, Any]:
    with anyio.fail_after(seconds):
        return dict(json.loads(await ws.recv()))


async def _raw_api(stack: Stack) -> None:
    assert stack.ws_url.endswith("/dev")  # the template's stage
    (table,) = stack.tables.values()
    assert table == "wsfanout-Items"
    # the only table stands for the registry; no mapping, so no broadcast queue or poller
    assert (stack.table, stack.queue_url, stack.dlq_url, stack.poller) == (table, "", "", None)
    async with connect(stack.ws_url) as ws:  # no $connect route: accepted, nothing invoked
        await ws.send(json.dumps({"action": "echo", "text": "hi"}))
        assert await _frame(ws) == {"echo": "hi", "table": table, "function": "Echo"}
        # no route for "nope" and no $default: API Gateway's Forbidden, no function runs
        await ws.send(json.dumps({"action": "nope"}))
        forbidden = await _frame(ws)
        assert forbidden["message"] == "Forbidden"
        assert set(forbidden) == {"message", "connectionId", "requestId"}
    assert stack.functions["Echo"].environment["TABLE"] == table
    # the handler wrote to its own table, in this stack's moto
    session = aioboto3.Session(
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
    )
    async with session.client("dynamodb", endpoint_url=stack.moto_url) as dynamodb:
        items = (await dynamodb.scan(TableName=table))["Items"]
    assert items == [{"id": {"S": "hi"}}]


async def _sam_api(stack: Stack, log: Path) -> None:
    assert stack.ws_url.endswith("/beta")
    # the identity source is missing: 401, and the authorizer never ran
    with pytest.raises(InvalidStatus) as refused:
        async with connect(stack.ws_url):
            pass
    assert refused.value.response.status_code == 401
    assert not await anyio.Path(log).exists()

    async with connect(stack.ws_url, additional_headers={"Authorization": "let-me-in"}) as ws:
        assert await anyio.Path(log).read_text() == "let-me-in\n"
        await ws.send(json.dumps({"type": "anything", "n": 1}))  # to $default
        answer = await _frame(ws)
    assert answer == {
        "default": {"type": "anything", "n": 1},
        "user": "ada",  # the authorizer's context reached the route
        "queue": stack.queues["Work"],
    }
    assert stack.env["APIGW_MANAGEMENT_ENDPOINT"] == stack.management_url
    assert stack.functions["DefaultFn"].environment["ENDPOINT"] == stack.management_url


async def test_raw_and_sam_templates_run_side_by_side_in_one_process(tmp_path: Path) -> None:
    raw = load_template(project(tmp_path / "raw", RAW))
    sam = load_template(project(tmp_path / "sam", SAM))
    before = dict(os.environ)
    async with templated_stack(raw) as first, templated_stack(sam) as second:
        assert os.environ == before  # nothing process-wide: each function has its own env
        assert first.moto_url != second.moto_url
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_raw_api, first)
            tasks.start_soon(_sam_api, second, tmp_path / "sam" / "src" / "authorized.log")
        pids = first.functions["Echo"].pids | second.functions["DefaultFn"].pids
        assert pids  # warm worker processes, until the stacks close
    assert not first.functions["Echo"].pids
    assert not second.functions["DefaultFn"].pids
    for url in (first.page_url, second.page_url):
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with pytest.raises(OSError):  # noqa: PT011  (refused: nothing listens any more)
            await anyio.connect_tcp(host, int(port))


async def test_a_mapping_aws_would_refuse_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    path = tmp_path / "template.yaml"
    path.write_text(template_tests.RAW.replace("VisibilityTimeout: 30", "VisibilityTimeout: 2"))
    template = load_template(path)
    with pytest.raises(TemplateError) as refused:
        async with templated_stack(template):
            pytest.fail("the stack started")
    assert str(refused.value) == (
        "JobsMapping: queue Jobs has a visibility timeout of 2s, shorter than function "
        "Handler's timeout (5s); AWS refuses such a mapping"
    )
