"""``RoutedBedrockEndpoint``: API Gateway in front of the router, composed with its policy, state and alarms.

The endpoint composes the parts, each a construct usable alone: ``RoutingPolicy`` (AppConfig),
``RouterFunction`` (the Lambda), ``LiveStateTable`` (DynamoDB), ``RouterAlarms`` and ``RouterDashboard``
(CloudWatch, on ``RouterMetrics``). It owns the REST API, which ties them together, and adds nothing the parts
could own. The parts' resources keep the logical IDs they had before the split (``_legacy_ids``), so
upgrading an existing deployment replaces nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration, Size
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.router import metric_names as m
from lambdas.router.web_adapter import STREAM_FUNCTION_TIMEOUT_MS

from . import _validation as check
from ._legacy_ids import keep_legacy_logical_ids
from ._request_model import generate_request_schema
from .api_key_authorizer import ApiKeyAuthorizer
from .authorization import AuthMode, EndpointAuthorization
from .live_state_table import LiveStateTable
from .policy_document import PolicySource, RoutingPolicyDocument
from .router_alarms import RouterAlarms
from .router_dashboard import RouterDashboard
from .router_function import RouterFunction
from .router_metrics import PERIOD, RouterMetricMethods, RouterMetrics, default_service_name
from .routing_policy import RoutingPolicy
from .routing_state_machine import (
    STATE_MACHINE_MAX_BODY_BYTES,
    STATE_MACHINE_METHOD_RESPONSES,
    Orchestration,
    RoutingStateMachine,
    state_machine_integration,
)

_NAME_MAX_LENGTH = 64
GATEWAY_RESPONSES = (
    (apigw.ResponseType.UNAUTHORIZED, "401", "invalid_request_error", "invalid_api_key"),
    (apigw.ResponseType.INVALID_API_KEY, "403", "invalid_request_error", "invalid_api_key"),
    (apigw.ResponseType.ACCESS_DENIED, "403", "invalid_request_error", "access_denied"),
    (apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "403", "invalid_request_error", "unknown_url"),
    (apigw.ResponseType.THROTTLED, "429", "rate_limit_error", "rate_limit_exceeded"),
    (apigw.ResponseType.QUOTA_EXCEEDED, "429", "rate_limit_error", "quota_exceeded"),
    (apigw.ResponseType.INTEGRATION_TIMEOUT, "504", "server_error", "timeout"),
)
"""API Gateway's own answers given an OpenAI ``error`` object besides ``message``: (type, status, error type, code)."""
_DEFAULT_P99_LATENCY_ALARM = Duration.seconds(20)


