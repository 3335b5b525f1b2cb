"""The Step Functions orchestration in the template: the state machine's ASL, its IAM, logging, the integration and
its mapping templates (rendered with a Velocity engine), the tasks function and the alarms."""

from __future__ import annotations

import base64
import json
from typing import Any

import airspeed
import aws_cdk as cdk
import pytest
from aws_cdk import Size
from aws_cdk.assertions import Match

from cdk_app import Orchestration, RoutedBedrockEndpoint
from cdk_app.constructs import routing_state_machine as rsm
from tests.infrastructure.template_helpers import all_statements, function, logical_id, methods, synthesize

pytestmark = pytest.mark.xdist_group("state-machine")
ENV = cdk.Environment(account="123456789012", region="us-east-1")


@pytest.fixture(scope="module")
def sfn(tmp_path_factory, shipped_policy):
    return synthesize(
        tmp_path_factory.mktemp("sfn"),
        "Sfn",
        lambda stack: RoutedBedrockEndpoint(
            stack, "Llm", policy=shipped_policy, orchestration=Orchestration.STEP_FUNCTIONS
        ),
        env=ENV,
    )


def _definition(sfn) -> dict[str, Any]:
    [machine] = sfn.template.find_resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(part if isinstance(part, str) else "TOKEN" for part in parts))


def test_an_express_state_machine_with_execution_logging(sfn):
    sfn.template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "EXPRESS",
            "LoggingConfiguration": {"Level": "ALL", "IncludeExecutionData": False, "Destinations": Match.any_value()},
        },
    )


def test_execution_log_group_is_vended_and_goes_with_the_stack(sfn):
    groups = sfn.template.find_resources("AWS::Logs::LogGroup")
    [group] = [g for k, g in groups.items() if "ExecutionLogs" in k]
    assert group["Properties"]["LogGroupName"].startswith("/aws/vendedlogs/states/")
    assert group["DeletionPolicy"] == "Delete"


def test_states_and_their_order(sfn, shipped_policy):
    definition = _definition(sfn)
    states = definition["States"]
    assert definition["StartAt"] == "Decide"
    assert set(states) == {
        "Decide",
        "Next",
        "CallModel",
        "CallModelWithSystem",
        "Record",
        "Abandon",
        "Degraded",
        "Answer",
    }
    assert states["Decide"]["Parameters"]["started_at.$"] == "$$.Execution.StartTime"
    assert states["Decide"]["Next"] == states["Record"]["Next"] == "Next"
    assert states["Next"]["Default"] == "Answer"
    assert [choice["Next"] for choice in states["Next"]["Choices"]] == ["CallModelWithSystem", "CallModel"]
    assert states["Answer"] == {"Type": "Succeed", "OutputPath": "$.step.answer"}
    # The total deadline plus the last task's time, inside API Gateway's 29 s
    assert definition["TimeoutSeconds"] == shipped_policy["resilience"]["total_deadline_ms"] // 1000 + 2 < 29


def test_model_call_is_converse_with_retry_on_throttling_and_catch_to_record(sfn, shipped_policy):
    resilience = shipped_policy["resilience"]
    states = _definition(sfn)["States"]
    for name in ("CallModel", "CallModelWithSystem"):
        call = states[name]
        assert call["Resource"].endswith(":states:::aws-sdk:bedrockruntime:converse")
        assert call["TimeoutSecondsPath"] == "$.step.call.TimeoutSeconds"
        assert call["Next"] == "Record" and call["ResultPath"] == "$.outcome"
        [retry] = call["Retry"]
        assert retry["ErrorEquals"] == list(rsm.THROTTLE_ERRORS)
        assert retry["MaxAttempts"] == resilience["throttle_retries"]
        assert retry["JitterStrategy"] == "FULL" and retry["BackoffRate"] == 2
        assert retry["MaxDelaySeconds"] == resilience["backoff_cap_ms"] // 1000
        assert call["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.outcome", "Next": "Record"}]
    assert "System.$" in states["CallModelWithSystem"]["Parameters"]
    assert "System.$" not in states["CallModel"]["Parameters"]


