#!/usr/bin/env python3
"""The reference CDK app: one ``RoutedBedrockStack``, checked by cdk-nag's AwsSolutions pack.

Context (cdk.json, or ``-c key=value``):
    account, region: the target environment; without both the stack is environment-agnostic, so it
        synthesizes offline with no credentials (it never looks anything up).
    routed-bedrock:policy-file: the routing policy. Default: - the shipped default policy.
    routed-bedrock:auth: ``api-key`` (default), ``iam``, ``cognito`` (creates a user pool) or ``none``.
    routed-bedrock:stack-name: the stack name. Default: - ``RoutedBedrock``.
    routed-bedrock:policy-deployment: how a new policy version rolls out: ``canary`` (AppConfig's
        ``Canary10Percent20Minutes``, 30 minutes with its bake) or ``all-at-once`` (every instance at once and no
        bake, a strategy of the stack's own: AppConfig's predefined ``AllAtOnce`` still bakes 10 minutes). AppConfig
        runs one deployment per environment at a time and a stack update that starts another during a rollout
        fails, so development stacks that deploy often want ``all-at-once``. Default: - ``canary``.

Multi-region failover (all four of domain-name, hosted-zone-id, hosted-zone-name and regions, or none: without
them the app is the single stack above). One stack per region, ``<stack-name>-<region>``, each with its own
endpoint and its own record and health check in the shared zone (see ``RegionalFailover``); ``make
synth-failover`` synthesizes it with the placeholder values of ``failover.example.json``.
    routed-bedrock:domain-name: the hostname callers use (``llm.example.com``).
    routed-bedrock:hosted-zone-id, routed-bedrock:hosted-zone-name: the public hosted zone that holds it.
    routed-bedrock:regions: comma-separated regions; with ``failover`` routing exactly two, the first primary.
    routed-bedrock:failover-routing: ``failover`` (active-passive) or ``latency`` (active-active, two or more
        regions). Default: - ``failover``.
    account: optional here; each stack's region comes from ``routed-bedrock:regions``.
"""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_route53 as route53
from cdk_nag import AwsSolutionsChecks

from cdk_app import DEFAULT_POLICY_PATH, AuthMode, FailoverRole, FailoverRouting, Orchestration, RegionalFailover
from cdk_app.stacks import RoutedBedrockStack
from cdk_app.stacks.routed_bedrock_stack import DEV_POLICY_ROLLOUT

AUTH_MODES = {mode.value: mode for mode in AuthMode}
ORCHESTRATIONS = {orchestration.value: orchestration for orchestration in Orchestration}
POLICY_DEPLOYMENTS = {"canary": None, "all-at-once": DEV_POLICY_ROLLOUT}  # canary: the construct's default
FAILOVER_KEYS = (
    "routed-bedrock:domain-name",
    "routed-bedrock:hosted-zone-id",
    "routed-bedrock:hosted-zone-name",
    "routed-bedrock:regions",
)
FAILOVER_ROUTINGS = {routing.value: routing for routing in FailoverRouting}
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")


