"""deploy/template.yaml, checked without an AWS account.

cfn-lint first (it runs the SAM transform itself), then aws-sam-translator's transform, then the
resources it made: routes and their integrations and permissions, the functions and what they
run, IAM scoped to this stack, the registry table as the registry code defines it, the queue and
its event source mapping. Where the code already says something (table layout, route actions,
AWS calls, settings), the expectation is derived from the code, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import typing
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest
from cfnlint.api import ManualArgs, lint_file

from tests.deploy import cfn
from wsfanout.aws import table
from wsfanout.aws.endpoints import STAGE_NAME, endpoint_for
from wsfanout.core.protocol import ClientFrame
from wsfanout.settings import Settings

HANDLERS = {
    "RouteFunction": "wsfanout.handlers.route.handler",
    "BroadcastFunction": "wsfanout.handlers.broadcast.handler",
    "AuthorizerFunction": "wsfanout.handlers.authorizer.handler",
}
ROLES = {
    "RouteFunction": "RouteRole",
    "BroadcastFunction": "BroadcastRole",
    "AuthorizerFunction": "AuthorizerRole",
}

TABLE_ARN = {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}
GSI1_ARN = {"Fn::Sub": f"${{ConnectionsTable.Arn}}/index/{table.GSI1}"}
QUEUE_ARN = {"Fn::GetAtt": ["BroadcastQueue", "Arn"]}

# What each function may do to the registry and the queue, and why (see the handlers).
EXPECTED_GRANTS: dict[str, dict[str, set[str]]] = {
    "RouteFunction": {
        # $connect PutItem; $disconnect Query + BatchWriteItem; joinRoom GetItem + PutItem
        # (a durable room's replay GetItem + Query); leaveRoom DeleteItem; to a connection
        # BatchGetItem; to a durable room UpdateItem + PutItem; ping UpdateItem; gone
        # connections BatchWriteItem
        "table": {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
        },
        "index": {"dynamodb:Query"},  # to a user
        "queue": {"sqs:SendMessage"},  # rooms and broadcasts become jobs
    },
    "BroadcastFunction": {
        # "all" Scan; listed connections BatchGetItem; gone BatchWriteItem; progress Get/Update
        "table": {
            "dynamodb:Scan",
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
        },
        "index": {"dynamodb:Query"},  # rooms and users
        # the event source mapping polls with the function's role; segments and continuations
        "queue": {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:SendMessage",
        },
    },
    "AuthorizerFunction": {"table": set(), "index": set(), "queue": set()},
}
SQS_POLLER = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
# IAM authorizes a batch call as its single form.
IAM_ACTION_OF = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return cfn.of_type(template, kind)


def props(template: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][name]["Properties"]
    return properties


# -- linting and the transform -------------------------------------------------------------------


def test_cfn_lint_passes_with_informational_rules() -> None:
    matches = lint_file(cfn.TEMPLATE, config=ManualArgs(include_checks=["I"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_cfn_lint_sees_through_the_transform(tmp_path: Path) -> None:
    """The lint is real: a mistake inside a SAM resource is reported."""
    broken = tmp_path / "template.yaml"
    text = cfn.TEMPLATE.read_text()
    broken.write_text(text.replace("MemorySize: 1024", "MemorySize: 1024\n      Bogus: 1", 1))
    assert "Bogus" in broken.read_text()
    matches = lint_file(broken)
    assert matches
    assert any("Bogus" in m.message for m in matches)


def test_the_transform_leaves_no_sam_resources(transformed: dict[str, Any]) -> None:
    kinds = {resource["Type"] for resource in transformed["Resources"].values()}
    assert not [kind for kind in kinds if kind.startswith("AWS::Serverless::")]
    assert "Transform" not in transformed
    assert set(resources(transformed, "AWS::Lambda::Function")) == set(HANDLERS)


# -- the WebSocket API -------------------------------------------------------------------------


def protocol_actions() -> set[str]:
    """The ``action`` of every client frame wsfanout.core.protocol understands."""
    union = typing.get_args(ClientFrame)[0]
    actions: set[str] = set()
    for frame in typing.get_args(union):
        actions.update(typing.get_args(frame.model_fields["action"].annotation))
    return actions


def test_the_api_selects_routes_by_action(transformed: dict[str, Any]) -> None:
    (api,) = resources(transformed, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.action"


def test_a_route_for_every_protocol_action(transformed: dict[str, Any]) -> None:
    keys = {
        r["Properties"]["RouteKey"]
        for r in resources(transformed, "AWS::ApiGatewayV2::Route").values()
    }
    assert protocol_actions() == {
        "joinRoom",
        "leaveRoom",
        "sendMessage",
        "broadcast",
        "whoami",
        "ping",
        "presence",
    }
    assert keys == {"$connect", "$disconnect", "$default", *protocol_actions()}


def test_every_route_reaches_the_route_function_with_permission(
    transformed: dict[str, Any], render: cfn.Renderer
) -> None:
    integrations = resources(transformed, "AWS::ApiGatewayV2::Integration")
    permissions = resources(transformed, "AWS::Lambda::Permission")
    routes = resources(transformed, "AWS::ApiGatewayV2::Route")
    stage = render({"Ref": "StageName"})
    api = render({"Ref": "WebSocketApi"})
    for name, route in routes.items():
        properties = route["Properties"]
        assert properties["ApiId"] == {"Ref": "WebSocketApi"}, name
        target = properties["Target"]["Fn::Sub"]
        found = re.fullmatch(r"integrations/\$\{(\w+)\}", target)
        assert found, (name, target)
        integration = integrations[found.group(1)]["Properties"]
        assert integration["ApiId"] == {"Ref": "WebSocketApi"}
        assert integration["IntegrationType"] == "AWS_PROXY"
        uri = integration["IntegrationUri"]["Fn::Sub"]
        function = re.search(r"functions/\$\{(\w+)\.Arn\}/invocations$", uri)
        assert function, uri
        assert function.group(1) == "RouteFunction"
        invoked = (
            f"arn:aws:execute-api:{cfn.PSEUDO['AWS::Region']}:{cfn.PSEUDO['AWS::AccountId']}:"
            f"{api}/{stage}/{properties['RouteKey']}"
        )
        allowed = [
            p["Properties"]
            for p in permissions.values()
            if p["Properties"]["FunctionName"] == {"Ref": "RouteFunction"}
            and p["Properties"]["Principal"] == "apigateway.amazonaws.com"
            and p["Properties"]["Action"] == "lambda:InvokeFunction"
            and fnmatch.fnmatchcase(invoked, render(p["Properties"]["SourceArn"]))
        ]
        assert allowed, f"no permission lets {invoked} invoke the route function"


def test_route_permission_is_limited_to_this_api_and_stage(
    transformed: dict[str, Any], render: cfn.Renderer
) -> None:
    source = render(props(transformed, "RoutePermission")["SourceArn"])
    assert source == "arn:aws:execute-api:eu-west-1:123456789012:<WebSocketApi>/prod/*"


def test_connect_uses_the_token_authorizer_when_enabled(
    transformed: dict[str, Any], render: cfn.Renderer
) -> None:
    routes = resources(transformed, "AWS::ApiGatewayV2::Route")
    (connect,) = [r for r in routes.values() if r["Properties"]["RouteKey"] == "$connect"]
    assert connect["Properties"]["AuthorizationType"] == {
        "Fn::If": ["UseAuthorizer", "CUSTOM", "NONE"]
    }
    assert connect["Properties"]["AuthorizerId"] == {
        "Fn::If": ["UseAuthorizer", {"Ref": "ConnectAuthorizer"}, {"Ref": "AWS::NoValue"}]
    }
    others = [r for r in routes.values() if r["Properties"]["RouteKey"] != "$connect"]
    assert {r["Properties"]["AuthorizationType"] for r in others} == {"NONE"}

    authorizer = transformed["Resources"]["ConnectAuthorizer"]
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == ["route.request.querystring.token"]
    assert "${AuthorizerFunction.Arn}" in authorizer["Properties"]["AuthorizerUri"]["Fn::Sub"]
    permission = props(transformed, "AuthorizerPermission")
    assert permission["FunctionName"] == {"Ref": "AuthorizerFunction"}
    assert render(permission["SourceArn"]) == (
        "arn:aws:execute-api:eu-west-1:123456789012:<WebSocketApi>/authorizers/<ConnectAuthorizer>"
    )
    # all of it exists only with UseAuthorizer, and that is the default
    for name in (
        "ConnectAuthorizer",
        "AuthorizerPermission",
        "AuthorizerFunction",
        "AuthorizerRole",
        "AuthorizerLogGroup",
    ):
        assert transformed["Resources"][name].get("Condition") == "UseAuthorizer", name
    assert transformed["Parameters"]["UseAuthorizer"]["Default"] == "true"


def test_an_authorizer_without_a_key_is_refused_at_deploy_time(template: dict[str, Any]) -> None:
    rule = template["Rules"]["AuthorizerNeedsAKey"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "UseAuthorizer"}, "true"]}
    (assertion,) = rule["Assertions"]
    checked = json.dumps(assertion["Assert"])
    assert '"JwtSecret"' in checked
    assert '"JwtPublicKey"' in checked


def test_the_stage_deploys_every_route_throttled_and_logged(transformed: dict[str, Any]) -> None:
    stage = transformed["Resources"]["Stage"]
    properties = stage["Properties"]
    assert properties["StageName"] == {"Ref": "StageName"}
    # auto-deployed, and only once every route exists
    assert properties["AutoDeploy"] is True
    assert "DeploymentId" not in properties
    assert set(resources(transformed, "AWS::ApiGatewayV2::Route")) <= set(stage["DependsOn"])
    assert "ApiGatewayAccount" in stage["DependsOn"]  # the account's logging role comes first
    settings = properties["DefaultRouteSettings"]
    assert settings["ThrottlingRateLimit"] == {"Ref": "RouteThrottlingRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "RouteThrottlingBurstLimit"}
    assert settings["DataTraceEnabled"] is False
    logs = properties["AccessLogSettings"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(logs["Format"])
    assert {"requestId", "connectionId", "eventType", "routeKey", "status"} <= set(fields)
    assert fields["connectionId"] == "$context.connectionId"


# -- the functions ---------------------------------------------------------------------------


def test_functions_run_the_real_handlers_on_arm64_python312(transformed: dict[str, Any]) -> None:
    for name, handler in HANDLERS.items():
        properties = props(transformed, name)
        assert properties["Handler"] == handler
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["arm64"]
        assert properties["Code"] == {"S3Bucket": "wsfanout-artifacts", "S3Key": "lambda.zip"}
        assert properties["Role"] == {"Fn::GetAtt": [ROLES[name], "Arn"]}
        group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert transformed["Resources"][group]["Type"] == "AWS::Logs::LogGroup"


def test_the_code_is_the_artifact_make_package_builds(template: dict[str, Any]) -> None:
    code = cfn.TEMPLATE.parent / template["Globals"]["Function"]["CodeUri"]
    assert code.resolve() == cfn.ROOT / "build" / "lambda.zip"


def test_the_route_function_answers_within_api_gateways_timeout(
    transformed: dict[str, Any],
) -> None:
    assert props(transformed, "RouteFunction")["Timeout"] <= 29


def environment(transformed: dict[str, Any], name: str) -> dict[str, Any]:
    variables: dict[str, Any] = props(transformed, name)["Environment"]["Variables"]
    return variables


def test_every_variable_is_a_setting(transformed: dict[str, Any]) -> None:
    known = {field.upper() for field in Settings.model_fields}
    for name in HANDLERS:
        unknown = {
            variable
            for variable in environment(transformed, name)
            if variable not in known and not variable.startswith("POWERTOOLS_")
        }
        assert not unknown, f"{name}: not wsfanout settings: {sorted(unknown)}"


@pytest.mark.parametrize("name", ["RouteFunction", "BroadcastFunction"])
def test_workers_are_wired_to_this_stacks_table_queue_and_endpoint(
    transformed: dict[str, Any], render: cfn.Renderer, name: str
) -> None:
    variables = environment(transformed, name)
    assert variables["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}
    assert variables["BROADCAST_QUEUE_URL"] == {"Ref": "BroadcastQueue"}
    # the management endpoint is the one the code derives from a route event of this stage
    domain = f"{render({'Ref': 'WebSocketApi'})}.execute-api.eu-west-1.amazonaws.com"
    stage = render({"Ref": "StageName"})
    assert render(variables["APIGW_MANAGEMENT_ENDPOINT"]) == endpoint_for(domain, stage)
    fields: dict[str, Any] = {key.lower(): render(value) for key, value in variables.items()}
    settings = Settings(**fields)
    assert settings.require_endpoint() == endpoint_for(domain, stage)


def test_auth_settings_come_from_parameters_and_the_secret_is_no_echo(
    transformed: dict[str, Any],
) -> None:
    variables = environment(transformed, "AuthorizerFunction")
    for variable, parameter in {
        "AUTH_JWT_SECRET": "JwtSecret",
        "AUTH_JWT_PUBLIC_KEY": "JwtPublicKey",
        "AUTH_JWT_ISSUER": "JwtIssuer",
        "AUTH_JWT_AUDIENCE": "JwtAudience",
    }.items():
        # unset when empty: an empty secret must not count as a key
        condition = variables[variable]["Fn::If"]
        assert condition[1:] == [{"Ref": parameter}, {"Ref": "AWS::NoValue"}], variable
    assert transformed["Parameters"]["JwtSecret"]["NoEcho"] is True
    route = environment(transformed, "RouteFunction")
    assert route["AUTH_REQUIRED"] == {"Ref": "UseAuthorizer"}


# -- IAM ---------------------------------------------------------------------------------------


def role_of(transformed: dict[str, Any], function: str) -> dict[str, Any]:
    role: dict[str, Any] = transformed["Resources"][ROLES[function]]
    return role


def grants(transformed: dict[str, Any], function: str) -> dict[str, set[str]]:
    """The DynamoDB and SQS actions a function's role allows, by resource."""
    found: dict[str, set[str]] = {"table": set(), "index": set(), "queue": set()}
    where = {json.dumps(TABLE_ARN): "table", json.dumps(GSI1_ARN): "index"}
    where[json.dumps(QUEUE_ARN)] = "queue"
    for statement in cfn.statements(role_of(transformed, function)):
        actions = [a for a in statement["Action"] if a.split(":")[0] in {"dynamodb", "sqs"}]
        for resource in statement["Resource"] if actions else []:
            key = where.get(json.dumps(resource))
            assert key, f"{function}: {actions} on a resource not of this stack: {resource}"
            found[key].update(actions)
    return found


