"""Multi-region failover: the reference app's regional stacks (certificate, custom domain, health checks,
failover or latency records), cfn-lint and cdk-nag, and ``RegionalFailover``'s prop checks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_route53 as route53

from cdk_app import FailoverRole, FailoverRouting, RegionalFailover, RoutedBedrockEndpoint

pytestmark = pytest.mark.xdist_group("regional-failover")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE: dict[str, str] = json.loads((ROOT / "failover.example.json").read_text())
ZONE_ID = EXAMPLE["routed-bedrock:hosted-zone-id"]
DOMAIN = EXAMPLE["routed-bedrock:domain-name"]
PRIMARY, SECONDARY = EXAMPLE["routed-bedrock:regions"].split(",")


@pytest.fixture(scope="module")
def app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_app_failover", ROOT / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synth(app_module: ModuleType, outdir: Path, context: dict[str, str]) -> Path:
    app = cdk.App(outdir=str(outdir), context=context)
    app_module.build_app(app)
    app.synth()
    return outdir


@pytest.fixture(scope="module")
def failover(app_module, tmp_path_factory) -> Path:
    """``make synth-failover``'s assembly: the example context of failover.example.json."""
    return synth(app_module, tmp_path_factory.mktemp("failover"), EXAMPLE)


@pytest.fixture(scope="module")
def latency(app_module, tmp_path_factory) -> Path:
    context = {
        **EXAMPLE,
        "routed-bedrock:regions": "us-east-1,us-west-2,eu-west-1",
        "routed-bedrock:failover-routing": "latency",
    }
    return synth(app_module, tmp_path_factory.mktemp("latency"), context)


def resources(assembly: Path, stack: str, kind: str) -> dict[str, dict[str, Any]]:
    template = json.loads((assembly / f"{stack}.template.json").read_text())
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == kind}


def one(assembly: Path, stack: str, kind: str, **match: Any) -> tuple[str, dict[str, Any]]:
    found = [
        (k, p)
        for k, p in resources(assembly, stack, kind).items()
        if all(p.get("HealthCheckConfig", p).get(key) == value for key, value in match.items())
    ]
    assert len(found) == 1, (kind, match, found)
    return found[0]


def stack_of(region: str) -> str:
    return f"RoutedBedrock-{region}"


# --- The reference deployment ---------------------------------------------------------------------------


