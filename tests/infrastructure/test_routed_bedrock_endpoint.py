"""Template assertions for RoutedBedrockEndpoint: function, IAM, AppConfig, API, alarms, dashboard."""

from __future__ import annotations

import copy
import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from cdk_app import EndpointAuthorization, RoutedBedrockEndpoint
from lambdas.router import metric_names as m
from lambdas.router.policy import DEFAULT_POLICY_PATH, document_digest

pytestmark = pytest.mark.xdist_group("cdk")

DEFAULT_DOCUMENT: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text())


def synth(**props: Any) -> tuple[Template, RoutedBedrockEndpoint]:
    app = cdk.App()
    stack = cdk.Stack(app, "Test", env=cdk.Environment(account="123456789012", region="us-east-1"))
    props.setdefault("policy", DEFAULT_DOCUMENT)
    endpoint = RoutedBedrockEndpoint(stack, "Llm", **props)
    return Template.from_stack(stack), endpoint


@pytest.fixture(scope="module")
def default() -> tuple[Template, RoutedBedrockEndpoint]:
    topic_app = synth(alarm_topic=None)
    return topic_app


@pytest.fixture(scope="module")
def template(default) -> Template:
    return default[0]


def bedrock_statement(template: Template) -> dict[str, Any]:
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == "InvokePolicyModels":
                return statement
    raise AssertionError("no InvokePolicyModels statement")


