"""Template assertions for the live state: the DynamoDB table, its IAM, router settings, budget alarms, dashboard."""

from __future__ import annotations

import copy
import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from cdk_app import RoutedBedrockEndpoint
from lambdas.router import metric_names as m
from lambdas.router.policy import DEFAULT_POLICY_PATH
from tests.infrastructure.template_helpers import (
    Synthesized,
    alarms_by_description,
    all_statements,
    logical_id,
    synthesize,
)

pytestmark = pytest.mark.xdist_group("live-state")

TABLE = "AWS::DynamoDB::Table"
CUSTOM_BUDGET = {"daily_usd": 123.5, "monthly_usd": 2000, "modes": [{"at_percent": 80, "action": "reject"}]}


@pytest.fixture(scope="module")
def custom(tmp_path_factory, shipped_policy) -> Synthesized:
    """A customer key, a retained table, a 1.5 s cache, no budget alarm, a state-store alarm, another budget."""
    document = copy.deepcopy(shipped_policy)
    document["budget"] = copy.deepcopy(CUSTOM_BUDGET)

    def build(stack: cdk.Stack) -> RoutedBedrockEndpoint:
        return RoutedBedrockEndpoint(
            stack,
            "Llm",
            policy=document,
            state_table_encryption_key=kms.Key(stack, "StateKey", enable_key_rotation=True),
            state_table_removal_policy=cdk.RemovalPolicy.RETAIN,
            state_cache_ttl=cdk.Duration.millis(1500),
            alarm_topic=sns.Topic(stack, "Ops"),
            alarm_budget_used_percent=None,
            alarm_state_store_errors=3,
        )

    return synthesize(tmp_path_factory.mktemp("live-state-custom"), "Custom", build)


@pytest.fixture(scope="module")
def no_budget(tmp_path_factory, shipped_policy) -> Synthesized:
    """A policy without a budget section."""
    document = copy.deepcopy(shipped_policy)
    del document["budget"]
    return synthesize(
        tmp_path_factory.mktemp("live-state-no-budget"),
        "NoBudget",
        lambda stack: RoutedBedrockEndpoint(stack, "Llm", policy=document),
    )


def router_variables(template: Template) -> dict[str, Any]:
    function = next(iter(template.find_resources("AWS::Lambda::Function").values()))
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def statements_with_actions(template: Template, prefix: str) -> list[dict[str, Any]]:
    def actions(statement: dict[str, Any]) -> list[str]:
        action = statement["Action"]
        return [action] if isinstance(action, str) else list(action)

    return [s for s in all_statements(template) if any(a.startswith(prefix) for a in actions(s))]


def dashboard_widgets(template: Template) -> dict[str, dict[str, Any]]:
    """The dashboard's widgets by title (text widgets by their markdown), with references rendered as ``{Ref}``."""
    body = next(iter(template.find_resources("AWS::CloudWatch::Dashboard").values()))["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    rendered = "".join(part if isinstance(part, str) else "{Ref}" for part in parts)
    widgets = json.loads(rendered)["widgets"]
    return {
        widget["properties"].get("title") or widget["properties"].get("markdown"): widget["properties"]
        for widget in widgets
    }


def budget_alarm_id(template: Template) -> str:
    [alarm_id] = [
        key
        for key, alarm in template.find_resources("AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("MetricName") == m.BUDGET_USED_PERCENT
    ]
    return alarm_id


# --- the table ------------------------------------------------------------------------------------------


def test_state_table_has_one_string_partition_key_pk_and_no_sort_key_or_index(template):
    # Given the default props, Then one table keyed by pk (a string) alone
    template.resource_count_is(TABLE, 1)
    template.has_resource_properties(
        TABLE,
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "GlobalSecondaryIndexes": Match.absent(),
            "LocalSecondaryIndexes": Match.absent(),
            "TableName": Match.absent(),
        },
    )


def test_state_table_bills_per_request_and_expires_items_by_ttl(template):
    template.has_resource_properties(
        TABLE,
        {
            "BillingMode": "PAY_PER_REQUEST",
            "ProvisionedThroughput": Match.absent(),
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
        },
    )


def test_state_table_has_point_in_time_recovery(template):
    # cdk-nag AwsSolutions-DDB3
    template.has_resource_properties(TABLE, {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})


def test_state_table_is_encrypted_with_the_aws_managed_key_by_default(template):
    template.has_resource_properties(
        TABLE, {"SSESpecification": {"SSEEnabled": True, "SSEType": Match.absent(), "KMSMasterKeyId": Match.absent()}}
    )
    template.resource_count_is("AWS::KMS::Key", 0)


def test_state_table_is_encrypted_with_the_customer_key_when_given(custom):
    template = custom.template
    key = logical_id(template, "AWS::KMS::Key", "StateKey")
    template.has_resource_properties(
        TABLE,
        {"SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Fn::GetAtt": [key, "Arn"]}}},
    )


