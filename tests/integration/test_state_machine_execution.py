"""The synthesized routing state machine, executed by moto's Step Functions interpreter.

The definition is the template's, as deployed. moto runs its states (Choice, Retry, Catch, Pass, the paths);
two stand-ins replace what it cannot run offline:

- its Lambda tasks call ``router.steps.handle`` in this process (moto would need Docker for a Lambda);
- its Bedrock SDK integration (``aws-sdk:bedrockruntime:converse``, which moto lacks) is a boto3 Converse call to
  the Bedrock simulator over HTTP, with Step Functions' naming: PascalCase in and out, errors
  ``BedrockRuntime.<Code>``.

The tasks' calls in other regions go to the simulator through the router's own gateway.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk as sdk

from cdk_app import Orchestration, RoutedBedrockEndpoint
from lambdas.router import steps
from lambdas.router.bedrock import BedrockGateway
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.policy import DEFAULT_POLICY_PATH
from lambdas.router.policy_store import PolicyStore, file_fetcher
from lambdas.router.replay import sdk_shape
from lambdas.router.state_store import InMemoryBackend
from local_endpoint.bedrock_sim import Fault
from tests.infrastructure.template_helpers import synthesize

pytestmark = pytest.mark.xdist_group("state-machine-execution")

ACCOUNT, REGION = "123456789012", "us-east-1"
TASKS_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:routing-tasks"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def definition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The state machine's definition from the synthesized template, its tokens resolved as CloudFormation would."""
    import os

    os.environ["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    synthesized = synthesize(
        tmp_path_factory.mktemp("sfn"),
        "Sfn",
        lambda stack: RoutedBedrockEndpoint(
            stack, "Llm", policy=DEFAULT_POLICY_PATH, orchestration=Orchestration.STEP_FUNCTIONS
        ),
        env=cdk.Environment(account=ACCOUNT, region=REGION),
    )
    [machine] = synthesized.template.find_resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = ""
    for part in parts:
        if isinstance(part, str):
            text += part
        elif part == {"Ref": "AWS::Partition"}:
            text += "aws"
        elif "Fn::GetAtt" in part:
            text += TASKS_ARN
        else:
            raise AssertionError(f"unexpected token in the definition: {part}")
    return text


