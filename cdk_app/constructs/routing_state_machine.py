"""``RoutingStateMachine``: the Step Functions orchestration of ``POST /generate`` (``Orchestration.STEP_FUNCTIONS``).

An Express state machine that API Gateway starts synchronously (``StartSyncExecution``)::

    Decide (Lambda task) -> Next? -- call --> CallModel (Bedrock Converse, SDK integration) --+
                              ^       \\-- answer --> Answer                                  |
                              +---------- Record (Lambda task) <-- outcome or caught error --+
    Record fails -> Abandon (Lambda task: charge, settle, the degraded answer) -> Answer
    Decide or Abandon fails -> Degraded (Pass: /generate's degraded answer) -> Answer

The tasks (``lambdas/router/steps.py``) run the router's own code: the decision, the order of regions and
fallbacks, cascades, circuit breakers, budgets and metrics are the Lambda orchestration's. The model calls in the
state machine's region are made by Step Functions, which bills no Lambda while Bedrock answers; a throttled call
is retried there with jittered exponential backoff. A call planned in another region is made by the Record task
(Step Functions' SDK integrations call their own region only).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambdas.router.policy import Policy
from lambdas.router.replay import StateMachineRetry
from lambdas.router.service import DEGRADED_MODEL

from ._bedrock_arns import model_invoke_arns

THROTTLE_ERRORS = ("BedrockRuntime.ThrottlingException", "BedrockRuntime.ServiceQuotaExceededException")
"""What the Bedrock SDK integration raises when a call is throttled (``ServiceName.ErrorName``)."""
LAMBDA_NOT_RUN_ERRORS = ("Lambda.TooManyRequestsException",)
"""Lambda refused to run the task (throttled): retried once, a second later. Other Lambda service errors may come
after the task ran, and a task repeated would report its call to the breakers or settle the budget twice."""
LAST_TASK_MS = 2000
"""Time the execution allows past the policy's total deadline: the Record task that answers."""
MAX_EXPRESS_DURATION = Duration.minutes(5)
"""A synchronous Express execution's limit."""
STATE_MACHINE_MAX_BODY_BYTES = 65_536
"""The largest ``/generate`` body this orchestration accepts: 64 KiB. Step Functions caps an execution's state at
256 KiB, and the request travels in it three times over (in base64, about 4/3 of its size; as Converse messages;
in the tasks' input) beside the answers so far."""


class Orchestration(Enum):
    """How ``POST /generate`` waits on Bedrock (README: "Which orchestration")."""

    LAMBDA = "lambda"
    """The router Lambda makes the model calls and is billed while Bedrock answers."""
    STEP_FUNCTIONS = "step-functions"
    """An Express state machine makes them (``RoutingStateMachine``); two short Lambda tasks decide and record."""