def test_one_stack_per_region_and_no_stack_references_another(failover):
    manifest = json.loads((failover / "manifest.json").read_text())
    stacks = {k: a for k, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"}
    assert set(stacks) == {stack_of(PRIMARY), stack_of(SECONDARY)}
    for name, artifact in stacks.items():
        assert artifact["environment"].endswith("/" + name.removeprefix("RoutedBedrock-"))
        # Each depends on its own assets only, never on the other region's stack
        assert [d for d in artifact.get("dependencies", []) if not d.endswith(".assets")] == []
        text = (failover / f"{name}.template.json").read_text()
        assert "Fn::ImportValue" not in text


@pytest.mark.parametrize(("region", "role"), [(PRIMARY, "PRIMARY"), (SECONDARY, "SECONDARY")])
def test_each_region_owns_its_failover_record_on_its_own_domain_with_its_health_check(failover, region, role):
    stack = stack_of(region)
    [(_, record)] = resources(failover, stack, "AWS::Route53::RecordSet").items()
    [domain_id] = resources(failover, stack, "AWS::ApiGateway::DomainName")
    calculated_id, _ = one(failover, stack, "AWS::Route53::HealthCheck", Type="CALCULATED")
    assert record["Name"] == DOMAIN + "." and record["Type"] == "A"
    assert record["HostedZoneId"] == ZONE_ID
    assert record["Failover"] == role and record["SetIdentifier"] == region
    assert "Region" not in record
    assert record["HealthCheckId"] == {"Ref": calculated_id}
    assert record["AliasTarget"] == {
        "DNSName": {"Fn::GetAtt": [domain_id, "RegionalDomainName"]},
        "HostedZoneId": {"Fn::GetAtt": [domain_id, "RegionalHostedZoneId"]},
        "EvaluateTargetHealth": True,  # Route 53 requires it on failover alias records
    }


@pytest.mark.parametrize("region", [PRIMARY, SECONDARY])
def test_the_https_health_check_calls_the_region_s_own_health_path(failover, region):
    stack = stack_of(region)
    _, https = one(failover, stack, "AWS::Route53::HealthCheck", Type="HTTPS")
    config = https["HealthCheckConfig"]
    [api_id] = resources(failover, stack, "AWS::ApiGateway::RestApi")
    [stage_id] = resources(failover, stack, "AWS::ApiGateway::Stage")
    assert config["FullyQualifiedDomainName"] == {
        "Fn::Join": ["", [{"Ref": api_id}, f".execute-api.{region}.", {"Ref": "AWS::URLSuffix"}]]
    }
    assert config["ResourcePath"] == {"Fn::Join": ["", ["/", {"Ref": stage_id}, "/health"]]}
    assert (config["Port"], config["EnableSNI"]) == (443, True)
    assert (config["RequestInterval"], config["FailureThreshold"]) == (30, 3)
    assert "Regions" not in config  # every checker region by default


@pytest.mark.parametrize("region", [PRIMARY, SECONDARY])
def test_the_calculated_check_needs_health_and_the_degraded_answers_alarm(failover, region):
    stack = stack_of(region)
    https_id, _ = one(failover, stack, "AWS::Route53::HealthCheck", Type="HTTPS")
    alarm_check_id, alarm_check = one(failover, stack, "AWS::Route53::HealthCheck", Type="CLOUDWATCH_METRIC")
    _, calculated = one(failover, stack, "AWS::Route53::HealthCheck", Type="CALCULATED")
    config = calculated["HealthCheckConfig"]
    assert config["ChildHealthChecks"] == [{"Ref": https_id}, {"Ref": alarm_check_id}]
    assert config["HealthThreshold"] == 2
    identifier = alarm_check["HealthCheckConfig"]["AlarmIdentifier"]
    assert identifier["Region"] == region
    alarm = resources(failover, stack, "AWS::CloudWatch::Alarm")[identifier["Name"]["Ref"]]
    # What Route 53 can watch: a plain statistic of one standard-resolution metric, every period breaching
    assert "Metrics" not in alarm and alarm["Statistic"] == "Sum" and alarm["Period"] == 60
    assert alarm["MetricName"] == "DegradedAnswers"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 2
    # No data (no traffic once DNS has moved away) must not keep the region failed: it counts as healthy
    assert alarm_check["HealthCheckConfig"]["InsufficientDataHealthStatus"] == "Healthy"


@pytest.mark.parametrize("region", [PRIMARY, SECONDARY])
def test_a_dns_validated_certificate_and_a_regional_custom_domain_mapped_to_the_stage(failover, region):
    stack = stack_of(region)
    [(cert_id, cert)] = resources(failover, stack, "AWS::CertificateManager::Certificate").items()
    assert cert["DomainName"] == DOMAIN and cert["ValidationMethod"] == "DNS"
    assert cert["DomainValidationOptions"] == [{"DomainName": DOMAIN, "HostedZoneId": ZONE_ID}]
    [(domain_id, domain)] = resources(failover, stack, "AWS::ApiGateway::DomainName").items()
    assert domain["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert domain["RegionalCertificateArn"] == {"Ref": cert_id}
    assert domain["SecurityPolicy"] == "TLS_1_2"
    [mapping] = resources(failover, stack, "AWS::ApiGateway::BasePathMapping").values()
    [api_id] = resources(failover, stack, "AWS::ApiGateway::RestApi")
    [stage_id] = resources(failover, stack, "AWS::ApiGateway::Stage")
    assert mapping == {"DomainName": {"Ref": domain_id}, "RestApiId": {"Ref": api_id}, "Stage": {"Ref": stage_id}}


def test_outputs_name_the_shared_url_and_the_record_s_health_check(failover):
    template = json.loads((failover / f"{stack_of(PRIMARY)}.template.json").read_text())
    outputs = template["Outputs"]
    assert outputs["FailoverUrl"]["Value"] == f"https://{DOMAIN}/"
    calculated_id, _ = one(failover, stack_of(PRIMARY), "AWS::Route53::HealthCheck", Type="CALCULATED")
    assert outputs["HealthCheckId"]["Value"] == {"Ref": calculated_id}
    assert "Url" in outputs  # the region's own stage URL too


def test_latency_routing_gives_every_region_an_active_record(latency):
    for region in ("us-east-1", "us-west-2", "eu-west-1"):
        [record] = resources(latency, stack_of(region), "AWS::Route53::RecordSet").values()
        assert record["Region"] == region and record["SetIdentifier"] == region
        assert "Failover" not in record and "HealthCheckId" in record


@pytest.mark.parametrize("assembly_name", ["failover", "latency"])
def test_cdk_nag_and_cfn_lint_pass_on_every_regional_template(assembly_name, request):
    assembly: Path = request.getfixturevalue(assembly_name)
    report = json.loads((assembly / "validation-report.json").read_text())
    assert [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])] == []
    templates = sorted(assembly.glob("*.template.json"))
    assert len(templates) == (2 if assembly_name == "failover" else 3)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"routed-bedrock:hosted-zone-id": ""}, r"needs context routed-bedrock:hosted-zone-id too"),
        ({"routed-bedrock:regions": "us-east-1,us-west-2,eu-west-1"}, r"exactly two regions"),
        ({"routed-bedrock:regions": "us-east-1"}, r"exactly two regions"),
        ({"routed-bedrock:regions": "us-east-1,mars-1"}, r"\['mars-1'\], not region names"),
        ({"routed-bedrock:regions": "us-east-1,us-east-1"}, r"names a region twice"),
        ({"routed-bedrock:hosted-zone-id": "example"}, r"'example' is not a Route 53 hosted zone id"),
        ({"routed-bedrock:failover-routing": "geo"}, r"'geo' must be one of failover, latency"),
        ({"region": "us-east-1"}, r"context region 'us-east-1' does not apply"),
        ({"routed-bedrock:domain-name": "llm.example.org"}, r"'llm.example.org' is not in the hosted zone"),
    ],
)
def test_bad_failover_context_is_a_value_error_naming_it(app_module, tmp_path, change, message):
    context = {k: v for k, v in {**EXAMPLE, **change}.items() if v != ""}
    with pytest.raises(ValueError, match=message):
        app_module.build_app(cdk.App(outdir=str(tmp_path), context=context))


