"""``RegionalFailover``: one hostname over routed endpoints in several regions, moved by Route 53 health checks.

Each regional stack adds one ``RegionalFailover`` beside its ``RoutedBedrockEndpoint``, and owns everything
of its region: a DNS-validated ACM certificate for the shared domain name, an API Gateway regional custom
domain mapped to the endpoint's stage, a Route 53 HTTPS health check of that region's ``/health`` (optionally
combined, in a calculated health check, with a CloudWatch-alarm health check of the region's degraded
answers), and its own alias record in the shared public hosted zone: a failover record (PRIMARY or
SECONDARY) or a latency record (active-active). No stack references another, so regions deploy, update and
destroy independently, in any order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

import aws_cdk as cdk
import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_route53 as route53
from constructs import Construct

from lambdas.router import metric_names as m

from .routed_bedrock_endpoint import RoutedBedrockEndpoint

HEALTH_CHECKER_REGIONS = (
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
)
"""The regions Route 53 health checkers run in; a health check may name 3 or more of them."""
REQUEST_INTERVALS_S = (10, 30)
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SET_IDENTIFIER_MAX = 128
_CERTIFICATE_NAME_MAX = 64


class FailoverRouting(Enum):
    """How Route 53 picks among the regions' records."""

    FAILOVER = "failover"
    """Active-passive: the PRIMARY record while its health check passes, else the SECONDARY (two regions)."""
    LATENCY = "latency"
    """Active-active: the healthy region with the lowest latency to the caller's resolver (two or more)."""


class FailoverRole(Enum):
    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"


@jsii.implements(route53.IAliasRecordTarget)
class _RegionalDomainAlias:
    """Alias to an API Gateway regional custom domain, evaluating the target's health.

    aws-cdk-lib refuses a failover alias record without ``EvaluateTargetHealth``, and
    ``route53_targets.ApiGatewayDomain`` leaves it off. The record's health check is what decides; evaluating
    the target adds Route 53's view of API Gateway in the region (unhealthy only when the service is down there).
    """

    def __init__(self, domain: apigw.DomainName) -> None:
        self._domain = domain

    def bind(
        self, _record: route53.IRecordSet, _zone: route53.IHostedZone | None = None
    ) -> route53.AliasRecordTargetConfig:
        return route53.AliasRecordTargetConfig(
            dns_name=self._domain.domain_name_alias_domain_name,
            hosted_zone_id=self._domain.domain_name_alias_hosted_zone_id,
            evaluate_target_health=True,
        )


