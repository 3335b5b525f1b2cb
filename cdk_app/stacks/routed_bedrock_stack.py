"""The reference deployment: one routed endpoint, its alarms wired to an encrypted SNS topic."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..constructs import EndpointAuthorization, RoutedBedrockEndpoint


class RoutedBedrockStack(Stack):
    """A ``RoutedBedrockEndpoint`` with an alarm topic and the URL as an output.

    Args:
        scope: the app.
        id: stack id.
        policy: the routing policy (dict or file path).
        auth: how callers authenticate. Default: - API key and usage plan.
        **kwargs: ``Stack`` props (``env``, ``description``, ...).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        policy: Mapping[str, Any] | str | Path,
        auth: EndpointAuthorization | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        # CloudWatch can only publish to an encrypted topic whose key lets it: a customer-managed key.
        alarm_key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True, description="Routed Bedrock alarm topic")
        alarm_key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.alarm_topic = sns.Topic(self, "AlarmTopic", master_key=alarm_key, enforce_ssl=True)
        self.endpoint = RoutedBedrockEndpoint(self, "Endpoint", policy=policy, auth=auth, alarm_topic=self.alarm_topic)
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