def test_task_failures_abandon_then_degrade(sfn, shipped_policy):
    states = _definition(sfn)["States"]
    for name, then in (("Decide", "Degraded"), ("Record", "Abandon"), ("Abandon", "Degraded")):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": then}]
        # Retried only when Lambda did not run the task: a rerun would report a call or settle twice
        [retry] = states[name]["Retry"]
        assert retry["MaxAttempts"] == 1 and retry["ErrorEquals"] == ["Lambda.TooManyRequestsException"]
    assert states["Abandon"]["Parameters"]["phase"] == "abandon" and states["Abandon"]["Next"] == "Answer"
    degraded = states["Degraded"]
    assert degraded["Type"] == "Pass" and degraded["Next"] == "Answer"
    answer = degraded["Result"]["answer"]
    assert answer["headers"] == {"X-Selected-Model": "DEGRADED_SERVICE", "X-Degraded": "true"}
    body = json.loads(answer["body"])
    assert body["degraded"] is True and body["output"] == shipped_policy["resilience"]["degraded_message"]


def test_state_machine_role_invokes_only_the_tasks_function_and_the_policy_models(sfn):
    role = logical_id(sfn.template, "AWS::IAM::Role", "OrchestrationStateMachineRole")
    policies = [
        p for p in sfn.template.find_resources("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    by_action = {json.dumps(s["Action"]): s for s in statements}
    assert set(by_action) >= {'"lambda:InvokeFunction"', '"bedrock:InvokeModel"'}
    bedrock = by_action['"bedrock:InvokeModel"']["Resource"]
    router = next(s for s in all_statements(sfn.template) if s.get("Sid") == "InvokePolicyModels")["Resource"]
    rendered = [json.dumps(arn) for arn in bedrock]
    # The policy's models as called from the state machine's own region: no inference profile elsewhere
    assert set(rendered) < {json.dumps(arn) for arn in router}
    assert not any(":bedrock:us-west-2:" in arn and "inference-profile" in arn for arn in rendered)
    assert any(":bedrock:us-east-1:" in arn and "inference-profile" in arn for arn in rendered)
    assert all("*" not in arn for arn in rendered)


def test_generate_starts_a_sync_execution_and_the_rest_stays_on_the_router(sfn):
    by_path = methods(sfn.template)
    generate = by_path[("generate", "POST")]["Integration"]
    assert generate["Type"] == "AWS"
    assert generate["Uri"]["Fn::Join"][1][-1].endswith(":states:action/StartSyncExecution")
    assert {r["StatusCode"] for r in generate["IntegrationResponses"]} == {"200", "400", "502"}
    assert {r["StatusCode"] for r in by_path[("generate", "POST")]["MethodResponses"]} >= {"200", "400", "429", "504"}
    for key in (("health", "GET"), ("models", "GET")):
        assert by_path[key]["Integration"]["Type"] == "AWS_PROXY"


def test_tasks_function_runs_the_steps_handler_with_the_state_machine_body_limit(sfn):
    tasks = function(sfn.template, "StepsFunction")["Properties"]
    assert tasks["Handler"] == "router.steps.lambda_handler"
    assert tasks["Environment"]["Variables"]["ROUTER_MAX_BODY_BYTES"] == str(rsm.STATE_MACHINE_MAX_BODY_BYTES)
    assert tasks["Environment"]["Variables"]["ROUTER_STATE_TABLE"]


def test_alarms_for_the_tasks_function_and_the_executions(sfn):
    names = {
        a["Properties"].get("AlarmDescription", "")
        for a in sfn.template.find_resources("AWS::CloudWatch::Alarm").values()
    }
    assert any(name.startswith("routing tasks function errors") for name in names)
    assert any(name.startswith("routing state machine executions failed or timed out") for name in names)
    assert {"StepsLambdaErrors", "StateMachineFailures"} <= set(sfn.endpoint.alarms)


def test_rejects_a_body_limit_the_state_cannot_carry(shipped_policy):
    stack = cdk.Stack(cdk.App(), "TooBig", env=ENV)
    with pytest.raises(ValueError, match="router_max_body_size of 200000 bytes"):
        RoutedBedrockEndpoint(
            stack,
            "Llm",
            policy=shipped_policy,
            orchestration=Orchestration.STEP_FUNCTIONS,
            router_max_body_size=Size.bytes(200_000),
        )


def test_rejects_an_orchestration_that_is_not_one(shipped_policy):
    stack = cdk.Stack(cdk.App(), "Odd", env=ENV)
    with pytest.raises(ValueError, match="orchestration must be an Orchestration"):
        RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy, orchestration="step-functions")  # type: ignore[arg-type]


def test_rejects_a_deadline_past_the_express_limit(shipped_policy):
    from lambdas.router.policy import parse_policy

    policy = parse_policy(json.dumps(shipped_policy))
    stack = cdk.Stack(cdk.App(), "Slow", env=ENV)
    with pytest.raises(ValueError, match="300 s"):
        rsm.RoutingStateMachine(
            stack,
            "Machine",
            tasks_function=_any_function(stack),
            policy=policy,
            timeout=cdk.Duration.minutes(6),
        )


def _any_function(stack: cdk.Stack):
    from aws_cdk import aws_lambda as lambda_

    return lambda_.Function(
        stack,
        "Tasks",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return event\n"),
    )


# --- The integration's mapping templates, rendered by a Velocity engine with API Gateway's $util -------------------


class _Util:
    @staticmethod
    def base64Encode(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    @staticmethod
    def parseJson(text: str) -> Any:
        return json.loads(text)

    @staticmethod
    def escapeJavaScript(text: str) -> str:
        return json.dumps(text)[1:-1]


class _JavaString(str):
    """A header name as VTL sees it: a Java string."""

    def toLowerCase(self) -> str:
        return self.lower()


class _Input:
    def __init__(self, body: str = "", headers: dict[str, str] | None = None, doc: dict[str, Any] | None = None):
        self.body, self._doc = body, doc or {}
        self._headers = {_JavaString(name): value for name, value in (headers or {}).items()}

    def params(self) -> dict[str, Any]:
        return {"header": self._headers, "querystring": {}, "path": {}}

    def path(self, expression: str) -> Any:
        return self._doc if expression == "$" else self._doc.get(expression[2:])


@pytest.mark.parametrize(
    "body",
    ['{"prompt": "He said \\"hi\\" \\\\ it\'s {ok}"}', '{"prompt": "naïve — 東京\\n\\ttab"}', ""],
)
def test_request_template_carries_the_raw_body_and_headers_unescaped(body: str):
    # Given a body with quotes, backslashes, apostrophes, braces and non-ASCII text, and headers
    headers = {"Content-Type": "application/json", "X-User-Tier": 'pro "gold"', "X-Caller-Id": "a'b"}
    secrets = {"X-Api-Key": "k3y", "Authorization": "Bearer k3y"}
    context = {
        "requestId": "rid-1",
        "identity": {"sourceIp": "203.0.113.9", "apiKeyId": "k1", "userArn": ""},
        "authorizer": {"claims": {"sub": "user-1"}},
    }
    # When the request template renders
    template = rsm._REQUEST_TEMPLATE.format(arn="arn:aws:states:us-east-1:123456789012:stateMachine:m")
    rendered = airspeed.Template(template).merge(
        {"input": _Input(body, {**headers, **secrets}), "util": _Util(), "context": context}
    )
    # Then StartSyncExecution's body is JSON, and its input is JSON carrying the body and headers exactly
    start = json.loads(rendered)
    assert start["stateMachineArn"].endswith(":stateMachine:m")
    request = json.loads(start["input"])["request"]
    assert base64.b64decode(request["body64"]).decode() == body
    decoded = {base64.b64decode(k).decode(): base64.b64decode(v).decode() for k, v in request["headers64"].items()}
    assert decoded == headers  # the key and the bearer token stay out of the execution's input
    assert request["requestContext"]["identity"]["apiKeyId"] == "k1"
    assert request["requestContext"]["authorizer"]["claims"]["sub"] == "user-1"


def test_response_template_returns_the_answer_status_headers_and_body():
    answer = {"statusCode": 429, "headers": {"Retry-After": "30", "X-Selected-Model": "m"}, "body": '{"error":"x"}'}
    context: dict[str, Any] = {"requestId": "rid-1", "responseOverride": {"header": {}}}
    doc = {"status": "SUCCEEDED", "output": json.dumps(answer)}
    rendered = airspeed.Template(rsm._RESPONSE_TEMPLATE).merge(
        {"input": _Input(doc=doc), "util": _Util(), "context": context}
    )
    assert json.loads(rendered) == {"error": "x"}
    assert context["responseOverride"]["status"] == 429
    assert context["responseOverride"]["header"]["Retry-After"] == "30"
    assert context["responseOverride"]["header"]["X-Selected-Model"] == "m"
    assert not context["responseOverride"]["header"].get("X-Degraded")


@pytest.mark.parametrize(("status", "code"), [("TIMED_OUT", 504), ("FAILED", 502), ("ABORTED", 502)])
def test_response_template_maps_an_unfinished_execution_to_a_json_5xx(status: str, code: int):
    context: dict[str, Any] = {"requestId": "rid-1", "responseOverride": {"header": {}}}
    rendered = airspeed.Template(rsm._RESPONSE_TEMPLATE).merge(
        {"input": _Input(doc={"status": status}), "util": _Util(), "context": context}
    )
    body = json.loads(rendered)
    assert context["responseOverride"]["status"] == code
    assert body["error"] == "RouterUnavailable" and status in body["message"] and body["request_id"] == "rid-1"


def test_dashboard_has_a_row_of_executions(sfn):
    [dashboard] = sfn.template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "Routing executions (Step Functions)" in body
    assert "ExecutionsTimedOut" in body and "ExecutionTime" in body


@pytest.mark.parametrize(
    ("error_type", "status", "error"),
    [
        ("ThrottlingException", 429, "Throttled"),
        ("ExecutionLimitExceeded", 429, "Throttled"),
        ("ValidationException", None, "BadRequest"),
        ("InvalidExecutionInput", None, "BadRequest"),
        ("AccessDeniedException", 502, "RouterUnavailable"),
    ],
)
def test_refused_start_is_told_apart_by_its_error_type(error_type: str, status: int | None, error: str):
    context: dict[str, Any] = {"requestId": "rid-1", "responseOverride": {"header": {}}}
    doc = {"__type": f"com.amazonaws.swf.service.v2.model#{error_type}", "message": "it's 'too' much"}
    rendered = airspeed.Template(rsm._REFUSED_TEMPLATE).merge(
        {"input": _Input(doc=doc), "util": _Util(), "context": context}
    )
    body = json.loads(rendered)  # valid JSON although the message has apostrophes
    assert body["error"] == error and "it's 'too' much" in body["message"]
    assert context["responseOverride"].get("status") == status  # None: the integration response's 400
    if status == 429:
        assert context["responseOverride"]["header"]["Retry-After"] == "1"


def test_rejects_a_policy_without_a_model_in_the_stack_region(shipped_policy):
    from lambdas.router.policy import parse_policy

    stack = cdk.Stack(cdk.App(), "Elsewhere", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    with pytest.raises(ValueError, match="no model of the policy is served in region 'eu-west-1'"):
        rsm.RoutingStateMachine(
            stack, "Machine", tasks_function=_any_function(stack), policy=parse_policy(json.dumps(shipped_policy))
        )