class RoutingStateMachine(Construct):
    """The Express state machine of the Step Functions orchestration, with its log group.

    Example::

        tasks_function = RouterFunction(self, "StepsFunction", policy=policy, state_machine_tasks=True, ...)
        machine = RoutingStateMachine(self, "StateMachine", tasks_function=tasks_function.function, policy=policy)

    Args:
        scope: parent construct.
        id: construct id.
        tasks_function: the function running ``router.steps.lambda_handler`` (``RouterFunction`` with
            ``state_machine_tasks=True``).
        policy: the routing policy; its ``resilience`` gives the throttle retries (``throttle_retries``,
            ``backoff_base_ms``, ``backoff_cap_ms``) and the degraded message, its models the Bedrock IAM.
        log_retention: retention of the execution log group. Default: - ``RetentionDays.ONE_MONTH``.
        timeout: the execution's limit. Default: - the policy's ``total_deadline_ms`` plus 2 s (the last task), so
            that a stuck execution ends, as a JSON 504, inside API Gateway's 29 s (the endpoint allows a deadline
            of at most 26,500 ms).

    Attributes:
        state_machine: the Express state machine.
        log_group: its execution log (level ALL, without execution data: prompts and answers are not logged), named
            ``/aws/vendedlogs/states/...`` and deleted with the stack.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        tasks_function: lambda_.IFunction,
        policy: Policy,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        timeout: Duration | None = None,
    ) -> None:
        super().__init__(scope, id)
        resilience = policy.resilience
        timeout = timeout or Duration.seconds((resilience.total_deadline_ms + LAST_TASK_MS) // 1000)  # whole s
        if not timeout.is_unresolved() and timeout.to_milliseconds() > MAX_EXPRESS_DURATION.to_milliseconds():
            raise ValueError(
                f"timeout of {timeout.to_seconds()} s is above the 300 s a synchronous Express execution may run"
            )

        def task(state_id: str, comment: str, payload: dict[str, Any]) -> tasks.LambdaInvoke:
            """A routing task: ``payload`` plus the request, its answer at ``$.step``."""
            return tasks.LambdaInvoke(
                self,
                state_id,
                state_name=state_id,
                comment=comment,
                lambda_function=tasks_function,
                payload=sfn.TaskInput.from_object(
                    {"phase": state_id.lower(), "request": sfn.JsonPath.object_at("$.request"), **payload}
                ),
                payload_response_only=True,
                retry_on_service_exceptions=False,  # one quick retry below: the request's deadline is seconds away
                result_path="$.step",
            )

        after_a_call = {"run": sfn.JsonPath.object_at("$.step.run"), "outcome": sfn.JsonPath.object_at("$.outcome")}
        decide = task(
            "Decide",
            "Parse the request, read the policy and live state, decide the route; the first call or an answer",
            {"started_at": sfn.JsonPath.string_at("$$.Execution.StartTime")},  # the deadline counts from it
        )
        record = task(
            "Record",
            "Record the call's outcome (breakers, latency); the next call (fallback, next step) or the answer",
            after_a_call,
        )
        abandon = task(
            "Abandon",
            "Record failed: charge the calls made, settle the budget, give back probes; the degraded answer",
            after_a_call,
        )
        answer = sfn.Succeed(self, "Answer", state_name="Answer", output_path="$.step.answer")
        degraded = sfn.Pass(
            self,
            "Degraded",
            state_name="Degraded",
            comment="A routing task failed: /generate's degraded answer",
            result=sfn.Result.from_object({"action": "answer", "answer": degraded_answer(resilience.degraded_message)}),
            result_path="$.step",
        )
        degraded.next(answer)
        abandon.next(answer)
        for failing, then in ((decide, degraded), (record, abandon), (abandon, degraded)):
            # Retried only when Lambda did not run it (a rerun would repeat its breaker reports or settle twice)
            failing.add_retry(
                errors=list(LAMBDA_NOT_RUN_ERRORS), interval=Duration.seconds(1), max_attempts=1, backoff_rate=1
            )
            failing.add_catch(then, errors=[sfn.Errors.ALL], result_path="$.error")

        region = cdk.Stack.of(self).region
        invoke_arns = model_invoke_arns(policy, None if cdk.Token.is_unresolved(region) else region)
        if not invoke_arns:
            raise ValueError(f"no model of the policy is served in region '{region}', the state machine's region")
        retry = StateMachineRetry.of(resilience)  # the tasks shorten each call's timeout by its longest wait
        calls = []
        for state_id, with_system in (("CallModel", False), ("CallModelWithSystem", True)):
            parameters = {
                "ModelId": sfn.JsonPath.string_at("$.step.call.ModelId"),
                "Messages": sfn.JsonPath.list_at("$.step.call.Messages"),
                "InferenceConfig": sfn.JsonPath.object_at("$.step.call.InferenceConfig"),
            }
            if with_system:
                parameters["System"] = sfn.JsonPath.list_at("$.step.call.System")
            call = tasks.CallAwsService(
                self,
                state_id,
                state_name=state_id,
                comment="Converse in this region; a throttled call is retried here, any failure goes to Record",
                service="bedrockruntime",
                action="converse",
                parameters=parameters,
                iam_action="bedrock:InvokeModel",  # Converse is authorized by InvokeModel
                iam_resources=invoke_arns,
                result_selector={
                    "Output": sfn.JsonPath.object_at("$.Output"),
                    "Usage": sfn.JsonPath.object_at("$.Usage"),
                    "StopReason": sfn.JsonPath.string_at("$.StopReason"),
                },
                result_path="$.outcome",
                task_timeout=sfn.Timeout.at("$.step.call.TimeoutSeconds"),
            )
            if retry.max_attempts > 0:
                call.add_retry(
                    errors=list(THROTTLE_ERRORS),
                    interval=Duration.seconds(retry.interval_s),
                    max_attempts=retry.max_attempts,
                    backoff_rate=2,
                    max_delay=Duration.seconds(retry.max_delay_s),
                    jitter_strategy=sfn.JitterType.FULL,
                )
            call.add_catch(record, errors=[sfn.Errors.ALL], result_path="$.outcome")
            call.next(record)
            calls.append(call)
        call_model, call_with_system = calls

        route = (
            sfn.Choice(self, "Next", state_name="Next", comment="The task asked for a call, or answered")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.string_equals("$.step.action", "call"),
                    sfn.Condition.is_present("$.step.call.System"),
                ),
                call_with_system,
            )
            .when(sfn.Condition.string_equals("$.step.action", "call"), call_model)
            .otherwise(answer)
        )
        decide.next(route)
        record.next(route)

        # Under /aws/vendedlogs/: Step Functions adds every log group it logs to to the account's CloudWatch Logs
        # resource policy (5,120 characters) unless the name has that prefix (Step Functions' best practices).
        # A named group deleted with the stack, so that deploying the stack again finds the name free.
        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name="/aws/vendedlogs/states/"
            + cdk.Names.unique_resource_name(self, separator="-", max_length=200),
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_chainable(decide),
            timeout=timeout,
            comment="Routed Bedrock endpoint: POST /generate",
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self._acknowledge_nag_findings(tasks_function)

    def _acknowledge_nag_findings(self, tasks_function: lambda_.IFunction) -> None:
        validations = cdk.Validations.of
        policy = self.state_machine.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            validations(policy).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="Step Functions' execution logging to CloudWatch Logs (the statement CDK writes for "
                    "LogOptions): the log delivery actions (logs:CreateLogDelivery, GetLogDelivery, "
                    "UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries) and logs:PutResourcePolicy, "
                    "DescribeResourcePolicies and DescribeLogGroups, which AWS documents on '*' only.",
                ),
                cdk.Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{cdk.Stack.of(self).get_logical_id(_cfn(tasks_function))}"
                    ".Arn>:*]",
                    reason="The state machine invokes the routing tasks function and its versions "
                    "(LambdaInvoke's grant): one function, no other.",
                ),
            )
        validations(self.state_machine).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-SF2",
                reason="X-Ray is off as in the Lambda orchestration (the router's Tracer costs 0.45 s of cold "
                "start): the execution log (level ALL) and the router's metrics trace each request.",
            )
        )


def _cfn(function: lambda_.IFunction) -> cdk.CfnElement:
    resource = function.node.default_child
    if not isinstance(resource, cdk.CfnElement):
        raise ValueError("tasks_function must be a Function of this app (its CloudFormation resource is needed)")
    return resource


def degraded_answer(message: str) -> dict[str, object]:
    """``/generate``'s degraded answer as the state machine returns it when a routing task fails."""
    body = {
        "output": message,
        "model_used": DEGRADED_MODEL,
        "route": "none",
        "region": None,
        "fallback_used": False,
        "degraded": True,
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "cost_usd": 0.0,
        "latency_ms": 0.0,
        "decision": {"gave_up": "routing task failed"},
    }
    return {
        "statusCode": 200,
        "headers": {"X-Selected-Model": DEGRADED_MODEL, "X-Degraded": "true"},
        "body": json.dumps(body, separators=(",", ":")),
    }


