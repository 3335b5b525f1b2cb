"""``RoutedBedrockEndpoint``: API Gateway, the router Lambda, its policy (AppConfig) and live state (DynamoDB)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration, Size
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

import lambdas
from lambdas.router import metric_names as m
from lambdas.router.policy import Policy, PolicyError, compile_policy, document_digest, load_schema

from ._bedrock_arns import model_invoke_arns
from ._request_model import generate_request_schema

LAMBDAS_DIR = Path(lambdas.__file__).resolve().parent
"""The Lambda asset root: the installed ``lambdas`` package (the handler uses relative imports inside it)."""
ROUTER_HANDLER = "router.handler.lambda_handler"
ROUTER_RUNTIME = lambda_.Runtime.PYTHON_3_13
POWERTOOLS_VERSION = "3.37.0"
"""Keep equal to ``aws-lambda-powertools`` in requirements.txt: the layer and local runs use the same release."""
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/{architecture}/{runtime}/{version}"
"""AWS publishes each Powertools release's layer ARN as this public SSM parameter in every commercial region."""
POLICY_PROFILE_NAME = "routing-policy"
STATE_TABLE_PARTITION_KEY = "pk"
"""The live-state table's only key (a string); the router's state store writes every item under it."""
STATE_TABLE_TTL_ATTRIBUTE = "expires_at"
"""Epoch seconds after which DynamoDB may delete a live-state item (old windows, yesterday's spend)."""

_ASSET_EXCLUDE = ["__pycache__", "*.pyc", "*.pyo"]
_PERIOD = Duration.minutes(5)
_DEFAULT_P99_LATENCY_ALARM = Duration.seconds(20)
_DEFAULT_STATE_CACHE_TTL = Duration.seconds(2)
_MAX_STATE_CACHE_TTL_MS = 60_000
_MAX_BUDGET_USED_PERCENT = 1000  # spend can overshoot a budget: the gauge is not capped at 100
_LAMBDA_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_NAME_MAX_LENGTH = 64
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A bad policy version shows up in these alarms: any of them rolls the AppConfig deployment back.
_ROLLBACK_ALARMS = ("DegradedAnswers", "FallbackRate", "LambdaErrors", "Api5xxRate")


class AuthMode(Enum):
    """The authorization of ``POST /generate``; see ``EndpointAuthorization``."""

    API_KEY = "api-key"
    IAM = "iam"
    COGNITO = "cognito"
    NONE = "none"


@dataclass(frozen=True, kw_only=True)
class EndpointAuthorization:
    """How callers authenticate to ``POST /generate``. ``GET /health`` is always open, for health checks.

    Use the factory methods: ``api_key()`` (the default), ``iam()``, ``cognito(user_pool)``, ``none()``.
    """

    mode: AuthMode
    user_pool: cognito.IUserPool | None = None

    @classmethod
    def api_key(cls) -> EndpointAuthorization:
        """An API key in ``x-api-key``, with a usage plan carrying the stage's throttling."""
        return cls(mode=AuthMode.API_KEY)

    @classmethod
    def iam(cls) -> EndpointAuthorization:
        """SigV4-signed requests; allow callers with ``RoutedBedrockEndpoint.grant_invoke``."""
        return cls(mode=AuthMode.IAM)

    @classmethod
    def cognito(cls, user_pool: cognito.IUserPool) -> EndpointAuthorization:
        """A Cognito user-pool authorizer (an ID token in ``Authorization``)."""
        return cls(mode=AuthMode.COGNITO, user_pool=user_pool)

    @classmethod
    def none(cls) -> EndpointAuthorization:
        """No authentication: anyone who can reach the URL can spend your Bedrock budget. Explicit opt-in."""
        return cls(mode=AuthMode.NONE)