# --- RegionalFailover's prop checks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regional(shipped_policy) -> tuple[cdk.Stack, RoutedBedrockEndpoint, route53.IHostedZone]:
    app = cdk.App()
    stack = cdk.Stack(app, "Region", env=cdk.Environment(account="123456789012", region="us-east-1"))
    endpoint = RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy)
    zone = route53.PublicHostedZone.from_public_hosted_zone_attributes(
        stack, "Zone", hosted_zone_id=ZONE_ID, zone_name="example.com"
    )
    return stack, endpoint, zone


_ids = iter(range(1000))


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({}, r"role must be FailoverRole.PRIMARY or FailoverRole.SECONDARY with failover routing, got None"),
        ({"routing": FailoverRouting.LATENCY, "role": FailoverRole.PRIMARY}, r"role must not be set with latency"),
        ({"role": FailoverRole.PRIMARY, "health_check_interval": Duration.seconds(20)}, r"10 or 30 seconds, got 20"),
        ({"role": FailoverRole.PRIMARY, "health_check_failure_threshold": 0}, r"from 1 to 10, got 0"),
        ({"role": FailoverRole.PRIMARY, "health_check_failure_threshold": 11}, r"from 1 to 10, got 11"),
        ({"role": FailoverRole.PRIMARY, "health_check_regions": ["us-east-1", "eu-west-1"]}, r"at least 3 distinct"),
        ({"role": FailoverRole.PRIMARY, "health_check_regions": ["us-east-1", "eu-west-1", "mars-1"]}, r"mars-1"),
        ({"role": FailoverRole.PRIMARY, "domain_name": "llm.example.org"}, r"not in the hosted zone 'example.com'"),
        ({"role": FailoverRole.PRIMARY, "domain_name": "bad_name.example.com"}, r"not a valid hostname"),
        ({"role": FailoverRole.PRIMARY, "degraded_answers_per_minute": 0}, r"finite number above 0 \(or None\), got 0"),
        ({"role": FailoverRole.PRIMARY, "set_identifier": "x" * 129}, r"set_identifier must be 1-128"),
        ({"role": FailoverRole.PRIMARY, "domain_name": "llm.example.com."}, r"no trailing dot"),
        ({"role": FailoverRole.PRIMARY, "domain_name": "a" * 60 + ".example.com"}, r"over 64 characters"),
        ({"role": FailoverRole.PRIMARY, "health_check_failure_threshold": True}, r"from 1 to 10, got True"),
        ({"role": FailoverRole.PRIMARY, "health_check_interval": Duration.millis(10_500)}, r"10 or 30 seconds"),
        ({"role": FailoverRole.PRIMARY, "degraded_answers_per_minute": float("inf")}, r"finite number above 0"),
        ({"role": FailoverRole.PRIMARY, "degraded_answers_per_minute": True}, r"finite number above 0"),
        (
            {
                "role": FailoverRole.PRIMARY,
                "health_check_regions": ["us-east-1", "us-east-1", "eu-west-1", "sa-east-1"],
            },
            r"names a region twice",
        ),
        ({"role": FailoverRole.PRIMARY, "set_identifier": 7}, r"set_identifier must be 1-128"),
    ],
)
def test_bad_props_are_a_value_error_naming_the_prop_and_value(regional, props, message):
    stack, endpoint, zone = regional
    arguments: dict[str, Any] = {"endpoint": endpoint, "hosted_zone": zone, "domain_name": DOMAIN, **props}
    with pytest.raises(ValueError, match=message):
        RegionalFailover(stack, f"Bad{next(_ids)}", **arguments)


