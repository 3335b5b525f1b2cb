"""``RoutedBedrockEndpoint``: API Gateway + the router Lambda + the routing policy in AppConfig + alarms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

import lambdas
from lambdas.router import metric_names as m
from lambdas.router.policy import Policy, PolicyError, compile_policy, document_digest

from ._bedrock_arns import model_invoke_arns
from ._request_model import generate_request_schema

LAMBDAS_DIR = Path(lambdas.__file__).resolve().parent
ROUTER_HANDLER = "router.handler.lambda_handler"
POWERTOOLS_VERSION = "3.37.0"  # keep equal to aws-lambda-powertools in requirements.txt
ROUTER_RUNTIME = lambda_.Runtime.PYTHON_3_13
_PERIOD = Duration.minutes(5)
_DEFAULT_P99_LATENCY_ALARM = Duration.seconds(20)


class AuthMode(Enum):
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
        """SigV4-signed requests; grant callers with ``RoutedBedrockEndpoint.grant_invoke``."""
        return cls(mode=AuthMode.IAM)

    @classmethod
    def cognito(cls, user_pool: cognito.IUserPool) -> EndpointAuthorization:
        """A Cognito user-pool authorizer (ID token in ``Authorization``)."""
        return cls(mode=AuthMode.COGNITO, user_pool=user_pool)

    @classmethod
    def none(cls) -> EndpointAuthorization:
        """No authentication: anyone who can reach the URL can spend your Bedrock budget. Explicit opt-in."""
        return cls(mode=AuthMode.NONE)


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


class RoutedBedrockEndpoint(Construct):
    """A routed Amazon Bedrock endpoint: one API in front of the models a routing policy names.

    Creates an API Gateway REST API (``POST /generate``, ``GET /health``) backed by the router Lambda
    (Powertools; Python 3.13 on arm64), the routing policy as an AWS AppConfig hosted configuration
    (validated by the policy JSON schema, rolled out gradually and rolled back by alarms), IAM scoped to
    the policy's models and regions, CloudWatch alarms and a dashboard of routing decisions.

    Example::

        from cdk_app import EndpointAuthorization, RoutedBedrockEndpoint

        llm = RoutedBedrockEndpoint(
            self, "Llm",
            policy="policies/routing.json",          # or a dict
            auth=EndpointAuthorization.api_key(),    # the default
            alarm_topic=ops_topic,
        )
        CfnOutput(self, "LlmUrl", value=llm.url)

    Args:
        scope: parent construct.
        id: construct id.
        policy: the routing policy, a dict or the path of a JSON file. Validated at synth with the schema
            the router and AppConfig use; a bad policy raises ``ValueError`` naming the field and value.
        auth: how callers authenticate to ``POST /generate``. Default: - an API key and a usage plan
            (``api_key``); ``/health`` stays open. Use ``EndpointAuthorization.none()`` to opt out explicitly.
        service_name: Powertools service name, the ``service`` dimension of every metric.
            Default: - ``routed-bedrock``.
        metrics_namespace: CloudWatch namespace of the router's metrics. Default: - ``RoutedBedrock``.
        api_stage_name: the API stage. Default: - ``prod``.
        api_throttle_rate_limit: steady-state requests per second for the stage (and usage plan).
            Default: - 50.
        api_throttle_burst_limit: burst requests for the stage (and usage plan). Default: - 100.
        api_execution_logging: API Gateway execution logs (INFO) besides access logs; needs the account's
            API Gateway CloudWatch role, which this construct creates. Default: - true.
        router_architecture: the function's CPU architecture. Default: - ``Architecture.ARM_64``.
        router_memory_size_mib: function memory. Default: - 1024 MiB.
        router_timeout: function timeout; the router keeps 0.5 s of it to answer. Default: - 29 seconds
            (API Gateway's default integration timeout).
        router_reserved_concurrency: reserved concurrent executions. Default: - none (unreserved).
        router_log_retention: retention of the function's and the API's log groups.
            Default: - ``RetentionDays.ONE_MONTH``.
        policy_max_age: how long the router trusts a fetched policy before polling AppConfig again.
            Default: - 45 seconds.
        policy_deployment_strategy: how a new policy version rolls out. Default: - AppConfig's predefined
            ``Canary10Percent20Minutes``; ``DeploymentStrategyId.ALL_AT_ONCE`` suits development stacks.
        alarm_topic: SNS topic for every alarm's alarm and OK actions. Default: - alarms without actions.
        alarm_api_5xx_rate_percent: alarm when 5XX answers exceed this share of API requests over 5 minutes;
            None disables it. Default: - 1 (%).
        alarm_api_p99_latency: alarm when the API's p99 latency exceeds this over 5 minutes; None disables.
            Default: - 20 seconds.
        alarm_lambda_errors: alarm when the function's errors over 5 minutes reach this; None disables.
            Default: - 1.
        alarm_lambda_throttles: alarm when the function's throttles over 5 minutes reach this; None
            disables. Default: - 1.
        alarm_fallback_rate_percent: alarm when fallback answers exceed this share of requests over
            5 minutes; None disables. Default: - 10 (%).
        alarm_degraded_answers: alarm when degraded answers over 5 minutes reach this; None disables.
            Default: - 1.
        dashboard_name: name of the CloudWatch dashboard. Default: - generated by CloudFormation.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        policy: Mapping[str, Any] | str | Path,
        auth: EndpointAuthorization | None = None,
        service_name: str = "routed-bedrock",
        metrics_namespace: str = m.NAMESPACE,
        api_stage_name: str = "prod",
        api_throttle_rate_limit: float = 50,
        api_throttle_burst_limit: int = 100,
        api_execution_logging: bool = True,
        router_architecture: lambda_.Architecture | None = None,
        router_memory_size_mib: int = 1024,
        router_timeout: Duration | None = None,
        router_reserved_concurrency: int | None = None,
        router_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        policy_max_age: Duration | None = None,
        policy_deployment_strategy: appconfig.IDeploymentStrategy | None = None,
        alarm_topic: sns.ITopic | None = None,
        alarm_api_5xx_rate_percent: float | None = 1.0,
        alarm_api_p99_latency: Duration | None = _DEFAULT_P99_LATENCY_ALARM,
        alarm_lambda_errors: int | None = 1,
        alarm_lambda_throttles: int | None = 1,
        alarm_fallback_rate_percent: float | None = 10.0,
        alarm_degraded_answers: int | None = 1,
        dashboard_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.auth = auth or EndpointAuthorization.api_key()
        router_architecture = router_architecture or lambda_.Architecture.ARM_64
        router_timeout = router_timeout or Duration.seconds(29)
        policy_max_age = policy_max_age or Duration.seconds(45)
        _validate_props(
            auth=self.auth,
            service_name=service_name,
            api_throttle_rate_limit=api_throttle_rate_limit,
            api_throttle_burst_limit=api_throttle_burst_limit,
            router_memory_size_mib=router_memory_size_mib,
            router_timeout=router_timeout,
            router_reserved_concurrency=router_reserved_concurrency,
            alarm_api_5xx_rate_percent=alarm_api_5xx_rate_percent,
            alarm_fallback_rate_percent=alarm_fallback_rate_percent,
            alarm_lambda_errors=alarm_lambda_errors,
            alarm_lambda_throttles=alarm_lambda_throttles,
            alarm_degraded_answers=alarm_degraded_answers,
        )
        document = _load_policy_document(policy)
        try:
            self.policy: Policy = compile_policy(document)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        self.service_name = service_name
        self.metrics_namespace = metrics_namespace
        policy_text = json.dumps(document, indent=2, sort_keys=False)

        # --- alarms on the router's own metrics: they also guard policy rollouts ------------------------
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarm_topic = alarm_topic
        self._add_policy_alarms(
            fallback_rate_percent=alarm_fallback_rate_percent, degraded_answers=alarm_degraded_answers
        )

        # --- the routing policy in AppConfig ------------------------------------------------------------
        self.application = appconfig.Application(self, "PolicyApplication", description="Routed Bedrock policy")
        # A bad policy version shows up as degraded answers or fallbacks: either alarm rolls the AppConfig
        # deployment back. (Alarms on the function or the API cannot be monitors: the function reads this
        # environment, so CloudFormation would see a dependency cycle.)
        self.environment = appconfig.Environment(
            self,
            "PolicyEnvironment",
            application=self.application,
            monitors=[appconfig.Monitor.from_cloud_watch_alarm(alarm) for alarm in self.alarms.values()],
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
            content=appconfig.ConfigurationContent.from_inline_json(policy_text),
            validators=[appconfig.JsonSchemaValidator.from_inline(_policy_schema_text())],
            deployment_strategy=self.deployment_strategy,
            deploy_to=[self.environment],
            description=f"routing policy {self.policy.version}",
        )

        # --- the router function -------------------------------------------------------------------------
        self.router_log_group = logs.LogGroup(self, "RouterLogs", retention=router_log_retention)
        arch = router_architecture.name  # "arm64" or "x86_64", as in the parameter path
        powertools_arn = ssm.StringParameter.value_for_string_parameter(
            self, f"/aws/service/powertools/python/{arch}/{ROUTER_RUNTIME.name}/{POWERTOOLS_VERSION}"
        )
        self.router_function = lambda_.Function(
            self,
            "Router",
            description="Routes each request to a Bedrock model per the routing policy",
            runtime=ROUTER_RUNTIME,
            architecture=router_architecture,
            handler=ROUTER_HANDLER,
            code=lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=["__pycache__", "*.pyc", "*.pyo"]),
            layers=[lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", powertools_arn)],
            memory_size=router_memory_size_mib,
            timeout=router_timeout,
            reserved_concurrent_executions=router_reserved_concurrency,
            log_group=self.router_log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "APPCONFIG_APPLICATION": self.application.application_id,
                "APPCONFIG_ENVIRONMENT": self.environment.environment_id,
                "APPCONFIG_PROFILE": self.configuration.configuration_profile_id,
                "ROUTER_POLICY_MAX_AGE_SECONDS": str(int(policy_max_age.to_seconds())),
                "ROUTER_POLICY_SHA256": document_digest(policy_text),
                "POWERTOOLS_SERVICE_NAME": service_name,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        self.router_function.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokePolicyModels",
                actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                resources=model_invoke_arns(self.policy),
            )
        )
        # Read only its own profile (Environment.grant_read_config would allow every profile: configuration/*).
        self.router_function.add_to_role_policy(
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
        )

        # --- the API --------------------------------------------------------------------------------------
        self.api_access_logs = logs.LogGroup(self, "ApiAccessLogs", retention=router_log_retention)
        self.api = apigw.RestApi(
            self,
            "Api",
            description="Routed Bedrock endpoint",
            cloud_watch_role=api_execution_logging,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.DESTROY,
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
        method_auth = self._method_authorization()
        body_model = self.api.add_model(
            "GenerateRequest",
            content_type="application/json",
            model_name="GenerateRequest",
            schema=generate_request_schema(),
        )
        body_validator = self.api.add_request_validator(
            "RequestValidator", validate_request_body=True, validate_request_parameters=True
        )
        self.api.root.add_resource("generate").add_method(
            "POST",
            integration,
            request_models={"application/json": body_model},
            request_validator=body_validator,
            **method_auth,
        )
        self.api.root.add_resource("health").add_method(
            "GET", integration, authorization_type=apigw.AuthorizationType.NONE
        )
        if self.auth.mode is AuthMode.API_KEY:
            plan = self.api.add_usage_plan(
                "UsagePlan",
                throttle=apigw.ThrottleSettings(
                    rate_limit=api_throttle_rate_limit, burst_limit=api_throttle_burst_limit
                ),
            )
            plan.add_api_stage(stage=self.api.deployment_stage)
            self.api_key: apigw.IApiKey | None = self.api.add_api_key("ApiKey")
            plan.add_api_key(self.api_key)
        else:
            self.api_key = None

        # --- alarms on the API and the function, and the dashboard ---------------------------------------
        self._add_infrastructure_alarms(
            api_5xx_rate_percent=alarm_api_5xx_rate_percent,
            api_p99_latency=alarm_api_p99_latency,
            lambda_errors=alarm_lambda_errors,
            lambda_throttles=alarm_lambda_throttles,
        )
        self.dashboard = self._add_dashboard(dashboard_name)
        self._acknowledge_nag_findings()

    # --- public surface ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The stage URL, ending in ``/`` (``{url}generate``, ``{url}health``)."""
        return self.api.url

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Allow ``grantee`` to call the API's methods (``execute-api:Invoke``); what IAM auth checks."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["execute-api:Invoke"],
            resource_arns=[self.api.arn_for_execute_api()],
        )

    def metric(
        self,
        metric_name: str,
        *,
        statistic: str = "Sum",
        period: Duration = _PERIOD,
        dimensions: Mapping[str, str] | None = None,
    ) -> cloudwatch.Metric:
        """One of the router's metrics (names in ``lambdas/router/metric_names.py``), for this service."""
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=metric_name,
            dimensions_map={m.SERVICE_DIMENSION: self.service_name, **(dimensions or {})},
            statistic=statistic,
            period=period,
        )

    def metric_requests(self, **kwargs: Any) -> cloudwatch.Metric:
        """Requests answered (200), all routes and models."""
        return self.metric(m.REQUESTS, **kwargs)

    def metric_latency(self, *, statistic: str = "p99", **kwargs: Any) -> cloudwatch.Metric:
        """Router latency in milliseconds (p99 by default)."""
        return self.metric(m.LATENCY_MS, statistic=statistic, **kwargs)

    def metric_fallbacks(self, **kwargs: Any) -> cloudwatch.Metric:
        """Requests answered by a fallback model."""
        return self.metric(m.FALLBACKS, **kwargs)

    def metric_degraded_answers(self, **kwargs: Any) -> cloudwatch.Metric:
        """Requests answered with the policy's degraded message."""
        return self.metric(m.DEGRADED, **kwargs)

    def metric_cost(self, **kwargs: Any) -> cloudwatch.Metric:
        """Model cost in USD (usage x the policy's prices)."""
        return self.metric(m.COST_USD, **kwargs)

    def metric_input_tokens(self, **kwargs: Any) -> cloudwatch.Metric:
        return self.metric(m.INPUT_TOKENS, **kwargs)

    def metric_output_tokens(self, **kwargs: Any) -> cloudwatch.Metric:
        return self.metric(m.OUTPUT_TOKENS, **kwargs)

    def metric_bad_requests(self, **kwargs: Any) -> cloudwatch.Metric:
        """Requests the router rejected with HTTP 400."""
        return self.metric(m.BAD_REQUESTS, **kwargs)

    # --- internals ------------------------------------------------------------------------------------

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

    def _add_alarm(self, name: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            f"{name}Alarm",
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

    def _add_policy_alarms(self, *, fallback_rate_percent: float | None, degraded_answers: int | None) -> None:
        if fallback_rate_percent is not None:
            rate = cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * fallbacks / requests, 0)",
                using_metrics={"fallbacks": self.metric_fallbacks(), "requests": self.metric_requests()},
                period=_PERIOD,
                label="fallback rate (%)",
            )
            self._add_alarm(
                "FallbackRate", rate, fallback_rate_percent, f"fallback answers >= {fallback_rate_percent}% of requests"
            )
        if degraded_answers is not None:
            self._add_alarm(
                "DegradedAnswers",
                self.metric_degraded_answers(),
                degraded_answers,
                f"degraded answers >= {degraded_answers} in 5 minutes",
            )

    def _add_infrastructure_alarms(
        self,
        *,
        api_5xx_rate_percent: float | None,
        api_p99_latency: Duration | None,
        lambda_errors: int | None,
        lambda_throttles: int | None,
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
            self._add_alarm(
                "Api5xxRate", rate, api_5xx_rate_percent, f"API 5XX answers >= {api_5xx_rate_percent}% of requests"
            )
        if api_p99_latency is not None:
            self._add_alarm(
                "ApiLatencyP99",
                self.api.metric_latency(period=_PERIOD, statistic="p99"),
                api_p99_latency.to_milliseconds(),
                f"API p99 latency >= {api_p99_latency.to_milliseconds()} ms",
            )
        if lambda_errors is not None:
            self._add_alarm(
                "LambdaErrors",
                self.router_function.metric_errors(period=_PERIOD),
                lambda_errors,
                f"router function errors >= {lambda_errors} in 5 minutes",
            )
        if lambda_throttles is not None:
            self._add_alarm(
                "LambdaThrottles",
                self.router_function.metric_throttles(period=_PERIOD),
                lambda_throttles,
                f"router function throttles >= {lambda_throttles} in 5 minutes",
            )

    def _search(self, metric_name: str, dimension: str, statistic: str, label: str) -> cloudwatch.MathExpression:
        query = (
            f"SEARCH('{{{self.metrics_namespace},{m.SERVICE_DIMENSION},{dimension}}} "
            f'MetricName="{metric_name}" {m.SERVICE_DIMENSION}="{self.service_name}"\', \'{statistic}\', 300)'
        )
        return cloudwatch.MathExpression(expression=query, using_metrics={}, label=label, period=_PERIOD)

    def _add_dashboard(self, dashboard_name: str | None) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        wide, half = 24, 12
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests by route", width=half, left=[self._search(m.REQUESTS, m.ROUTE_DIMENSION, "Sum", "")]
            ),
            cloudwatch.GraphWidget(
                title="Requests by model", width=half, left=[self._search(m.REQUESTS, m.MODEL_DIMENSION, "Sum", "")]
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Latency p50 by model (ms)",
                width=half,
                left=[self._search(m.LATENCY_MS, m.MODEL_DIMENSION, "p50", "")],
            ),
            cloudwatch.GraphWidget(
                title="Latency p99 by model (ms)",
                width=half,
                left=[self._search(m.LATENCY_MS, m.MODEL_DIMENSION, "p99", "")],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Tokens by model",
                width=half,
                left=[
                    self._search(m.INPUT_TOKENS, m.MODEL_DIMENSION, "Sum", ""),
                    self._search(m.OUTPUT_TOKENS, m.MODEL_DIMENSION, "Sum", ""),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Cost by model (USD)", width=half, left=[self._search(m.COST_USD, m.MODEL_DIMENSION, "Sum", "")]
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Fallbacks, degraded answers and bad requests",
                width=wide,
                left=[self.metric_fallbacks(), self.metric_degraded_answers(), self.metric_bad_requests()],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Outcomes", width=half, left=[self._search(m.REQUESTS, m.OUTCOME_DIMENSION, "Sum", "")]
            ),
            cloudwatch.GraphWidget(
                title="Failed model calls by model, region and class",
                width=half,
                left=[
                    self._search(
                        m.MODEL_CALL_FAILURES,
                        f"{m.MODEL_DIMENSION},{m.REGION_DIMENSION},{m.FAILURE_CLASS_DIMENSION}",
                        "Sum",
                        "",
                    )
                ],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", width=wide, alarms=list(self.alarms.values())),
        )
        return dashboard

    def _acknowledge_nag_findings(self) -> None:
        acknowledge = cdk.Validations.of
        if self.alarms:
            acknowledge(self.environment).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="The role AppConfig assumes to watch the rollback alarms needs cloudwatch:DescribeAlarms, "
                    "which supports no resource-level permissions.",
                )
            )
        acknowledge(self.api).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-APIG3",
                reason="WAF is an account-level choice (a shared web ACL, its cost and rules); attach one with "
                "wafv2.CfnWebACLAssociation on api.deployment_stage. The stage throttles and, by default, "
                "requires an API key.",
            ),
            cdk.Acknowledgment(
                id="AwsSolutions-APIG4",
                reason="GET /health is open on purpose (load balancer and Route 53 health checks carry no "
                "credentials); POST /generate uses the authorization chosen in the auth prop.",
            ),
            cdk.Acknowledgment(
                id="AwsSolutions-COG4",
                reason="Cognito is one of the auth options; the default authorizes POST /generate with an API "
                "key and usage plan, IAM is the other option, and /health is intentionally open.",
            ),
            cdk.Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                reason="The API Gateway account CloudWatch role uses the AWS-managed "
                "AmazonAPIGatewayPushToCloudWatchLogs policy, which is the documented way to enable "
                "execution logging.",
            ),
        )
        acknowledge(self.router_function).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                reason="AWSLambdaBasicExecutionRole only allows creating and writing CloudWatch log streams.",
            ),
            cdk.Acknowledgment(
                id="AwsSolutions-L1",
                reason="Python 3.13 is pinned to match the Powertools layer published for it; upgrade both together.",
            ),
        )


