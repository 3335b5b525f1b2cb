"""Per-variant alarms (canary candidates and A/B arms) as AppConfig's rollback monitors, and the variants row."""

from __future__ import annotations

import copy
import json
from typing import Any

import aws_cdk as cdk
import pytest

from cdk_app import RoutedBedrockEndpoint
from tests.infrastructure.template_helpers import alarms_by_description, synthesize

pytestmark = pytest.mark.xdist_group("variant-alarms")
ENV = cdk.Environment(account="123456789012", region="us-east-1")
EXPERIMENT = {
    "math-cascade": {
        "arms": [
            {"name": "cascade", "route": "math-cascade", "weight": 50},
            {"name": "direct", "route": "deep", "weight": 50},
        ]
    }
}


@pytest.fixture(scope="module")
def ab(tmp_path_factory, shipped_policy):
    policy = copy.deepcopy(shipped_policy)
    policy["experiments"] = EXPERIMENT
    return synthesize(
        tmp_path_factory.mktemp("ab"),
        "Ab",
        lambda stack: RoutedBedrockEndpoint(stack, "Llm", policy=policy, alarm_variant_min_requests=30),
        env=ENV,
    )


def metrics_of(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An expression alarm's metrics by id: (name, statistic, dimensions)."""
    found = {}
    for query in alarm["Properties"]["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
            found[query["Id"]] = {"name": stat["Metric"]["MetricName"], "stat": stat["Stat"], "dims": dims}
    return found


def expression(alarm: dict[str, Any]) -> str:
    return next(q["Expression"] for q in alarm["Properties"]["Metrics"] if "Expression" in q)


def test_each_arm_has_a_failure_rate_and_latency_alarm_on_its_own_metrics(ab):
    alarms = alarms_by_description(ab.template)
    for arm in ("cascade", "direct"):
        failure = alarms[f"experiment math-cascade, variant {arm}: fallback or degraded"]
        assert failure["Properties"]["Threshold"] == 10
        assert expression(failure) == "IF(requests >= 30, 100 * (fallbacks + degraded) / requests, 0)"
        used = metrics_of(failure)
        assert {q["name"] for q in used.values()} == {"Requests", "Fallbacks", "DegradedAnswers"}
        for query in used.values():
            assert query["dims"] == {"service": "Ab-Llm", "Experiment": "math-cascade", "Variant": arm}
        latency = alarms[f"experiment math-cascade, variant {arm}: p99 latency"]
        assert latency["Properties"]["Threshold"] == 20_000
        assert {q["stat"] for q in metrics_of(latency).values() if q["name"] == "LatencyMs"} == {"p99"}


def test_only_the_cascade_arm_watches_its_escalation_rate(ab):
    alarms = alarms_by_description(ab.template)
    escalation = alarms["experiment math-cascade, variant cascade: cascade escalations"]
    assert escalation["Properties"]["Threshold"] == 60
    assert expression(escalation) == "IF(cascades >= 30, 100 * escalations / cascades, 0)"
    stats = {q["stat"] for q in metrics_of(escalation).values() if q["name"] == "Escalations"}
    assert stats == {"Sum", "SampleCount"}
    assert "experiment math-cascade, variant direct: cascade escalations" not in alarms


def test_the_canary_candidates_are_variants_too(ab):
    alarms = alarms_by_description(ab.template)
    for model in ("claude-haiku-4-5", "nova-pro"):
        failure = alarms[f"canary balanced, variant {model}: fallback or degraded"]
        for query in metrics_of(failure).values():
            assert query["dims"] == {"service": "Ab-Llm", "Route": "balanced", "Variant": model}


def test_appconfig_watches_one_composite_of_every_rollback_alarm(ab):
    template = ab.template
    [(composite_id, composite)] = template.find_resources("AWS::CloudWatch::CompositeAlarm").items()
    rule = json.dumps(composite["Properties"]["AlarmRule"])
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    described = {key: a["Properties"]["AlarmDescription"] for key, a in alarms.items()}
    in_rule = {described[key].split(" >= ")[0] for key in alarms if key in rule}
    variants = {d.split(" >= ")[0] for d in described.values() if ", variant " in d}
    assert len(variants) == 9  # 2 canary x 2, 2 arms x 2, and the cascade arm's escalations
    assert in_rule == {
        "degraded answers",
        "fallback answers",
        "router function errors",
        "streaming router function errors",
        "API 5XX answers",
        *variants,
    }
    environment = next(iter(template.find_resources("AWS::AppConfig::Environment").values()))["Properties"]
    assert [m["AlarmArn"] for m in environment["Monitors"]] == [{"Fn::GetAtt": [composite_id, "Arn"]}]


def test_few_rollback_alarms_stay_individual_monitors(tmp_path, shipped_policy):
    synthesized = synthesize(
        tmp_path,
        "Few",
        lambda stack: RoutedBedrockEndpoint(
            stack, "Llm", policy=shipped_policy, alarm_variant_failure_rate_percent=None, alarm_variant_p99_latency=None
        ),
        env=ENV,
    )
    template = synthesized.template
    assert not template.find_resources("AWS::CloudWatch::CompositeAlarm")
    assert not [a for a in alarms_by_description(template) if ", variant " in a]
    environment = next(iter(template.find_resources("AWS::AppConfig::Environment").values()))["Properties"]
    assert len(environment["Monitors"]) == 5


def test_the_dashboard_compares_the_variants_side_by_side(ab):
    [dashboard] = ab.template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "Canary and A/B variants" in body
    for title in (
        "canary balanced: requests and cost per request",
        "canary balanced: p99 latency (ms)",
        "A/B math-cascade: requests and cost per request",
        "A/B math-cascade: fallback or degraded (%), escalated (share)",
    ):
        assert title in body, title
    assert "cascade USD per request" in body and "direct USD per request" in body


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"alarm_variant_failure_rate_percent": 0}, "alarm_variant_failure_rate_percent"),
        ({"alarm_variant_escalation_rate_percent": 150}, "alarm_variant_escalation_rate_percent"),
        ({"alarm_variant_p99_latency": cdk.Duration.seconds(0)}, "alarm_variant_p99_latency"),
        ({"alarm_variant_min_requests": 0}, "alarm_variant_min_requests"),
    ],
)
def test_bad_variant_alarm_props_are_refused_by_name(shipped_policy, props, message):
    stack = cdk.Stack(cdk.App(), "Bad", env=ENV)
    with pytest.raises(ValueError, match=message):
        RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy, **props)