def test_roles_are_the_templates_own_with_no_managed_policies(transformed: dict[str, Any]) -> None:
    roles = resources(transformed, "AWS::IAM::Role")
    assert set(roles) == {*ROLES.values(), "ApiGatewayLoggingRole"}
    for name in ROLES.values():
        role = roles[name]["Properties"]
        assert "ManagedPolicyArns" not in role, name
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_no_statement_allows_everything_or_anything(transformed: dict[str, Any]) -> None:
    for name in ROLES.values():
        for statement in cfn.statements(transformed["Resources"][name]):
            assert statement["Effect"] == "Allow"
            assert not [a for a in statement["Action"] if "*" in a], (name, statement)
            for resource in statement["Resource"]:
                # every resource is one of this stack's, never a literal (and so never "*")
                assert isinstance(resource, dict), (name, resource)


@pytest.mark.parametrize("function", list(HANDLERS))
def test_each_function_gets_exactly_its_registry_and_queue_calls(
    transformed: dict[str, Any], function: str
) -> None:
    assert grants(transformed, function) == EXPECTED_GRANTS[function]


@pytest.mark.parametrize("function", list(HANDLERS))
def test_logs_only_to_the_functions_own_log_group(
    transformed: dict[str, Any], function: str
) -> None:
    group = props(transformed, function)["LoggingConfig"]["LogGroup"]["Ref"]
    logs = [
        s
        for s in cfn.statements(role_of(transformed, function))
        if any(a.startswith("logs:") for a in s["Action"])
    ]
    assert len(logs) == 1
    assert set(logs[0]["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert logs[0]["Resource"] == [{"Fn::GetAtt": [group, "Arn"]}]


def test_manage_connections_only_on_this_apis_stage(
    transformed: dict[str, Any], render: cfn.Renderer
) -> None:
    expected = {
        f"arn:aws:execute-api:eu-west-1:123456789012:<WebSocketApi>/prod/{method}/@connections/*"
        for method in ("POST", "GET", "DELETE")
    }
    for function in HANDLERS:
        found = [
            s
            for s in cfn.statements(role_of(transformed, function))
            if any(a.startswith("execute-api:") for a in s["Action"])
        ]
        if function == "AuthorizerFunction":  # it calls no AWS service at all
            assert found == []
            continue
        (statement,) = found
        assert statement["Action"] == ["execute-api:ManageConnections"]
        assert {render(r) for r in statement["Resource"]} == expected


def test_only_the_account_logging_role_uses_a_managed_policy(transformed: dict[str, Any]) -> None:
    role = props(transformed, "ApiGatewayLoggingRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    (policy,) = role["ManagedPolicyArns"]
    assert policy["Fn::Sub"].endswith(
        ":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
    )
    for name in ("ApiGatewayLoggingRole", "ApiGatewayAccount"):
        assert transformed["Resources"][name]["DeletionPolicy"] == "Retain"


# The IAM grants, checked against the calls the code makes ----------------------------------


def _module_path(module: str) -> Path:
    base = cfn.ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_closure(*modules: str) -> set[str]:
    """The wsfanout modules that importing ``modules`` loads (read from their source)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen or not _module_path(module).is_file():
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        path = _module_path(module)
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                todo.append(target)
                todo.extend(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                todo.extend(alias.name for alias in node.names)
    return {module for module in seen if module.startswith("wsfanout")}


def _operations(service: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(name): name for name in model.operation_names}


def calls_made(modules: set[str]) -> set[str]:
    """IAM actions for every DynamoDB and SQS operation called on a client in ``modules``."""
    operations = {"dynamodb": _operations("dynamodb"), "sqs": _operations("sqs")}
    actions: set[str] = set()
    for module in modules:
        for node in ast.walk(ast.parse(_module_path(module).read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            if not ast.unparse(node.value).endswith("client"):  # self._client, client
                continue
            for service, names in operations.items():
                if node.attr in names:
                    operation = names[node.attr]
                    actions.add(f"{service}:{IAM_ACTION_OF.get(operation, operation)}")
    return actions


def test_the_closure_reader_finds_the_registry_behind_the_route_handler() -> None:
    closure = imported_closure("wsfanout.handlers.route")
    assert {"wsfanout.aws.registry", "wsfanout.aws.queue", "wsfanout.aws.table"} <= closure
    # the reader follows imports, not everything: the other entrypoints stay out
    assert not {"wsfanout.handlers.broadcast", "wsfanout.handlers.authorizer"} & closure
    assert "wsfanout.cli.main" not in closure
    assert calls_made({"wsfanout.aws.queue"}) == {"sqs:SendMessage"}


def test_grants_cover_every_call_the_handlers_can_make_and_no_more(
    transformed: dict[str, Any],
) -> None:
    made = calls_made(imported_closure(*(h.rsplit(".", 1)[0] for h in HANDLERS.values())))
    granted: set[str] = set()
    for function in HANDLERS:
        for actions in grants(transformed, function).values():
            granted |= actions
    assert granted - SQS_POLLER == made


@pytest.mark.parametrize("function", list(HANDLERS))
def test_no_function_is_granted_a_call_its_code_cannot_make(
    transformed: dict[str, Any], function: str
) -> None:
    made = calls_made(imported_closure(HANDLERS[function].rsplit(".", 1)[0]))
    granted = set().union(*grants(transformed, function).values())
    poller = SQS_POLLER if function == "BroadcastFunction" else set()
    assert granted - poller <= made


# -- the registry table and the queue ----------------------------------------------------------


def test_the_table_is_the_registry_codes_table(transformed: dict[str, Any]) -> None:
    expected = table.table_definition("any")
    properties = props(transformed, "ConnectionsTable")
    assert properties["BillingMode"] == expected["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == expected["KeySchema"]
    key = json.dumps
    assert sorted(map(key, properties["AttributeDefinitions"])) == sorted(
        map(key, expected["AttributeDefinitions"])
    )
    assert properties["GlobalSecondaryIndexes"] == expected["GlobalSecondaryIndexes"]
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": table.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    index = expected["GlobalSecondaryIndexes"][0]["IndexName"]
    assert GSI1_ARN["Fn::Sub"].endswith(f"/index/{index}")


def test_the_queue_redrives_to_a_dead_letter_queue(transformed: dict[str, Any]) -> None:
    queue = props(transformed, "BroadcastQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["BroadcastDeadLetterQueue", "Arn"]}
    assert 1 <= redrive["maxReceiveCount"] <= 10
    dead = props(transformed, "BroadcastDeadLetterQueue")
    assert dead["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert queue["SqsManagedSseEnabled"] is True
    assert dead["SqsManagedSseEnabled"] is True


def test_a_job_is_not_redelivered_while_a_worker_may_still_run_it(
    transformed: dict[str, Any],
) -> None:
    timeout = props(transformed, "BroadcastFunction")["Timeout"]
    assert props(transformed, "BroadcastQueue")["VisibilityTimeout"] >= 6 * timeout


def test_the_event_source_mapping_reports_batch_item_failures(transformed: dict[str, Any]) -> None:
    (mapping,) = resources(transformed, "AWS::Lambda::EventSourceMapping").values()
    properties = mapping["Properties"]
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["EventSourceArn"] == QUEUE_ARN
    assert properties["FunctionName"] == {"Ref": "BroadcastFunction"}
    assert properties["BatchSize"] == {"Ref": "BroadcastBatchSize"}
    assert properties["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "BroadcastMaxConcurrency"}}
    parameters = transformed["Parameters"]
    # above 10 SQS needs a batching window; below 2 Lambda refuses the maximum concurrency
    assert parameters["BroadcastBatchSize"]["MaxValue"] <= 10
    assert parameters["BroadcastMaxConcurrency"]["MinValue"] >= 2


# -- outputs -----------------------------------------------------------------------------------


def test_outputs_name_both_urls_the_table_and_the_queue(
    transformed: dict[str, Any], render: cfn.Renderer
) -> None:
    outputs = {name: output["Value"] for name, output in transformed["Outputs"].items()}
    url = render(outputs["WebSocketUrl"])
    endpoint = render(outputs["ManagementEndpoint"])
    assert url.startswith("wss://")
    assert endpoint == "https://" + url.removeprefix("wss://")
    assert render(outputs["ManagementEndpoint"]) == render(
        environment(transformed, "BroadcastFunction")["APIGW_MANAGEMENT_ENDPOINT"]
    )
    assert outputs["ConnectionsTableName"] == {"Ref": "ConnectionsTable"}
    assert outputs["BroadcastQueueUrl"] == {"Ref": "BroadcastQueue"}
    assert outputs["BroadcastQueueName"] == {"Fn::GetAtt": ["BroadcastQueue", "QueueName"]}


def test_the_stage_parameter_follows_the_one_stage_rule(template: dict[str, Any]) -> None:
    """The template's stage pattern is the rule the local stack and endpoint validate with."""
    pattern = template["Parameters"]["StageName"]["AllowedPattern"]
    assert pattern == f"^{STAGE_NAME.pattern}$"
    assert re.fullmatch(pattern[1:-1], template["Parameters"]["StageName"]["Default"])