def _policy_schema_text() -> str:
    from lambdas.router.policy import load_schema

    return json.dumps(load_schema())


def _validate_props(
    *,
    auth: EndpointAuthorization,
    service_name: str,
    api_throttle_rate_limit: float,
    api_throttle_burst_limit: int,
    router_memory_size_mib: int,
    router_timeout: Duration,
    router_reserved_concurrency: int | None,
    alarm_api_5xx_rate_percent: float | None,
    alarm_fallback_rate_percent: float | None,
    alarm_lambda_errors: int | None,
    alarm_lambda_throttles: int | None,
    alarm_degraded_answers: int | None,
) -> None:
    if not isinstance(auth, EndpointAuthorization):
        raise ValueError(
            f"auth must be an EndpointAuthorization (api_key(), iam(), cognito(pool), none()), got {auth!r}"
        )
    if auth.mode is AuthMode.COGNITO and auth.user_pool is None:
        raise ValueError("auth 'cognito' needs a user pool: EndpointAuthorization.cognito(user_pool)")
    if not service_name or len(service_name) > 64 or not service_name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"service_name '{service_name}' must be 1-64 letters, digits, '-' or '_'")
    if not cdk.Token.is_unresolved(api_throttle_rate_limit) and api_throttle_rate_limit <= 0:
        raise ValueError(f"api_throttle_rate_limit must be positive, got {api_throttle_rate_limit}")
    if not cdk.Token.is_unresolved(api_throttle_burst_limit) and api_throttle_burst_limit < 1:
        raise ValueError(f"api_throttle_burst_limit must be at least 1, got {api_throttle_burst_limit}")
    if not cdk.Token.is_unresolved(router_memory_size_mib) and not 128 <= router_memory_size_mib <= 10240:
        raise ValueError(f"router_memory_size_mib must be 128-10240, got {router_memory_size_mib}")
    if not router_timeout.is_unresolved() and not 3 <= router_timeout.to_seconds() <= 900:
        raise ValueError(f"router_timeout must be 3 s to 15 min, got {router_timeout.to_seconds()} s")
    if router_reserved_concurrency is not None and router_reserved_concurrency < 1:
        raise ValueError(f"router_reserved_concurrency must be at least 1, got {router_reserved_concurrency}")
    for name, value in (
        ("alarm_api_5xx_rate_percent", alarm_api_5xx_rate_percent),
        ("alarm_fallback_rate_percent", alarm_fallback_rate_percent),
    ):
        if value is not None and not 0 < value <= 100:
            raise ValueError(f"{name} must be in (0, 100], got {value}")
    for name, count in (
        ("alarm_lambda_errors", alarm_lambda_errors),
        ("alarm_lambda_throttles", alarm_lambda_throttles),
        ("alarm_degraded_answers", alarm_degraded_answers),
    ):
        if count is not None and count < 1:
            raise ValueError(f"{name} must be at least 1, got {count}")