def test_state_table_is_deleted_with_the_stack_by_default(template):
    # It holds only short-lived state and counters: nothing to keep once the endpoint is gone.
    template.has_resource(TABLE, {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})


def test_state_table_is_retained_when_asked(custom):
    custom.template.has_resource(TABLE, {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"})


# --- IAM ------------------------------------------------------------------------------------------------


def test_router_may_only_batch_get_and_update_items_of_the_table(template):
    # Given every IAM statement in the stack
    table = logical_id(template, TABLE, "StateTable")
    roles = [
        logical_id(template, "AWS::IAM::Role", "LlmRouterRole"),
        logical_id(template, "AWS::IAM::Role", "LlmStreamingRouterFunctionRouterRole"),
    ]
    # Then exactly one per router mentions DynamoDB: the two actions the state store calls, on the table's ARN alone
    statements = statements_with_actions(template, "dynamodb:")
    assert len(statements) == 2
    assert statements[0] == statements[1]
    statement = statements[0]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert resources == [{"Fn::GetAtt": [table, "Arn"]}]
    assert "Condition" not in statement
    # And one belongs to each router's role (the buffered and the streaming one)
    for role in roles:
        template.has_resource_properties(
            "AWS::IAM::Policy",
            {"Roles": [{"Ref": role}], "PolicyDocument": {"Statement": Match.array_with([statement])}},
        )
    # And no statement allows every action of a service
    assert not [s for s in all_statements(template) if "*" in json.dumps(s["Action"])]


def test_no_key_permission_without_a_customer_key(template):
    assert statements_with_actions(template, "kms:") == []


def test_router_gets_table_key_actions_on_the_customer_key_only(custom):
    template = custom.template
    key = logical_id(template, "AWS::KMS::Key", "StateKey")
    router_role = logical_id(template, "AWS::IAM::Role", "LlmRouterRole")
    statement, streaming_statement = statements_with_actions(template, "kms:")  # one per router role
    assert streaming_statement == statement
    assert sorted(statement["Action"]) == [
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*",
    ]
    assert statement["Resource"] == {"Fn::GetAtt": [key, "Arn"]}
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {"Roles": [{"Ref": router_role}], "PolicyDocument": {"Statement": Match.array_with([statement])}},
    )
    # And the DynamoDB statement stays the same two actions
    table_statement, _ = statements_with_actions(template, "dynamodb:")
    assert sorted(table_statement["Action"]) == ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]


# --- the router's settings ------------------------------------------------------------------------------


def test_router_finds_the_table_by_name_and_caches_its_state_for_2_seconds(template):
    variables = router_variables(template)
    assert variables["ROUTER_STATE_TABLE"] == {"Ref": logical_id(template, TABLE, "StateTable")}
    assert variables["ROUTER_STATE_CACHE_SECONDS"] == "2"


def test_state_cache_ttl_may_be_a_fraction_of_a_second(custom):
    assert router_variables(custom.template)["ROUTER_STATE_CACHE_SECONDS"] == "1.5"


# --- alarms ---------------------------------------------------------------------------------------------


def test_budget_alarm_fires_at_90_percent_of_the_5_minute_maximum(template):
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": m.BUDGET_USED_PERCENT,
            "Namespace": m.NAMESPACE,
            "Dimensions": [{"Name": m.SERVICE_DIMENSION, "Value": "Test-Llm"}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 90,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": Match.absent(),
        },
    )


def test_budget_alarm_is_not_a_rollback_monitor(default):
    # A spent budget says nothing about a policy version: it must not roll a deployment back.
    template = default.template
    budget_alarm = budget_alarm_id(template)
    environment = next(iter(template.find_resources("AWS::AppConfig::Environment").values()))["Properties"]
    [composite] = template.find_resources("AWS::CloudWatch::CompositeAlarm").values()  # the one monitor
    assert len(environment["Monitors"]) == 1
    assert budget_alarm not in json.dumps(composite["Properties"]["AlarmRule"])
    assert "BudgetUsedPercent" in default.endpoint.alarms
    # The state-store alarm is on by default (5 errors in 5 minutes), and only notifies too
    store_alarm = logical_id(template, "AWS::CloudWatch::Alarm", "StateStoreErrorsAlarm")
    assert store_alarm not in json.dumps(composite["Properties"]["AlarmRule"])
    store = alarms_by_description(template)["live-state table errors"]["Properties"]
    assert (store["MetricName"], store["Statistic"], store["Threshold"]) == (m.STATE_STORE_ERRORS, "Sum", 5)