class RoutedBedrockEndpoint(RouterMetricMethods, Construct):
    """A routed Amazon Bedrock endpoint: one API in front of the models a routing policy names.

    Creates an API Gateway REST API (``POST /generate``, ``GET /health``, the OpenAI-compatible
    ``POST /v1/chat/completions`` and ``GET /v1/models``) backed by the router Lambda (``RouterFunction``:
    Powertools; Python 3.13 on arm64) and, for chat completions, a streaming router (the same code behind
    AWS Lambda Web Adapter, invoked with response streaming), the routing policy as an AWS AppConfig hosted
    configuration (``RoutingPolicy``: validated by the policy JSON schema, rolled out gradually and rolled back
    by alarms), a DynamoDB table of the router's live state (``LiveStateTable``), IAM scoped to the policy's
    models and regions and to that table, CloudWatch alarms (``RouterAlarms``) and a dashboard of routing
    decisions (``RouterDashboard``).

    ``POST /generate`` is never open by default: it needs an API key (and its usage plan) unless ``auth``
    says otherwise; ``EndpointAuthorization.none()`` is the only way to open it. The key is read from
    ``x-api-key`` on ``/generate`` and from ``Authorization: Bearer KEY`` (what OpenAI clients send) on ``/v1``.

    The API's access logs (and execution logs) need the account's API Gateway CloudWatch role, an account-wide
    setting set once per account and region (see the README, "Once per account"); the endpoint leaves it alone
    unless ``api_account_cloudwatch_role`` says otherwise.

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
        policy: the routing policy, a dict, the path of a JSON file or a ``RoutingPolicyDocument``. Validated at
            synth with the schema the router and AppConfig use; a bad policy raises ``ValueError`` naming the
            field and value.
        auth: how callers authenticate to ``POST /generate``. Default: - an API key and a usage plan
            (``EndpointAuthorization.api_key()``); ``/health`` stays open. ``EndpointAuthorization.none()``
            opens the endpoint, as an explicit opt-in.
        service_name: Powertools service name, the ``service`` dimension of every router metric (1-64 letters,
            digits, ``-``, ``_``). Default: - this construct's path with ``-`` separators (e.g. ``MyStack-Llm``);
            under a stack given a ``stack_name`` of its own, that name and the path below the stack: stable
            across deployments and distinct per endpoint, also for one app deployed under two stack names.
        metrics_namespace: CloudWatch namespace of the router's metrics. Default: - ``RoutedBedrock``.
        log_retention: retention of the function's log group and the API's access log group.
            Default: - ``RetentionDays.ONE_MONTH``.
        log_removal_policy: what happens to the log groups the stack creates (the routers', the authorizer's,
            the API's access logs) when they leave it. Default: - ``RemovalPolicy.RETAIN``, as aws-cdk-lib
            keeps log groups: ``cdk destroy`` leaves them to expire by ``log_retention``; ``DESTROY`` deletes
            them with the stack. (API Gateway's execution log group, ``API-Gateway-Execution-Logs_<api id>/<stage>``,
            is API Gateway's own and stays either way.)
        api_stage_name: the API stage, 1-64 letters, digits or ``_``; the AppConfig environment has the same
            name (and AppConfig allows 64 characters). Default: - ``prod``.
        api_throttle_rate_limit: steady-state requests per second for the stage (and the usage plan).
            Default: - 50.
        api_throttle_burst_limit: burst requests for the stage (and the usage plan). Default: - 100.
        api_execution_logging: API Gateway execution logs (INFO) besides the access logs. Both need the
            account's API Gateway CloudWatch role to be set. Default: - true.
        api_account_cloudwatch_role: create an IAM role for API Gateway to push logs (AWS-managed
            ``AmazonAPIGatewayPushToCloudWatchLogs``) and make it the account's API Gateway CloudWatch role
            (``AWS::ApiGateway::Account``). That setting is account-wide, one per account and region: every REST
            API there logs through it, and the last stack to set it wins. Both resources are retained on delete,
            so removing this stack never breaks the logging of other APIs. At most one endpoint per stack may
            set it. Default: - false: the account's existing setting is used (set it once, see the README).
        router_architecture: the function's CPU architecture; the Powertools layer follows it.
            Default: - ``Architecture.ARM_64``.
        router_memory_size_mib: each router's memory in MiB (128-10240). Default: - 512: a router mostly waits on
            the model, billed per GB-second, and 512 MB halves that against 1024 MB for twice the CPU time on
            about 1 ms of routing (``benchmarks/routing_cost.py``).
        router_timeout: function timeout (3 s to 15 min); API Gateway ends a request after 29 s unless the
            account's integration timeout quota is raised. The policy's ``resilience.total_deadline_ms`` plus the
            router's 500 ms response reserve must fit it, and with 2 s more for the invoke and a cold start, API
            Gateway's 29 s (a deadline of at most 26,500 ms). Default: - 29 seconds.
        router_reserved_concurrency: reserved concurrent executions of each router function (the buffered one,
            the streaming one, the Step Functions tasks one: 50 reserves 100 or 150 in all). Default: - none
            (unreserved).
        router_max_body_size: larger request bodies get HTTP 400 from the router (at most 6 MiB, Lambda's
            payload limit). Default: - 6,000,000 bytes (the router's own default).
        streaming: serve ``POST /v1/chat/completions`` from a second function, the streaming router, through an
            integration with ``ResponseTransferMode.STREAM``, so ``stream: true`` answers reach the caller as
            they are made (the first token after the model's first text, not after the whole answer). False:
            the buffered router answers them too, with the whole event stream at once. Default: - true.
        orchestration: how ``POST /generate`` waits on Bedrock. ``Orchestration.LAMBDA``: the router function makes
            the model calls. ``Orchestration.STEP_FUNCTIONS``: an Express state machine (``RoutingStateMachine``)
            that API Gateway starts synchronously makes them, and a tasks function decides and records each
            (README: "Which orchestration"); bodies are then limited to 64 KiB (Step Functions' 256 KiB state).
            ``/health`` and ``/v1`` stay on the router function either way. Default: - ``Orchestration.LAMBDA``.
        router_streaming_timeout: the streaming router's timeout (3 s to 15 min, API Gateway's longest
            stream); the policy's ``resilience.stream_deadline_ms`` plus the 500 ms reserve must fit it.
            Default: - 3 minutes.
        router_web_adapter_layer: the Lambda Web Adapter layer for the streaming router instead of the public
            one (needed outside the commercial partition). Default: - the public layer, version
            ``WEB_ADAPTER_LAYER_VERSION``.
        router_powertools_layer: the Powertools layer to use instead of AWS's public one: needed in a region
            Powertools does not publish to (``POWERTOOLS_LAYER_REGIONS``); in such a region synthesis fails
            without it (an environment-agnostic stack is not checked). Default: - the public layer of the
            pinned release, from its SSM parameter.
        policy_max_age: how long the router trusts a fetched policy before polling AppConfig again
            (15 s to 24 h). Default: - 45 seconds.
        policy_deployment_strategy: how a new policy version rolls out. AppConfig runs one deployment at a time
            per environment: a stack update that changes the policy while the previous rollout is still
            deploying or baking fails with a conflict, and rolls back. Default: - AppConfig's predefined
            ``Canary10Percent20Minutes`` (20 minutes, then a 10-minute bake); development stacks that deploy
            often want a strategy of their own with no bake (the reference stack's ``DEV_POLICY_ROLLOUT``):
            AppConfig's ``ALL_AT_ONCE`` still bakes 10 minutes.
        policy_deletion_protection_check: AppConfig's deletion protection check for the profile and the
            environment when CloudFormation deletes them. With deletion protection on (an account setting, off
            by default) AppConfig refuses to delete a profile or environment read in the last protection period
            (60 minutes by default), and the router reads them every ``policy_max_age``. Default: - ``BYPASS``:
            ``cdk destroy`` deletes them, as it deletes the router that reads them.
        policy_version_removal_policy: what happens to a hosted configuration version that leaves the stack.
            Default: - ``RemovalPolicy.DESTROY``: a replaced version is deleted once the update succeeded, and
            the stack deletes cleanly (AppConfig refuses to delete a profile holding versions); ``RETAIN``
            keeps them all, and then the profile must be emptied by hand before the stack can be deleted.
        state_table_encryption_key: a customer-managed KMS key for the live-state table; the router is
            allowed on it what ``Table.grant_read_write_data`` allows on a table's key (``kms:Decrypt``,
            ``kms:DescribeKey``, ``kms:Encrypt``, ``kms:ReEncrypt*``, ``kms:GenerateDataKey*``).
            Default: - the AWS-managed key for DynamoDB (``aws/dynamodb``).
        state_table_removal_policy: what happens to the live-state table when it leaves the stack. It holds
            only short-lived state and counters (breaker windows, latency histograms, today's and this
            month's spend), every item expiring by TTL: deleting it resets the current spend counters and
            nothing else. Default: - ``RemovalPolicy.DESTROY``; ``RETAIN`` keeps the spend counters.
        state_cache_ttl: how long the router reuses a live-state snapshot before reading the table again
            (above 0 s, at most 60 s); longer means fewer reads and slower reaction to other instances'
            breakers and spend. Default: - 2 seconds.
        alarm_topic: SNS topic for every alarm's ALARM and OK actions; its policy must let
            ``cloudwatch.amazonaws.com`` publish (and its key, if encrypted). Default: - alarms without actions.
        alarm_api_5xx_rate_percent: alarm when 5XX answers reach this share of API requests in 5 minutes;
            None disables it. Default: - 1 (%).
        alarm_api_p99_latency: alarm when ``POST /generate``'s p99 latency over 5 minutes reaches this (not the
            whole API's: streamed chats last as long as their answers); None disables it.
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
        alarm_variant_failure_rate_percent: per canary candidate (each model of a weighted route) and A/B arm
            (``experiments``), alarm when its fallback and degraded answers reach this share of its requests in
            5 minutes; None disables it. Default: - 10 (%).
        alarm_variant_p99_latency: per variant, alarm when its p99 latency over 5 minutes reaches this; None
            disables it. Default: - 20 seconds.
        alarm_variant_escalation_rate_percent: per A/B arm on a cascade route, alarm when its cascades escalate
            this share of the time in 5 minutes (its quality signal); None disables it. Default: - 60 (%).
        alarm_variant_min_requests: the variant alarms count only 5-minute periods with at least this many of
            the variant's requests. Default: - 20.
        dashboard_name: name of the CloudWatch dashboard. Default: - generated by CloudFormation.

    The degraded-answers, fallback-rate, Lambda-errors (both routers), API 5XX and per-variant alarms (those
    enabled) are the AppConfig environment's monitors (past AppConfig's 5, through one composite alarm of them):
    any of them in ALARM during a policy rollout (or its bake time) rolls it back.
    The budget and state-store alarms only notify.

    Attributes:
        api: the REST API (``api.deployment_stage`` is the stage).
        api_key: the API key in ``api_key`` mode, else None.
        api_key_authorizer: in ``api_key`` mode, the authorizer that hands API Gateway the caller's key from
            ``x-api-key`` (``/generate``) or ``Authorization: Bearer`` (``/v1``); else None.
        router_function: the router Lambda function.
        router_log_group: the function's log group.
        streaming_router: the streaming ``RouterFunction`` (None with ``streaming=False``).
        steps_router: the Step Functions orchestration's tasks ``RouterFunction``, else None.
        state_machine: the routing ``StateMachine`` of the Step Functions orchestration, else None.
        api_access_logs: the stage's access log group.
        application: the AppConfig application.
        environment: the AppConfig environment, with the rollback monitors.
        configuration: the hosted configuration (profile with the JSON schema validator, version, deployment).
        deployment_strategy: the AppConfig deployment strategy in use.
        policy: the compiled routing policy.
        state_table: the DynamoDB table of the router's live state (``ROUTER_STATE_TABLE``).
        alarms: the alarms by name (``Api5xxRate``, ``ApiLatencyP99``, ``LambdaErrors``, ``LambdaThrottles``,
            ``StreamingLambdaErrors``, ``StreamingLambdaThrottles``, ``FallbackRate``, ``DegradedAnswers``,
            ``BudgetUsedPercent``, ``StateStoreErrors``), without the disabled ones.
        dashboard: the CloudWatch dashboard of routing patterns.
        service_name: the ``service`` dimension of the router's metrics.
        metrics_namespace: the namespace of the router's metrics.
        routing_policy, router, live_state, router_alarms, routing_dashboard: the composed parts.
        metrics: the router's metrics (``RouterMetrics``).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        policy: PolicySource,
        auth: EndpointAuthorization | None = None,
        service_name: str | None = None,
        metrics_namespace: str = m.NAMESPACE,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        api_stage_name: str = "prod",
        api_throttle_rate_limit: float = 50,
        api_throttle_burst_limit: int = 100,
        api_execution_logging: bool = True,
        api_account_cloudwatch_role: bool = False,
        router_architecture: lambda_.Architecture | None = None,
        router_memory_size_mib: int = 512,
        router_timeout: Duration | None = None,
        router_reserved_concurrency: int | None = None,
        router_max_body_size: Size | None = None,
        router_powertools_layer: lambda_.ILayerVersion | None = None,
        streaming: bool = True,
        orchestration: Orchestration = Orchestration.LAMBDA,
        router_streaming_timeout: Duration | None = None,
        router_web_adapter_layer: lambda_.ILayerVersion | None = None,
        policy_max_age: Duration | None = None,
        policy_deployment_strategy: appconfig.IDeploymentStrategy | None = None,
        policy_deletion_protection_check: appconfig.DeletionProtectionCheck = appconfig.DeletionProtectionCheck.BYPASS,
        policy_version_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.DESTROY,
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
        alarm_variant_failure_rate_percent: float | None = 10.0,
        alarm_variant_p99_latency: Duration | None = _DEFAULT_P99_LATENCY_ALARM,
        alarm_variant_escalation_rate_percent: float | None = 60.0,
        alarm_variant_min_requests: int = 20,
        dashboard_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.auth = auth if auth is not None else EndpointAuthorization.api_key()
        self.service_name = service_name if service_name is not None else default_service_name(self)
        self.metrics_namespace = metrics_namespace
        _validate_props(
            self,
            auth=self.auth,
            service_name=self.service_name,
            metrics_namespace=metrics_namespace,
            api_stage_name=api_stage_name,
            api_throttle_rate_limit=api_throttle_rate_limit,
            api_throttle_burst_limit=api_throttle_burst_limit,
            api_account_cloudwatch_role=api_account_cloudwatch_role,
            router_memory_size_mib=router_memory_size_mib,
            router_timeout=router_timeout,
            router_reserved_concurrency=router_reserved_concurrency,
            router_max_body_size=router_max_body_size,
            policy_max_age=policy_max_age,
            state_cache_ttl=state_cache_ttl,
            alarm_api_5xx_rate_percent=alarm_api_5xx_rate_percent,
            alarm_api_p99_latency=alarm_api_p99_latency,
            alarm_fallback_rate_percent=alarm_fallback_rate_percent,
            alarm_budget_used_percent=alarm_budget_used_percent,
            counts={
                "alarm_lambda_errors": alarm_lambda_errors,
                "alarm_lambda_throttles": alarm_lambda_throttles,
                "alarm_degraded_answers": alarm_degraded_answers,
                "alarm_state_store_errors": alarm_state_store_errors,
            },
        )
        check.check_percent("alarm_variant_failure_rate_percent", alarm_variant_failure_rate_percent)
        check.check_dashboard_name("dashboard_name", dashboard_name)
        check.check_removal_policy("log_removal_policy", log_removal_policy)
        check.check_removal_policy("policy_version_removal_policy", policy_version_removal_policy)
        check.check_removal_policy("state_table_removal_policy", state_table_removal_policy)
        check.check_percent("alarm_variant_escalation_rate_percent", alarm_variant_escalation_rate_percent)
        check.check_positive_duration("alarm_variant_p99_latency", alarm_variant_p99_latency)
        check.check_at_least_one("alarm_variant_min_requests", alarm_variant_min_requests)
        document = RoutingPolicyDocument.of(policy)
        self.policy = document.policy
        if router_timeout is not None:
            check.check_deadline_fits_timeout(
                "router_timeout", router_timeout, self.policy.resilience.total_deadline_ms
            )
        check.check_deadline_fits_api(self.policy.resilience.total_deadline_ms)
        self.metrics = RouterMetrics(service_name=self.service_name, namespace=metrics_namespace)
        # One name for the application and the REST API (the ApiName dimension of its metrics): distinct per endpoint.
        physical_name = cdk.Names.unique_resource_name(self, separator="-", max_length=_NAME_MAX_LENGTH)

        self.live_state = LiveStateTable(
            self, "LiveState", encryption_key=state_table_encryption_key, removal_policy=state_table_removal_policy
        )
        self.state_table = self.live_state.table
        # The function finds its policy by names, not IDs: a reference from the function to the environment
        # would close a cycle (environment -> rollback monitor -> Lambda errors alarm -> function).
        # Both routers run with the same policy, names, table and settings; only the timeout and the front end differ
        router_settings: dict[str, Any] = {
            "policy": document,
            "appconfig_application_name": physical_name,
            "appconfig_environment_name": api_stage_name,
            "service_name": self.service_name,
            "metrics_namespace": metrics_namespace,
            "log_retention": log_retention,
            "log_removal_policy": log_removal_policy,
            "architecture": router_architecture,
            "memory_size_mib": router_memory_size_mib,
            "reserved_concurrency": router_reserved_concurrency,
            "max_body_size": router_max_body_size,
            "policy_max_age": policy_max_age,
            "state_table": self.live_state,
            "state_cache_ttl": state_cache_ttl,
            "powertools_layer": router_powertools_layer,
        }
        # Without a streaming router the buffered one answers chat completions, streamed ones included
        self.router = RouterFunction(
            self, "RouterFunction", timeout=router_timeout, serves_streams=not streaming, **router_settings
        )
        self.router_function = self.router.function
        self.router_log_group = self.router.log_group
        self.streaming_router: RouterFunction | None = None
        if streaming:
            streaming_timeout = router_streaming_timeout or Duration.millis(STREAM_FUNCTION_TIMEOUT_MS)
            check.check_function_timeout("router_streaming_timeout", streaming_timeout)
            check.check_deadline_fits_timeout(
                "router_streaming_timeout",
                streaming_timeout,
                self.policy.resilience.stream_deadline_ms,
                setting="stream_deadline_ms",
            )
            self.streaming_router = RouterFunction(
                self,
                "StreamingRouterFunction",
                timeout=streaming_timeout,
                streaming=True,
                web_adapter_layer=router_web_adapter_layer,
                **router_settings,
            )
        elif router_streaming_timeout is not None or router_web_adapter_layer is not None:
            raise ValueError("router_streaming_timeout and router_web_adapter_layer need streaming=True")
        self.orchestration = orchestration
        self.steps_router: RouterFunction | None = None
        self.routing_state_machine: RoutingStateMachine | None = None
        self.state_machine: sfn.StateMachine | None = None
        if orchestration is Orchestration.STEP_FUNCTIONS:
            body_size = router_max_body_size or Size.bytes(STATE_MACHINE_MAX_BODY_BYTES)
            if not body_size.is_unresolved() and body_size.to_bytes() > STATE_MACHINE_MAX_BODY_BYTES:
                raise ValueError(
                    f"router_max_body_size of {int(body_size.to_bytes())} bytes is above the "
                    f"{STATE_MACHINE_MAX_BODY_BYTES} bytes the Step Functions orchestration carries in its state"
                )
            self.steps_router = RouterFunction(
                self,
                "StepsFunction",
                timeout=router_timeout,
                state_machine_tasks=True,
                **{**router_settings, "max_body_size": body_size},
            )
            self.routing_state_machine = RoutingStateMachine(
                self,
                "Orchestration",
                tasks_function=self.steps_router.function,
                policy=self.policy,
                log_retention=log_retention,
            )
            self.state_machine = self.routing_state_machine.state_machine
        elif not isinstance(orchestration, Orchestration):
            raise ValueError(f"orchestration must be an Orchestration, got {orchestration!r}")

        self._add_api(
            name=physical_name,
            log_retention=log_retention,
            log_removal_policy=log_removal_policy,
            stage_name=api_stage_name,
            rate_limit=api_throttle_rate_limit,
            burst_limit=api_throttle_burst_limit,
            execution_logging=api_execution_logging,
            account_cloudwatch_role=api_account_cloudwatch_role,
        )

        self.router_alarms = RouterAlarms(
            self,
            "Alarms",
            metrics=self.metrics,
            policy=self.policy,
            router_function=self.router_function,
            streaming_function=self.streaming_router.function if self.streaming_router else None,
            steps_function=self.steps_router.function if self.steps_router else None,
            state_machine=self.state_machine,
            api=self.api,
            # POST /generate alone (the stage's detailed metrics): a streamed chat lasts as long as its answer
            api_latency_metric=self._generate_method.metric_latency(
                self.api.deployment_stage, period=PERIOD, statistic="p99"
            ),
            api_latency_label="POST /generate",
            alarm_topic=alarm_topic,
            api_5xx_rate_percent=alarm_api_5xx_rate_percent,
            api_p99_latency=alarm_api_p99_latency,
            lambda_errors=alarm_lambda_errors,
            lambda_throttles=alarm_lambda_throttles,
            fallback_rate_percent=alarm_fallback_rate_percent,
            degraded_answers=alarm_degraded_answers,
            budget_used_percent=alarm_budget_used_percent,
            state_store_errors=alarm_state_store_errors,
            variant_failure_rate_percent=alarm_variant_failure_rate_percent,
            variant_p99_latency=alarm_variant_p99_latency,
            variant_escalation_rate_percent=alarm_variant_escalation_rate_percent,
            variant_min_requests=alarm_variant_min_requests,
        )
        self.alarms: dict[str, cloudwatch.Alarm] = self.router_alarms.alarms

        self.routing_policy = RoutingPolicy(
            self,
            "RoutingPolicy",
            policy=document,
            application_name=physical_name,
            environment_name=api_stage_name,
            monitors=self.router_alarms.rollback_monitors,
            deployment_strategy=policy_deployment_strategy,
            deletion_protection_check=policy_deletion_protection_check,
            version_removal_policy=policy_version_removal_policy,
        )
        self.application = self.routing_policy.application
        self.environment = self.routing_policy.environment
        self.configuration = self.routing_policy.configuration
        self.deployment_strategy = self.routing_policy.deployment_strategy
        # A policy of its own, not the role's default policy: the function must not depend on the environment.
        roles = [part.role for part in (self.router, self.streaming_router, self.steps_router) if part is not None]
        read_policy = iam.Policy(self, "ReadRoutingPolicy", roles=roles)
        self.routing_policy.grant_read(read_policy)
        # No traffic before the function can read its policy.
        self.api.deployment_stage.node.add_dependency(read_policy)

        self.routing_dashboard = RouterDashboard(
            self,
            "RoutingDashboard",
            metrics=self.metrics,
            policy=self.policy,
            api=self.api,
            alarms=list(self.alarms.values()),
            dashboard_name=dashboard_name,
            state_machine=self.state_machine,
        )
        self.dashboard = self.routing_dashboard.dashboard
        self._acknowledge_nag_findings()
        for part in (self.live_state, self.router, self.router_alarms, self.routing_policy, self.routing_dashboard):
            keep_legacy_logical_ids(part)

    # --- public surface ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The stage URL, ending in ``/`` (``{url}generate``, ``{url}health``)."""
        return self.api.url

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Allow ``grantee`` to call ``POST /generate`` and the OpenAI-compatible ``/v1`` methods on this stage
        (``execute-api:Invoke``), what IAM auth checks."""
        grant = self._generate_method.grant_execute(grantee)
        for method in self._caller_methods[1:]:
            grant = grant.combine(method.grant_execute(grantee))
        return grant

    def metric(
        self,
        metric_name: str,
        *,
        statistic: str = "Sum",
        period: Duration = PERIOD,
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
        return self.metrics.metric(metric_name, statistic=statistic, period=period, dimensions=dimensions, label=label)

    # --- internals ------------------------------------------------------------------------------------

    def _add_api(
        self,
        *,
        name: str,
        log_retention: logs.RetentionDays,
        log_removal_policy: cdk.RemovalPolicy,
        stage_name: str,
        rate_limit: float,
        burst_limit: int,
        execution_logging: bool,
        account_cloudwatch_role: bool,
    ) -> None:
        self.api_access_logs = logs.LogGroup(
            self, "ApiAccessLogs", retention=log_retention, removal_policy=log_removal_policy
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=name,
            description="Routed Amazon Bedrock endpoint",
            # API-key mode: the key comes from the authorizer (x-api-key or a bearer token), checked by the plan
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER if self.auth.mode is AuthMode.API_KEY else None,
            cloud_watch_role=account_cloudwatch_role,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN if account_cloudwatch_role else None,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
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
                logging_level=apigw.MethodLoggingLevel.INFO if execution_logging else apigw.MethodLoggingLevel.OFF,
                metrics_enabled=True,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
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
        self.api_key_authorizer: ApiKeyAuthorizer | None = None
        if self.auth.mode is AuthMode.API_KEY:  # keys from x-api-key (/generate) or a bearer token (/v1)
            self.api_key_authorizer = ApiKeyAuthorizer(
                self, "ApiKeyAuthorizer", log_retention=log_retention, log_removal_policy=log_removal_policy
            )
        authorization = self._method_authorization()
        openai_authorization = self._method_authorization(bearer=True)
        generate_options: dict[str, Any] = {}
        generate_integration: apigw.Integration = integration
        if self.state_machine is not None:  # StartSyncExecution; the answer's status and headers from its output
            generate_integration = state_machine_integration(self.state_machine)
            generate_options["method_responses"] = STATE_MACHINE_METHOD_RESPONSES
        self._generate_method = self.api.root.add_resource("generate").add_method(
            "POST",
            generate_integration,
            request_models={"application/json": body_model},
            request_validator=body_validator,
            **authorization,
            **generate_options,
        )
        self._health_method = self.api.root.add_resource("health").add_method(
            "GET", integration, authorization_type=apigw.AuthorizationType.NONE
        )
        # The OpenAI-compatible API (lambdas/router/openai_api.py), under the same authorization as /generate;
        # its body is OpenAI's, checked by the router (API Gateway's model would answer in another shape).
        v1 = self.api.root.add_resource("v1")
        chat_integration = integration
        if self.streaming_router is not None:  # invoked with InvokeWithResponseStream: events pass as made
            # A streamed integration may run up to 15 minutes: as long as the function may, not the default 29 s
            chat_integration = apigw.LambdaIntegration(
                self.streaming_router.function,
                response_transfer_mode=apigw.ResponseTransferMode.STREAM,
                timeout=self.streaming_router.function.timeout,
            )
        self._chat_method = (
            v1.add_resource("chat")
            .add_resource("completions")
            .add_method("POST", chat_integration, **openai_authorization)
        )
        self._models_method = v1.add_resource("models").add_method("GET", integration, **openai_authorization)
        self._caller_methods = (self._generate_method, self._chat_method, self._models_method)
        self._add_gateway_responses()
        self.api_key: apigw.IApiKey | None = None
        if self.auth.mode is AuthMode.API_KEY:
            plan = self.api.add_usage_plan(
                "UsagePlan",
                description="Throttling for POST /generate callers",
                throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            )
            plan.add_api_stage(stage=self.api.deployment_stage)
            self.api_key = self.api.add_api_key("ApiKey")
            plan.add_api_key(self.api_key)

    def _add_gateway_responses(self) -> None:
        """API Gateway's own refusals (no or a bad key, throttling, a timeout) in a body both kinds of caller read:
        ``message`` as before, plus OpenAI's ``error`` object, so an OpenAI client names the cause."""
        for response_type, status, error_type, code in GATEWAY_RESPONSES:
            text = "$context.error.messageString"  # already a JSON string
            body = f'{{"message": {text}, "error": {{"message": {text}, "type": "{error_type}", "code": "{code}"}}}}'
            self.api.add_gateway_response(
                "".join(part.title() for part in response_type.response_type.split("_")) + "Response",
                type=response_type,
                status_code=status,
                templates={"application/json": body},
                response_headers={"Retry-After": "'1'"} if status == "429" else None,
            )

    def _method_authorization(self, *, bearer: bool = False) -> dict[str, Any]:
        """A caller method's authorization; ``bearer``: the OpenAI methods (an API key as a bearer token)."""
        mode = self.auth.mode
        if mode is AuthMode.API_KEY:
            assert self.api_key_authorizer is not None
            authorizer = self.api_key_authorizer.bearer if bearer else self.api_key_authorizer.generate
            return {
                "api_key_required": True,
                "authorization_type": apigw.AuthorizationType.CUSTOM,
                "authorizer": authorizer,
            }
        if mode is AuthMode.IAM:
            return {"authorization_type": apigw.AuthorizationType.IAM}
        if mode is AuthMode.COGNITO:  # one authorizer for every caller method
            cognito = self.node.try_find_child("Authorizer")
            if cognito is None:
                assert self.auth.user_pool is not None  # checked in _validate_props
                cognito = apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[self.auth.user_pool])
            return {"authorization_type": apigw.AuthorizationType.COGNITO, "authorizer": cognito}
        return {"authorization_type": apigw.AuthorizationType.NONE}

    def _acknowledge_nag_findings(self) -> None:
        """cdk-nag AwsSolutions findings of the API that are decisions, on the narrowest construct, with the reason.

        The parts acknowledge their own (``RoutingPolicy``: the monitor role; ``RouterFunction``: the runtime).
        """
        validations = cdk.Validations.of
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
                "POST /generate and the /v1 methods require an API key (x-api-key, or a bearer token on /v1) bound "
                "to a usage plan with throttling, passed on by a Lambda TOKEN authorizer: the construct's default "
                "authorization, chosen in the auth prop."
            )
            for method in self._caller_methods:
                validations(method).acknowledge(cdk.Acknowledgment(id="AwsSolutions-COG4", reason=reason))
        elif mode is AuthMode.IAM:
            for method in self._caller_methods:
                validations(method).acknowledge(
                    cdk.Acknowledgment(
                        id="AwsSolutions-COG4",
                        reason="POST /generate and the /v1 methods are authorized by IAM (SigV4) as chosen in the "
                        "auth prop; callers are allowed with grant_invoke.",
                    )
                )
        elif mode is AuthMode.NONE:
            reason = (
                "POST /generate and the /v1 methods are open because the app chose EndpointAuthorization.none() "
                "explicitly (for example behind a private network or a gateway that authenticates); never the default."
            )
            for method in self._caller_methods:
                validations(method).acknowledge(
                    cdk.Acknowledgment(id="AwsSolutions-APIG4", reason=reason),
                    cdk.Acknowledgment(id="AwsSolutions-COG4", reason=reason),
                )