class RoutedBedrockEndpoint(Construct):
    """A routed Amazon Bedrock endpoint: one API in front of the models a routing policy names.

    Creates an API Gateway REST API (``POST /generate``, ``GET /health``) backed by the router Lambda
    (Powertools; Python 3.13 on arm64), the routing policy as an AWS AppConfig hosted configuration
    (validated by the policy JSON schema, rolled out gradually and rolled back by alarms), a DynamoDB table
    of the router's live state (circuit breakers, latency statistics, budget spend), IAM scoped to the
    policy's models and regions and to that table, CloudWatch alarms and a dashboard of routing decisions.

    ``POST /generate`` is never open by default: it needs an API key (and its usage plan) unless ``auth``
    says otherwise; ``EndpointAuthorization.none()`` is the only way to open it.

    Example::

        from cdk_app import EndpointAuthorization, RoutedBedrockEndpoint

        llm = RoutedBedrockEndpoint(
            self, "Llm",
            policy="policies/routing.json",          # or a dict
            auth=EndpointAuthorization.iam(),        # default: an API key and a usage plan
            alarm_topic=ops_topic,
        )
        llm.grant_invoke(caller_role)
        CfnOutput(self, "LlmUrl", value=llm.url)

    Args:
        scope: parent construct.
        id: construct id.
        policy: the routing policy, a dict or the path of a JSON file. Validated at synth with the schema
            the router and AppConfig use; a bad policy raises ``ValueError`` naming the field and value.
        auth: how callers authenticate to ``POST /generate``. Default: - an API key and a usage plan
            (``EndpointAuthorization.api_key()``); ``/health`` stays open. ``EndpointAuthorization.none()``
            opens the endpoint, as an explicit opt-in.
        service_name: Powertools service name, the ``service`` dimension of every router metric (1-64 letters,
            digits, ``-``, ``_``). Default: - this construct's path with ``-`` separators (e.g.
            ``MyStack-Llm``): stable across deployments and distinct per endpoint.
        metrics_namespace: CloudWatch namespace of the router's metrics. Default: - ``RoutedBedrock``.
        log_retention: retention of the function's log group and the API's access log group.
            Default: - ``RetentionDays.ONE_MONTH``.
        api_stage_name: the API stage; the AppConfig environment has the same name. Default: - ``prod``.
        api_throttle_rate_limit: steady-state requests per second for the stage (and the usage plan).
            Default: - 50.
        api_throttle_burst_limit: burst requests for the stage (and the usage plan). Default: - 100.
        api_execution_logging: API Gateway execution logs (INFO) besides the access logs; creates the
            account's API Gateway CloudWatch role. Default: - true.
        router_architecture: the function's CPU architecture; the Powertools layer follows it.
            Default: - ``Architecture.ARM_64``.
        router_memory_size_mib: function memory in MiB (128-10240). Default: - 1024.
        router_timeout: function timeout (3 s to 15 min); API Gateway ends a request after 29 s unless the
            account's integration timeout quota is raised. Default: - 29 seconds.
        router_reserved_concurrency: reserved concurrent executions. Default: - none (unreserved).
        router_max_body_size: larger request bodies get HTTP 400 from the router (at most 6 MiB, Lambda's
            payload limit). Default: - 6,000,000 bytes (the router's own default).
        policy_max_age: how long the router trusts a fetched policy before polling AppConfig again
            (15 s to 24 h). Default: - 45 seconds.
        policy_deployment_strategy: how a new policy version rolls out. Default: - AppConfig's predefined
            ``Canary10Percent20Minutes`` (with a 10-minute bake); a strategy for
            ``DeploymentStrategyId.ALL_AT_ONCE`` suits development stacks.
        state_table_encryption_key: a customer-managed KMS key for the live-state table; the router is
            allowed on it what ``Table.grant_read_write_data`` allows on a table's key (``kms:Decrypt``,
            ``kms:DescribeKey``, ``kms:Encrypt``, ``kms:ReEncrypt*``, ``kms:GenerateDataKey*``).
            Default: - the AWS-managed key for DynamoDB
            (``aws/dynamodb``).
        state_table_removal_policy: what happens to the live-state table when it leaves the stack. It holds
            only short-lived state and counters (breaker windows, latency histograms, today's and this
            month's spend), every item expiring by TTL: deleting it resets the current spend counters and
            nothing else. Default: - ``RemovalPolicy.DESTROY``; ``RETAIN`` keeps the spend counters.
        state_cache_ttl: how long the router reuses a live-state snapshot before reading the table again
            (above 0 s, at most 60 s); longer means fewer reads and slower reaction to other instances'
            breakers and spend. Default: - 2 seconds.
        alarm_topic: SNS topic for every alarm's ALARM and OK actions. Default: - alarms without actions.
        alarm_api_5xx_rate_percent: alarm when 5XX answers reach this share of API requests in 5 minutes;
            None disables it. Default: - 1 (%).
        alarm_api_p99_latency: alarm when the API's p99 latency over 5 minutes reaches this; None disables it.
            Default: - 20 seconds.
        alarm_lambda_errors: alarm when the function's errors in 5 minutes reach this; None disables it.
            Default: - 1.
        alarm_lambda_throttles: alarm when the function's throttles in 5 minutes reach this; None disables it.
            Default: - 1.
        alarm_fallback_rate_percent: alarm when fallback answers reach this share of requests in 5 minutes;
            None disables it. Default: - 10 (%).
        alarm_degraded_answers: alarm when degraded answers in 5 minutes reach this; None disables it.
            Default: - 1.
        alarm_budget_used_percent: alarm when the highest share of a budget in use (the router's
            ``BudgetUsedPercent`` gauge, 5-minute maximum) reaches this percentage (above 0, at most 1000);
            None disables it; a policy without a ``budget`` section gets none. Not a rollback monitor:
            spending the budget says nothing about a policy version. Default: - 90 (%).
        alarm_state_store_errors: alarm when live-state table calls that failed or timed out in 5 minutes
            reach this. While the table fails, each instance routes on what it alone knows: breakers are
            not shared and budgets are counted per instance, so spend can pass a budget unseen. After an
            error an instance leaves the table alone for 5 s, so a sustained failure counts about 60 per
            instance in 5 minutes and a lone timeout 1. None disables it. Default: - 5.
        dashboard_name: name of the CloudWatch dashboard. Default: - generated by CloudFormation.

    The degraded-answers, fallback-rate, Lambda-errors and API 5XX alarms (those enabled) are the AppConfig
    environment's monitors: any of them in ALARM during a policy rollout (or its bake time) rolls it back.
    The budget and state-store alarms only notify.

    Attributes:
        api: the REST API (``api.deployment_stage`` is the stage).
        api_key: the API key in ``api_key`` mode, else None.
        router_function: the router Lambda function.
        router_log_group: the function's log group.
        api_access_logs: the stage's access log group.
        application: the AppConfig application.
        environment: the AppConfig environment, with the rollback monitors.
        configuration: the hosted configuration (profile with the JSON schema validator, version, deployment).
        deployment_strategy: the AppConfig deployment strategy in use.
        policy: the compiled routing policy.
        state_table: the DynamoDB table of the router's live state (``ROUTER_STATE_TABLE``).
        alarms: the alarms by name (``Api5xxRate``, ``ApiLatencyP99``, ``LambdaErrors``, ``LambdaThrottles``,
            ``FallbackRate``, ``DegradedAnswers``, ``BudgetUsedPercent``, ``StateStoreErrors``), without the
            disabled ones.
        dashboard: the CloudWatch dashboard of routing patterns.
        service_name: the ``service`` dimension of the router's metrics.
        metrics_namespace: the namespace of the router's metrics.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        policy: Mapping[str, Any] | str | Path,
        auth: EndpointAuthorization | None = None,
        service_name: str | None = None,
        metrics_namespace: str = m.NAMESPACE,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        api_stage_name: str = "prod",
        api_throttle_rate_limit: float = 50,
        api_throttle_burst_limit: int = 100,
        api_execution_logging: bool = True,
        router_architecture: lambda_.Architecture | None = None,
        router_memory_size_mib: int = 1024,
        router_timeout: Duration | None = None,
        router_reserved_concurrency: int | None = None,
        router_max_body_size: Size | None = None,
        policy_max_age: Duration | None = None,
        policy_deployment_strategy: appconfig.IDeploymentStrategy | None = None,
        state_table_encryption_key: kms.IKey | None = None,
        state_table_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.DESTROY,
        state_cache_ttl: Duration | None = None,
        alarm_topic: sns.ITopic | None = None,
        alarm_api_5xx_rate_percent: float | None = 1.0,
        alarm_api_p99_latency: Duration | None = _DEFAULT_P99_LATENCY_ALARM,
        alarm_lambda_errors: int | None = 1,
        alarm_lambda_throttles: int | None = 1,
        alarm_fallback_rate_percent: float | None = 10.0,
        alarm_degraded_answers: int | None = 1,
        alarm_budget_used_percent: float | None = 90.0,
        alarm_state_store_errors: int | None = 5,
        dashboard_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.auth = auth if auth is not None else EndpointAuthorization.api_key()
        architecture = router_architecture or lambda_.Architecture.ARM_64
        timeout = router_timeout or Duration.seconds(29)
        max_age = policy_max_age or Duration.seconds(45)
        state_cache = state_cache_ttl or _DEFAULT_STATE_CACHE_TTL
        self.service_name = service_name if service_name is not None else _default_service_name(self)
        self.metrics_namespace = metrics_namespace
        _validate_props(
            auth=self.auth,
            service_name=self.service_name,
            metrics_namespace=metrics_namespace,
            api_stage_name=api_stage_name,
            api_throttle_rate_limit=api_throttle_rate_limit,
            api_throttle_burst_limit=api_throttle_burst_limit,
            router_memory_size_mib=router_memory_size_mib,
            router_timeout=timeout,
            router_reserved_concurrency=router_reserved_concurrency,
            router_max_body_size=router_max_body_size,
            policy_max_age=max_age,
            state_cache_ttl=state_cache,
            alarm_api_5xx_rate_percent=alarm_api_5xx_rate_percent,
            alarm_api_p99_latency=alarm_api_p99_latency,
            alarm_fallback_rate_percent=alarm_fallback_rate_percent,
            alarm_lambda_errors=alarm_lambda_errors,
            alarm_lambda_throttles=alarm_lambda_throttles,
            alarm_degraded_answers=alarm_degraded_answers,
            alarm_budget_used_percent=alarm_budget_used_percent,
            alarm_state_store_errors=alarm_state_store_errors,
        )
        document = _load_policy_document(policy)
        try:
            self.policy: Policy = compile_policy(document)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        # The exact bytes AppConfig will serve; the router skips the schema pass for them (ROUTER_POLICY_SHA256).
        policy_text = json.dumps(document, indent=2)
        physical_name = cdk.Names.unique_resource_name(self, separator="-", max_length=_NAME_MAX_LENGTH)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarm_topic = alarm_topic

        # --- the routing policy's AppConfig application ---------------------------------------------------
        # The function finds its policy by names, not IDs: a reference from the function to the environment
        # would close a cycle (environment -> rollback monitor -> Lambda errors alarm -> function).
        self.application = appconfig.Application(
            self, "PolicyApplication", application_name=physical_name, description="Routed Bedrock routing policy"
        )
        environment_name = api_stage_name

        # --- the router function -------------------------------------------------------------------------
        self.router_log_group = logs.LogGroup(self, "RouterLogs", retention=log_retention)
        # An own role instead of AWSLambdaBasicExecutionRole: it writes to this log group only.
        router_role = iam.Role(
            self,
            "RouterRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Routed Bedrock router: its log group, its policy's models, its AppConfig profile, its state",
        )
        self.router_log_group.grant_write(router_role)
        self.state_table = self._add_state_table(
            router_role, encryption_key=state_table_encryption_key, removal_policy=state_table_removal_policy
        )
        powertools_layer_arn = ssm.StringParameter.value_for_string_parameter(
            self,
            POWERTOOLS_LAYER_PARAMETER.format(
                architecture=architecture.name, runtime=ROUTER_RUNTIME.name, version=POWERTOOLS_VERSION
            ),
        )
        environment_variables = {
            "APPCONFIG_APPLICATION": physical_name,
            "APPCONFIG_ENVIRONMENT": environment_name,
            "APPCONFIG_PROFILE": POLICY_PROFILE_NAME,
            "ROUTER_POLICY_MAX_AGE_SECONDS": str(int(max_age.to_seconds())),
            "ROUTER_POLICY_SHA256": document_digest(policy_text),
            "ROUTER_STATE_TABLE": self.state_table.table_name,
            "ROUTER_STATE_CACHE_SECONDS": _seconds_text(state_cache),
            "POWERTOOLS_SERVICE_NAME": self.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        if router_max_body_size is not None:
            environment_variables["ROUTER_MAX_BODY_BYTES"] = str(int(router_max_body_size.to_bytes()))
        self.router_function = lambda_.Function(
            self,
            "Router",
            description="Routes each request to a Bedrock model per the routing policy",
            runtime=ROUTER_RUNTIME,
            architecture=architecture,
            handler=ROUTER_HANDLER,
            code=lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=_ASSET_EXCLUDE),
            layers=[lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", powertools_layer_arn)],
            role=router_role,
            memory_size=router_memory_size_mib,
            timeout=timeout,
            reserved_concurrent_executions=router_reserved_concurrency,
            log_group=self.router_log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment=environment_variables,
        )
        self.router_function.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokePolicyModels",
                actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                resources=model_invoke_arns(self.policy),
            )
        )

        # --- the API --------------------------------------------------------------------------------------
        self.api_access_logs = logs.LogGroup(self, "ApiAccessLogs", retention=log_retention)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=physical_name,  # the ApiName dimension of the API's metrics: distinct per endpoint
            description="Routed Amazon Bedrock endpoint",
            cloud_watch_role=api_execution_logging,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.DESTROY if api_execution_logging else None,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            deploy_options=apigw.StageOptions(
                stage_name=api_stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.api_access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.INFO if api_execution_logging else apigw.MethodLoggingLevel.OFF,
                metrics_enabled=True,
                throttling_rate_limit=api_throttle_rate_limit,
                throttling_burst_limit=api_throttle_burst_limit,
            ),
        )
        integration = apigw.LambdaIntegration(self.router_function)
        body_model = self.api.add_model(
            "GenerateRequest",
            content_type="application/json",
            model_name="GenerateRequest",
            schema=generate_request_schema(),
        )
        body_validator = self.api.add_request_validator(
            "RequestValidator", validate_request_body=True, validate_request_parameters=True
        )
        self._generate_method = self.api.root.add_resource("generate").add_method(
            "POST",
            integration,
            request_models={"application/json": body_model},
            request_validator=body_validator,
            **self._method_authorization(),
        )
        self._health_method = self.api.root.add_resource("health").add_method(
            "GET", integration, authorization_type=apigw.AuthorizationType.NONE
        )
        self.api_key: apigw.IApiKey | None = None
        if self.auth.mode is AuthMode.API_KEY:
            plan = self.api.add_usage_plan(
                "UsagePlan",
                description="Throttling for POST /generate callers",
                throttle=apigw.ThrottleSettings(
                    rate_limit=api_throttle_rate_limit, burst_limit=api_throttle_burst_limit
                ),
            )
            plan.add_api_stage(stage=self.api.deployment_stage)
            self.api_key = self.api.add_api_key("ApiKey")
            plan.add_api_key(self.api_key)

        # --- alarms ---------------------------------------------------------------------------------------
        self._add_alarms(
            api_5xx_rate_percent=alarm_api_5xx_rate_percent,
            api_p99_latency=alarm_api_p99_latency,
            lambda_errors=alarm_lambda_errors,
            lambda_throttles=alarm_lambda_throttles,
            fallback_rate_percent=alarm_fallback_rate_percent,
            degraded_answers=alarm_degraded_answers,
            budget_used_percent=alarm_budget_used_percent,
            state_store_errors=alarm_state_store_errors,
        )

        # --- the policy in AppConfig: validated, rolled out gradually, rolled back by alarms --------------
        self.environment = appconfig.Environment(
            self,
            "PolicyEnvironment",
            application=self.application,
            environment_name=environment_name,
            description="Where the router reads its routing policy",
            monitors=[
                appconfig.Monitor.from_cloud_watch_alarm(self.alarms[name])
                for name in _ROLLBACK_ALARMS
                if name in self.alarms
            ],
        )
        self.deployment_strategy = (
            policy_deployment_strategy
            or appconfig.DeploymentStrategy.from_deployment_strategy_id(
                self, "PolicyDeploymentStrategy", appconfig.DeploymentStrategyId.CANARY_10_PERCENT_20_MINUTES
            )
        )
        self.configuration = appconfig.HostedConfiguration(
            self,
            "Policy",
            application=self.application,
            name=POLICY_PROFILE_NAME,
            content=appconfig.ConfigurationContent.from_inline_json(policy_text),
            validators=[appconfig.JsonSchemaValidator.from_inline(json.dumps(load_schema()))],
            deployment_strategy=self.deployment_strategy,
            deploy_to=[self.environment],
            description=f"routing policy {self.policy.version}",
        )
        # Read this profile only (Environment.grant_read_config would allow every profile: configuration/*).
        # A policy of its own, not the role's default policy: the function must not depend on the environment.
        read_policy = iam.Policy(
            self,
            "ReadRoutingPolicy",
            roles=[router_role],
            statements=[
                iam.PolicyStatement(
                    sid="ReadRoutingPolicy",
                    actions=["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"],
                    resources=[
                        cdk.Stack.of(self).format_arn(
                            service="appconfig",
                            resource="application",
                            resource_name=(
                                f"{self.application.application_id}/environment/{self.environment.environment_id}"
                                f"/configuration/{self.configuration.configuration_profile_id}"
                            ),
                        )
                    ],
                )
            ],
        )
        # No traffic before the function can read its policy.
        self.api.deployment_stage.node.add_dependency(read_policy)

        self.dashboard = self._add_dashboard(dashboard_name)
        self._acknowledge_nag_findings()

    # --- public surface ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The stage URL, ending in ``/`` (``{url}generate``, ``{url}health``)."""
        return self.api.url

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Allow ``grantee`` to call ``POST /generate`` on this stage (``execute-api:Invoke``), what IAM auth checks."""
        return self._generate_method.grant_execute(grantee)

    def metric(
        self,
        metric_name: str,
        *,
        statistic: str = "Sum",
        period: Duration = _PERIOD,
        dimensions: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> cloudwatch.Metric:
        """One of the router's metrics (names in ``lambdas/router/metric_names.py``) for this endpoint's service.

        Args:
            metric_name: the metric, e.g. ``metric_names.REQUESTS``.
            statistic: CloudWatch statistic. Default: - ``Sum``.
            period: aggregation period. Default: - 5 minutes.
            dimensions: dimensions besides ``service`` (``Route``, ``Model``, ``Region``, ``Outcome``), in a
                dimension set the router emits. Default: - ``service`` only.
            label: graph label. Default: - the metric name.
        """
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=metric_name,
            dimensions_map={m.SERVICE_DIMENSION: self.service_name, **(dimensions or {})},
            statistic=statistic,
            period=period,
            label=label,
        )

    def metric_requests(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Requests the router handled, every route and model."""
        return self.metric(m.REQUESTS, statistic=statistic, period=period)

    def metric_latency(self, *, statistic: str = "p99", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Router latency in milliseconds (p99 by default)."""
        return self.metric(m.LATENCY_MS, statistic=statistic, period=period)

    def metric_fallbacks(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Requests answered by a fallback model."""
        return self.metric(m.FALLBACKS, statistic=statistic, period=period)

    def metric_degraded_answers(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Requests answered with the policy's degraded message."""
        return self.metric(m.DEGRADED, statistic=statistic, period=period)

    def metric_cost(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Model cost in USD (token usage times the policy's prices)."""
        return self.metric(m.COST_USD, statistic=statistic, period=period)

    def metric_input_tokens(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Input tokens sent to models."""
        return self.metric(m.INPUT_TOKENS, statistic=statistic, period=period)

    def metric_output_tokens(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Output tokens received from models."""
        return self.metric(m.OUTPUT_TOKENS, statistic=statistic, period=period)

    def metric_failed_attempts(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Model calls that failed before a request was answered (retries and fallbacks)."""
        return self.metric(m.FAILED_ATTEMPTS, statistic=statistic, period=period)

    def metric_bad_requests(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Requests the router rejected with HTTP 4xx."""
        return self.metric(m.BAD_REQUESTS, statistic=statistic, period=period)

    def metric_budget_used_percent(
        self, *, statistic: str = "Maximum", period: Duration = _PERIOD
    ) -> cloudwatch.Metric:
        """The highest share (%) of any budget that applies to a request (global, tier, API key; day or month)."""
        return self.metric(m.BUDGET_USED_PERCENT, statistic=statistic, period=period)

    def metric_spend_today_usd(self, *, statistic: str = "Maximum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Today's global spend in USD, as the router last saw it in the live state (a gauge: use Maximum)."""
        return self.metric(m.SPEND_TODAY_USD, statistic=statistic, period=period)

    def metric_budget_exhausted(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Requests refused (HTTP 429) or degraded because a budget is spent."""
        return self.metric(m.BUDGET_EXHAUSTED, statistic=statistic, period=period)

    def metric_state_store_errors(self, *, statistic: str = "Sum", period: Duration = _PERIOD) -> cloudwatch.Metric:
        """Live-state table calls that failed or timed out (the router then routes on its instance's knowledge)."""
        return self.metric(m.STATE_STORE_ERRORS, statistic=statistic, period=period)

    # --- internals ------------------------------------------------------------------------------------

    def _add_state_table(
        self, router_role: iam.IRole, *, encryption_key: kms.IKey | None, removal_policy: cdk.RemovalPolicy
    ) -> dynamodb.Table:
        """The router's live state: one item per key, read in batches and updated atomically, expiring by TTL.

        ``Table`` rather than ``TableV2``: the state is regional on purpose (breakers and latency per region,
        spend counters updated with atomic ``ADD``), so a global table's replication, where the last writer
        wins, would be wrong for it; and ``Table`` synthesizes ``AWS::DynamoDB::Table``, the resource cdk-nag's
        point-in-time-recovery rule (AwsSolutions-DDB3) inspects.
        """
        table = dynamodb.Table(
            self,
            "StateTable",
            partition_key=dynamodb.Attribute(name=STATE_TABLE_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=STATE_TABLE_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=(
                dynamodb.TableEncryption.CUSTOMER_MANAGED
                if encryption_key is not None
                else dynamodb.TableEncryption.AWS_MANAGED
            ),
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )
        # What the router's state store calls, nothing more: no Scan, Query, PutItem or DeleteItem, and no
        # index ARNs (the table has none). The generic grant adds no key permissions: those are explicit below.
        table.grant(router_role, "dynamodb:BatchGetItem", "dynamodb:UpdateItem")
        if encryption_key is not None:
            # The key actions aws-cdk-lib's own grant_read_write_data gives a reader-writer of a table on its key.
            encryption_key.grant(
                router_role, "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"
            )
        return table

    def _method_authorization(self) -> dict[str, Any]:
        mode = self.auth.mode
        if mode is AuthMode.API_KEY:
            return {"api_key_required": True, "authorization_type": apigw.AuthorizationType.NONE}
        if mode is AuthMode.IAM:
            return {"authorization_type": apigw.AuthorizationType.IAM}
        if mode is AuthMode.COGNITO:
            assert self.auth.user_pool is not None  # checked in _validate_props
            authorizer = apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[self.auth.user_pool])
            return {"authorization_type": apigw.AuthorizationType.COGNITO, "authorizer": authorizer}
        return {"authorization_type": apigw.AuthorizationType.NONE}

    def _alarm(self, alarm_id: str, name: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        if self._alarm_topic is not None:
            alarm.add_alarm_action(cw_actions.SnsAction(self._alarm_topic))
            alarm.add_ok_action(cw_actions.SnsAction(self._alarm_topic))
        self.alarms[name] = alarm

    def _add_alarms(
        self,
        *,
        api_5xx_rate_percent: float | None,
        api_p99_latency: Duration | None,
        lambda_errors: int | None,
        lambda_throttles: int | None,
        fallback_rate_percent: float | None,
        degraded_answers: int | None,
        budget_used_percent: float | None,
        state_store_errors: int | None,
    ) -> None:
        if api_5xx_rate_percent is not None:
            rate = cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * errors / requests, 0)",
                using_metrics={
                    "errors": self.api.metric_server_error(period=_PERIOD, statistic="Sum"),
                    "requests": self.api.metric_count(period=_PERIOD, statistic="SampleCount"),
                },
                period=_PERIOD,
                label="API 5XX rate (%)",
            )
            self._alarm(
                "Api5xxRateAlarm",
                "Api5xxRate",
                rate,
                api_5xx_rate_percent,
                f"API 5XX answers >= {api_5xx_rate_percent}% of requests in 5 minutes",
            )
        if api_p99_latency is not None:
            threshold_ms = api_p99_latency.to_milliseconds()
            self._alarm(
                "ApiLatencyP99Alarm",
                "ApiLatencyP99",
                self.api.metric_latency(period=_PERIOD, statistic="p99"),
                threshold_ms,
                f"API p99 latency >= {threshold_ms} ms over 5 minutes",
            )
        if lambda_errors is not None:
            self._alarm(
                "LambdaErrorsAlarm",
                "LambdaErrors",
                self.router_function.metric_errors(period=_PERIOD, statistic="Sum"),
                lambda_errors,
                f"router function errors >= {lambda_errors} in 5 minutes",
            )
        if lambda_throttles is not None:
            self._alarm(
                "LambdaThrottlesAlarm",
                "LambdaThrottles",
                self.router_function.metric_throttles(period=_PERIOD, statistic="Sum"),
                lambda_throttles,
                f"router function throttles >= {lambda_throttles} in 5 minutes",
            )
        if fallback_rate_percent is not None:
            rate = cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * fallbacks / requests, 0)",
                using_metrics={"fallbacks": self.metric_fallbacks(), "requests": self.metric_requests()},
                period=_PERIOD,
                label="fallback rate (%)",
            )
            self._alarm(
                "FallbackRateAlarm",
                "FallbackRate",
                rate,
                fallback_rate_percent,
                f"fallback answers >= {fallback_rate_percent}% of requests in 5 minutes",
            )
        if degraded_answers is not None:
            self._alarm(
                "DegradedAnswersAlarm",
                "DegradedAnswers",
                self.metric_degraded_answers(),
                degraded_answers,
                f"degraded answers >= {degraded_answers} in 5 minutes",
            )
        # Budget and state-store alarms notify only: they are not in _ROLLBACK_ALARMS.
        if budget_used_percent is not None and self.policy.budget is not None:
            self._alarm(
                "BudgetUsedPercentAlarm",
                "BudgetUsedPercent",
                self.metric_budget_used_percent(),
                budget_used_percent,
                f"budget used >= {budget_used_percent}% (the highest share of any budget) over 5 minutes",
            )
        if state_store_errors is not None:
            self._alarm(
                "StateStoreErrorsAlarm",
                "StateStoreErrors",
                self.metric_state_store_errors(),
                state_store_errors,
                f"live-state table errors >= {state_store_errors} in 5 minutes",
            )

    def _search(self, metric_name: str, dimensions: tuple[str, ...], statistic: str) -> cloudwatch.MathExpression:
        """One line per value of ``dimensions`` (e.g. per model), from the dimension set the router emits."""
        schema = ",".join((self.metrics_namespace, m.SERVICE_DIMENSION, *dimensions))
        query = (
            f'SEARCH(\'{{{schema}}} MetricName="{metric_name}" {m.SERVICE_DIMENSION}="{self.service_name}"\', '
            f"'{statistic}', {int(_PERIOD.to_seconds())})"
        )
        return cloudwatch.MathExpression(expression=query, using_metrics={}, label="", period=_PERIOD)

    def _add_dashboard(self, dashboard_name: str | None) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        wide, half = 24, 12
        by_route, by_model, by_outcome = (m.ROUTE_DIMENSION,), (m.MODEL_DIMENSION,), (m.OUTCOME_DIMENSION,)
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests by route", width=half, left=[self._search(m.REQUESTS, by_route, "Sum")]
            ),
            cloudwatch.GraphWidget(
                title="Requests by model", width=half, left=[self._search(m.REQUESTS, by_model, "Sum")]
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Latency p50 by model (ms)", width=half, left=[self._search(m.LATENCY_MS, by_model, "p50")]
            ),
            cloudwatch.GraphWidget(
                title="Latency p99 by model (ms)", width=half, left=[self._search(m.LATENCY_MS, by_model, "p99")]
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Tokens by model",
                width=half,
                left=[self._search(m.INPUT_TOKENS, by_model, "Sum"), self._search(m.OUTPUT_TOKENS, by_model, "Sum")],
            ),
            cloudwatch.GraphWidget(
                title="Cost by model (USD)", width=half, left=[self._search(m.COST_USD, by_model, "Sum")]
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Fallbacks and degraded answers over time",
                width=half,
                left=[
                    self.metric(m.FALLBACKS, label="fallbacks"),
                    self.metric(m.DEGRADED, label="degraded answers"),
                    self.metric(m.FAILED_ATTEMPTS, label="failed model calls"),
                    self.metric(m.BAD_REQUESTS, label="bad requests"),
                ],
            ),
            cloudwatch.GraphWidget(title="Outcomes", width=half, left=[self._search(m.REQUESTS, by_outcome, "Sum")]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Failed model calls by model, region and class",
                width=half,
                left=[
                    self._search(
                        m.MODEL_CALL_FAILURES,
                        (m.MODEL_DIMENSION, m.REGION_DIMENSION, m.FAILURE_CLASS_DIMENSION),
                        "Sum",
                    )
                ],
            ),
            cloudwatch.GraphWidget(
                title="API requests, 5XX and p99 latency",
                width=half,
                left=[self.api.metric_count(period=_PERIOD), self.api.metric_server_error(period=_PERIOD)],
                right=[self.api.metric_latency(period=_PERIOD, statistic="p99")],
            ),
        )
        self._add_budget_and_state_row(dashboard)
        if self.alarms:
            dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(title="Alarms", width=wide, alarms=list(self.alarms.values()))
            )
        return dashboard

    def _add_budget_and_state_row(self, dashboard: cloudwatch.Dashboard) -> None:
        """Spend against the policy's daily budget, budget use against its modes, breakers, state-store errors."""
        half = 12
        budget = self.policy.budget
        daily_usd = budget.overall.daily_usd if budget is not None else None
        spend_lines = (
            [cloudwatch.HorizontalAnnotation(value=daily_usd, label=f"daily budget {daily_usd:g} USD")]
            if daily_usd is not None
            else []
        )
        mode_lines = [
            cloudwatch.HorizontalAnnotation(
                value=mode.at_percent,
                label=f"{mode.at_percent:g}%: "
                + (f"max tier {mode.max_model_tier}" if mode.max_model_tier is not None else str(mode.action)),
            )
            for mode in (budget.modes if budget is not None else ())
        ]
        circuits = [
            self.metric(
                m.CIRCUITS_OPENED,
                dimensions={m.MODEL_DIMENSION: spec.model_id, m.REGION_DIMENSION: region},
                label=f"{key} {region}",
            )
            for key, spec in self.policy.models.items()
            for region in spec.regions
        ]
        dashboard.add_widgets(cloudwatch.TextWidget(markdown="## Budget and live state", width=2 * half, height=1))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Spend today (USD)",
                width=half,
                left=[self.metric_spend_today_usd().with_(label="spend today")],
                left_annotations=spend_lines,
                left_y_axis=cloudwatch.YAxisProps(min=0),
            ),
            cloudwatch.GraphWidget(
                title="Budget used (%) and the policy's budget modes",
                width=half,
                left=[self.metric_budget_used_percent().with_(label="budget used")],
                right=[self.metric_budget_exhausted().with_(label="requests refused or degraded by budget")],
                left_annotations=mode_lines,
                left_y_axis=cloudwatch.YAxisProps(min=0),
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Circuits opened by model and region", width=half, left=circuits),
            cloudwatch.GraphWidget(
                title="Live-state store errors",
                width=half,
                left=[self.metric_state_store_errors().with_(label="errors")],
            ),
        )

    def _acknowledge_nag_findings(self) -> None:
        """cdk-nag AwsSolutions findings that are decisions, each on the narrowest construct, with the reason."""
        validations = cdk.Validations.of
        if self.environment.monitors:
            validations(self.environment).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="The role AppConfig assumes to watch the rollback alarms needs cloudwatch:DescribeAlarms, "
                    "an action that supports no resource-level permissions.",
                )
            )
        validations(self.api).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-APIG3",
                reason="WAF is an account-level choice (a shared web ACL, its rules and cost): associate one with "
                "the stage (wafv2.CfnWebACLAssociation on api.deployment_stage.stage_arn). The stage throttles "
                "and POST /generate requires authorization unless auth=none is chosen explicitly.",
            )
        )
        if self.api.node.try_find_child("CloudWatchRole") is not None:
            validations(self.api).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]",
                    reason="The account-wide API Gateway CloudWatch role uses the AWS-managed "
                    "AmazonAPIGatewayPushToCloudWatchLogs policy, the documented way to enable execution logging.",
                )
            )
        open_for_health_checks = (
            "GET /health is open on purpose: load balancer and Route 53 health checks carry no credentials, "
            "and it returns no model output."
        )
        validations(self._health_method).acknowledge(
            cdk.Acknowledgment(id="AwsSolutions-APIG4", reason=open_for_health_checks),
            cdk.Acknowledgment(id="AwsSolutions-COG4", reason=open_for_health_checks),
        )
        mode = self.auth.mode
        if mode is AuthMode.API_KEY:
            reason = (
                "POST /generate requires an API key (x-api-key) bound to a usage plan with throttling: the "
                "construct's default authorization, chosen in the auth prop."
            )
            validations(self._generate_method).acknowledge(
                cdk.Acknowledgment(id="AwsSolutions-APIG4", reason=reason),
                cdk.Acknowledgment(id="AwsSolutions-COG4", reason=reason),
            )
        elif mode is AuthMode.IAM:
            validations(self._generate_method).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-COG4",
                    reason="POST /generate is authorized by IAM (SigV4) as chosen in the auth prop; callers are "
                    "allowed with grant_invoke.",
                )
            )
        elif mode is AuthMode.NONE:
            reason = (
                "POST /generate is open because the app chose EndpointAuthorization.none() explicitly (for "
                "example behind a private network or a gateway that authenticates); never the default."
            )
            validations(self._generate_method).acknowledge(
                cdk.Acknowledgment(id="AwsSolutions-APIG4", reason=reason),
                cdk.Acknowledgment(id="AwsSolutions-COG4", reason=reason),
            )
        validations(self.router_function).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-L1",
                reason="Python 3.13 is pinned to match the Powertools layer release the function uses "
                f"({POWERTOOLS_VERSION}); the runtime and the layer are upgraded together.",
            )
        )


