"""The deployed streaming path: API Gateway's STREAM integration to the streaming router behind Lambda Web Adapter."""

from __future__ import annotations

import copy
import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_

from cdk_app import RoutedBedrockEndpoint
from cdk_app.constructs.router_function import WEB_ADAPTER_LAYER_ACCOUNT, WEB_ADAPTER_LAYER_VERSION
from lambdas.router.web_adapter import EVENTS_PATH, READY_PATH
from tests.infrastructure.template_helpers import (
    function,
    logical_id,
    methods,
    resolve_arn,
    statements,
    synthesize,
)

pytestmark = pytest.mark.xdist_group("streaming-wiring")
ENV = cdk.Environment(account="123456789012", region="us-east-1")


@pytest.fixture(scope="module")
def buffered_only(tmp_path_factory, shipped_policy):
    return synthesize(
        tmp_path_factory.mktemp("buffered-only"),
        "BufferedOnly",
        lambda stack: RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy, streaming=False),
        env=ENV,
    )


@pytest.fixture(scope="module")
def x86_with_own_layer(tmp_path_factory, shipped_policy):
    def build(stack: cdk.Stack) -> RoutedBedrockEndpoint:
        layer = lambda_.LayerVersion.from_layer_version_arn(
            stack, "OwnAdapter", "arn:aws:lambda:us-east-1:111122223333:layer:MyAdapter:3"
        )
        return RoutedBedrockEndpoint(
            stack,
            "Llm",
            policy=shipped_policy,
            router_architecture=lambda_.Architecture.X86_64,
            router_web_adapter_layer=layer,
            router_streaming_timeout=Duration.minutes(10),
        )

    return synthesize(tmp_path_factory.mktemp("x86"), "X86", build, env=ENV)


def test_chat_completions_stream_from_the_streaming_router(template):
    streaming = logical_id(template, "AWS::Lambda::Function", "StreamingRouter")
    chat = methods(template)[("completions", "POST")]["Integration"]
    # Then API Gateway streams the integration's answer, invoking the function with InvokeWithResponseStream
    assert chat["Type"] == "AWS_PROXY"
    assert chat["ResponseTransferMode"] == "STREAM"
    # A stream may last as long as the function may (180 s by default), not the buffered default of 29 s
    assert chat["TimeoutInMillis"] == 180_000
    parts = chat["Uri"]["Fn::Join"][1]
    assert {"Fn::GetAtt": [streaming, "Arn"]} in parts
    uri = "".join(part if isinstance(part, str) else "{}" for part in parts)
    assert ":lambda:path/2021-11-15/functions/" in uri
    assert uri.endswith("/response-streaming-invocations")
    # And the other methods stay on the buffered router's classic integration
    for key in (("generate", "POST"), ("health", "GET"), ("models", "GET")):
        integration = methods(template)[key]["Integration"]
        assert "ResponseTransferMode" not in integration, key
        buffered = {"Fn::GetAtt": [logical_id(template, "AWS::Lambda::Function", "LlmRouter"), "Arn"]}
        assert buffered in integration["Uri"]["Fn::Join"][1], key


def test_api_gateway_may_invoke_the_streaming_router_for_chat_completions_only(template):
    streaming = logical_id(template, "AWS::Lambda::Function", "StreamingRouter")
    permissions = [
        p["Properties"]
        for p in template.find_resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [streaming, "Arn"]}
    ]
    assert permissions, "no invoke permission for the streaming router"
    for permission in permissions:
        assert permission["Action"] == "lambda:InvokeFunction"
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert resolve_arn(permission["SourceArn"]).endswith("/POST/v1/chat/completions")


def test_the_streaming_router_runs_behind_lambda_web_adapter(template):
    streaming = function(template, "StreamingRouter")["Properties"]
    buffered = function(template, "LlmRouter")["Properties"]
    assert streaming["Handler"] == "run-stream.sh"
    assert streaming["Runtime"] == buffered["Runtime"]
    assert streaming["Architectures"] == ["arm64"]
    assert streaming["MemorySize"] == buffered["MemorySize"]
    assert streaming["Timeout"] == 180
    # The adapter's public layer for arm64, pinned, after the same Powertools layer
    layers = streaming["Layers"]
    assert layers[0] == buffered["Layers"][0]
    assert resolve_arn(layers[1]) == (
        "arn:aws:lambda:us-east-1:"
        f"{WEB_ADAPTER_LAYER_ACCOUNT}:layer:LambdaAdapterLayerArm64:{WEB_ADAPTER_LAYER_VERSION}"
    )
    variables = streaming["Environment"]["Variables"]
    assert {key: variables[key] for key in variables if key.startswith("AWS_")} == {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": "8080",
        "AWS_LWA_READINESS_CHECK_PATH": READY_PATH,
        "AWS_LWA_READINESS_CHECK_HEALTHY_STATUS": "200",
        "AWS_LWA_PASS_THROUGH_PATH": EVENTS_PATH,
    }
    assert variables["ROUTER_FUNCTION_TIMEOUT_MS"] == "180000"
    # And every router setting is the buffered router's (same policy, AppConfig names, table, service)
    shared = {key: value for key, value in buffered["Environment"]["Variables"].items()}
    assert {key: variables[key] for key in shared} == shared


