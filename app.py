#!/usr/bin/env python3
"""The reference CDK app. Context (cdk.json or -c): account, region, routed-bedrock:policy-file,
routed-bedrock:auth (api-key | iam | none), routed-bedrock:stack-name. Without account and region the
stack is environment-agnostic, so it synthesizes offline with no credentials."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cdk_app import EndpointAuthorization
from cdk_app.stacks import RoutedBedrockStack

AUTH_MODES = {
    "api-key": EndpointAuthorization.api_key,
    "iam": EndpointAuthorization.iam,
    "none": EndpointAuthorization.none,
}


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App()
    context = app.node.try_get_context
    auth_name = context("routed-bedrock:auth") or "api-key"
    if auth_name not in AUTH_MODES:
        raise ValueError(f"context routed-bedrock:auth '{auth_name}' must be one of {', '.join(AUTH_MODES)}")
    account, region = context("account"), context("region")
    env = cdk.Environment(account=account, region=region) if account or region else None
    RoutedBedrockStack(
        app,
        context("routed-bedrock:stack-name") or "RoutedBedrock",
        policy=context("routed-bedrock:policy-file") or "lambdas/router/policies/default.json",
        auth=AUTH_MODES[auth_name](),
        env=env,
        description="Routed Amazon Bedrock endpoint (reference deployment)",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build_app().synth()