def _load_policy_document(policy: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(policy, Mapping):
        copied: dict[str, Any] = json.loads(json.dumps(policy))  # a plain, JSON-clean copy
        return copied
    path = Path(policy)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read policy file '{path}': {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"policy file '{path}' is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise ValueError(f"policy file '{path}' must hold a JSON object")
    return document


def _default_service_name(construct: Construct) -> str:
    """The construct's path as a metric dimension value: ``MyStack/Llm`` -> ``MyStack-Llm`` (at most 64 chars)."""
    path = "-".join(scope.node.id for scope in construct.node.scopes if scope.node.id)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", path).strip("-") or "routed-bedrock"
    if len(name) <= _NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _NAME_MAX_LENGTH - 9]}-{digest}"


def _seconds_text(duration: Duration) -> str:
    """A duration as decimal seconds for an environment variable: ``2``, ``0.5`` (a token stays a token)."""
    if duration.is_unresolved():
        return cdk.Tokenization.stringify_number(duration.to_seconds())
    return f"{duration.to_milliseconds() / 1000:g}"


def _validate_props(
    *,
    auth: EndpointAuthorization,
    service_name: str,
    metrics_namespace: str,
    api_stage_name: str,
    api_throttle_rate_limit: float,
    api_throttle_burst_limit: int,
    router_memory_size_mib: int,
    router_timeout: Duration,
    router_reserved_concurrency: int | None,
    router_max_body_size: Size | None,
    policy_max_age: Duration,
    state_cache_ttl: Duration,
    alarm_api_5xx_rate_percent: float | None,
    alarm_api_p99_latency: Duration | None,
    alarm_fallback_rate_percent: float | None,
    alarm_lambda_errors: int | None,
    alarm_lambda_throttles: int | None,
    alarm_degraded_answers: int | None,
    alarm_budget_used_percent: float | None,
    alarm_state_store_errors: int | None,
) -> None:
    """Raise ``ValueError`` naming the first bad prop and its value; unresolved tokens are left to deploy time."""

    def resolved(value: object) -> bool:
        return not cdk.Token.is_unresolved(value)

    if not isinstance(auth, EndpointAuthorization):
        raise ValueError(
            f"auth must be an EndpointAuthorization (api_key(), iam(), cognito(user_pool), none()), got {auth!r}"
        )
    if auth.mode is AuthMode.COGNITO and auth.user_pool is None:
        raise ValueError("auth 'cognito' needs a user pool: EndpointAuthorization.cognito(user_pool)")
    if resolved(service_name) and not _SERVICE_NAME.match(service_name):
        raise ValueError(f"service_name '{service_name}' must be 1-64 letters, digits, '-' or '_'")
    if resolved(metrics_namespace) and not 1 <= len(metrics_namespace) <= 255:
        raise ValueError(f"metrics_namespace '{metrics_namespace}' must be 1-255 characters")
    if resolved(api_stage_name) and not _STAGE_NAME.match(api_stage_name):
        raise ValueError(f"api_stage_name '{api_stage_name}' must be 1-128 letters, digits or '_'")
    if resolved(api_throttle_rate_limit) and api_throttle_rate_limit <= 0:
        raise ValueError(f"api_throttle_rate_limit must be positive, got {api_throttle_rate_limit}")
    if resolved(api_throttle_burst_limit) and api_throttle_burst_limit < 1:
        raise ValueError(f"api_throttle_burst_limit must be at least 1, got {api_throttle_burst_limit}")
    if resolved(router_memory_size_mib) and not 128 <= router_memory_size_mib <= 10240:
        raise ValueError(f"router_memory_size_mib must be 128-10240, got {router_memory_size_mib}")
    if not router_timeout.is_unresolved() and not 3 <= router_timeout.to_seconds() <= 900:
        raise ValueError(f"router_timeout must be 3 s to 15 min, got {router_timeout.to_seconds()} s")
    if (
        router_reserved_concurrency is not None
        and resolved(router_reserved_concurrency)
        and router_reserved_concurrency < 1
    ):
        raise ValueError(f"router_reserved_concurrency must be at least 1, got {router_reserved_concurrency}")
    if router_max_body_size is not None and not router_max_body_size.is_unresolved():
        size_bytes = router_max_body_size.to_bytes()
        if not 1 <= size_bytes <= _LAMBDA_MAX_PAYLOAD_BYTES:
            raise ValueError(f"router_max_body_size must be 1 byte to 6 MiB (Lambda's limit), got {size_bytes} bytes")
    if not policy_max_age.is_unresolved() and not 15 <= policy_max_age.to_seconds() <= 86400:
        raise ValueError(
            f"policy_max_age must be 15 s to 24 h (AppConfig's polling), got {policy_max_age.to_seconds()} s"
        )
    if not state_cache_ttl.is_unresolved() and not 0 < state_cache_ttl.to_milliseconds() <= _MAX_STATE_CACHE_TTL_MS:
        raise ValueError(
            f"state_cache_ttl must be above 0 s and at most 60 s, got {state_cache_ttl.to_milliseconds() / 1000:g} s"
        )
    for name, percent in (
        ("alarm_api_5xx_rate_percent", alarm_api_5xx_rate_percent),
        ("alarm_fallback_rate_percent", alarm_fallback_rate_percent),
    ):
        if percent is not None and not 0 < percent <= 100:
            raise ValueError(f"{name} must be in (0, 100], got {percent}")
    budget_percent = alarm_budget_used_percent
    if budget_percent is not None and resolved(budget_percent) and not 0 < budget_percent <= _MAX_BUDGET_USED_PERCENT:
        raise ValueError(f"alarm_budget_used_percent must be in (0, 1000], got {budget_percent}")
    latency = alarm_api_p99_latency
    if latency is not None and not latency.is_unresolved() and latency.to_milliseconds() <= 0:
        raise ValueError(f"alarm_api_p99_latency must be positive, got {latency.to_milliseconds()} ms")
    for name, count in (
        ("alarm_lambda_errors", alarm_lambda_errors),
        ("alarm_lambda_throttles", alarm_lambda_throttles),
        ("alarm_degraded_answers", alarm_degraded_answers),
        ("alarm_state_store_errors", alarm_state_store_errors),
    ):
        if count is not None and resolved(count) and count < 1:
            raise ValueError(f"{name} must be at least 1, got {count}")
