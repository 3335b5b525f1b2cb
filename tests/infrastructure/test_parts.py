"""Each part of RoutedBedrockEndpoint works alone: RoutingPolicy, RouterFunction, LiveStateTable, alarms, dashboard."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from cdk_app import (
    LiveStateTable,
    RouterAlarms,
    RouterDashboard,
    RouterFunction,
    RouterMetrics,
    RoutingPolicy,
    RoutingPolicyDocument,
)
from lambdas.router import metric_names as m
from lambdas.router.policy import DEFAULT_POLICY_PATH
from lambdas.router.policy_store import BOOTSTRAP_POLICY_ENV, BOOTSTRAP_POLICY_FILENAME
from tests.infrastructure.template_helpers import logical_id, resolve_arn

pytestmark = pytest.mark.xdist_group("parts")

ENV = cdk.Environment(account="123456789012", region="eu-west-1")


class Parts:
    """Every part alone in one stack (no endpoint), each wired only to what its props name."""

    def __init__(self, outdir: str) -> None:
        self.app = cdk.App(outdir=outdir)
        cdk.Validations.of(self.app).add_plugins(AwsSolutionsChecks(self.app))
        stack = cdk.Stack(self.app, "Parts", env=ENV)
        self.document = RoutingPolicyDocument.of(DEFAULT_POLICY_PATH)
        self.reader = iam.Role(stack, "Reader", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        self.state_user = iam.Role(stack, "StateUser", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        self.routing = RoutingPolicy(stack, "RoutingPolicy", policy=self.document, environment_name="dev")
        self.read_grant = self.routing.grant_read(self.reader)
        self.state = LiveStateTable(stack, "LiveState")
        self.state.grant_state_access(self.state_user)
        self.router = RouterFunction(
            stack,
            "RouterFunction",
            policy=self.document,
            appconfig_application_name=self.routing.application_name,
            appconfig_environment_name=self.routing.environment_name,
        )
        self.metrics = RouterMetrics(service_name="solo")
        self.alarms = RouterAlarms(stack, "Alarms", metrics=self.metrics, policy=self.document.policy)
        RouterDashboard(stack, "Dashboard", metrics=self.metrics, policy=self.document.policy)
        self.template = Template.from_json(self.app.synth().get_stack_by_name("Parts").template)


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Parts:
    return Parts(str(tmp_path_factory.mktemp("parts")))


def policies_of(template: Template, role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


# --- RoutingPolicy ---------------------------------------------------------------------------------------


def test_routing_policy_alone_hosts_the_exact_document_and_deploys_it(parts):
    template = parts.template
    template.has_resource_properties(
        "AWS::AppConfig::Application", {"Name": Match.string_like_regexp("^Parts-RoutingPolicy-[0-9A-F]{8}$")}
    )
    template.has_resource_properties("AWS::AppConfig::Environment", {"Name": "dev", "Monitors": []})
    template.has_resource_properties("AWS::AppConfig::ConfigurationProfile", {"Name": "routing-policy"})
    template.has_resource_properties("AWS::AppConfig::HostedConfigurationVersion", {"Content": parts.document.text})
    template.has_resource_properties(
        "AWS::AppConfig::Deployment", {"DeploymentStrategyId": "AppConfig.Canary10Percent20Minutes"}
    )


def test_routing_policy_grant_read_allows_exactly_the_two_reads_on_this_profile(parts):
    template = parts.template
    [statement] = policies_of(template, logical_id(template, "AWS::IAM::Role", "Reader"))
    assert sorted(statement["Action"]) == ["appconfig:GetLatestConfiguration", "appconfig:StartConfigurationSession"]
    assert statement["Effect"] == "Allow"
    application = logical_id(template, "AWS::AppConfig::Application")
    environment = logical_id(template, "AWS::AppConfig::Environment")
    profile = logical_id(template, "AWS::AppConfig::ConfigurationProfile")
    assert resolve_arn(statement["Resource"]) == (
        f"arn:{{AWS::Partition}}:appconfig:eu-west-1:123456789012:application/{{{application}}}"
        f"/environment/{{{environment}}}/configuration/{{{profile}}}"
    )
    assert parts.read_grant.success


def test_rejects_an_environment_name_appconfig_would_refuse():
    with pytest.raises(ValueError, match=f"environment_name '{'e' * 65}' must be 1-64 characters"):
        RoutingPolicy(
            cdk.Stack(cdk.App(), "Long"), "RoutingPolicy", policy=DEFAULT_POLICY_PATH, environment_name="e" * 65
        )


# --- RouterFunction --------------------------------------------------------------------------------------


def test_router_function_alone_polls_the_names_it_is_given_and_keeps_state_in_memory(parts):
    parts.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "router.handler.lambda_handler",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "APPCONFIG_APPLICATION": parts.routing.application_name,
                        "APPCONFIG_ENVIRONMENT": "dev",
                        "APPCONFIG_PROFILE": "routing-policy",
                        "ROUTER_POLICY_SHA256": parts.document.digest,
                        BOOTSTRAP_POLICY_ENV: BOOTSTRAP_POLICY_FILENAME,
                        "POWERTOOLS_SERVICE_NAME": "Parts-RouterFunction",
                        "ROUTER_STATE_TABLE": Match.absent(),
                    }
                )
            },
        },
    )


def test_router_function_alone_may_invoke_only_the_policys_models(parts):
    template = parts.template
    statements = policies_of(template, logical_id(template, "AWS::IAM::Role", "RouterRole"))
    [invoke] = [s for s in statements if s.get("Sid") == "InvokePolicyModels"]
    assert invoke["Action"] == "bedrock:InvokeModel"
    actions = json.dumps([s["Action"] for s in statements])
    assert "InvokeModelWithResponseStream" not in actions
    assert "dynamodb:" not in actions and "appconfig:" not in actions


def test_fails_in_a_region_powertools_does_not_publish_to():
    stack = cdk.Stack(cdk.App(), "MiddleEast", env=cdk.Environment(account="123456789012", region="me-central-1"))
    with pytest.raises(ValueError, match="region 'me-central-1' has no public Powertools for AWS Lambda"):
        RouterFunction(
            stack,
            "RouterFunction",
            policy=DEFAULT_POLICY_PATH,
            appconfig_application_name="app",
            appconfig_environment_name="prod",
        )


def test_an_own_powertools_layer_lifts_the_region_check_and_replaces_the_parameter():
    stack = cdk.Stack(cdk.App(), "MiddleEast", env=cdk.Environment(account="123456789012", region="me-central-1"))
    layer_arn = "arn:aws:lambda:me-central-1:123456789012:layer:Powertools:1"
    RouterFunction(
        stack,
        "RouterFunction",
        policy=DEFAULT_POLICY_PATH,
        appconfig_application_name="app",
        appconfig_environment_name="prod",
        powertools_layer=lambda_.LayerVersion.from_layer_version_arn(stack, "OwnLayer", layer_arn),
    )
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::Lambda::Function", {"Layers": [layer_arn]})
    assert not any("powertools" in str(p.get("Default", "")) for p in template.to_json().get("Parameters", {}).values())


def test_an_environment_agnostic_stack_is_not_region_checked():
    stack = cdk.Stack(cdk.App(), "Agnostic")
    router = RouterFunction(
        stack,
        "RouterFunction",
        policy=DEFAULT_POLICY_PATH,
        appconfig_application_name="a",
        appconfig_environment_name="b",
    )
    assert router.function.node.id == "Router"


def test_rejects_router_props_by_their_own_names():
    with pytest.raises(ValueError, match="memory_size_mib must be 128-10240, got 64"):
        RouterFunction(
            cdk.Stack(cdk.App(), "Small"),
            "RouterFunction",
            policy=DEFAULT_POLICY_PATH,
            appconfig_application_name="a",
            appconfig_environment_name="b",
            memory_size_mib=64,
        )


# --- LiveStateTable, alarms, dashboard, metrics ------------------------------------------------------------


def test_live_state_grant_allows_batch_get_and_update_on_the_table_only(parts):
    template = parts.template
    [statement] = policies_of(template, logical_id(template, "AWS::IAM::Role", "StateUser"))
    assert statement["Action"] == ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]
    table = logical_id(template, "AWS::DynamoDB::Table")
    assert {"Fn::GetAtt": [table, "Arn"]} in statement["Resource"]
    assert not any("index" in json.dumps(resource) for resource in statement["Resource"])


def test_alarms_alone_watch_the_router_metrics_and_only_the_metric_ones_roll_back(parts):
    canary = {f"VariantBalanced{v}{a}" for v in ("ClaudeHaiku45", "NovaPro") for a in ("FailureRate", "LatencyP99")}
    assert (
        set(parts.alarms.alarms)
        == {"FallbackRate", "DegradedAnswers", "BudgetUsedPercent", "StateStoreErrors"} | canary
    )
    # Degraded answers, fallback rate and the canary's four: past AppConfig's 5 monitors, one composite of them
    assert len(parts.alarms.rollback_monitors) == 1
    assert parts.alarms.rollback_alarm is not None
    parts.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": m.DEGRADED, "Dimensions": [{"Name": m.SERVICE_DIMENSION, "Value": "solo"}]},
    )


def test_dashboard_alone_draws_the_routing_rows_without_an_api_row(parts):
    [dashboard] = parts.template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "Requests by route" in body and "Budget and live state" in body
    assert "API requests, 5XX and p99 latency" not in body


def test_metrics_name_the_service_and_namespace():
    metric = RouterMetrics(service_name="faq", namespace="Acme/Llm").metric_fallbacks()
    assert (metric.namespace, metric.metric_name, metric.dimensions) == ("Acme/Llm", m.FALLBACKS, {"service": "faq"})
    with pytest.raises(ValueError, match="service_name 'no spaces' must be 1-64"):
        RouterMetrics(service_name="no spaces")


def test_parts_alone_pass_cdk_nag(parts):
    # Synthesis ran the AwsSolutions checks (it raises on a finding): each part acknowledges its own decisions.
    assert parts.template.find_resources("AWS::Lambda::Function")


def test_policy_document_is_one_text_for_appconfig_and_the_asset(parts):
    again = RoutingPolicyDocument.of(json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")))
    assert again.text == parts.document.text
    assert again.digest == parts.document.digest
    assert RoutingPolicyDocument.of(parts.document) is parts.document


def test_routing_policy_keeps_versions_when_asked():
    stack = cdk.Stack(cdk.App(), "Keep")
    RoutingPolicy(
        stack,
        "RoutingPolicy",
        policy=DEFAULT_POLICY_PATH,
        version_removal_policy=cdk.RemovalPolicy.RETAIN,
        deletion_protection_check=appconfig.DeletionProtectionCheck.ACCOUNT_DEFAULT,
    )
    template = Template.from_stack(stack)
    template.has_resource(
        "AWS::AppConfig::HostedConfigurationVersion", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
    )
    template.has_resource_properties(
        "AWS::AppConfig::ConfigurationProfile", {"DeletionProtectionCheck": "ACCOUNT_DEFAULT"}
    )
    template.has_resource_properties("AWS::AppConfig::Environment", {"DeletionProtectionCheck": "ACCOUNT_DEFAULT"})


def test_policy_document_over_appconfigs_1_mb_is_refused_at_synth():
    # Given a valid policy padded past the hosted store's 1 MB (a long description per model stays valid JSON)
    document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["routes"] = {
        **document["routes"],
        **{f"pad-{i}": {"description": "x" * 500, "candidates": [{"model": "nova-micro"}]} for i in range(2500)},
    }
    # When it is loaded for a construct, Then a ValueError names its size and the limit
    with pytest.raises(ValueError, match=r"bytes as JSON; AppConfig's hosted configuration store takes at most 1,048,"):
        RoutingPolicyDocument.of(document)