def test_both_routers_may_read_the_routing_policy(template):
    roles = [
        logical_id(template, "AWS::IAM::Role", "LlmRouterRole"),
        logical_id(template, "AWS::IAM::Role", "StreamingRouterFunctionRouterRole"),
    ]
    [read] = [
        p["Properties"] for key, p in template.find_resources("AWS::IAM::Policy").items() if "ReadRoutingPolicy" in key
    ]
    assert read["Roles"] == [{"Ref": role} for role in roles]
    assert "appconfig:GetLatestConfiguration" in json.dumps(read["PolicyDocument"])


def test_streaming_off_leaves_one_router_for_every_method(buffered_only):
    template = buffered_only.template
    routers = [f for f in template.find_resources("AWS::Lambda::Function").values() if "Router" in json.dumps(f)]
    assert len(routers) == 1
    chat = methods(template)[("completions", "POST")]["Integration"]
    assert "ResponseTransferMode" not in chat
    assert chat["Uri"] == methods(template)[("generate", "POST")]["Integration"]["Uri"]
    assert "LambdaAdapterLayer" not in json.dumps(template.to_json())
    assert buffered_only.endpoint.streaming_router is None
    # And that one router, answering "stream": true chat completions with ConverseStream, may call it
    [invoke] = statements(template, "InvokePolicyModels")
    assert invoke["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]


def test_an_own_adapter_layer_and_x86(x86_with_own_layer):
    streaming = function(x86_with_own_layer.template, "StreamingRouter")["Properties"]
    assert streaming["Architectures"] == ["x86_64"]
    assert streaming["Layers"][1] == "arn:aws:lambda:us-east-1:111122223333:layer:MyAdapter:3"
    assert streaming["Timeout"] == 600
    assert streaming["Environment"]["Variables"]["ROUTER_FUNCTION_TIMEOUT_MS"] == "600000"
    chat = methods(x86_with_own_layer.template)[("completions", "POST")]["Integration"]
    assert chat["TimeoutInMillis"] == 600_000


def test_the_public_adapter_layer_follows_the_architecture(tmp_path, shipped_policy):
    synthesized = synthesize(
        tmp_path,
        "X86Public",
        lambda stack: RoutedBedrockEndpoint(
            stack, "Llm", policy=shipped_policy, router_architecture=lambda_.Architecture.X86_64
        ),
        env=ENV,
    )
    layers = function(synthesized.template, "StreamingRouter")["Properties"]["Layers"]
    assert resolve_arn(layers[1]).endswith(f":layer:LambdaAdapterLayerX86:{WEB_ADAPTER_LAYER_VERSION}")


# --- validation (the construct raises in __init__) ------------------------------------------------------


def _endpoint(shipped_policy: dict[str, Any], region: str = "us-east-1", **props: Any) -> RoutedBedrockEndpoint:
    stack = cdk.Stack(cdk.App(), "Bad", env=cdk.Environment(account="123456789012", region=region))
    return RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy, **props)


def test_a_stream_deadline_past_the_streaming_timeout_is_refused(shipped_policy):
    policy = copy.deepcopy(shipped_policy)
    policy["resilience"]["stream_deadline_ms"] = 300_000
    with pytest.raises(
        ValueError, match=r"resilience\.stream_deadline_ms \(300000 ms\).*exceeds router_streaming_timeout \(180000"
    ):
        _endpoint(policy)
    _endpoint(policy, router_streaming_timeout=Duration.seconds(301))  # fits with the 500 ms reserve
    _endpoint(policy, streaming=False)  # the buffered router cuts streams at its own timeout


def test_streaming_props_without_streaming_are_refused(shipped_policy):
    with pytest.raises(ValueError, match="router_streaming_timeout and router_web_adapter_layer need streaming=True"):
        _endpoint(shipped_policy, streaming=False, router_streaming_timeout=Duration.minutes(5))


def test_a_partition_without_the_public_adapter_layer_needs_one_of_its_own(shipped_policy):
    with pytest.raises(ValueError, match=r"region 'cn-north-1'.*pass web_adapter_layer"):
        _endpoint(
            shipped_policy,
            region="cn-north-1",
            router_powertools_layer=lambda_.LayerVersion.from_layer_version_arn(
                cdk.Stack(cdk.App(), "Other"), "P", "arn:aws-cn:lambda:cn-north-1:111122223333:layer:P:1"
            ),
        )