def test_no_budget_alarm_without_a_budget_in_the_policy(no_budget):
    # Nothing would ever emit the gauge: such an alarm would sit at OK for ever
    assert "BudgetUsedPercent" not in no_budget.endpoint.alarms
    assert "budget used" not in alarms_by_description(no_budget.template)
    assert "StateStoreErrors" in no_budget.endpoint.alarms


def test_budget_alarm_is_absent_when_none_and_the_state_store_alarm_notifies_the_topic(custom):
    template = custom.template
    alarms = alarms_by_description(template)
    assert "budget used" not in alarms
    assert "BudgetUsedPercent" not in custom.endpoint.alarms
    store = alarms["live-state table errors"]["Properties"]
    assert (store["MetricName"], store["Statistic"], store["Threshold"]) == (m.STATE_STORE_ERRORS, "Sum", 3)
    assert store["Dimensions"] == [{"Name": m.SERVICE_DIMENSION, "Value": "Custom-Llm"}]
    topic = logical_id(template, "AWS::SNS::Topic")
    assert store["AlarmActions"] == [{"Ref": topic}]
    assert store["OKActions"] == [{"Ref": topic}]
    assert custom.endpoint.alarms["StateStoreErrors"].node.id == "StateStoreErrorsAlarm"


# --- dashboard ------------------------------------------------------------------------------------------


def test_dashboard_marks_the_policys_daily_budget_on_todays_spend(template):
    widgets = dashboard_widgets(template)
    assert "## Budget and live state" in widgets
    spend = widgets["Spend today (USD)"]
    assert spend["metrics"] == [
        [m.NAMESPACE, m.SPEND_TODAY_USD, m.SERVICE_DIMENSION, "Test-Llm", {"label": "spend today", "stat": "Maximum"}]
    ]
    assert spend["annotations"]["horizontal"] == [{"value": 200, "label": "daily budget 200 USD", "yAxis": "left"}]


def test_dashboard_marks_each_budget_mode_on_budget_use(template):
    used = dashboard_widgets(template)["Budget used (%) and the policy's budget modes"]
    assert [(line["value"], line["label"]) for line in used["annotations"]["horizontal"]] == [
        (70, "70%: max tier standard"),
        (90, "90%: max tier economy"),
        (100, "100%: degrade"),
    ]
    assert {metric[1] for metric in used["metrics"]} == {m.BUDGET_USED_PERCENT, m.BUDGET_EXHAUSTED}


def test_dashboard_annotations_follow_the_policy(custom, no_budget):
    widgets = dashboard_widgets(custom.template)
    assert widgets["Spend today (USD)"]["annotations"]["horizontal"][0]["value"] == 123.5
    modes = widgets["Budget used (%) and the policy's budget modes"]["annotations"]["horizontal"]
    assert [(line["value"], line["label"]) for line in modes] == [(80, "80%: reject")]
    # Without a budget in the policy the graphs stay, without lines
    widgets = dashboard_widgets(no_budget.template)
    assert "annotations" not in widgets["Spend today (USD)"]
    assert "annotations" not in widgets["Budget used (%) and the policy's budget modes"]


def test_dashboard_shows_circuits_opened_per_model_and_region_of_the_policy(default):
    circuits = dashboard_widgets(default.template)["Circuits opened by model and region"]
    shown = set()
    for metric in circuits["metrics"]:
        namespace, name, *pairs, options = metric
        assert (namespace, name, options["stat"]) == (m.NAMESPACE, m.CIRCUITS_OPENED, "Sum")
        dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
        assert dimensions[m.SERVICE_DIMENSION] == "Test-Llm"
        shown.add((dimensions[m.MODEL_DIMENSION], dimensions[m.REGION_DIMENSION]))
    policy = default.endpoint.policy
    assert shown == {(spec.model_id, region) for spec in policy.models.values() for region in spec.regions}
    assert len(circuits["metrics"]) == len(shown)