def test_the_auto_experiments_arms_get_alarms_without_an_escalation_rate(tmp_path, shipped_policy):
    policy = copy.deepcopy(shipped_policy)
    policy["experiments"] = {
        "auto": {
            "arms": [
                {"name": "learned", "complexity": "learned", "weight": 50},
                {"name": "heuristic", "complexity": "heuristic", "weight": 50},
            ]
        }
    }
    template = synthesize(
        tmp_path, "Auto", lambda stack: RoutedBedrockEndpoint(stack, "Llm", policy=policy), env=ENV
    ).template
    alarms = alarms_by_description(template)
    for arm in ("learned", "heuristic"):
        failure = alarms[f"experiment auto, variant {arm}: fallback or degraded"]
        assert all(q["dims"]["Experiment"] == "auto" for q in metrics_of(failure).values())
        assert f"experiment auto, variant {arm}: p99 latency" in alarms
        assert f"experiment auto, variant {arm}: cascade escalations" not in alarms


def test_many_variants_nest_composites_within_cloudwatchs_rule_limits(tmp_path, shipped_policy):
    # Given 6 experiments of 4 arms, 2 of each on the cascade route: 60 variant alarms, the canary's 4, the base 5
    policy = copy.deepcopy(shipped_policy)
    policy["experiments"] = {
        key: {"arms": [{"name": f"a{i}", "route": "math-cascade" if i % 2 else key, "weight": 1} for i in range(4)]}
        for key in ("fast", "balanced", "deep", "premium", "vision", "long-context")
    }
    template = synthesize(
        tmp_path, "Many", lambda stack: RoutedBedrockEndpoint(stack, "Llm", policy=policy), env=ENV
    ).template
    composites = template.find_resources("AWS::CloudWatch::CompositeAlarm")
    assert len(composites) > 1
    for composite in composites.values():
        assert json.dumps(composite["Properties"]["AlarmRule"]).count("ALARM(") <= 40
    [top] = [c for c in composites.values() if "part" not in c["Properties"]["AlarmDescription"]]
    parts = [key for key, c in composites.items() if "part" in c["Properties"]["AlarmDescription"]]
    assert all(key in json.dumps(top["Properties"]["AlarmRule"]) for key in parts)
    environment = next(iter(template.find_resources("AWS::AppConfig::Environment").values()))["Properties"]
    assert len(environment["Monitors"]) == 1