def _camel(value: Any) -> Any:
    """The SDK integration's PascalCase parameters as boto3 takes them (base64 image bytes stay as sent)."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


@pytest.fixture
def machine(sim: tuple[Any, str], simulator: Any, definition: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Runs one /generate request through the state machine; returns (output, execution description)."""
    _sim, url = sim
    monkeypatch.setenv("AWS_REGION", REGION)
    tasks_run: list[str] = []

    def invoke_tasks(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        assert parameters["FunctionName"] == TASKS_ARN
        event = json.loads(parameters["Payload"])
        tasks_run.append(event["phase"])
        try:
            return {"StatusCode": 200, "Payload": steps.handle(event)}
        except Exception as exc:  # a task that raises: Lambda's Unhandled error, caught by the state machine
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": {"errorType": type(exc).__name__, "errorMessage": str(exc)},
            }

    sdk_calls: list[dict[str, Any]] = []

    def converse(self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any):
        assert (self.resource.api_name, self.resource.api_action) == ("bedrockruntime", "converse")
        sdk_calls.append(normalised_parameters)
        client = boto3.client(
            "bedrock-runtime",
            region_name=resource_runtime_part.region,
            endpoint_url=url,
            config=Config(retries={"total_max_attempts": 1}),
        )
        response = client.converse(**_camel(normalised_parameters))
        response.pop("ResponseMetadata", None)
        env.stack.append(sdk_shape(response))

    monkeypatch.setattr(lambda_eval_utils, "_invoke_lambda_function", invoke_tasks)
    monkeypatch.setattr(sdk.StateTaskServiceAwsSdk, "_eval_service_task", converse)
    monkeypatch.setitem(sdk._SERVICE_ERROR_NAMES, "bedrockruntime", "BedrockRuntime")

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        steps.configure(
            (
                PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=300),
                LiveStateTracker(InMemoryBackend()),
                BedrockGateway(endpoint_url=url),
            )
        )
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name="routing",
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/routing",
            type="EXPRESS",
        )["stateMachineArn"]

        def run(body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> tuple[dict[str, Any], Any]:
            raw = body if isinstance(body, str) else json.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
            request = {  # what the integration's mapping template sends
                "body64": base64.b64encode(raw.encode()).decode(),
                "headers64": {
                    base64.b64encode(k.encode()).decode(): base64.b64encode(v.encode()).decode()
                    for k, v in headers.items()
                },
                "requestContext": {
                    "requestId": "req-1",
                    "identity": {"sourceIp": "203.0.113.9", "apiKeyId": "", "userArn": ""},
                    "authorizer": {"claims": {"sub": ""}},
                },
            }
            execution = client.start_execution(
                stateMachineArn=arn, name=f"req-{uuid.uuid4()}", input=json.dumps({"request": request})
            )
            deadline = time.monotonic() + 30
            while True:
                described = client.describe_execution(executionArn=execution["executionArn"])
                if described["status"] != "RUNNING" or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert described["status"] == "SUCCEEDED", described
            return json.loads(described["output"]), described

        run.tasks = tasks_run  # type: ignore[attr-defined]
        run.sdk_calls = sdk_calls  # type: ignore[attr-defined]
        yield run
        steps.configure(None)


def _body(output: dict[str, Any]) -> dict[str, Any]:
    return json.loads(output["body"])


def test_primary_model_answers_through_the_sdk_integration(machine, simulator):
    # Given a healthy Bedrock
    # When a request runs through the state machine
    output, _ = machine({"prompt": "What is the capital of France?"})
    body = _body(output)
    # Then the state machine called the model in its region and the record task answered
    assert output["statusCode"] == 200
    assert body["degraded"] is False and body["fallback_used"] is False
    assert body["region"] == REGION and body["output"]
    assert output["headers"]["X-Selected-Model"] == body["model_used"]
    assert machine.tasks == ["decide", "record"]
    [call] = machine.sdk_calls
    assert call["ModelId"] == body["model_used"]
    assert call["Messages"][0]["Content"][0]["Text"] == "What is the capital of France?"
    assert body["usage"]["input_tokens"] > 0 and body["cost_usd"] > 0


def test_system_prompt_goes_through_the_system_branch(machine):
    output, _ = machine({"prompt": "Hello", "system": "Answer in French."})
    assert output["statusCode"] == 200
    [call] = machine.sdk_calls
    assert call["System"] == [{"Text": "Answer in French."}]


def test_next_region_then_fallback_model_when_the_primary_is_down(machine, simulator):
    # Given the route's primary model down in both regions
    probe, _ = machine({"prompt": "What is the capital of France?"})
    primary = _body(probe)["model_used"]
    simulator.faults.put(Fault(model=primary, region="*", outage=True))
    machine.tasks.clear()
    machine.sdk_calls.clear()
    # When the request runs
    output, _ = machine({"prompt": "What is the capital of France?"})
    body = _body(output)
    # Then the home call failed in the state machine, the next region in the task, and a fallback answered
    assert output["statusCode"] == 200 and body["fallback_used"] is True
    assert body["model_used"].startswith("FALLBACK:")
    attempts = body["decision"]["attempts"]
    assert [(a["region"], a["outcome"]) for a in attempts[:2]] == [(REGION, "regional"), ("us-west-2", "regional")]
    assert attempts[-1]["outcome"] == "ok"
    assert machine.sdk_calls[0]["ModelId"] == primary
    assert all(call["ModelId"] != primary for call in machine.sdk_calls[1:])


def test_throttled_call_is_retried_by_the_state_machine(machine, simulator):
    # Given the primary model throttling every call in the home region
    probe, _ = machine({"prompt": "What is the capital of France?"})
    primary = _body(probe)["model_used"]
    simulator.faults.put(Fault(model=primary, region=REGION, throttle_rate=1.0))
    machine.sdk_calls.clear()
    # When the request runs
    output, _ = machine({"prompt": "What is the capital of France?"})
    body = _body(output)
    # Then Step Functions retried it (1 + throttle_retries calls), then the task called the next region
    assert len([c for c in machine.sdk_calls if c["ModelId"] == primary]) == 3
    assert body["region"] == "us-west-2" and body["fallback_used"] is False
    assert body["decision"]["attempts"][0]["outcome"] == "throttled"


def test_degraded_answer_when_every_model_is_down(machine, simulator):
    simulator.faults.put(Fault(model="*", region="*", outage=True))
    output, _ = machine({"prompt": "What is the capital of France?"})
    body = _body(output)
    assert output["statusCode"] == 200 and output["headers"]["X-Degraded"] == "true"
    assert body["degraded"] is True and body["model_used"] == "DEGRADED_SERVICE"
    assert body["decision"]["attempts"] and all(a["outcome"] != "ok" for a in body["decision"]["attempts"])


def test_degraded_pass_when_a_routing_task_fails(machine, monkeypatch):
    # Given the tasks function failing (an unhandled error)
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(steps, "handle", broken)
    # When a request runs
    output, _ = machine({"prompt": "Hello"})
    body = _body(output)
    # Then the Degraded state answers with /generate's degraded contract
    assert output["statusCode"] == 200 and output["headers"]["X-Degraded"] == "true"
    assert body["degraded"] is True and body["decision"] == {"gave_up": "routing task failed"}
    assert body["output"].startswith("The assistant is temporarily unavailable")


def test_bad_body_is_a_400_without_a_model_call(machine):
    output, _ = machine("{not json")
    assert output["statusCode"] == 400 and "JSON" in _body(output)["message"]
    assert machine.sdk_calls == [] and machine.tasks == ["decide"]


def test_a_failed_record_task_is_abandoned_with_its_call_paid(machine, monkeypatch):
    # Given the record task failing after the model answered
    real = steps.handle

    def flaky(event: dict[str, Any]) -> dict[str, Any]:
        if event["phase"] == "record":
            raise RuntimeError("record failed")
        return real(event)

    monkeypatch.setattr(steps, "handle", flaky)
    # When a request runs
    output, _ = machine({"prompt": "What is the capital of France?"})
    body = _body(output)
    # Then the Abandon task answered: degraded, the answered call charged
    assert machine.tasks == ["decide", "record", "abandon"]
    assert output["headers"]["X-Degraded"] == "true" and body["decision"]["gave_up"] == "routing task failed"
    assert body["cost_usd"] > 0