REQUEST_CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain")
"""Request content types the integration maps (others get API Gateway's 415)."""
ANSWER_HEADERS = ("X-Selected-Model", "X-Degraded", "Retry-After")
"""The router's response headers the integration copies from the state machine's answer."""

SECRET_HEADERS = ("authorization", "x-api-key")
"""Headers the integration leaves out of the execution's input: API Gateway has checked them, the router never reads
them, and the input travels through every task."""

# The execution's input: the raw body and the headers in base64 (no text of the caller's needs escaping twice, once
# for the input's JSON and once for StartSyncExecution's), and the request context fields the router reads.
_SKIP_SECRETS = " && ".join(f'$name.toLowerCase() != "{header}"' for header in SECRET_HEADERS)
_REQUEST_TEMPLATE = (
    '#set($sep = "")'
    '{{"stateMachineArn": "{arn}", "input": "{{\\"request\\":{{'
    '\\"body64\\":\\"$util.base64Encode($input.body)\\",'
    '\\"headers64\\":{{#foreach($name in $input.params().header.keySet())'
    f"#if({_SKIP_SECRETS})"
    '$sep\\"$util.base64Encode($name)\\":\\"$util.base64Encode($input.params().header.get($name))\\"'
    '#set($sep = ",")#end#end}},'
    '\\"requestContext\\":{{\\"requestId\\":\\"$context.requestId\\",'
    '\\"identity\\":{{\\"sourceIp\\":\\"$context.identity.sourceIp\\",\\"apiKeyId\\":\\"$context.identity.apiKeyId\\",'
    '\\"userArn\\":\\"$context.identity.userArn\\"}},'
    '\\"authorizer\\":{{\\"claims\\":{{\\"sub\\":\\"$context.authorizer.claims.sub\\"}}}}}}}}}}"}}'
)