def _validate_props(
    endpoint: Construct,
    *,
    auth: EndpointAuthorization,
    service_name: str,
    metrics_namespace: str,
    api_stage_name: str,
    api_throttle_rate_limit: float,
    api_throttle_burst_limit: int,
    api_account_cloudwatch_role: bool,
    router_memory_size_mib: int,
    router_timeout: Duration | None,
    router_reserved_concurrency: int | None,
    router_max_body_size: Size | None,
    policy_max_age: Duration | None,
    state_cache_ttl: Duration | None,
    alarm_api_5xx_rate_percent: float | None,
    alarm_api_p99_latency: Duration | None,
    alarm_fallback_rate_percent: float | None,
    alarm_budget_used_percent: float | None,
    counts: Mapping[str, int | None],
) -> None:
    """Raise ``ValueError`` naming the first bad prop (by the endpoint's name for it) and its value."""
    if not isinstance(auth, EndpointAuthorization):
        raise ValueError(
            f"auth must be an EndpointAuthorization (api_key(), iam(), cognito(user_pool), none()), got {auth!r}"
        )
    if auth.mode is AuthMode.COGNITO and auth.user_pool is None:
        raise ValueError("auth 'cognito' needs a user pool: EndpointAuthorization.cognito(user_pool)")
    check.check_service_name("service_name", service_name)
    check.check_metrics_namespace("metrics_namespace", metrics_namespace)
    check.check_stage_name("api_stage_name", api_stage_name)
    if check.resolved(api_throttle_rate_limit) and api_throttle_rate_limit <= 0:
        raise ValueError(f"api_throttle_rate_limit must be positive, got {api_throttle_rate_limit}")
    check.check_at_least_one("api_throttle_burst_limit", api_throttle_burst_limit)
    if api_account_cloudwatch_role:
        stack = cdk.Stack.of(endpoint)
        if any(isinstance(node, apigw.CfnAccount) for node in stack.node.find_all()):
            raise ValueError(
                f"api_account_cloudwatch_role is set twice in stack '{stack.node.path}': the API Gateway account "
                "setting is one per account and region, set it on one endpoint only"
            )
    check.check_memory_size("router_memory_size_mib", router_memory_size_mib)
    if router_timeout is not None:
        check.check_function_timeout("router_timeout", router_timeout)
    check.check_at_least_one("router_reserved_concurrency", router_reserved_concurrency)
    check.check_body_size("router_max_body_size", router_max_body_size)
    if policy_max_age is not None:
        check.check_policy_max_age("policy_max_age", policy_max_age)
    if state_cache_ttl is not None:
        check.check_state_cache_ttl("state_cache_ttl", state_cache_ttl)
    check.check_percent("alarm_api_5xx_rate_percent", alarm_api_5xx_rate_percent)
    check.check_percent("alarm_fallback_rate_percent", alarm_fallback_rate_percent)
    check.check_percent("alarm_budget_used_percent", alarm_budget_used_percent, maximum=1000)
    check.check_positive_duration("alarm_api_p99_latency", alarm_api_p99_latency)
    for name, count in counts.items():
        check.check_at_least_one(name, count)