class RegionalFailover(Construct):
    """The DNS side of a multi-region deployment, for the endpoint in this stack's region.

    Example (one stack per region, each with its own endpoint; the zone imported by attributes)::

        zone = route53.PublicHostedZone.from_public_hosted_zone_attributes(
            self, "Zone", hosted_zone_id="Z0123456789ABCDEFGHIJ", zone_name="example.com")
        RegionalFailover(self, "Failover", endpoint=llm, hosted_zone=zone, domain_name="llm.example.com",
                         role=FailoverRole.PRIMARY)   # the other region's stack: FailoverRole.SECONDARY

    Args:
        scope: parent construct; its stack must have an explicit region (``env``): the record's set identifier,
            the latency record and the alarm health check name it.
        id: construct id.
        endpoint: the routed endpoint of this region.
        hosted_zone: the public hosted zone holding ``domain_name``, imported by attributes (no lookups).
        domain_name: the hostname callers use, in ``hosted_zone`` (the same in every region's stack).
        routing: ``FailoverRouting.FAILOVER`` (active-passive, needs ``role``) or ``FailoverRouting.LATENCY``
            (active-active). Default: - ``FAILOVER``.
        role: this region's failover role; required with ``FAILOVER``, refused with ``LATENCY``.
        health_check_interval: seconds between one checker's requests, 10 or 30 (10 costs more, see the
            README). Default: - 30 seconds.
        health_check_failure_threshold: consecutive failures (and successes) that flip a checker's view, 1-10.
            Default: - 3.
        health_check_regions: the checker regions (at least 3 of ``HEALTH_CHECKER_REGIONS``). Fewer regions
            mean fewer ``/health`` calls (each one a Lambda invocation). Default: - all of them.
        degraded_answers_per_minute: also fail the region when its router returns at least this many degraded
            answers in each of 2 consecutive minutes (a CloudWatch-alarm health check, combined with the HTTPS
            one in a calculated health check that needs both; no data, as when DNS has moved traffic away,
            counts as healthy); None leaves it out. Default: - 10.
        security_policy: the custom domain's TLS policy. Default: - ``SecurityPolicy.TLS_1_2``.
        set_identifier: the record's set identifier (1-128 characters). Default: - the stack's region.

    Attributes:
        certificate, domain, health_check (the HTTPS check of ``/health``), alarm_health_check and
        degraded_alarm (None without ``degraded_answers_per_minute``), record_health_check (the one the record
        uses: the calculated check, or the HTTPS one), record.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        endpoint: RoutedBedrockEndpoint,
        hosted_zone: route53.IHostedZone,
        domain_name: str,
        routing: FailoverRouting = FailoverRouting.FAILOVER,
        role: FailoverRole | None = None,
        health_check_interval: Duration | None = None,
        health_check_failure_threshold: int = 3,
        health_check_regions: Sequence[str] | None = None,
        degraded_answers_per_minute: float | None = 10,
        security_policy: apigw.SecurityPolicy = apigw.SecurityPolicy.TLS_1_2,
        set_identifier: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        interval = health_check_interval or Duration.seconds(30)
        _validate(
            stack=stack,
            endpoint=endpoint,
            hosted_zone=hosted_zone,
            domain_name=domain_name,
            routing=routing,
            role=role,
            interval=interval,
            failure_threshold=health_check_failure_threshold,
            regions=health_check_regions,
            degraded_answers_per_minute=degraded_answers_per_minute,
            set_identifier=set_identifier,
        )
        region = stack.region
        self.certificate = acm.Certificate(
            self,
            "Certificate",
            domain_name=domain_name,
            validation=acm.CertificateValidation.from_dns(hosted_zone),
        )
        self.domain = apigw.DomainName(
            self,
            "Domain",
            domain_name=domain_name,
            certificate=self.certificate,
            endpoint_type=apigw.EndpointType.REGIONAL,
            security_policy=security_policy,
        )
        self.domain.add_base_path_mapping(endpoint.api, stage=endpoint.api.deployment_stage)
        # The region's own execute-api hostname: the shared name would resolve to whichever region is active.
        self.health_check = route53.HealthCheck(
            self,
            "HealthCheck",
            type=route53.HealthCheckType.HTTPS,
            fqdn=f"{endpoint.api.rest_api_id}.execute-api.{region}.{stack.url_suffix}",
            port=443,
            resource_path=f"/{endpoint.api.deployment_stage.stage_name}/health",
            request_interval=interval,
            failure_threshold=health_check_failure_threshold,
            enable_sni=True,
            regions=list(health_check_regions) if health_check_regions else None,
        )
        self.degraded_alarm: cloudwatch.Alarm | None = None
        self.alarm_health_check: route53.HealthCheck | None = None
        self.record_health_check: route53.HealthCheck = self.health_check
        if degraded_answers_per_minute is not None:
            # Route 53 watches the alarm's metric itself: standard resolution, a plain statistic, no metric math,
            # and every evaluated period breaching (no "M out of N").
            self.degraded_alarm = cloudwatch.Alarm(
                self,
                "DegradedAlarm",
                metric=endpoint.metric(m.DEGRADED, statistic="Sum", period=Duration.minutes(1)),
                threshold=degraded_answers_per_minute,
                evaluation_periods=2,
                datapoints_to_alarm=2,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=(
                    f"failover: degraded answers >= {degraded_answers_per_minute} a minute for 2 minutes "
                    f"in {region}; Route 53 moves {domain_name} to another region"
                ),
            )
            self.alarm_health_check = route53.HealthCheck(
                self,
                "AlarmHealthCheck",
                type=route53.HealthCheckType.CLOUDWATCH_METRIC,
                alarm_identifier=route53.AlarmIdentifier(name=self.degraded_alarm.alarm_name, region=region),
                # No data is no traffic: once DNS has moved callers away the region sends no metric at all, and
                # "last known" would keep it failed for good, whatever /health says.
                insufficient_data_health_status=route53.InsufficientDataHealthStatusEnum.HEALTHY,
            )
            self.record_health_check = route53.HealthCheck(
                self,
                "RegionHealthCheck",
                type=route53.HealthCheckType.CALCULATED,
                child_health_checks=[self.health_check, self.alarm_health_check],
                health_threshold=2,
            )
        self.record = route53.ARecord(
            self,
            "Record",
            zone=hosted_zone,
            record_name=domain_name,
            target=route53.RecordTarget.from_alias(_RegionalDomainAlias(self.domain)),
            health_check=self.record_health_check,
            set_identifier=set_identifier or region,
            failover=route53.Failover(role.value) if role is not None else None,
            region=region if routing is FailoverRouting.LATENCY else None,
            comment=f"routed Bedrock endpoint in {region} ({routing.value})",
        )
        self.domain_name = domain_name

    @property
    def url(self) -> str:
        """The shared URL, ending in ``/`` (``{url}generate``, ``{url}health``)."""
        return f"https://{self.domain_name}/"


def _validate(
    *,
    stack: cdk.Stack,
    endpoint: RoutedBedrockEndpoint,
    hosted_zone: route53.IHostedZone,
    domain_name: str,
    routing: FailoverRouting,
    role: FailoverRole | None,
    interval: Duration,
    failure_threshold: int,
    regions: Sequence[str] | None,
    degraded_answers_per_minute: float | None,
    set_identifier: str | None,
) -> None:
    """Raise ``ValueError`` naming the first bad prop and its value."""
    if not isinstance(endpoint, RoutedBedrockEndpoint):
        raise ValueError(f"endpoint must be a RoutedBedrockEndpoint, got {endpoint!r}")
    if cdk.Stack.of(endpoint) is not stack:
        raise ValueError(
            f"endpoint '{endpoint.node.path}' must be in the failover's own stack '{stack.node.path}': each region's "
            "stack owns its endpoint and its DNS, with no cross-stack reference"
        )
    if cdk.Token.is_unresolved(stack.region):
        raise ValueError(
            f"stack '{stack.node.path}' needs an explicit region (env=Environment(region=...)): the failover "
            "record, its set identifier and the alarm health check name the region"
        )
    if not isinstance(routing, FailoverRouting):
        raise ValueError(f"routing must be a FailoverRouting, got {routing!r}")
    if routing is FailoverRouting.FAILOVER and not isinstance(role, FailoverRole):
        raise ValueError(
            f"role must be FailoverRole.PRIMARY or FailoverRole.SECONDARY with failover routing, got {role!r}"
        )
    if routing is FailoverRouting.LATENCY and role is not None:
        raise ValueError(f"role must not be set with latency routing (every region is active), got {role}")
    _check_domain(domain_name, hosted_zone)
    if not isinstance(interval, Duration):
        raise ValueError(f"health_check_interval must be a Duration of 10 or 30 seconds, got {interval!r}")
    if not interval.is_unresolved() and interval.to_milliseconds() not in [1000 * s for s in REQUEST_INTERVALS_S]:
        raise ValueError(f"health_check_interval must be 10 or 30 seconds, got {interval.to_human_string()}")
    if (
        isinstance(failure_threshold, bool)
        or not isinstance(failure_threshold, int)
        or not 1 <= failure_threshold <= 10
    ):
        raise ValueError(f"health_check_failure_threshold must be an integer from 1 to 10, got {failure_threshold!r}")
    if regions is not None:
        unknown = [r for r in regions if r not in HEALTH_CHECKER_REGIONS]
        if unknown:
            raise ValueError(
                f"health_check_regions {unknown} are not Route 53 checker regions ({', '.join(HEALTH_CHECKER_REGIONS)})"
            )
        if len(set(regions)) != len(regions):
            raise ValueError(f"health_check_regions names a region twice: {list(regions)}")
        if len(regions) < 3:
            raise ValueError(f"health_check_regions must name at least 3 distinct regions, got {list(regions)}")
    if degraded_answers_per_minute is not None and (
        isinstance(degraded_answers_per_minute, bool)
        or not isinstance(degraded_answers_per_minute, int | float)
        or not 0 < degraded_answers_per_minute < float("inf")
    ):
        raise ValueError(
            "degraded_answers_per_minute must be a finite number above 0 (or None), "
            f"got {degraded_answers_per_minute!r}"
        )
    if set_identifier is not None and (
        not isinstance(set_identifier, str) or not 1 <= len(set_identifier) <= _SET_IDENTIFIER_MAX
    ):
        raise ValueError(f"set_identifier must be 1-128 characters, got {set_identifier!r}")


def _check_domain(domain_name: str, hosted_zone: route53.IHostedZone) -> None:
    if not isinstance(domain_name, str) or cdk.Token.is_unresolved(domain_name):
        raise ValueError(f"domain_name must be a literal hostname, got {domain_name!r}")
    name = domain_name.lower()
    labels = name.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise ValueError(
            f"domain_name '{domain_name}' is not a valid hostname (letters, digits and '-' labels, no trailing dot)"
        )
    if len(name) > _CERTIFICATE_NAME_MAX:
        raise ValueError(f"domain_name '{domain_name}' is over {_CERTIFICATE_NAME_MAX} characters (ACM's limit)")
    zone = hosted_zone.zone_name
    if not cdk.Token.is_unresolved(zone):
        zone_name = zone.rstrip(".").lower()
        if name != zone_name and not name.endswith("." + zone_name):
            raise ValueError(f"domain_name '{domain_name}' is not in the hosted zone '{zone}'")
