"""Templates read for a local run: the project's own, a raw CloudFormation one and a SAM
``AWS::Serverless::WebSocketApi`` one written from scratch, and each kind of template the local
stack refuses, with its one-line message.

The project's table and queues are created in moto from the model, so the ``CreateTable`` and
``CreateQueue`` arguments are checked by a real implementation, not only compared.
"""

from __future__ import annotations

import json
import re
import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.deploy.test_template import protocol_actions
from wsfanout.aws.account import ACCOUNT_ID, REGION
from wsfanout.aws.table import TTL_ATTRIBUTE, table_definition
from wsfanout.exceptions import InvalidInputError
from wsfanout.local.template import (
    LocalQueue,
    LocalResources,
    LocalTemplate,
    TemplateError,
    load_template,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

PROJECT = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
HANDLERS = {
    "RouteFunction": "wsfanout.handlers.route.handler",
    "BroadcastFunction": "wsfanout.handlers.broadcast.handler",
    "AuthorizerFunction": "wsfanout.handlers.authorizer.handler",
}
MANAGEMENT = "http://127.0.0.1:4510/local"


def local_resources(template: LocalTemplate) -> LocalResources:
    """Made-up local names for everything ``template`` declares."""
    return LocalResources(
        tables={table: f"local-{table}" for table in template.tables},
        queues={
            queue: LocalQueue(
                url=f"http://127.0.0.1:4566/{ACCOUNT_ID}/local-{queue}",
                arn=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:local-{queue}",
            )
            for queue in template.queues
        },
        api_id="localapi",
        management_url=MANAGEMENT,
    )


def write(tmp_path: Path, text: str, name: str = "template.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def one_line_error(path: Path, parameters: dict[str, str] | None = None) -> str:
    with pytest.raises(TemplateError) as caught:
        load_template(path, parameters)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- the project's template -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> LocalTemplate:
    return load_template(PROJECT, {"JwtSecret": "s3cret"})


@pytest.fixture(scope="module")
def anonymous() -> LocalTemplate:
    return load_template(PROJECT, {"UseAuthorizer": "false"})


def test_project_routes_all_go_to_the_route_function(project: LocalTemplate) -> None:
    api = project.api
    assert api.logical_id == "WebSocketApi"
    assert api.route_selection_expression == "$request.body.action"
    # every action of the protocol has its route, besides the three special ones
    assert set(api.routes) == {"$connect", "$disconnect", "$default"} | protocol_actions()
    assert {route.function for route in api.routes.values()} == {"RouteFunction"}
    assert not any(route.two_way for route in api.routes.values())
    assert project.stage == "prod"


def test_project_authorizer_guards_connect(project: LocalTemplate) -> None:
    assert project.api.routes["$connect"].authorization == "CUSTOM"
    others = {key: route.authorization for key, route in project.api.routes.items()}
    del others["$connect"]
    assert set(others.values()) == {"NONE"}
    authorizer = project.api.authorizer
    assert authorizer is not None
    assert authorizer.function == "AuthorizerFunction"
    assert authorizer.identity_source == ("route.request.querystring.token",)


def test_project_without_authorizer(anonymous: LocalTemplate) -> None:
    assert anonymous.api.authorizer is None
    assert anonymous.api.routes["$connect"].authorization == "NONE"
    assert set(anonymous.functions) == {"RouteFunction", "BroadcastFunction"}
    environment = anonymous.environment_of("RouteFunction", local_resources(anonymous))
    assert environment["AUTH_REQUIRED"] == "false"


def test_project_functions(project: LocalTemplate) -> None:
    assert {name: f.handler for name, f in project.functions.items()} == HANDLERS
    route, broadcast = project.functions["RouteFunction"], project.functions["BroadcastFunction"]
    assert (route.timeout_s, route.memory_mb) == (29, 512)
    assert (broadcast.timeout_s, broadcast.memory_mb) == (300, 1024)
    assert {f.runtime for f in project.functions.values()} == {"python3.12"}
    assert {f.reserved_concurrency for f in project.functions.values()} == {None}
    # the environment stays as written until the stack says where things are
    assert route.environment["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}


def test_project_code_runs_from_the_installed_environment(project: LocalTemplate) -> None:
    """CodeUri is the arm64 zip (built or not): never unpacked, so no code directory."""
    assert {f.code_uri for f in project.functions.values()} == {None}
    (note,) = project.notes
    assert note.startswith("RouteFunction, BroadcastFunction, AuthorizerFunction: CodeUri ")
    assert "../build/lambda.zip" in note
    assert note.endswith("their handlers run from the installed environment")


def test_project_environment_resolved(project: LocalTemplate) -> None:
    local = local_resources(project)
    for name in ("RouteFunction", "BroadcastFunction"):
        environment = project.environment_of(name, local)
        assert environment["CONNECTIONS_TABLE"] == "local-ConnectionsTable"
        assert environment["BROADCAST_QUEUE_URL"] == local.queues["BroadcastQueue"].url
        assert environment["APIGW_MANAGEMENT_ENDPOINT"] == MANAGEMENT
        assert environment["POWERTOOLS_LOG_LEVEL"] == "INFO"  # from Globals
    route = project.environment_of("RouteFunction", local)
    assert (route["AUTH_REQUIRED"], route["BROADCAST_ALLOWED_BY_DEFAULT"]) == ("true", "false")
    # !If [HasJwtSecret, !Ref JwtSecret, !Ref AWS::NoValue]: only the set key is there
    authorizer = project.environment_of("AuthorizerFunction", local)
    assert authorizer == {"POWERTOOLS_LOG_LEVEL": "INFO", "AUTH_JWT_SECRET": "s3cret"}


def test_project_environment_follows_the_parameters() -> None:
    template = load_template(
        PROJECT,
        {"JwtPublicKey": "PEM", "JwtIssuer": "https://issuer", "StageName": "dev"},
    )
    local = local_resources(template)
    assert template.stage == "dev"
    authorizer = template.environment_of("AuthorizerFunction", local)
    assert "AUTH_JWT_SECRET" not in authorizer
    assert authorizer["AUTH_JWT_PUBLIC_KEY"] == "PEM"
    assert authorizer["AUTH_JWT_ISSUER"] == "https://issuer"
    assert "AUTH_JWT_AUDIENCE" not in authorizer
    # the execute-api URL of the dev stage is still the local endpoint
    route = template.environment_of("RouteFunction", local)
    assert route["APIGW_MANAGEMENT_ENDPOINT"] == MANAGEMENT


def test_project_queue_mapping(project: LocalTemplate) -> None:
    (mapping,) = project.mappings.values()
    assert (mapping.function, mapping.queue) == ("BroadcastFunction", "BroadcastQueue")
    assert mapping.batch_size == 1
    assert mapping.maximum_batching_window_s == 0
    assert mapping.function_response_types == ("ReportBatchItemFailures",)
    assert mapping.maximum_concurrency == 10
    assert mapping.enabled
    bigger = load_template(PROJECT, {"JwtSecret": "x", "BroadcastBatchSize": "5"})
    assert bigger.mappings[mapping.logical_id].batch_size == 5


def test_project_table_is_the_registry_table(project: LocalTemplate) -> None:
    (table,) = project.tables.values()
    assert table.logical_id == "ConnectionsTable"
    assert table.name is None
    assert table.create_table("t") == table_definition("t")
    assert table.time_to_live == {"Enabled": True, "AttributeName": TTL_ATTRIBUTE}


def test_project_queues_dead_letter_first(project: LocalTemplate) -> None:
    assert list(project.queues) == ["BroadcastDeadLetterQueue", "BroadcastQueue"]
    queue = project.queues["BroadcastQueue"]
    assert queue.attributes["VisibilityTimeout"] == "1800"
    assert queue.redrive is not None
    assert queue.redrive.dead_letter_queue == "BroadcastDeadLetterQueue"
    assert queue.redrive.max_receive_count == 5
    redrive = json.loads(queue.create_attributes("arn:dlq")["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 5}
    with pytest.raises(TemplateError, match="create BroadcastDeadLetterQueue first"):
        queue.create_attributes()


async def test_project_resources_are_accepted_by_dynamodb_and_sqs(
    project: LocalTemplate, dynamodb: DynamoDBClient, sqs: SQSClient
) -> None:
    suffix = uuid.uuid4().hex[:8]
    (table,) = project.tables.values()
    name = f"tmpl-{suffix}"
    await dynamodb.create_table(**table.create_table(name))
    try:
        assert table.time_to_live is not None
        await dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={
                "Enabled": True,
                "AttributeName": table.time_to_live["AttributeName"],
            },
        )
        described = (await dynamodb.describe_table(TableName=name))["Table"]
        assert [index["IndexName"] for index in described["GlobalSecondaryIndexes"]] == ["GSI1"]
        ttl = await dynamodb.describe_time_to_live(TableName=name)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == TTL_ATTRIBUTE
    finally:
        await dynamodb.delete_table(TableName=name)
    arns: dict[str, str] = {}
    urls: list[str] = []
    try:
        for logical_id, queue in project.queues.items():
            dead_letter = arns[queue.redrive.dead_letter_queue] if queue.redrive else None
            url = (
                await sqs.create_queue(
                    QueueName=f"{logical_id}-{suffix}",
                    Attributes=queue.create_attributes(dead_letter),  # type: ignore[arg-type]
                )
            )["QueueUrl"]
            urls.append(url)
            answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            arns[logical_id] = answer["Attributes"]["QueueArn"]
        attributes = answer["Attributes"]  # the broadcast queue, created last
        assert attributes["VisibilityTimeout"] == "1800"
        assert (
            json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
            == (arns["BroadcastDeadLetterQueue"])
        )
    finally:
        for url in urls:
            await sqs.delete_queue(QueueUrl=url)


def test_project_parameters_are_checked() -> None:
    message = one_line_error(PROJECT, {"UseAuthorizer": "maybe"})
    assert (
        message == "parameter UseAuthorizer='maybe' is not one of its AllowedValues (true, false)"
    )
    assert "MaxValue 10" in one_line_error(PROJECT, {"JwtSecret": "x", "BroadcastBatchSize": "11"})
    assert "not a number" in one_line_error(PROJECT, {"JwtSecret": "x", "BroadcastBatchSize": "a"})
    assert "does not match" in one_line_error(PROJECT, {"JwtSecret": "x", "StageName": "a/b"})
    assert one_line_error(PROJECT, {"Nope": "1"}).startswith(
        "parameter Nope is not declared in the template (declared: StageName, UseAuthorizer"
    )


def test_project_rules_apply() -> None:
    """UseAuthorizer "true" without a key: CloudFormation's rule refuses it, so does the reader."""
    assert one_line_error(PROJECT) == (
        'rule AuthorizerNeedsAKey: With UseAuthorizer "true", set JwtSecret (HS256) or '
        "JwtPublicKey (RS256)."
    )


def test_template_error_is_invalid_input() -> None:
    assert issubclass(TemplateError, InvalidInputError)


def test_resolve_names_what_has_no_local_value(project: LocalTemplate) -> None:
    local = local_resources(project)
    assert project.resolve({"Fn::GetAtt": ["BroadcastQueue", "Arn"]}, local) == (
        local.queues["BroadcastQueue"].arn
    )
    assert project.resolve({"Ref": "WebSocketApi"}, local) == "localapi"
    assert project.resolve({"Fn::GetAtt": ["RouteFunction", "Arn"]}, local) == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:RouteFunction"
    )
    assert project.function_arn("RouteFunction") == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:RouteFunction"
    )
    assert project.resolve({"Fn::GetAtt": ["ConnectionsTable", "Arn"]}, local) == (
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/local-ConnectionsTable"
    )
    assert project.resolve({"Fn::Sub": "${AWS::StackName}/${AWS::Partition}"}, local) == (
        "wsfanout/aws"
    )
    with pytest.raises(TemplateError) as caught:
        project.resolve({"Ref": "RouteRole"}, local, where="X")
    assert str(caught.value).startswith("X: Ref RouteRole (AWS::IAM::Role) has no local value")
    with pytest.raises(TemplateError, match="no function 'Nope'"):
        project.environment_of("Nope", local)


# -- a raw CloudFormation template, from scratch --------------------------------------------------

RAW = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Env:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Secret:
    Type: String
    NoEcho: true
    MinLength: 8
    Default: long-enough
Mappings:
  Sizes:
    dev: {Memory: 256}
    prod: {Memory: 1024}
Rules:
  ProdHasItsOwnSecret:
    RuleCondition: !Contains [[prod], !Ref Env]
    Assertions:
      - Assert: !Not [!Equals [!Ref Secret, long-enough]]
        AssertDescription: give prod its own Secret
  LeftToCloudFormation:
    Assertions:
      - Assert: !EachMemberEquals [[a], a]
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  IsDev: !Not [Condition: IsProd]
  DevOrProd: !Or [Condition: IsDev, Condition: IsProd]
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: raw
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.op
  Handler:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: app.handle
      Code: src
      Role: arn:aws:iam::123456789012:role/r
      Timeout: !If [IsProd, 20, 5]
      MemorySize: !FindInMap [Sizes, !Ref Env, Memory]
      ReservedConcurrentExecutions: 2
      Environment:
        Variables:
          ENDPOINT: !Join ["", ["https://", !Ref Api, ".execute-api.", !Ref "AWS::Region",
                                ".amazonaws.com/", !Ref Env, "/@connections"]]
          QUEUE_ARN: !GetAtt Jobs.Arn
          MODE: !If [IsProd, live, !Ref "AWS::NoValue"]
          FIRST: !Select [1, !Split [",", "a,b,c"]]
          LITERAL: !Sub ${!Kept}-${Env}
  Auth:
    Type: AWS::Lambda::Function
    Condition: DevOrProd
    Properties:
      Runtime: python3.13
      Handler: app.authorize
      Code: {S3Bucket: bucket, S3Key: auth.zip}
      Role: arn:aws:iam::123456789012:role/r
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Join
        - ""
        - - "arn:aws:apigateway:"
          - !Ref AWS::Region
          - ":lambda:path/2015-03-31/functions/"
          - !GetAtt Handler.Arn
          - /invocations
  Authorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Api
      Name: header
      AuthorizerType: REQUEST
      IdentitySource: [route.request.header.Authorization, route.request.querystring.key]
      AuthorizerUri: !Sub
        - ${Prefix}/functions/${Auth.Arn}/invocations
        - Prefix: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Authorizer
      Target: !Join [/, [integrations, !Ref Integration]]
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
      StageName: !Ref Env
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      FifoQueue: true
  JobsMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt Jobs.Arn
      FunctionName: !GetAtt Handler.Arn
      BatchSize: 3
      MaximumBatchingWindowInSeconds: 2
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub ${AWS::StackName}-items
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      ProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: "2"}
      StreamSpecification: {StreamViewType: NEW_IMAGE}
"""


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    return write(tmp_path, RAW)


def test_raw_template(raw: Path) -> None:
    template = load_template(raw)
    api = template.api
    assert (api.logical_id, api.route_selection_expression) == ("Api", "$request.body.op")
    assert {key: (r.function, r.two_way, r.authorization) for key, r in api.routes.items()} == {
        "$connect": ("Handler", False, "CUSTOM"),
        "echo": ("Handler", True, "NONE"),
    }
    assert api.authorizer is not None
    assert (api.authorizer.logical_id, api.authorizer.function) == ("Authorizer", "Auth")
    assert api.authorizer.identity_source == (
        "route.request.header.Authorization",
        "route.request.querystring.key",
    )
    assert template.stage == "dev"
    handler = template.functions["Handler"]
    assert handler.code_uri == raw.parent / "src"
    assert (handler.timeout_s, handler.memory_mb, handler.reserved_concurrency) == (5, 256, 2)
    auth = template.functions["Auth"]
    assert (auth.runtime, auth.code_uri) == ("python3.13", None)
    assert template.notes == (
        "Auth: code in S3 (s3://bucket/auth.zip) is not fetched; "
        "its handler runs from the installed environment",
    )
    (mapping,) = template.mappings.values()
    assert (mapping.function, mapping.queue, mapping.batch_size) == ("Handler", "Jobs", 3)
    assert (mapping.maximum_batching_window_s, mapping.function_response_types) == (2, ())
    assert mapping.maximum_concurrency is None
    assert template.queues["Jobs"].attributes == {"VisibilityTimeout": "30", "FifoQueue": "true"}
    items = template.tables["Items"]
    assert items.name == "wsfanout-items"
    assert items.create_table("x") == {
        "TableName": "x",
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 2},
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    }
    assert items.time_to_live is None


def test_raw_template_environment_and_conditions(raw: Path) -> None:
    dev = load_template(raw)
    local = local_resources(dev)
    assert dev.environment_of("Handler", local) == {
        "ENDPOINT": f"{MANAGEMENT}/@connections",  # below the execute-api URL, moved too
        "QUEUE_ARN": local.queues["Jobs"].arn,
        "FIRST": "b",
        "LITERAL": "${Kept}-dev",
    }
    assert (
        one_line_error(raw, {"Env": "prod"}) == "rule ProdHasItsOwnSecret: give prod its own Secret"
    )
    prod = load_template(raw, {"Env": "prod", "Secret": "prod-only"}, stack_name="other")
    assert (prod.functions["Handler"].timeout_s, prod.functions["Handler"].memory_mb) == (20, 1024)
    assert prod.environment_of("Handler", local_resources(prod))["MODE"] == "live"
    assert prod.tables["Items"].name == "other-items"
    assert prod.stage == "prod"


# -- a SAM AWS::Serverless::WebSocketApi, from scratch ------------------------------------------

SAM = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: beta
Globals:
  Function:
    Runtime: python3.13
    CodeUri: src/
    Timeout: 7
    Environment:
      Variables:
        SHARED: "yes"
Resources:
  Chat:
    Type: AWS::Serverless::WebSocketApi
    Properties:
      RouteSelectionExpression: $request.body.type
      StageName: !Ref Stage
      Auth:
        AuthType: CUSTOM
        AuthArn: !GetAtt AuthFn.Arn
        IdentitySource: [route.request.header.Authorization]
      Routes:
        $connect:
          FunctionArn: !Ref ConnectFn.Alias # through the alias SAM makes, to the function
        $default:
          FunctionArn: !GetAtt DefaultFn.Arn
        send:
          FunctionArn: !GetAtt DefaultFn.Arn
  ConnectFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.connect
      AutoPublishAlias: live
  DefaultFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.default
      CodeUri: build/default.zip
      MemorySize: 256
      Environment:
        Variables:
          ENDPOINT: !Sub https://${Chat}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}
          TABLE: !Ref Messages
          QUEUE: !Ref Work
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 4
            MaximumBatchingWindowInSeconds: 1
  AuthFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.authorize
  Messages:
    Type: AWS::Serverless::SimpleTable
  Work:
    Type: AWS::SQS::Queue
"""


def test_sam_websocket_api(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "default.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    template = load_template(write(tmp_path, SAM))
    api = template.api
    assert (api.logical_id, api.route_selection_expression) == ("Chat", "$request.body.type")
    assert {key: (r.function, r.authorization) for key, r in api.routes.items()} == {
        "$connect": ("ConnectFn", "CUSTOM"),
        "$default": ("DefaultFn", "NONE"),
        "send": ("DefaultFn", "NONE"),
    }
    assert api.authorizer is not None
    assert api.authorizer.function == "AuthFn"
    assert api.authorizer.identity_source == ("route.request.header.Authorization",)
    assert template.stage == "beta"
    assert set(template.functions) == {"ConnectFn", "DefaultFn", "AuthFn"}
    assert template.functions["ConnectFn"].code_uri == tmp_path / "src"
    default = template.functions["DefaultFn"]
    assert (default.code_uri, default.timeout_s, default.memory_mb) == (None, 7, 256)
    (note,) = template.notes
    assert re.fullmatch(
        r"DefaultFn: CodeUri build/default\.zip is a built artifact, never unpacked here .*; "
        r"its handler runs from the installed environment",
        note,
    )
    (mapping,) = template.mappings.values()
    assert (mapping.function, mapping.queue, mapping.batch_size) == ("DefaultFn", "Work", 4)
    assert mapping.maximum_batching_window_s == 1
    assert set(template.tables) == {"Messages"}
    local = local_resources(template)
    assert template.environment_of("DefaultFn", local) == {
        "SHARED": "yes",
        "ENDPOINT": MANAGEMENT,
        "TABLE": "local-Messages",
        "QUEUE": local.queues["Work"].url,
    }


def test_sam_translator_complaints_are_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, SAM.replace("        send:\n", "        no-such:\n"))
    message = one_line_error(path)
    assert "Chat" in message
    assert "must be alphanumeric" in message


# -- what the local stack refuses ----------------------------------------------------------------


def raw_with(tmp_path: Path, old: str, new: str) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    assert old in RAW
    return write(tmp_path, RAW.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "Runtime: python3.12",
            "Runtime: nodejs20.x",
            "Handler: runtime nodejs20.x is not supported locally (Python runtimes only, "
            "such as python3.12)",
            id="node-runtime",
        ),
        pytest.param(
            "      Code: src\n",
            "      PackageType: Image\n      Code: {ImageUri: x.dkr.ecr/app:1}\n",
            "Handler: PackageType Image is not supported locally "
            "(zip functions with a Python runtime only)",
            id="image",
        ),
        pytest.param(
            "IntegrationType: AWS_PROXY",
            "IntegrationType: MOCK",
            "Integration: IntegrationType MOCK is not supported locally (AWS_PROXY "
            "integrations with a Lambda function of this template only)",
            id="mock-integration",
        ),
        pytest.param(
            "IntegrationType: AWS_PROXY",
            "IntegrationType: HTTP_PROXY",
            "Integration: IntegrationType HTTP_PROXY is not supported locally (AWS_PROXY "
            "integrations with a Lambda function of this template only)",
            id="http-integration",
        ),
        pytest.param(
            "ProtocolType: WEBSOCKET",
            "ProtocolType: HTTP",
            "Api: ProtocolType HTTP (an HTTP API) is not supported locally (WEBSOCKET APIs only)",
            id="http-api",
        ),
        pytest.param(
            "      Target: !Sub integrations/${Integration}\n",
            "      Target: integrations/abc123\n",
            "EchoRoute.Target: points at 'integrations/abc123'; supported: integrations/<an "
            "integration of this API> (AWS_PROXY integrations with a Lambda function of this "
            "template only)",
            id="target-not-an-integration",
        ),
        pytest.param(
            "      Target: !Sub integrations/${Integration}\n",
            "",
            "EchoRoute: route echo has no Target (AWS_PROXY integrations with a Lambda "
            "function of this template only)",
            id="no-target",
        ),
        pytest.param(
            "          - !GetAtt Handler.Arn\n",
            "          - arn:aws:lambda:eu-west-1:123456789012:function:elsewhere\n",
            "Integration.IntegrationUri: points at",
            id="function-elsewhere",
        ),
        pytest.param(
            "      Code: src\n",
            "      Code: {ZipFile: 'def handle(e, c): pass'}\n",
            "Handler: inline code (InlineCode, ZipFile) is not supported locally",
            id="inline-code",
        ),
        pytest.param(
            "      EventSourceArn: !GetAtt Jobs.Arn\n",
            "      EventSourceArn: arn:aws:kinesis:eu-west-1:123456789012:stream/s\n",
            "JobsMapping.EventSourceArn: points at",
            id="not-a-queue",
        ),
    ],
)
def test_unsupported_raw_templates(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert one_line_error(raw_with(tmp_path, old, new)).startswith(expected)


def test_a_secret_parameter_is_never_repeated(raw: Path) -> None:
    message = one_line_error(raw, {"Secret": "hunter2"})
    assert message == "parameter Secret=**** is shorter than 8"


def test_no_websocket_api(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Resources:
          Jobs:
            Type: AWS::SQS::Queue
        """,
    )
    assert one_line_error(path) == (
        f"{path}: no WebSocket API (an AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET, "
        "or an AWS::Serverless::WebSocketApi)"
    )


def test_sam_http_api_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Http:
            Type: AWS::Serverless::HttpApi
        """,
    )
    assert one_line_error(path).startswith("Http: ProtocolType HTTP (an HTTP API)")


def test_unreadable_templates(tmp_path: Path) -> None:
    assert (
        one_line_error(tmp_path / "missing.yaml") == f"no template at {tmp_path / 'missing.yaml'}"
    )
    broken = write(tmp_path, "Resources: [unclosed\n")
    assert one_line_error(broken).startswith(f"{broken}:")
    macro = write(tmp_path, "Transform: MyMacro\nResources: {}\n", "macro.yaml")
    assert one_line_error(macro) == (
        "Transform MyMacro is not supported locally (only AWS::Serverless-2016-10-31)"
    )


def test_a_left_out_resource_cannot_be_used(tmp_path: Path) -> None:
    path = raw_with(tmp_path, "    Condition: DevOrProd\n", "    Condition: IsProd\n")
    message = one_line_error(path)
    assert message == "Authorizer.AuthorizerUri: refers to Auth, which its Condition leaves out"


def test_the_developers_aws_config_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No boto3 session is made: an AWS_PROFILE the config files lack changes nothing."""
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    (tmp_path / "src").mkdir()
    assert load_template(write(tmp_path, SAM)).stage == "beta"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        pytest.param(
            "Type: AWS::Serverless::Application\n    Properties: {Location: app.yaml}",
            "Extra: nested applications (AWS::Serverless::Application) are not supported "
            "locally (one template with its own functions)",
            id="sam-application",
        ),
        pytest.param(
            "Type: AWS::Serverless::Api\n    Properties: {StageName: v1}",
            "Extra: REST APIs (AWS::ApiGateway::RestApi, AWS::Serverless::Api) are not "
            "supported locally (one WebSocket API)",
            id="sam-rest-api",
        ),
        pytest.param(
            "Type: AWS::ApiGatewayV2::Api\n"
            "    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.a}",
            "2 WebSocket APIs (Chat, Extra); one per template is supported",
            id="second-websocket-api",
        ),
    ],
)
def test_unsupported_sam_templates(tmp_path: Path, resource: str, expected: str) -> None:
    (tmp_path / "src").mkdir()
    path = write(tmp_path, f"{SAM}  Extra:\n    {resource}\n")
    assert one_line_error(path).removeprefix(f"{path}: ") == expected


def test_only_the_first_stage_runs(tmp_path: Path) -> None:
    second = "  Other:\n    Type: AWS::ApiGatewayV2::Stage\n"
    second += "    Properties: {ApiId: !Ref Api, StageName: second}\n"
    template = load_template(raw_with(tmp_path, "  Jobs:\n", f"{second}  Jobs:\n"))
    assert template.stage == "dev"
    assert "Stage, Other: only the first stage, dev, runs locally" in template.notes