def resolve_arn(value: Any) -> str:
    """Render an Fn::Join of partition/account refs as a readable ARN."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "{" + p["Ref"] + "}" for p in parts)


# --- the router function -------------------------------------------------------------------------------


def test_router_function_runs_python_3_13_on_arm64_with_powertools_settings(template, default):
    _, _endpoint = default
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.13",
            "Architectures": ["arm64"],
            "Handler": "router.handler.lambda_handler",
            "MemorySize": 1024,
            "Timeout": 29,
            "ReservedConcurrentExecutions": Match.absent(),
            "LoggingConfig": {"LogFormat": "JSON", "LogGroup": Match.any_value()},
            "Environment": {
                "Variables": {
                    "APPCONFIG_APPLICATION": {"Ref": Match.string_like_regexp("LlmPolicyApplication")},
                    "APPCONFIG_ENVIRONMENT": {"Ref": Match.string_like_regexp("LlmPolicyEnvironment")},
                    "APPCONFIG_PROFILE": {"Ref": Match.string_like_regexp("LlmPolicyConfigurationProfile")},
                    "ROUTER_POLICY_MAX_AGE_SECONDS": "45",
                    "ROUTER_POLICY_SHA256": Match.string_like_regexp("^[0-9a-f]{64}$"),
                    "POWERTOOLS_SERVICE_NAME": "routed-bedrock",
                    "POWERTOOLS_METRICS_NAMESPACE": "RoutedBedrock",
                    "ROUTER_POLICY_FILE": Match.absent(),
                    "BEDROCK_ENDPOINT_URL": Match.absent(),
                }
            },
        },
    )


def test_policy_digest_matches_the_hosted_configuration_content(template):
    # The router skips the schema pass only for the exact bytes AppConfig serves.
    function = next(iter(template.find_resources("AWS::Lambda::Function").values()))
    digest = function["Properties"]["Environment"]["Variables"]["ROUTER_POLICY_SHA256"]
    hosted = next(iter(template.find_resources("AWS::AppConfig::HostedConfigurationVersion").values()))
    assert document_digest(hosted["Properties"]["Content"]) == digest


def test_powertools_layer_comes_from_the_public_ssm_parameter_pinned_to_requirements(template):
    parameters = template.to_json()["Parameters"]
    powertools = [p for p in parameters.values() if "powertools" in str(p.get("Default", ""))]
    assert powertools == [
        {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": "/aws/service/powertools/python/arm64/python3.13/3.37.0",
        }
    ]
    requirements = (DEFAULT_POLICY_PATH.parents[3] / "requirements.txt").read_text()
    assert "aws-lambda-powertools==3.37.0" in requirements


def test_x86_architecture_uses_the_x86_layer():
    template, _ = synth(router_architecture=lambda_.Architecture.X86_64, router_reserved_concurrency=5)
    defaults = [p.get("Default", "") for p in template.to_json()["Parameters"].values()]
    assert "/aws/service/powertools/python/x86_64/python3.13/3.37.0" in defaults
    template.has_resource_properties(
        "AWS::Lambda::Function", {"Architectures": ["x86_64"], "ReservedConcurrentExecutions": 5}
    )


def test_log_groups_have_retention(template):
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) == 2  # the function's and the API's access logs
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {30}


# --- IAM -----------------------------------------------------------------------------------------------


def test_bedrock_invoke_is_scoped_to_the_policys_models_and_regions(template):
    statement = bedrock_statement(template)
    assert statement["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    arns = {resolve_arn(r) for r in statement["Resource"]}
    p = "arn:{AWS::Partition}:bedrock"
    expected = set()
    for region in ("us-east-1", "us-west-2"):
        for model in (
            "amazon.nova-micro-v1:0",
            "amazon.nova-lite-v1:0",
            "amazon.nova-pro-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
        ):
            expected.add(f"{p}:{region}::foundation-model/{model}")
        for profile in (
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-opus-4-5-20251101-v1:0",
        ):
            expected.add(f"{p}:{region}:{{AWS::AccountId}}:inference-profile/{profile}")
    for region in ("us-east-1", "us-east-2", "us-west-2"):  # every destination of the US profiles
        for model in (
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-opus-4-5-20251101-v1:0",
        ):
            expected.add(f"{p}:{region}::foundation-model/{model}")
    assert arns == expected
    assert not any("*" in arn for arn in arns)


def test_global_profile_also_needs_the_region_less_model_arn():
    document = copy.deepcopy(DEFAULT_DOCUMENT)
    document["models"]["claude-haiku-4-5"]["model_id"] = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
    template, _ = synth(policy=document)
    arns = {resolve_arn(r) for r in bedrock_statement(template)["Resource"]}
    assert "arn:{AWS::Partition}:bedrock:::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0" in arns
    assert (
        "arn:{AWS::Partition}:bedrock:us-west-2:{AWS::AccountId}:inference-profile/global.anthropic.claude-haiku-4-5-20251001-v1:0"
        in arns
    )


def test_appconfig_read_is_scoped_to_its_own_profile(template):
    statements = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "ReadRoutingPolicy"
    ]
    assert len(statements) == 1
    assert sorted(statements[0]["Action"]) == [
        "appconfig:GetLatestConfiguration",
        "appconfig:StartConfigurationSession",
    ]
    arn = resolve_arn(statements[0]["Resource"])
    assert arn.endswith(
        "/configuration/{" + next(iter(template.find_resources("AWS::AppConfig::ConfigurationProfile"))) + "}"
    )
    assert "*" not in arn


def test_grant_invoke_allows_execute_api_on_this_api_only():
    app = cdk.App()
    stack = cdk.Stack(app, "Grant")
    endpoint = RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_DOCUMENT, auth=EndpointAuthorization.iam())
    role = iam.Role(stack, "Caller", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    endpoint.grant_invoke(role)
    Template.from_stack(stack).has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {"Statement": [Match.object_like({"Action": "execute-api:Invoke", "Effect": "Allow"})]},
            "Roles": [{"Ref": Match.string_like_regexp("Caller")}],
        },
    )


# --- AppConfig -----------------------------------------------------------------------------------------


def test_policy_is_hosted_in_appconfig_with_the_json_schema_validator(template):
    profile = next(iter(template.find_resources("AWS::AppConfig::ConfigurationProfile").values()))["Properties"]
    validator = profile["Validators"][0]
    assert validator["Type"] == "JSON_SCHEMA"
    schema = json.loads(validator["Content"])
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert schema["required"] == ["schema_version", "models", "routes", "rules", "resilience"]
    hosted = next(iter(template.find_resources("AWS::AppConfig::HostedConfigurationVersion").values()))["Properties"]
    assert json.loads(hosted["Content"]) == DEFAULT_DOCUMENT
    assert hosted["ContentType"] == "application/json"


def test_default_rollout_is_a_gradual_canary(template):
    template.has_resource_properties(
        "AWS::AppConfig::Deployment", {"DeploymentStrategyId": "AppConfig.Canary10Percent20Minutes"}
    )


def test_all_at_once_strategy_is_available_for_dev():
    from aws_cdk import aws_appconfig as appconfig

    app = cdk.App()
    stack = cdk.Stack(app, "Dev")
    strategy = appconfig.DeploymentStrategy.from_deployment_strategy_id(
        stack, "Fast", appconfig.DeploymentStrategyId.ALL_AT_ONCE
    )
    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_DOCUMENT, policy_deployment_strategy=strategy)
    Template.from_stack(stack).has_resource_properties(
        "AWS::AppConfig::Deployment", {"DeploymentStrategyId": "AppConfig.AllAtOnce"}
    )


def test_rollback_monitors_watch_the_degraded_and_fallback_alarms(template):
    environment = next(iter(template.find_resources("AWS::AppConfig::Environment").values()))["Properties"]
    monitored = {json.dumps(mon["AlarmArn"]) for mon in environment["Monitors"]}
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    degraded = next(k for k, v in alarms.items() if "degraded answers" in v["Properties"]["AlarmDescription"])
    fallback = next(k for k, v in alarms.items() if "fallback answers" in v["Properties"]["AlarmDescription"])
    assert monitored == {json.dumps({"Fn::GetAtt": [degraded, "Arn"]}), json.dumps({"Fn::GetAtt": [fallback, "Arn"]})}
    assert all("AlarmRoleArn" in mon for mon in environment["Monitors"])


# --- API -----------------------------------------------------------------------------------------------


def test_generate_requires_an_api_key_by_default_and_validates_the_body(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "ApiKeyRequired": True,
            "AuthorizationType": "NONE",
            "RequestValidatorId": Match.any_value(),
            "RequestModels": {"application/json": Match.any_value()},
        },
    )
    template.has_resource_properties("AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True})
    model = next(iter(template.find_resources("AWS::ApiGateway::Model").values()))["Properties"]
    assert model["Schema"]["properties"]["prompt"] == {"type": "string", "minLength": 1, "pattern": "\\S"}
    assert model["Schema"]["additionalProperties"] is False
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan", {"Throttle": {"RateLimit": 50, "BurstLimit": 100}, "ApiStages": Match.any_value()}
    )
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)


def test_health_stays_open_for_health_checks(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Method", {"HttpMethod": "GET", "AuthorizationType": "NONE", "ApiKeyRequired": Match.absent()}
    )


def test_stage_has_access_logs_execution_logs_and_throttling(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "prod",
            "AccessLogSetting": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("requestId")},
            "MethodSettings": [
                Match.object_like(
                    {
                        "LoggingLevel": "INFO",
                        "ThrottlingRateLimit": 50,
                        "ThrottlingBurstLimit": 100,
                        "MetricsEnabled": True,
                    }
                )
            ],
        },
    )


def test_iam_auth_signs_generate_and_drops_the_api_key():
    template, endpoint = synth(auth=EndpointAuthorization.iam(), api_throttle_rate_limit=5, api_throttle_burst_limit=10)
    template.has_resource_properties("AWS::ApiGateway::Method", {"HttpMethod": "POST", "AuthorizationType": "AWS_IAM"})
    template.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    template.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    assert endpoint.api_key is None


def test_cognito_auth_uses_a_user_pool_authorizer():
    app = cdk.App()
    stack = cdk.Stack(app, "Cog")
    pool = cognito.UserPool(stack, "Users")
    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_DOCUMENT, auth=EndpointAuthorization.cognito(pool))
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::ApiGateway::Authorizer", {"Type": "COGNITO_USER_POOLS"})
    template.has_resource_properties(
        "AWS::ApiGateway::Method", {"HttpMethod": "POST", "AuthorizationType": "COGNITO_USER_POOLS"}
    )


def test_no_auth_is_an_explicit_opt_in():
    template, _ = synth(auth=EndpointAuthorization.none())
    template.has_resource_properties(
        "AWS::ApiGateway::Method", {"HttpMethod": "POST", "AuthorizationType": "NONE", "ApiKeyRequired": Match.absent()}
    )


# --- alarms and dashboard ------------------------------------------------------------------------------


def test_all_alarms_exist_with_their_default_thresholds(template):
    alarms = {
        v["Properties"]["AlarmDescription"]: v["Properties"]
        for v in template.find_resources("AWS::CloudWatch::Alarm").values()
    }
    assert {d.split(" >= ")[0]: a["Threshold"] for d, a in alarms.items()} == {
        "API 5XX answers": 1,
        "API p99 latency": 20000,
        "router function errors": 1,
        "router function throttles": 1,
        "fallback answers": 10,
        "degraded answers": 1,
    }
    assert all(a["TreatMissingData"] == "notBreaching" for a in alarms.values())


def test_degraded_alarm_watches_the_shared_metric_name(template):
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": m.DEGRADED,
            "Namespace": m.NAMESPACE,
            "Dimensions": [{"Name": "service", "Value": "routed-bedrock"}],
            "Statistic": "Sum",
        },
    )


def test_alarm_actions_go_to_the_topic_and_disabled_alarms_are_absent():
    app = cdk.App()
    stack = cdk.Stack(app, "Alarms")
    topic = sns.Topic(stack, "Ops")
    RoutedBedrockEndpoint(
        stack,
        "Llm",
        policy=DEFAULT_DOCUMENT,
        alarm_topic=topic,
        alarm_api_p99_latency=None,
        alarm_lambda_throttles=None,
        alarm_fallback_rate_percent=25,
    )
    template = Template.from_stack(stack)
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 4
    topic_id = next(iter(template.find_resources("AWS::SNS::Topic")))
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic_id}]
    assert any(a["Properties"]["Threshold"] == 25 for a in alarms.values())


def test_dashboard_shows_routing_patterns(template):
    dashboard = next(iter(template.find_resources("AWS::CloudWatch::Dashboard").values()))
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in (
        "Requests by route",
        "Requests by model",
        "Latency p50 by model",
        "Latency p99 by model",
        "Tokens by model",
        "Cost by model",
        "Fallbacks, degraded answers",
    ):
        assert title in body
    assert "SEARCH(" in body


def test_metric_methods_use_the_shared_names_and_service_dimension(default):
    _, endpoint = default
    metric = endpoint.metric_degraded_answers()
    assert metric.namespace == m.NAMESPACE
    assert metric.metric_name == m.DEGRADED
    assert metric.dimensions == {"service": "routed-bedrock"}
    assert endpoint.metric_latency().statistic == "p99"
    assert endpoint.url  # a token for the stage URL


# --- validation ----------------------------------------------------------------------------------------


def test_accepts_a_policy_file_path():
    _template, endpoint = synth(policy=str(DEFAULT_POLICY_PATH))
    assert endpoint.policy.version == DEFAULT_DOCUMENT["policy_version"]


def test_fails_on_an_invalid_policy_naming_the_field():
    document = copy.deepcopy(DEFAULT_DOCUMENT)
    document["models"]["nova-micro"]["price_per_1k_output_usd"] = "cheap"
    with pytest.raises(ValueError, match=r"models\.nova-micro\.price_per_1k_output_usd must be number"):
        synth(policy=document)


def test_fails_on_a_route_naming_a_model_outside_the_catalog():
    document = copy.deepcopy(DEFAULT_DOCUMENT)
    document["routes"]["fast"]["candidates"] = [{"model": "gpt-x"}]
    with pytest.raises(ValueError, match="model 'gpt-x' in route 'fast'"):
        synth(policy=document)


def test_fails_on_a_missing_policy_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read policy file"):
        synth(policy=str(tmp_path / "absent.json"))


def test_fails_on_a_policy_file_that_is_not_json(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text("{oops")
    with pytest.raises(ValueError, match="is not valid JSON"):
        synth(policy=str(path))


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"router_memory_size_mib": 64}, "router_memory_size_mib must be 128-10240, got 64"),
        ({"router_timeout": cdk.Duration.seconds(1)}, "router_timeout must be 3 s to 15 min"),
        ({"router_reserved_concurrency": 0}, "router_reserved_concurrency must be at least 1"),
        ({"api_throttle_rate_limit": 0}, "api_throttle_rate_limit must be positive"),
        ({"api_throttle_burst_limit": 0}, "api_throttle_burst_limit must be at least 1"),
        ({"alarm_api_5xx_rate_percent": 0}, "alarm_api_5xx_rate_percent must be in (0, 100]"),
        ({"alarm_fallback_rate_percent": 150}, "alarm_fallback_rate_percent must be in (0, 100]"),
        ({"alarm_degraded_answers": 0}, "alarm_degraded_answers must be at least 1"),
        ({"service_name": "bad name!"}, "service_name 'bad name!'"),
        ({"auth": "api-key"}, "auth must be an EndpointAuthorization"),
        (
            {"auth": EndpointAuthorization(mode=EndpointAuthorization.api_key().mode.__class__.COGNITO)},
            "needs a user pool",
        ),
    ],
)
def test_fails_on_invalid_props(props, message):
    with pytest.raises(ValueError) as error:
        synth(**props)
    assert message in str(error.value)


def test_construct_ids_are_stable_public_contract(default):
    _, endpoint = default
    assert [c.node.id for c in endpoint.node.children][:3] == [
        "FallbackRateAlarm",
        "DegradedAnswersAlarm",
        "PolicyApplication",
    ]
    assert endpoint.router_function.node.id == "Router"
    assert endpoint.api.node.id == "Api"


def test_assertions_library_is_the_one_in_use():
    # Guard: Template/Match come from aws_cdk.assertions (fine-grained, no snapshot of logical IDs)
    assert assertions.Match is Match
