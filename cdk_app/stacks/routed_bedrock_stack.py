"""The reference deployment: one routed endpoint, its alarms wired to an encrypted SNS topic."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..constructs import AuthMode, EndpointAuthorization, Orchestration, RoutedBedrockEndpoint

DEV_POLICY_ROLLOUT = appconfig.RolloutStrategy.linear(
    growth_factor=100, deployment_duration=Duration.minutes(0), final_bake_time=Duration.minutes(0)
)
"""Every instance at once and no bake, for development stacks. AppConfig's predefined ``AllAtOnce`` still bakes
for 10 minutes, and a stack update that starts a deployment during another one's bake fails. No bake also means
no rollback by alarm once the version is out: production keeps the canary."""


class RoutedBedrockStack(Stack):
    """A ``RoutedBedrockEndpoint`` with an encrypted alarm topic, and its URL and handles as outputs.

    Args:
        scope: the app.
        id: stack id.
        policy: the routing policy (a dict or a file path).
        auth_mode: how callers authenticate to ``POST /generate``; ``AuthMode.COGNITO`` creates a user pool
            (MFA required, no self sign-up). Default: - ``AuthMode.API_KEY`` (an API key and a usage plan).
        policy_rollout: how a new policy version rolls out, as a deployment strategy of this stack's own;
            AppConfig runs one deployment per environment at a time, so a development stack that deploys often
            wants ``DEV_POLICY_ROLLOUT`` (everyone at once, no bake: the next deploy never waits on a bake).
            Default: - the construct's (``Canary10Percent20Minutes``, with its 10-minute bake).
        orchestration: how ``POST /generate`` waits on Bedrock (``RoutedBedrockEndpoint``'s ``orchestration``).
            Default: - ``Orchestration.LAMBDA``.
        **kwargs: ``Stack`` props (``env``, ``description``, ...).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        policy: Mapping[str, Any] | str | Path,
        auth_mode: AuthMode = AuthMode.API_KEY,
        policy_rollout: appconfig.RolloutStrategy | None = None,
        orchestration: Orchestration = Orchestration.LAMBDA,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        # CloudWatch publishes to an encrypted topic only with a customer-managed key that lets it.
        alarm_key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True, description="Routed Bedrock alarm topic")
        alarm_key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.alarm_topic = sns.Topic(self, "AlarmTopic", master_key=alarm_key, enforce_ssl=True)
        # enforce_ssl gives the topic a policy of its own, which replaces SNS's default one: without this
        # statement CloudWatch may not publish, and no alarm notification is ever delivered.
        self.alarm_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alarm_topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {
                        "aws:SourceArn": self.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        self.user_pool: cognito.UserPool | None = None
        if auth_mode is AuthMode.COGNITO:
            self.user_pool = self._user_pool()
            auth = EndpointAuthorization.cognito(self.user_pool)
        else:
            auth = EndpointAuthorization(mode=auth_mode)
        strategy = (
            appconfig.DeploymentStrategy(
                self,
                "PolicyDeploymentStrategy",
                rollout_strategy=policy_rollout,
                description="Routing policy rollout of this stack",
            )
            if policy_rollout is not None
            else None
        )
        self.endpoint = RoutedBedrockEndpoint(
            self,
            "Endpoint",
            policy=policy,
            auth=auth,
            alarm_topic=self.alarm_topic,
            policy_deployment_strategy=strategy,
            orchestration=orchestration,
        )
        CfnOutput(self, "Url", value=self.endpoint.url, description="Base URL: POST {Url}generate, GET {Url}health")
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.endpoint.dashboard.dashboard_name)
        if self.endpoint.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.endpoint.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id> gives the x-api-key value",
            )
        if self.user_pool is not None:
            CfnOutput(self, "UserPoolId", value=self.user_pool.user_pool_id)
        # What `routed-bedrock publish --stack NAME` reads (routed_bedrock/publish.py STACK_OUTPUTS).
        for key, value in (
            ("PolicyApplicationId", self.endpoint.application.application_id),
            ("PolicyEnvironmentId", self.endpoint.environment.environment_id),
            ("PolicyProfileId", self.endpoint.configuration.configuration_profile_id),
            ("PolicyDeploymentStrategyId", self.endpoint.deployment_strategy.deployment_strategy_id),
        ):
            CfnOutput(self, key, value=value, description="for routed-bedrock publish --stack")

    def _user_pool(self) -> cognito.UserPool:
        """Administrator-created users only, strong passwords, TOTP MFA and full threat protection."""
        return cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            removal_policy=RemovalPolicy.RETAIN,
        )