def test_a_stack_without_a_region_or_an_endpoint_elsewhere_is_refused(regional):
    stack, endpoint, zone = regional
    agnostic = cdk.Stack(cdk.App(), "Agnostic")
    with pytest.raises(ValueError, match=r"must be in the failover's own stack"):
        RegionalFailover(agnostic, "Elsewhere", endpoint=endpoint, hosted_zone=zone, domain_name=DOMAIN)
    other = cdk.Stack(stack.node.scope, "Other", env=cdk.Environment(region="us-west-2"))
    with pytest.raises(ValueError, match=r"must be in the failover's own stack"):
        RegionalFailover(other, "Elsewhere", endpoint=endpoint, hosted_zone=zone, domain_name=DOMAIN)


def test_an_environment_agnostic_stack_is_refused(shipped_policy):
    stack = cdk.Stack(cdk.App(), "Agnostic")
    endpoint = RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy)
    zone = route53.PublicHostedZone.from_public_hosted_zone_attributes(
        stack, "Zone", hosted_zone_id=ZONE_ID, zone_name="example.com"
    )
    with pytest.raises(ValueError, match=r"needs an explicit region"):
        RegionalFailover(
            stack, "Failover", endpoint=endpoint, hosted_zone=zone, domain_name=DOMAIN, role=FailoverRole.PRIMARY
        )


def test_fast_checks_from_three_regions_without_the_alarm(regional):
    stack, endpoint, zone = regional
    failover = RegionalFailover(
        stack,
        "Fast",
        endpoint=endpoint,
        hosted_zone=zone,
        domain_name="fast.example.com",
        role=FailoverRole.SECONDARY,
        health_check_interval=Duration.seconds(10),
        health_check_failure_threshold=2,
        health_check_regions=["us-east-1", "eu-west-1", "ap-southeast-1"],
        degraded_answers_per_minute=None,
    )
    assert failover.alarm_health_check is None and failover.degraded_alarm is None
    assert failover.record_health_check is failover.health_check
    assert failover.url == "https://fast.example.com/"
    config = stack.resolve(failover.health_check.node.default_child.health_check_config)  # type: ignore[union-attr]
    assert config["requestInterval"] == 10 and config["failureThreshold"] == 2
    assert config["regions"] == ["us-east-1", "eu-west-1", "ap-southeast-1"]
