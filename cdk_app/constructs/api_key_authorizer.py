"""``ApiKeyAuthorizer``: API keys from ``x-api-key`` or ``Authorization: Bearer`` for API Gateway's usage plans."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

import lambdas.authorizer

from ._router_asset import ASSET_EXCLUDE
from ._validation import check_removal_policy

AUTHORIZER_RUNTIME = lambda_.Runtime.PYTHON_3_14
"""The newest Python runtime: the authorizer has no layer to keep in step with (the router's Powertools)."""
AUTHORIZER_SOURCE = Path(lambdas.authorizer.__file__).resolve().parent
CACHE_TTL = Duration.minutes(5)
# API Gateway's own check before the function runs: 20-128 printable characters, the key values it issues.
GENERATE_TOKEN_REGEX = "^[!-~]{20,128}$"
BEARER_TOKEN_REGEX = "^[Bb][Ee][Aa][Rr][Ee][Rr] +[!-~]{20,128}$"


class ApiKeyAuthorizer(Construct):
    """A TOKEN authorizer function that returns the caller's API key as ``usageIdentifierKey``, used twice.

    With the REST API's ``api_key_source_type`` set to ``AUTHORIZER``, API Gateway takes a method's API key
    from its authorizer instead of the ``x-api-key`` header, and still checks it against the usage plan's keys
    (403 for an unknown key) and throttles by the plan. ``generate`` reads ``x-api-key`` (what
    ``POST /generate`` callers send); ``bearer`` reads ``Authorization: Bearer KEY`` (what every OpenAI client
    sends). A missing or malformed header is a 401 from API Gateway without invoking the function; answers are
    cached per token for 5 minutes. The function (``lambdas/authorizer/api_key.py``) uses the standard library
    only: no layer, 256 MB, its own role and log group.

    Args:
        scope: parent construct.
        id: construct id.
        log_retention: retention of the function's log group.

    Attributes:
        function: the authorizer function.
        generate: the authorizer on ``x-api-key``.
        bearer: the authorizer on ``Authorization``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        log_retention: logs.RetentionDays,
        log_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        check_removal_policy("log_removal_policy", log_removal_policy)
        log_group = logs.LogGroup(self, "AuthorizerLogs", retention=log_retention, removal_policy=log_removal_policy)
        role = iam.Role(
            self,
            "AuthorizerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Routed Bedrock API-key authorizer: its log group only",
        )
        log_group.grant_write(role)
        self.function = lambda_.Function(
            self,
            "Authorizer",
            description="Hands the caller's API key (x-api-key or Authorization: Bearer) to the usage plan",
            runtime=AUTHORIZER_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="api_key.handler",
            code=lambda_.Code.from_asset(str(AUTHORIZER_SOURCE), exclude=list(ASSET_EXCLUDE)),
            role=role,
            memory_size=256,
            timeout=Duration.seconds(3),
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
        )
        self.generate = apigw.TokenAuthorizer(
            self,
            "ApiKeyHeader",
            handler=self.function,
            identity_source=apigw.IdentitySource.header("x-api-key"),
            validation_regex=GENERATE_TOKEN_REGEX,
            results_cache_ttl=CACHE_TTL,
        )
        self.bearer = apigw.TokenAuthorizer(
            self,
            "BearerToken",
            handler=self.function,
            identity_source=apigw.IdentitySource.header("Authorization"),
            validation_regex=BEARER_TOKEN_REGEX,
            results_cache_ttl=CACHE_TTL,
        )