def build_app(app: cdk.App | None = None) -> cdk.App:
    """Add the reference stack and the AwsSolutions checks to ``app`` (a new ``cdk.App`` by default)."""
    app = app or cdk.App()
    context = app.node.try_get_context
    auth_name = context("routed-bedrock:auth") or AuthMode.API_KEY.value
    if auth_name not in AUTH_MODES:
        raise ValueError(f"context routed-bedrock:auth '{auth_name}' must be one of {', '.join(AUTH_MODES)}")
    deployment_name = context("routed-bedrock:policy-deployment") or "canary"
    if deployment_name not in POLICY_DEPLOYMENTS:
        choices = ", ".join(POLICY_DEPLOYMENTS)
        raise ValueError(f"context routed-bedrock:policy-deployment '{deployment_name}' must be one of {choices}")
    account, region = context("account"), context("region")
    stack_name = context("routed-bedrock:stack-name") or "RoutedBedrock"
    orchestration_name = context("routed-bedrock:orchestration") or Orchestration.LAMBDA.value
    if orchestration_name not in ORCHESTRATIONS:
        choices = ", ".join(ORCHESTRATIONS)
        raise ValueError(f"context routed-bedrock:orchestration '{orchestration_name}' must be one of {choices}")
    props: dict[str, Any] = {
        "policy": context("routed-bedrock:policy-file") or DEFAULT_POLICY_PATH,
        "auth_mode": AUTH_MODES[auth_name],
        "policy_rollout": POLICY_DEPLOYMENTS[deployment_name],
        "orchestration": ORCHESTRATIONS[orchestration_name],
    }
    given = [key for key in FAILOVER_KEYS if context(key)]
    if given:
        _add_failover_stacks(app, stack_name, account, region, props)
    else:
        if bool(account) != bool(region):
            raise ValueError(f"context account '{account}' and region '{region}' must be given together, or neither")
        RoutedBedrockStack(
            app,
            stack_name,
            env=cdk.Environment(account=account, region=region) if account else None,
            description="Routed Amazon Bedrock endpoint (reference deployment)",
            **props,
        )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def _add_failover_stacks(
    app: cdk.App, stack_name: str, account: str | None, region: str | None, props: dict[str, Any]
) -> None:
    """One regional stack per region of ``routed-bedrock:regions``, each with its endpoint and its DNS."""
    context = app.node.try_get_context
    missing = [key for key in FAILOVER_KEYS if not context(key)]
    if missing:
        raise ValueError(f"multi-region failover needs context {', '.join(missing)} too (or none of {FAILOVER_KEYS})")
    if region:
        raise ValueError(
            f"context region '{region}' does not apply to a failover deployment: use routed-bedrock:regions"
        )
    domain_name = str(context("routed-bedrock:domain-name"))
    zone_id = str(context("routed-bedrock:hosted-zone-id"))
    zone_name = str(context("routed-bedrock:hosted-zone-name"))
    if not _ZONE_ID.match(zone_id):
        raise ValueError(f"context routed-bedrock:hosted-zone-id '{zone_id}' is not a Route 53 hosted zone id (Z...)")
    raw = context("routed-bedrock:regions")
    regions = [r.strip() for r in (raw.split(",") if isinstance(raw, str) else raw) if str(r).strip()]
    bad = [r for r in regions if not _REGION.match(str(r))]
    if bad:
        raise ValueError(f"context routed-bedrock:regions has {bad}, not region names (us-east-1, ...)")
    if len(set(regions)) != len(regions):
        raise ValueError(f"context routed-bedrock:regions names a region twice: {regions}")
    routing_name = context("routed-bedrock:failover-routing") or FailoverRouting.FAILOVER.value
    if routing_name not in FAILOVER_ROUTINGS:
        choices = ", ".join(FAILOVER_ROUTINGS)
        raise ValueError(f"context routed-bedrock:failover-routing '{routing_name}' must be one of {choices}")
    routing = FAILOVER_ROUTINGS[routing_name]
    if routing is FailoverRouting.FAILOVER and len(regions) != 2:
        raise ValueError(
            f"failover routing takes exactly two regions (a primary, then a secondary), got {regions}: "
            "use routed-bedrock:failover-routing=latency for more"
        )
    if len(regions) < 2:
        raise ValueError(f"context routed-bedrock:regions needs at least two regions, got {regions}")
    roles = (FailoverRole.PRIMARY, FailoverRole.SECONDARY)
    for n, stack_region in enumerate(regions):
        stack = RoutedBedrockStack(
            app,
            f"{stack_name}-{stack_region}",
            env=cdk.Environment(account=account, region=stack_region),
            description=f"Routed Amazon Bedrock endpoint in {stack_region} ({routing.value}, {len(regions)} regions)",
            **props,
        )
        zone = route53.PublicHostedZone.from_public_hosted_zone_attributes(
            stack, "Zone", hosted_zone_id=zone_id, zone_name=zone_name
        )
        failover = RegionalFailover(
            stack,
            "Failover",
            endpoint=stack.endpoint,
            hosted_zone=zone,
            domain_name=domain_name,
            routing=routing,
            role=roles[n] if routing is FailoverRouting.FAILOVER else None,
        )
        cdk.CfnOutput(stack, "FailoverUrl", value=failover.url, description="The shared URL across regions")
        cdk.CfnOutput(stack, "HealthCheckId", value=failover.record_health_check.health_check_id)


if __name__ == "__main__":
    build_app().synth()