def test_dashboard_shows_state_store_errors(template):
    errors = dashboard_widgets(template)["Live-state store errors"]
    assert [metric[1] for metric in errors["metrics"]] == [m.STATE_STORE_ERRORS]


# --- public surface -------------------------------------------------------------------------------------


def test_state_table_is_a_public_attribute(default):
    table = default.endpoint.state_table
    assert isinstance(table, dynamodb.Table)
    assert table.node.id == "StateTable"
    assert table.encryption_key is None


def test_budget_and_state_metric_methods(default):
    endpoint = default.endpoint
    for method, name, statistic in (
        (endpoint.metric_budget_used_percent, m.BUDGET_USED_PERCENT, "Maximum"),
        (endpoint.metric_spend_today_usd, m.SPEND_TODAY_USD, "Maximum"),
        (endpoint.metric_budget_exhausted, m.BUDGET_EXHAUSTED, "Sum"),
        (endpoint.metric_state_store_errors, m.STATE_STORE_ERRORS, "Sum"),
    ):
        metric = method()
        assert (metric.namespace, metric.metric_name, metric.statistic) == (m.NAMESPACE, name, statistic)
        assert metric.dimensions == {m.SERVICE_DIMENSION: "Test-Llm"}
        assert metric.period.to_seconds() == 300
    assert endpoint.metric_spend_today_usd(statistic="Average").statistic == "Average"


# --- validation (no synthesis: the construct raises in __init__) ----------------------------------------


def construct(**props: Any) -> RoutedBedrockEndpoint:
    return RoutedBedrockEndpoint(cdk.Stack(cdk.App(), "Check"), "Llm", policy=DEFAULT_POLICY_PATH, **props)


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        (cdk.Duration.seconds(0), "state_cache_ttl must be above 0 s and at most 60 s, got 0 s"),
        (cdk.Duration.seconds(61), "state_cache_ttl must be above 0 s and at most 60 s, got 61 s"),
        (cdk.Duration.minutes(5), "state_cache_ttl must be above 0 s and at most 60 s, got 300 s"),
    ],
)
def test_fails_on_a_state_cache_ttl_outside_0_to_60_seconds(ttl, message):
    with pytest.raises(ValueError) as error:
        construct(state_cache_ttl=ttl)
    assert message in str(error.value)


@pytest.mark.parametrize("percent", [0, -5, 1000.5, 5000])
def test_fails_on_an_alarm_budget_used_percent_outside_0_to_1000(percent):
    with pytest.raises(ValueError) as error:
        construct(alarm_budget_used_percent=percent)
    assert f"alarm_budget_used_percent must be in (0, 1000], got {percent}" in str(error.value)


def test_fails_on_an_alarm_state_store_errors_below_1():
    with pytest.raises(ValueError, match="alarm_state_store_errors must be at least 1, got 0"):
        construct(alarm_state_store_errors=0)


def test_accepts_the_limits_and_skips_a_token_state_cache_ttl():
    # 60 s and 1000 % are allowed; a token is checked at deploy time, not at synth
    assert construct(state_cache_ttl=cdk.Duration.seconds(60), alarm_budget_used_percent=1000).state_table
    stack = cdk.Stack(cdk.App(), "Tokens")
    seconds = cdk.CfnParameter(stack, "CacheSeconds", type="Number", default=5)
    RoutedBedrockEndpoint(
        stack, "Llm", policy=DEFAULT_POLICY_PATH, state_cache_ttl=cdk.Duration.seconds(seconds.value_as_number)
    )
    assert router_variables(Template.from_stack(stack))["ROUTER_STATE_CACHE_SECONDS"] == {"Ref": "CacheSeconds"}


def test_a_token_alarm_threshold_is_left_to_deploy_time():
    stack = cdk.Stack(cdk.App(), "TokenAlarm")
    errors = cdk.CfnParameter(stack, "StoreErrors", type="Number", default=5)
    endpoint = RoutedBedrockEndpoint(
        stack, "Llm", policy=DEFAULT_POLICY_PATH, alarm_state_store_errors=errors.value_as_number
    )
    alarm = endpoint.alarms["StateStoreErrors"].node.default_child
    # The element's logical_id, not Stack.get_logical_id (the path-derived allocation, which ignores overrides)
    assert Template.from_stack(stack).to_json()["Resources"][stack.resolve(alarm.logical_id)]["Properties"][
        "Threshold"
    ] == {"Ref": "StoreErrors"}