_HEADER_LINES = "\n".join(
    f'#if($answer.headers.get("{name}"))#set($context.responseOverride.header.{name} = $answer.headers.get("{name}"))'
    "#end"
    for name in ANSWER_HEADERS
)
# StartSyncExecution answers 200 with the execution's status and output (a JSON text): the answer's status code,
# headers and body come from that output; an execution that did not succeed is a 502 (504 if it timed out).
_RESPONSE_TEMPLATE = f"""#set($status = $input.path('$.status'))
#if($status == "SUCCEEDED")
#set($answer = $util.parseJson($input.path('$.output')))
#set($context.responseOverride.status = $answer.statusCode)
{_HEADER_LINES}
$answer.body
#else
#if($status == "TIMED_OUT")#set($code = 504)#else#set($code = 502)#end
#set($context.responseOverride.status = $code)
{{"error": "RouterUnavailable", "message": "the routing state machine ended $status",
"request_id": "$context.requestId"}}
#end"""
# Step Functions refused to start the execution (HTTP 4xx): throttled (429, to be retried), the input too large or
# invalid (400, the caller's), anything else (access, a missing state machine: 502, not the caller's fault).
_REFUSED_TEMPLATE = """#set($type = "$input.path('$.__type')")
#set($message = $util.escapeJavaScript("$input.path('$.message')").replaceAll("\\\\'", "'"))
#if($type.contains("Throttling") || $type.contains("ExecutionLimitExceeded"))
#set($context.responseOverride.status = 429)
#set($context.responseOverride.header.Retry-After = "1")
{"error": "Throttled", "message": "Step Functions is throttling routing executions: $message"}
#elseif($type.contains("Validation") || $type.contains("InvalidExecutionInput"))
{"error": "BadRequest", "message": "Step Functions refused the request: $message"}
#else
#set($context.responseOverride.status = 502)
{"error": "RouterUnavailable", "message": "the routing state machine could not be started: $message"}
#end"""
_FAILED_TEMPLATE = '{"error": "RouterUnavailable", "message": "the routing state machine could not be started"}'

STATE_MACHINE_METHOD_RESPONSES = [
    apigw.MethodResponse(
        status_code=status,
        response_parameters={f"method.response.header.{name}": False for name in ANSWER_HEADERS},
    )
    for status in ("200", "400", "404", "429", "500", "502", "504")
]
"""``POST /generate``'s method responses with the Step Functions orchestration: every status the router answers."""


def state_machine_integration(state_machine: sfn.IStateMachine) -> apigw.AwsIntegration:
    """``POST /generate`` on the routing state machine: ``StartSyncExecution`` with the request as its input, and
    the answer's status code, headers and body taken from the execution's output (``steps.answer_of``)."""
    return apigw.StepFunctionsIntegration.start_execution(
        state_machine,
        use_default_method_responses=False,
        # JSON, and what curl -d and plain clients send: the router reads the body as JSON whatever its type
        request_templates={
            content_type: _REQUEST_TEMPLATE.format(arn=state_machine.state_machine_arn)
            for content_type in REQUEST_CONTENT_TYPES
        },
        integration_responses=[
            apigw.IntegrationResponse(status_code="200", response_templates={"application/json": _RESPONSE_TEMPLATE}),
            apigw.IntegrationResponse(
                status_code="400",
                selection_pattern="4\\d{2}",
                response_templates={"application/json": _REFUSED_TEMPLATE},
            ),
            apigw.IntegrationResponse(
                status_code="502",
                selection_pattern="5\\d{2}",
                response_templates={"application/json": _FAILED_TEMPLATE},
            ),
        ],
    )
