"""Template assertions for RoutedBedrockEndpoint: function, IAM, AppConfig, API, alarms, dashboard, validation."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template
from constructs import Construct

from cdk_app import AuthMode, EndpointAuthorization, RoutedBedrockEndpoint
from lambdas.router import metric_names as m
from lambdas.router.policy import DEFAULT_POLICY_PATH, document_digest
from tests.infrastructure.template_helpers import (
    Synthesized,
    alarms_by_description,
    logical_id,
    resolve_arn,
    statements,
    synthesize,
)

pytestmark = pytest.mark.xdist_group("construct")

PARTITION = "{AWS::Partition}"
ACCOUNT = "{AWS::AccountId}"
# The shipped policy calls every model through a US cross-region inference profile.
US_PROFILES = (
    "amazon.nova-micro-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-pro-v1:0",
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-opus-4-5-20251101-v1:0",
)


def global_haiku_policy(document: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    changed["models"]["claude-haiku-4-5"]["model_id"] = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
    return changed


def short_deadline(document: dict[str, Any]) -> dict[str, Any]:
    """A deadline the variant's 20 s function timeout holds (with the router's 500 ms reserve)."""
    changed = copy.deepcopy(document)
    changed["resilience"]["total_deadline_ms"] = 19_000
    return changed


@pytest.fixture(scope="module")
def variant(tmp_path_factory, shipped_policy) -> Synthesized:
    """Most props away from their defaults, in an environment-agnostic stack, with a role granted invoke."""

    def build(stack: cdk.Stack) -> RoutedBedrockEndpoint:
        endpoint = RoutedBedrockEndpoint(
            stack,
            "Llm",
            policy=short_deadline(global_haiku_policy(shipped_policy)),
            auth=EndpointAuthorization.iam(),
            service_name="faq-bot",
            metrics_namespace="Acme/Llm",
            log_retention=logs.RetentionDays.ONE_WEEK,
            api_stage_name="v1",
            api_throttle_rate_limit=5,
            api_throttle_burst_limit=10,
            api_execution_logging=False,
            router_architecture=lambda_.Architecture.X86_64,
            router_memory_size_mib=512,
            router_timeout=cdk.Duration.seconds(20),
            router_reserved_concurrency=5,
            router_max_body_size=cdk.Size.kibibytes(512),
            policy_max_age=cdk.Duration.minutes(1),
            policy_deployment_strategy=appconfig.DeploymentStrategy.from_deployment_strategy_id(
                stack, "Fast", appconfig.DeploymentStrategyId.ALL_AT_ONCE
            ),
            alarm_topic=sns.Topic(stack, "Ops"),
            alarm_api_p99_latency=None,
            alarm_lambda_errors=None,
            alarm_lambda_throttles=None,
            alarm_fallback_rate_percent=25,
            alarm_variant_failure_rate_percent=None,
            alarm_variant_p99_latency=None,
            dashboard_name="faq-bot-routing",
        )
        endpoint.grant_invoke(iam.Role(stack, "Caller", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")))
        return endpoint

    return synthesize(tmp_path_factory.mktemp("variant"), "Variant", build)


@pytest.fixture(scope="module")
def other_auth(tmp_path_factory, shipped_policy) -> Synthesized:
    """A Cognito-authorized endpoint and an explicitly open one, side by side."""

    def build(stack: cdk.Stack) -> RoutedBedrockEndpoint:
        pool = cognito.UserPool(stack, "Users")
        RoutedBedrockEndpoint(stack, "Open", policy=shipped_policy, auth=EndpointAuthorization.none())
        return RoutedBedrockEndpoint(stack, "Cog", policy=shipped_policy, auth=EndpointAuthorization.cognito(pool))

    return synthesize(tmp_path_factory.mktemp("other-auth"), "OtherAuth", build)


# --- the router function -------------------------------------------------------------------------------


def test_router_function_runs_python_3_13_on_arm64_with_powertools_and_appconfig_settings(template):
    # Given the default props, Then the function runs the router with its configuration in the environment
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.13",
            "Architectures": ["arm64"],
            "Handler": "router.handler.lambda_handler",
            "MemorySize": 512,
            "Timeout": 29,
            "ReservedConcurrentExecutions": Match.absent(),
            "LoggingConfig": {"LogFormat": "JSON", "LogGroup": {"Ref": Match.string_like_regexp("^LlmRouterLogs")}},
            "Environment": {
                "Variables": {
                    "APPCONFIG_APPLICATION": Match.string_like_regexp("^Test-Llm-[0-9A-F]{8}$"),
                    "APPCONFIG_ENVIRONMENT": "prod",
                    "APPCONFIG_PROFILE": "routing-policy",
                    "ROUTER_POLICY_MAX_AGE_SECONDS": "45",
                    "ROUTER_POLICY_SHA256": Match.string_like_regexp("^[0-9a-f]{64}$"),
                    "POWERTOOLS_SERVICE_NAME": "Test-Llm",
                    "POWERTOOLS_METRICS_NAMESPACE": m.NAMESPACE,
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                    "ROUTER_MAX_BODY_BYTES": Match.absent(),
                    "ROUTER_POLICY_FILE": Match.absent(),
                    "BEDROCK_ENDPOINT_URL": Match.absent(),
                }
            },
        },
    )


def test_function_finds_its_policy_by_the_names_the_appconfig_resources_carry(template):
    # The names (not IDs) keep the function free of references to the environment that watches its alarms.
    variables = next(iter(template.find_resources("AWS::Lambda::Function").values()))["Properties"]["Environment"][
        "Variables"
    ]
    template.has_resource_properties("AWS::AppConfig::Application", {"Name": variables["APPCONFIG_APPLICATION"]})
    template.has_resource_properties("AWS::AppConfig::Environment", {"Name": variables["APPCONFIG_ENVIRONMENT"]})
    template.has_resource_properties("AWS::AppConfig::ConfigurationProfile", {"Name": variables["APPCONFIG_PROFILE"]})


def test_policy_digest_matches_the_hosted_configuration_content(template):
    # The router skips the schema pass only for the exact bytes AppConfig serves.
    function = next(iter(template.find_resources("AWS::Lambda::Function").values()))
    digest = function["Properties"]["Environment"]["Variables"]["ROUTER_POLICY_SHA256"]
    hosted = next(iter(template.find_resources("AWS::AppConfig::HostedConfigurationVersion").values()))
    assert document_digest(hosted["Properties"]["Content"]) == digest


def test_powertools_layer_comes_from_the_public_ssm_parameter_pinned_to_requirements(template, repo_root):
    # Given the Powertools version pinned in requirements.txt
    pinned = re.search(r"^aws-lambda-powertools==(\S+)$", (repo_root / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned is not None
    # Then the layer ARN is the public SSM parameter of that release for python3.13 on arm64
    parameters = template.to_json()["Parameters"]
    layer_parameter = next(key for key, p in parameters.items() if "powertools" in str(p.get("Default", "")))
    assert parameters[layer_parameter] == {
        "Type": "AWS::SSM::Parameter::Value<String>",
        "Default": f"/aws/service/powertools/python/arm64/python3.13/{pinned.group(1)}",
    }
    template.has_resource_properties("AWS::Lambda::Function", {"Layers": [{"Ref": layer_parameter}]})


def test_function_code_is_the_lambdas_package_without_bytecode(default):
    # Given the synthesized assembly, When reading the function's asset
    function = next(iter(default.template.find_resources("AWS::Lambda::Function").values()))
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    manifest = json.loads((default.outdir / f"{default.stack_name}.assets.json").read_text())
    asset = default.outdir / manifest["files"][asset_hash]["source"]["path"]
    # Then it holds the router package with its schemas and policy, and no bytecode
    for relative in ("router/handler.py", "router/schemas/policy.schema.json", "router/policies/default.json"):
        assert (asset / relative).is_file(), relative
    assert not list(asset.rglob("__pycache__"))
    assert not list(asset.rglob("*.pyc"))


def test_log_groups_have_retention(template, variant):
    assert {g["Properties"]["RetentionInDays"] for g in template.find_resources("AWS::Logs::LogGroup").values()} == {30}
    groups = variant.template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) == 3  # the two functions' and the API's access logs
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {7}


@pytest.mark.parametrize("prefix", ["LlmRouter", "LlmStreamingRouterFunctionRouter"])
def test_router_role_has_no_managed_policy_and_writes_only_to_its_log_group(template, prefix):
    router_role = logical_id(template, "AWS::IAM::Role", f"{prefix}Role")
    assert "ManagedPolicyArns" not in template.find_resources("AWS::IAM::Role")[router_role]["Properties"]
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": router_role}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                            "Effect": "Allow",
                            "Resource": {
                                "Fn::GetAtt": [logical_id(template, "AWS::Logs::LogGroup", f"{prefix}Logs"), "Arn"]
                            },
                        }
                    ]
                )
            },
        },
    )


# --- IAM for Bedrock and AppConfig ---------------------------------------------------------------------


def test_bedrock_invoke_is_scoped_to_the_policys_models_profiles_and_regions(template):
    # Given the shipped policy: six US inference profiles, called from two regions
    statement, streaming = statements(template, "InvokePolicyModels")
    # Then the buffered router may call InvokeModel only (Converse), the streaming router also
    # InvokeModelWithResponseStream (ConverseStream), both on exactly these ARNs
    assert statement["Action"] == "bedrock:InvokeModel"
    assert streaming["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert streaming["Resource"] == statement["Resource"]
    arns = [resolve_arn(resource) for resource in statement["Resource"]]
    expected = set()
    for region in ("us-east-1", "us-west-2"):
        expected.update(
            f"arn:{PARTITION}:bedrock:{region}:{ACCOUNT}:inference-profile/us.{model}" for model in US_PROFILES
        )
    for region in ("us-east-1", "us-east-2", "us-west-2"):  # every destination of the US profiles
        expected.update(f"arn:{PARTITION}:bedrock:{region}::foundation-model/{model}" for model in US_PROFILES)
    assert set(arns) == expected
    assert len(arns) == len(expected)  # no duplicates
    assert not any("*" in arn for arn in arns)


def test_global_profile_also_gets_its_model_in_the_calling_regions_and_the_region_less_arn(variant):
    statement, streaming = statements(variant.template, "InvokePolicyModels")
    assert streaming["Resource"] == statement["Resource"]
    arns = {resolve_arn(resource) for resource in statement["Resource"]}
    haiku = "anthropic.claude-haiku-4-5-20251001-v1:0"
    global_arns = {arn for arn in arns if haiku in arn}
    assert global_arns == {
        f"arn:{PARTITION}:bedrock:us-east-1:{ACCOUNT}:inference-profile/global.{haiku}",
        f"arn:{PARTITION}:bedrock:us-west-2:{ACCOUNT}:inference-profile/global.{haiku}",
        f"arn:{PARTITION}:bedrock:us-east-1::foundation-model/{haiku}",
        f"arn:{PARTITION}:bedrock:us-east-2::foundation-model/{haiku}",
        f"arn:{PARTITION}:bedrock:us-west-2::foundation-model/{haiku}",
        f"arn:{PARTITION}:bedrock:::foundation-model/{haiku}",
    }
    assert not any("*" in arn for arn in arns)


def test_appconfig_read_is_scoped_to_its_own_profile_in_a_policy_the_function_does_not_wait_for(template):
    # Given the read statement
    [statement] = statements(template, "ReadRoutingPolicy")
    assert sorted(statement["Action"]) == ["appconfig:GetLatestConfiguration", "appconfig:StartConfigurationSession"]
    application = logical_id(template, "AWS::AppConfig::Application")
    environment = logical_id(template, "AWS::AppConfig::Environment")
    profile = logical_id(template, "AWS::AppConfig::ConfigurationProfile")
    # Then it names this application, environment and profile, with no wildcard
    assert resolve_arn(statement["Resource"]) == (
        f"arn:{PARTITION}:appconfig:us-east-1:123456789012:application/{{{application}}}"
        f"/environment/{{{environment}}}/configuration/{{{profile}}}"
    )
    # And it lives in its own policy, which the stage (the only way in) depends on and the function does not
    read_policy = logical_id(template, "AWS::IAM::Policy", "ReadRoutingPolicy")
    function = next(iter(template.find_resources("AWS::Lambda::Function").values()))
    assert read_policy not in function.get("DependsOn", [])
    stage = next(iter(template.find_resources("AWS::ApiGateway::Stage").values()))
    assert read_policy in stage["DependsOn"]


def test_grant_invoke_allows_execute_api_on_the_caller_methods_of_this_stage_only(variant):
    caller = logical_id(variant.template, "AWS::IAM::Role", "Caller")
    [policy] = [
        p
        for p in variant.template.find_resources("AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": caller}]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Action"] for s in statements} == {"execute-api:Invoke"}
    resources = [r for s in statements for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    stage = logical_id(variant.template, "AWS::ApiGateway::Stage")
    api = logical_id(variant.template, "AWS::ApiGateway::RestApi")
    prefix = f"arn:{PARTITION}:execute-api:{{AWS::Region}}:{ACCOUNT}:{{{api}}}/{{{stage}}}"
    assert sorted(resolve_arn(r) for r in resources) == sorted(
        f"{prefix}/{method}" for method in ("POST/generate", "POST/v1/chat/completions", "GET/v1/models")
    )


# --- AppConfig -----------------------------------------------------------------------------------------


def test_policy_is_hosted_in_appconfig_with_the_draft_04_json_schema_validator(template, shipped_policy):
    profile = next(iter(template.find_resources("AWS::AppConfig::ConfigurationProfile").values()))["Properties"]
    assert profile["LocationUri"] == "hosted"
    [validator] = profile["Validators"]
    assert validator["Type"] == "JSON_SCHEMA"
    schema = json.loads(validator["Content"])
    assert schema == json.loads((DEFAULT_POLICY_PATH.parents[1] / "schemas" / "policy.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    # AppConfig takes at most 32,768 characters of validator content (AWS::AppConfig::ConfigurationProfile)
    assert len(validator["Content"]) <= 32_768
    hosted = next(iter(template.find_resources("AWS::AppConfig::HostedConfigurationVersion").values()))["Properties"]
    assert json.loads(hosted["Content"]) == shipped_policy
    assert hosted["ContentType"] == "application/json"


def test_default_rollout_is_a_gradual_canary(template):
    template.has_resource_properties(
        "AWS::AppConfig::Deployment",
        {
            "DeploymentStrategyId": "AppConfig.Canary10Percent20Minutes",
            "EnvironmentId": {"Ref": logical_id(template, "AWS::AppConfig::Environment")},
            "ConfigurationProfileId": {"Ref": logical_id(template, "AWS::AppConfig::ConfigurationProfile")},
        },
    )
    template.resource_count_is("AWS::AppConfig::DeploymentStrategy", 0)  # AppConfig's predefined one


def test_all_at_once_strategy_is_available_for_dev(variant):
    variant.template.has_resource_properties(
        "AWS::AppConfig::Deployment", {"DeploymentStrategyId": "AppConfig.AllAtOnce"}
    )


def test_rollback_monitors_watch_the_degraded_fallback_lambda_errors_5xx_and_variant_alarms(template):
    # Given the environment's monitor: more rollback alarms than AppConfig's 5, so one composite alarm of them
    environment = next(iter(template.find_resources("AWS::AppConfig::Environment").values()))["Properties"]
    [monitor] = environment["Monitors"]
    [composite_id] = template.find_resources("AWS::CloudWatch::CompositeAlarm")
    assert monitor["AlarmArn"] == {"Fn::GetAtt": [composite_id, "Arn"]}
    rule = json.dumps(
        template.find_resources("AWS::CloudWatch::CompositeAlarm")[composite_id]["Properties"]["AlarmRule"]
    )
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    by_description = {alarm["Properties"]["AlarmDescription"].split(" >= ")[0]: key for key, alarm in alarms.items()}
    monitored = {key for key in alarms if key in rule}
    # Then a bad policy's symptoms roll it back (the balanced canary's variants too); API latency and throttles do not
    assert monitored == {
        by_description["degraded answers"],
        by_description["fallback answers"],
        by_description["router function errors"],
        by_description["streaming router function errors"],
        by_description["API 5XX answers"],
        *(
            by_description[f"canary balanced, variant {model}: {what}"]
            for model in ("claude-haiku-4-5", "nova-pro")
            for what in ("fallback or degraded", "p99 latency")
        ),
    }
    # And AppConfig reads the alarms through a role that only describes alarms
    role = logical_id(template, "AWS::IAM::Role", "PolicyEnvironmentRole")
    assert monitor["AlarmRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "appconfig.amazonaws.com"}})]
            },
            "Policies": [
                {
                    "PolicyDocument": {
                        "Statement": [Match.object_like({"Action": "cloudwatch:DescribeAlarms"})],
                        "Version": Match.any_value(),
                    },
                    "PolicyName": Match.any_value(),
                }
            ],
        },
    )


def test_disabled_alarms_are_not_monitors(variant):
    environment = next(iter(variant.template.find_resources("AWS::AppConfig::Environment").values()))["Properties"]
    assert environment["Name"] == "v1"
    assert len(environment["Monitors"]) == 3  # degraded, fallback rate, API 5XX: the Lambda errors alarm is off


# --- API -----------------------------------------------------------------------------------------------


def test_generate_requires_an_api_key_by_default_and_validates_the_body(template, default):
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "ApiKeyRequired": True,
            "AuthorizationType": "CUSTOM",  # the API-key authorizer hands x-api-key to the usage plan
            "RequestValidatorId": {"Ref": logical_id(template, "AWS::ApiGateway::RequestValidator")},
            "RequestModels": {"application/json": {"Ref": logical_id(template, "AWS::ApiGateway::Model")}},
        },
    )
    template.has_resource_properties("AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True})
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": 50, "BurstLimit": 100},
            "ApiStages": [Match.object_like({"Stage": {"Ref": logical_id(template, "AWS::ApiGateway::Stage")}})],
        },
    )
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    assert default.endpoint.api_key is not None


def test_body_model_is_the_routers_request_schema(template, repo_root):
    shipped = json.loads((repo_root / "lambdas/router/schemas/generate_request.schema.json").read_text())
    model = next(iter(template.find_resources("AWS::ApiGateway::Model").values()))["Properties"]
    assert model["ContentType"] == "application/json"
    assert model["Schema"]["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert model["Schema"]["properties"] == shipped["properties"]
    assert model["Schema"]["additionalProperties"] is False


def test_health_stays_open_for_health_checks(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Method", {"HttpMethod": "GET", "AuthorizationType": "NONE", "ApiKeyRequired": Match.absent()}
    )
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "health"})
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "generate"})


def test_stage_has_access_logs_execution_logs_and_throttling(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "prod",
            "AccessLogSetting": {
                "DestinationArn": {"Fn::GetAtt": [logical_id(template, "AWS::Logs::LogGroup", "ApiAccessLogs"), "Arn"]},
                "Format": Match.string_like_regexp("requestId"),
            },
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
    # The logs go through the account's CloudWatch role, which the endpoint does not own by default
    template.resource_count_is("AWS::ApiGateway::Account", 0)


def test_rest_api_name_is_distinct_per_endpoint(template):
    # ApiName is the dimension of the API's metrics: two endpoints must not share it.
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {"Name": Match.string_like_regexp("^Test-Llm-[0-9A-F]{8}$"), "EndpointConfiguration": {"Types": ["REGIONAL"]}},
    )


def test_iam_auth_signs_generate_and_drops_the_api_key(variant):
    variant.template.has_resource_properties(
        "AWS::ApiGateway::Method", {"HttpMethod": "POST", "AuthorizationType": "AWS_IAM"}
    )
    variant.template.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    variant.template.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    assert variant.endpoint.api_key is None
    assert variant.endpoint.auth.mode is AuthMode.IAM


def test_stage_options_follow_the_props(variant):
    variant.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "v1",
            "MethodSettings": [
                Match.object_like({"LoggingLevel": "OFF", "ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 10})
            ],
        },
    )
    variant.template.resource_count_is("AWS::ApiGateway::Account", 0)


def test_cognito_auth_uses_a_user_pool_authorizer(other_auth):
    template = other_auth.template
    pool = logical_id(template, "AWS::Cognito::UserPool")
    template.has_resource_properties(
        "AWS::ApiGateway::Authorizer",
        {"Type": "COGNITO_USER_POOLS", "ProviderARNs": [{"Fn::GetAtt": [pool, "Arn"]}]},
    )
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {"HttpMethod": "POST", "AuthorizationType": "COGNITO_USER_POOLS", "AuthorizerId": Match.any_value()},
    )


def test_no_auth_is_an_explicit_opt_in(other_auth):
    template = other_auth.template
    open_api = logical_id(template, "AWS::ApiGateway::RestApi", "Open")
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "RestApiId": {"Ref": open_api},
            "HttpMethod": "POST",
            "AuthorizationType": "NONE",
            "ApiKeyRequired": Match.absent(),
        },
    )
    template.resource_count_is("AWS::ApiGateway::UsagePlan", 0)


# --- function props ------------------------------------------------------------------------------------


def test_function_props_and_the_x86_layer(variant):
    variant.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Architectures": ["x86_64"],
            "MemorySize": 512,
            "Timeout": 20,
            "ReservedConcurrentExecutions": 5,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "ROUTER_MAX_BODY_BYTES": "524288",
                        "ROUTER_POLICY_MAX_AGE_SECONDS": "60",
                        "POWERTOOLS_SERVICE_NAME": "faq-bot",
                        "POWERTOOLS_METRICS_NAMESPACE": "Acme/Llm",
                    }
                )
            },
        },
    )
    defaults = [p.get("Default", "") for p in variant.template.to_json()["Parameters"].values()]
    assert any(re.fullmatch(r"/aws/service/powertools/python/x86_64/python3\.13/[\d.]+", d) for d in defaults)


# --- alarms and dashboard ------------------------------------------------------------------------------


def test_all_alarms_exist_with_their_default_thresholds_and_no_actions(template):
    alarms = alarms_by_description(template)
    assert {name: alarm["Properties"]["Threshold"] for name, alarm in alarms.items()} == {
        "API 5XX answers": 1,
        "POST /generate p99 latency": 20000,
        "router function errors": 1,
        "router function throttles": 1,
        "streaming router function errors": 1,
        "streaming router function throttles": 1,
        "canary balanced, variant claude-haiku-4-5: fallback or degraded": 10,
        "canary balanced, variant claude-haiku-4-5: p99 latency": 20000,
        "canary balanced, variant nova-pro: fallback or degraded": 10,
        "canary balanced, variant nova-pro: p99 latency": 20000,
        "fallback answers": 10,
        "degraded answers": 1,
        "budget used": 90,
        "live-state table errors": 5,
    }
    for alarm in alarms.values():
        properties = alarm["Properties"]
        assert properties["TreatMissingData"] == "notBreaching"
        assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert "AlarmActions" not in properties


def test_degraded_alarm_watches_the_shared_metric_name_for_this_service(template):
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": m.DEGRADED,
            "Namespace": m.NAMESPACE,
            "Dimensions": [{"Name": m.SERVICE_DIMENSION, "Value": "Test-Llm"}],
            "Statistic": "Sum",
            "Period": 300,
        },
    )


def test_fallback_rate_alarm_divides_fallbacks_by_requests_for_this_service(template):
    alarm = alarms_by_description(template)["fallback answers"]["Properties"]
    metrics = {query["Id"]: query for query in alarm["Metrics"]}
    assert "100 * fallbacks / requests" in next(q["Expression"] for q in metrics.values() if "Expression" in q)
    for query_id, name in (("fallbacks", m.FALLBACKS), ("requests", m.REQUESTS)):
        metric = metrics[query_id]["MetricStat"]["Metric"]
        assert metric == {
            "MetricName": name,
            "Namespace": m.NAMESPACE,
            "Dimensions": [{"Name": m.SERVICE_DIMENSION, "Value": "Test-Llm"}],
        }


def test_api_and_lambda_alarms_watch_this_api_and_function(template):
    alarms = alarms_by_description(template)
    api_name = next(iter(template.find_resources("AWS::ApiGateway::RestApi").values()))["Properties"]["Name"]
    latency = alarms["POST /generate p99 latency"]["Properties"]
    assert latency["MetricName"] == "Latency"
    assert latency["ExtendedStatistic"] == "p99"
    # POST /generate's own latency (detailed metrics): streamed chats would keep the API's p99 high
    dimensions = {d["Name"]: d["Value"] for d in latency["Dimensions"]}
    assert dimensions["ApiName"] == api_name
    assert (dimensions["Method"], dimensions["Resource"]) == ("POST", "/generate")
    assert dimensions["Stage"] == {"Ref": logical_id(template, "AWS::ApiGateway::Stage")}
    for description, fragment in (
        ("router function errors", "LlmRouter"),
        ("router function throttles", "LlmRouter"),
        ("streaming router function errors", "StreamingRouter"),
        ("streaming router function throttles", "StreamingRouter"),
    ):
        alarm = alarms[description]["Properties"]
        assert alarm["MetricName"] == ("Errors" if description.endswith("errors") else "Throttles")
        assert alarm["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": logical_id(template, "AWS::Lambda::Function", fragment)}}
        ]


def test_alarm_actions_go_to_the_topic_and_disabled_alarms_are_absent(variant):
    template = variant.template
    alarms = alarms_by_description(template)
    assert set(alarms) == {
        "API 5XX answers",
        "fallback answers",
        "degraded answers",
        "budget used",
        "live-state table errors",
    }
    assert alarms["fallback answers"]["Properties"]["Threshold"] == 25
    topic = logical_id(template, "AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic}]
    assert set(variant.endpoint.alarms) == {
        "Api5xxRate",
        "FallbackRate",
        "DegradedAnswers",
        "BudgetUsedPercent",
        "StateStoreErrors",
    }


def test_dashboard_shows_routing_patterns_from_the_shared_metric_names(template):
    dashboard = next(iter(template.find_resources("AWS::CloudWatch::Dashboard").values()))
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in (
        "Requests by route",
        "Requests by model",
        "Latency p50 by model",
        "Latency p99 by model",
        "Tokens by model",
        "Cost by model",
        "Fallbacks and degraded answers over time",
    ):
        assert title in body
    for name in (m.REQUESTS, m.LATENCY_MS, m.INPUT_TOKENS, m.OUTPUT_TOKENS, m.COST_USD, m.FALLBACKS, m.DEGRADED):
        assert name in body
    assert "SEARCH(" in body
    assert "Test-Llm" in body


def test_dashboard_name_prop(variant):
    variant.template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "faq-bot-routing"})


def test_metric_methods_use_the_shared_names_and_the_service_dimension(default, variant):
    endpoint = default.endpoint
    for method, name in (
        (endpoint.metric_requests, m.REQUESTS),
        (endpoint.metric_fallbacks, m.FALLBACKS),
        (endpoint.metric_degraded_answers, m.DEGRADED),
        (endpoint.metric_cost, m.COST_USD),
        (endpoint.metric_input_tokens, m.INPUT_TOKENS),
        (endpoint.metric_output_tokens, m.OUTPUT_TOKENS),
        (endpoint.metric_failed_attempts, m.FAILED_ATTEMPTS),
        (endpoint.metric_bad_requests, m.BAD_REQUESTS),
    ):
        metric = method()
        assert (metric.namespace, metric.metric_name, metric.statistic) == (m.NAMESPACE, name, "Sum")
        assert metric.dimensions == {m.SERVICE_DIMENSION: "Test-Llm"}
    assert endpoint.metric_latency().statistic == "p99"
    assert endpoint.metric(m.REQUESTS, dimensions={m.MODEL_DIMENSION: "nova-micro"}).dimensions == {
        m.SERVICE_DIMENSION: "Test-Llm",
        m.MODEL_DIMENSION: "nova-micro",
    }
    assert variant.endpoint.metric_requests().namespace == "Acme/Llm"
    assert variant.endpoint.metric_requests().dimensions == {m.SERVICE_DIMENSION: "faq-bot"}


def test_public_surface_exposes_the_underlying_constructs(default):
    endpoint = default.endpoint
    assert endpoint.router_function.node.id == "Router"
    assert endpoint.api.node.id == "Api"
    assert endpoint.application.node.id == "PolicyApplication"
    assert endpoint.environment.node.id == "PolicyEnvironment"
    assert endpoint.configuration.node.id == "Policy"
    assert endpoint.dashboard.node.id == "Dashboard"
    assert cdk.Token.is_unresolved(endpoint.url)
    assert endpoint.policy.version == json.loads(DEFAULT_POLICY_PATH.read_text())["policy_version"]


def test_construct_ids_are_stable_public_contract(default):
    # Child IDs are public contract: the parts' resources keep their pre-split logical IDs (test_logical_ids.py).
    endpoint = default.endpoint
    assert [child.node.id for child in endpoint.node.children] == [
        "LiveState",
        "RouterFunction",
        "StreamingRouterFunction",
        "ApiAccessLogs",
        "Api",
        "ApiKeyAuthorizer",
        "Alarms",
        "RoutingPolicy",
        "ReadRoutingPolicy",
        "RoutingDashboard",
    ]
    children = {
        part: [child.node.id for child in endpoint.node.find_child(part).node.children]
        for part in (
            "LiveState",
            "RouterFunction",
            "StreamingRouterFunction",
            "Alarms",
            "RoutingPolicy",
            "RoutingDashboard",
        )
    }
    assert children == {
        "LiveState": ["StateTable"],
        "RouterFunction": ["RouterLogs", "RouterRole", "PowertoolsLayer", "Router"],
        "StreamingRouterFunction": ["RouterLogs", "RouterRole", "PowertoolsLayer", "WebAdapterLayer", "Router"],
        "Alarms": [
            "Api5xxRateAlarm",
            "ApiLatencyP99Alarm",
            "LambdaErrorsAlarm",
            "LambdaThrottlesAlarm",
            "StreamingLambdaErrorsAlarm",
            "StreamingLambdaThrottlesAlarm",
            "FallbackRateAlarm",
            "DegradedAnswersAlarm",
            "BudgetUsedPercentAlarm",
            "StateStoreErrorsAlarm",
            "VariantBalancedClaudeHaiku45FailureRateAlarm",
            "VariantBalancedClaudeHaiku45LatencyP99Alarm",
            "VariantBalancedNovaProFailureRateAlarm",
            "VariantBalancedNovaProLatencyP99Alarm",
            "PolicyRollbackAlarm",
        ],
        "RoutingPolicy": ["PolicyApplication", "PolicyEnvironment", "PolicyDeploymentStrategy", "Policy"],
        "RoutingDashboard": ["Dashboard"],
    }


# --- validation (no synthesis: the construct raises in __init__) ----------------------------------------


def construct(policy: Any, **props: Any) -> RoutedBedrockEndpoint:
    return RoutedBedrockEndpoint(cdk.Stack(cdk.App(), "Check"), "Llm", policy=policy, **props)


def test_accepts_a_policy_file_path():
    endpoint = construct(str(DEFAULT_POLICY_PATH))
    assert endpoint.policy.version == json.loads(DEFAULT_POLICY_PATH.read_text())["policy_version"]


def test_default_service_name_stays_within_64_characters_and_is_stable():
    long_id = "A" * 80
    first = RoutedBedrockEndpoint(cdk.Stack(cdk.App(), "Stack"), long_id, policy=DEFAULT_POLICY_PATH).service_name
    again = RoutedBedrockEndpoint(cdk.Stack(cdk.App(), "Stack"), long_id, policy=DEFAULT_POLICY_PATH).service_name
    assert first == again
    assert len(first) <= 64
    assert re.fullmatch(r"Stack-A+-[0-9a-f]{8}", first)


def test_two_stacks_sharing_ids_under_two_stack_names_keep_their_metrics_and_alarm_names_apart():
    # Given one app synthesized twice for one account and region, as dev and prod: same ids, two stack names
    env = cdk.Environment(account="123456789012", region="us-east-1")
    endpoints = [
        RoutedBedrockEndpoint(cdk.Stack(cdk.App(), "Svc", stack_name=name, env=env), "Llm", policy=DEFAULT_POLICY_PATH)
        for name in ("svc-dev", "svc-prod")
    ]
    # Then the service dimension names the deployed stack, so each stack's alarms watch its own metrics
    assert [e.service_name for e in endpoints] == ["svc-dev-Llm", "svc-prod-Llm"]
    # And the composite alarm AppConfig watches has a name of its own in each (names are unique per account)
    names = []
    for endpoint in endpoints:
        [composite] = (
            Template.from_stack(cdk.Stack.of(endpoint)).find_resources("AWS::CloudWatch::CompositeAlarm").values()
        )
        names.append(composite["Properties"]["AlarmName"])
    assert names[0] != names[1]
    assert names[0].startswith("svcdev-Llm-Alarms-") and names[1].startswith("svcprod-Llm-Alarms-")
    # And a stack left with the name CDK derives keeps the dimension and the alarm name its path gave it, so an
    # existing deployment's metrics and alarms are not replaced on upgrade
    default = RoutedBedrockEndpoint(cdk.Stack(cdk.App(), "Stack"), "Llm", policy=DEFAULT_POLICY_PATH)
    assert default.service_name == "Stack-Llm"
    [composite] = Template.from_stack(cdk.Stack.of(default)).find_resources("AWS::CloudWatch::CompositeAlarm").values()
    assert composite["Properties"]["AlarmName"].startswith("StackLlmAlarmsPolicyRollbackAlarm")
    staged = cdk.Stack(cdk.Stage(cdk.App(), "Beta"), "Stack")
    assert RoutedBedrockEndpoint(staged, "Llm", policy=DEFAULT_POLICY_PATH).service_name == "Beta-Stack-Llm"
    grouped = cdk.Stack(Construct(cdk.App(), "Group"), "Inner")  # CDK names it GroupInner<hash>
    assert RoutedBedrockEndpoint(grouped, "Llm", policy=DEFAULT_POLICY_PATH).service_name == "Group-Inner-Llm"


def test_fails_on_an_invalid_policy_naming_the_field(shipped_policy):
    document = copy.deepcopy(shipped_policy)
    document["models"]["nova-micro"]["price_per_1k_output_usd"] = "cheap"
    with pytest.raises(ValueError, match=r"models\.nova-micro\.price_per_1k_output_usd must be number"):
        construct(document)


def test_fails_on_a_route_naming_a_model_outside_the_catalog(shipped_policy):
    document = copy.deepcopy(shipped_policy)
    document["routes"]["fast"]["candidates"] = [{"model": "gpt-x"}]
    with pytest.raises(ValueError, match="model 'gpt-x' in route 'fast'"):
        construct(document)


def test_fails_on_an_inference_profile_without_destinations(shipped_policy):
    document = copy.deepcopy(shipped_policy)
    del document["models"]["claude-haiku-4-5"]["inference_profile_destinations"]
    with pytest.raises(ValueError, match=r"models\.claude-haiku-4-5\.inference_profile_destinations is required"):
        construct(document)


def test_fails_on_a_missing_policy_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read policy file"):
        construct(str(tmp_path / "absent.json"))


def test_fails_on_a_policy_file_that_is_not_json(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text("{oops")
    with pytest.raises(ValueError, match=r"policy file '.*policy\.json' is not valid JSON"):
        construct(path)


def test_fails_on_a_policy_file_that_is_not_an_object(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        construct(path)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"router_memory_size_mib": 64}, "router_memory_size_mib must be 128-10240, got 64"),
        ({"router_timeout": cdk.Duration.seconds(1)}, "router_timeout must be 3 s to 15 min, got 1 s"),
        ({"router_reserved_concurrency": 0}, "router_reserved_concurrency must be at least 1, got 0"),
        ({"router_max_body_size": cdk.Size.mebibytes(7)}, "router_max_body_size must be 1 byte to 6 MiB"),
        ({"policy_max_age": cdk.Duration.seconds(5)}, "policy_max_age must be 15 s to 24 h"),
        ({"api_throttle_rate_limit": 0}, "api_throttle_rate_limit must be positive, got 0"),
        ({"api_throttle_burst_limit": 0}, "api_throttle_burst_limit must be at least 1, got 0"),
        ({"api_stage_name": "prod-1"}, "api_stage_name 'prod-1'"),
        # 65 characters: API Gateway would take it, the AppConfig environment of the same name would not
        ({"api_stage_name": "s" * 65}, f"api_stage_name '{'s' * 65}' must be 1-64 letters, digits or '_'"),
        ({"api_stage_name": ""}, "api_stage_name '' must be 1-64"),
        ({"alarm_api_5xx_rate_percent": 0}, "alarm_api_5xx_rate_percent must be in (0, 100], got 0"),
        ({"alarm_fallback_rate_percent": 150}, "alarm_fallback_rate_percent must be in (0, 100], got 150"),
        ({"alarm_api_p99_latency": cdk.Duration.millis(0)}, "alarm_api_p99_latency must be positive"),
        ({"alarm_lambda_errors": 0}, "alarm_lambda_errors must be at least 1, got 0"),
        ({"alarm_degraded_answers": 0}, "alarm_degraded_answers must be at least 1, got 0"),
        ({"service_name": "bad name!"}, "service_name 'bad name!'"),
        ({"metrics_namespace": ""}, "metrics_namespace ''"),
        # CloudWatch keeps AWS/ for AWS's own services: the router's metrics, and every alarm on them, would be silent
        ({"metrics_namespace": "AWS/Lambda"}, "metrics_namespace 'AWS/Lambda' must not start with 'AWS/'"),
        ({"metrics_namespace": "Acme\tLlm"}, "may hold only letters, digits"),
        ({"metrics_namespace": "a{b}"}, "metrics_namespace 'a{b}' may hold only"),
        ({"dashboard_name": "d" * 256}, "dashboard_name 'ddd"),
        ({"dashboard_name": "my dashboard"}, "dashboard_name 'my dashboard' must be 1-255 letters, digits"),
        ({"log_removal_policy": cdk.RemovalPolicy.SNAPSHOT}, "log_removal_policy RemovalPolicy.SNAPSHOT is not"),
        (
            {"state_table_removal_policy": cdk.RemovalPolicy.SNAPSHOT},
            "state_table_removal_policy RemovalPolicy.SNAPSHOT",
        ),
        ({"policy_version_removal_policy": cdk.RemovalPolicy.SNAPSHOT}, "policy_version_removal_policy Removal"),
        ({"auth": "api-key"}, "auth must be an EndpointAuthorization"),
        ({"auth": EndpointAuthorization(mode=AuthMode.COGNITO)}, "needs a user pool"),
    ],
)
def test_fails_on_invalid_props(props, message):
    with pytest.raises(ValueError) as error:
        construct(DEFAULT_POLICY_PATH, **props)
    assert message in str(error.value)


def test_log_groups_are_kept_by_default_and_deleted_with_the_stack_on_request():
    def log_group_policies(**props):
        endpoint = construct(DEFAULT_POLICY_PATH, **props)
        groups = Template.from_stack(cdk.Stack.of(endpoint)).find_resources("AWS::Logs::LogGroup")
        return {key: group.get("DeletionPolicy") for key, group in groups.items()}

    # Given the routers', the authorizer's and the access logs: RETAIN, as aws-cdk-lib keeps log groups
    kept = log_group_policies()
    assert len(kept) == 4 and set(kept.values()) == {"Retain"}, kept
    # And log_removal_policy=DESTROY deletes every one of them with the stack
    deleted = log_group_policies(log_removal_policy=cdk.RemovalPolicy.DESTROY)
    assert deleted.keys() == kept.keys() and set(deleted.values()) == {"Delete"}, deleted


def test_skips_validation_of_unresolved_tokens():
    # A token (e.g. a CfnParameter) is checked at deploy time, not at synth.
    stack = cdk.Stack(cdk.App(), "Tokens")
    memory = cdk.CfnParameter(stack, "Memory", type="Number", default=1024)
    endpoint = RoutedBedrockEndpoint(
        stack, "Llm", policy=DEFAULT_POLICY_PATH, router_memory_size_mib=memory.value_as_number
    )
    assert endpoint.router_function.node.id == "Router"


def test_the_openai_methods_share_the_authorization_of_generate(variant):
    resources = variant.template.to_json()["Resources"]
    paths = {k: r["Properties"]["PathPart"] for k, r in resources.items() if r["Type"] == "AWS::ApiGateway::Resource"}
    methods = {
        (paths.get(r["Properties"]["ResourceId"].get("Ref")), r["Properties"]["HttpMethod"]): r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGateway::Method"
    }
    generate = methods[("generate", "POST")]
    for key in (("completions", "POST"), ("models", "GET")):
        method = methods[key]
        assert method["AuthorizationType"] == generate["AuthorizationType"], key
        assert method.get("ApiKeyRequired") == generate.get("ApiKeyRequired"), key
        assert method.get("AuthorizerId") == generate.get("AuthorizerId"), key
    # And /v1/models is the buffered router's; chat completions are the streaming router's (next test)
    assert methods[("models", "GET")]["Integration"]["Uri"] == generate["Integration"]["Uri"]
    assert methods[("completions", "POST")]["Integration"]["Uri"] != generate["Integration"]["Uri"]
