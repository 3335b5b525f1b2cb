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
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cdk_app import DEFAULT_POLICY_PATH, AuthMode
from cdk_app.stacks import RoutedBedrockStack
from cdk_app.stacks.routed_bedrock_stack import DEV_POLICY_ROLLOUT

AUTH_MODES = {mode.value: mode for mode in AuthMode}
POLICY_DEPLOYMENTS = {"canary": None, "all-at-once": DEV_POLICY_ROLLOUT}  # canary: the construct's default


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
    if bool(account) != bool(region):
        raise ValueError(f"context account '{account}' and region '{region}' must be given together, or neither")
    RoutedBedrockStack(
        app,
        context("routed-bedrock:stack-name") or "RoutedBedrock",
        policy=context("routed-bedrock:policy-file") or DEFAULT_POLICY_PATH,
        auth_mode=AUTH_MODES[auth_name],
        policy_rollout=POLICY_DEPLOYMENTS[deployment_name],
        env=cdk.Environment(account=account, region=region) if account else None,
        description="Routed Amazon Bedrock endpoint (reference deployment)",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build_app().synth()
