"""``RouterFunction``: the router Lambda with its role, log group, layers, settings and Bedrock IAM.

Two kinds: the buffered router (the managed Python runtime's handler; ``/generate``, ``/health``, ``/v1/models``)
and, with ``streaming=True``, the streaming router: the same code behind AWS Lambda Web Adapter
(``lambdas/router/web_adapter.py``), which API Gateway invokes with response streaming.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import Duration, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from lambdas.router import metric_names as m
from lambdas.router.policy_store import BOOTSTRAP_POLICY_ENV, BOOTSTRAP_POLICY_FILENAME
from lambdas.router.web_adapter import EVENTS_PATH, FUNCTION_TIMEOUT_ENV, READY_PATH, STREAM_FUNCTION_TIMEOUT_MS

from ._bedrock_arns import model_invoke_arns
from ._router_asset import router_code
from ._validation import (
    check_at_least_one,
    check_body_size,
    check_deadline_fits_timeout,
    check_function_timeout,
    check_memory_size,
    check_metrics_namespace,
    check_policy_max_age,
    check_removal_policy,
    check_service_name,
    check_state_cache_ttl,
)
from .live_state_table import LiveStateTable
from .policy_document import POLICY_PROFILE_NAME, PolicySource, RoutingPolicyDocument
from .router_metrics import default_service_name

ROUTER_HANDLER = "router.handler.lambda_handler"
STEPS_HANDLER = "router.steps.lambda_handler"
"""The Step Functions orchestration's tasks (``lambdas/router/steps.py``)."""
STREAM_HANDLER = "run-stream.sh"
"""The streaming function's handler: the start script the adapter's wrapper runs (``lambdas/run-stream.sh``)."""
WEB_ADAPTER_VERSION = "1.0.0"
WEB_ADAPTER_LAYER_VERSION = 27
"""The public layer version of Lambda Web Adapter ``WEB_ADAPTER_VERSION`` (aws/aws-lambda-web-adapter's README)."""
WEB_ADAPTER_LAYER_ACCOUNT = "753240598075"
"""The AWS account that publishes the adapter's layers in the commercial regions (China has its own accounts)."""
WEB_ADAPTER_PORT = 8080
ROUTER_RUNTIME = lambda_.Runtime.PYTHON_3_13
POWERTOOLS_VERSION = "3.37.0"
"""Keep equal to ``aws-lambda-powertools`` in requirements.txt: the layer and local runs use the same release."""
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/{architecture}/{runtime}/{version}"
"""The public SSM parameter holding each Powertools release's layer ARN, in the regions Powertools publishes to."""
POWERTOOLS_LAYER_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-7",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "mx-central-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
    }
)
"""Regions whose ``/aws/service/powertools/python/...`` parameters Powertools for AWS Lambda (Python) writes, as
listed by the region matrix of its ``.github/workflows/update_ssm.yml`` (aws-powertools/powertools-lambda-python,
the Python 3.10-3.14 version of that workflow), checked on 2026-12-01. GovCloud and China get layers from other
workflows, without these parameters; me-central-1 and me-south-1 left the matrix. Update with the pin above."""
_DEFAULT_TIMEOUT = Duration.seconds(29)
_DEFAULT_STREAM_TIMEOUT = Duration.millis(STREAM_FUNCTION_TIMEOUT_MS)
_DEFAULT_POLICY_MAX_AGE = Duration.seconds(45)
_DEFAULT_STATE_CACHE_TTL = Duration.seconds(2)


class RouterFunction(Construct):
    """The router Lambda (Powertools; Python 3.13, arm64 by default) and everything it runs with.

    Creates the function, its own role (no managed policy: it writes to its log group only), a log group with
    retention, the Powertools layer resolved from AWS's public SSM parameter for the pinned release (no Docker
    at synth), and IAM for ``bedrock:InvokeModel`` on exactly the models and regions the policy names. The
    asset holds the ``lambdas`` package and ``bootstrap_policy.json``, the policy validated at synth, which the
    router serves until AppConfig has deployed a version to it. It reads AppConfig by names (application,
    environment, profile), never by IDs, so it depends on no AppConfig resource: allow the read with
    ``RoutingPolicy.grant_read``.

    The Powertools parameter exists only in the regions Powertools publishes to (``POWERTOOLS_LAYER_REGIONS``):
    in a stack whose region is known and not among them, synthesis fails unless ``powertools_layer`` is given;
    an environment-agnostic stack is not checked.

    Example::

        router = RouterFunction(
            self, "RouterFunction",
            policy="policies/routing.json",
            appconfig_application_name="my-app", appconfig_environment_name="prod",
            state_table=LiveStateTable(self, "LiveState"),
        )

    Args:
        scope: parent construct.
        id: construct id.
        policy: the routing policy (a ``RoutingPolicyDocument``, a dict or a JSON file path); the same document as
            the AppConfig configuration's, so that its digest and bootstrap file match what AppConfig serves.
        appconfig_application_name: the AppConfig application the router polls (``APPCONFIG_APPLICATION``).
        appconfig_environment_name: the AppConfig environment (``APPCONFIG_ENVIRONMENT``).
        appconfig_profile_name: the configuration profile (``APPCONFIG_PROFILE``). Default: - ``routing-policy``.
        service_name: Powertools service name, the ``service`` dimension of every router metric. Default: - this
            construct's path with ``-`` separators (``router_metrics.default_service_name``).
        metrics_namespace: CloudWatch namespace of the router's metrics. Default: - ``RoutedBedrock``.
        log_retention: retention of the function's log group. Default: - ``RetentionDays.ONE_MONTH``.
        log_removal_policy: what happens to the function's log group when it leaves the stack. Default: -
            ``RemovalPolicy.RETAIN`` (it expires by ``log_retention``); ``DESTROY`` deletes it with the stack.
        architecture: CPU architecture; the Powertools layer follows it. Default: - ``Architecture.ARM_64``.
        memory_size_mib: memory in MiB (128-10240). Default: - 512 (``benchmarks/routing_cost.py``).
        timeout: 3 s to 15 min; the policy's ``resilience.total_deadline_ms`` plus the router's 500 ms response
            reserve must fit it. Default: - 29 seconds (API Gateway's default integration timeout); 3 minutes
            for the streaming router.
        reserved_concurrency: reserved concurrent executions. Default: - none (unreserved).
        max_body_size: larger request bodies get HTTP 400 (at most 6 MiB, Lambda's payload limit). Default: -
            6,000,000 bytes (the router's own default).
        policy_max_age: how long the router trusts a fetched policy before polling AppConfig again (15 s to 24 h).
            Default: - 45 seconds.
        state_table: the live-state table; the function gets ``ROUTER_STATE_TABLE`` and
            ``LiveStateTable.grant_state_access``. Default: - none: each instance keeps its breakers, latency and
            spend in memory, unshared.
        state_cache_ttl: how long the router reuses a live-state snapshot (above 0 s, at most 60 s). Default: - 2 s.
        powertools_layer: the Powertools layer to use instead of AWS's public one, e.g. in a region Powertools
            does not publish to. Default: - the public layer of ``POWERTOOLS_VERSION`` from the SSM parameter.
        streaming: the streaming router: handler ``run-stream.sh`` behind Lambda Web Adapter (its layer,
            ``AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap``, ``AWS_LWA_INVOKE_MODE=response_stream``), for an API
            Gateway integration with ``ResponseTransferMode.STREAM``; also allowed
            ``bedrock:InvokeModelWithResponseStream`` (what ConverseStream needs). The policy's
            ``resilience.stream_deadline_ms`` plus the reserve must fit its timeout. Default: - False.
        web_adapter_layer: the Lambda Web Adapter layer to use instead of the public one (a partition or region
            the public layer is not in, or another version). Default: - ``LambdaAdapterLayerArm64`` (or ``X86``)
            version ``WEB_ADAPTER_LAYER_VERSION`` from account ``WEB_ADAPTER_LAYER_ACCOUNT`` in the stack's region.
        state_machine_tasks: the Step Functions orchestration's tasks (handler ``router.steps.lambda_handler``):
            it decides and records each model call of ``RoutingStateMachine`` and makes the calls planned in other
            regions. Default: - False.
        serves_streams: allowed ``bedrock:InvokeModelWithResponseStream`` too: a buffered router that answers
            ``POST /v1/chat/completions`` (an endpoint with no streaming router) makes ConverseStream calls for
            ``"stream": true`` and sends the events at once. Default: - ``streaming``.

    Attributes:
        function: the Lambda function.
        role: the function's role.
        log_group: the function's log group.
        document: the routing policy document the function carries (bootstrap file, digest, Bedrock IAM).
        service_name: the ``service`` dimension of the router's metrics.
        metrics_namespace: the namespace of the router's metrics.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        policy: PolicySource,
        appconfig_application_name: str,
        appconfig_environment_name: str,
        appconfig_profile_name: str = POLICY_PROFILE_NAME,
        service_name: str | None = None,
        metrics_namespace: str = m.NAMESPACE,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        architecture: lambda_.Architecture | None = None,
        memory_size_mib: int = 512,
        timeout: Duration | None = None,
        reserved_concurrency: int | None = None,
        max_body_size: Size | None = None,
        policy_max_age: Duration | None = None,
        state_table: LiveStateTable | None = None,
        state_cache_ttl: Duration | None = None,
        powertools_layer: lambda_.ILayerVersion | None = None,
        streaming: bool = False,
        web_adapter_layer: lambda_.ILayerVersion | None = None,
        state_machine_tasks: bool = False,
        serves_streams: bool | None = None,
    ) -> None:
        super().__init__(scope, id)
        if streaming and state_machine_tasks:
            raise ValueError("a router function is either streaming or the state machine's tasks, not both")
        architecture = architecture or lambda_.Architecture.ARM_64
        timeout = timeout or (_DEFAULT_STREAM_TIMEOUT if streaming else _DEFAULT_TIMEOUT)
        if web_adapter_layer is not None and not streaming:
            raise ValueError("web_adapter_layer is for the streaming router only (streaming=True)")
        max_age = policy_max_age or _DEFAULT_POLICY_MAX_AGE
        state_cache = state_cache_ttl or _DEFAULT_STATE_CACHE_TTL
        self.service_name = service_name if service_name is not None else default_service_name(self)
        self.metrics_namespace = metrics_namespace
        check_service_name("service_name", self.service_name)
        check_metrics_namespace("metrics_namespace", metrics_namespace)
        check_memory_size("memory_size_mib", memory_size_mib)
        check_function_timeout("timeout", timeout)
        check_at_least_one("reserved_concurrency", reserved_concurrency)
        check_body_size("max_body_size", max_body_size)
        check_policy_max_age("policy_max_age", max_age)
        check_state_cache_ttl("state_cache_ttl", state_cache)
        if powertools_layer is None:
            _check_powertools_region(cdk.Stack.of(self).region)
        self.document = RoutingPolicyDocument.of(policy)
        check_deadline_fits_timeout("timeout", timeout, self.document.policy.resilience.total_deadline_ms)
        if streaming:
            check_deadline_fits_timeout(
                "timeout",
                timeout,
                self.document.policy.resilience.stream_deadline_ms,
                setting="stream_deadline_ms",
            )
            if web_adapter_layer is None:
                _check_web_adapter_region(cdk.Stack.of(self).region)

        check_removal_policy("log_removal_policy", log_removal_policy)
        self.log_group = logs.LogGroup(self, "RouterLogs", retention=log_retention, removal_policy=log_removal_policy)
        # An own role instead of AWSLambdaBasicExecutionRole: it writes to this log group only.
        self.role = iam.Role(
            self,
            "RouterRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Routed Bedrock router: its log group, its policy's models, its AppConfig profile, its state",
        )
        self.log_group.grant_write(self.role)
        if state_table is not None:
            state_table.grant_state_access(self.role)
        if powertools_layer is None:
            powertools_layer = lambda_.LayerVersion.from_layer_version_arn(
                self,
                "PowertoolsLayer",
                ssm.StringParameter.value_for_string_parameter(
                    self,
                    POWERTOOLS_LAYER_PARAMETER.format(
                        architecture=architecture.name, runtime=ROUTER_RUNTIME.name, version=POWERTOOLS_VERSION
                    ),
                ),
            )
        environment = {
            "APPCONFIG_APPLICATION": appconfig_application_name,
            "APPCONFIG_ENVIRONMENT": appconfig_environment_name,
            "APPCONFIG_PROFILE": appconfig_profile_name,
            "ROUTER_POLICY_MAX_AGE_SECONDS": str(int(max_age.to_seconds())),
            "ROUTER_POLICY_SHA256": self.document.digest,
            BOOTSTRAP_POLICY_ENV: BOOTSTRAP_POLICY_FILENAME,
            "ROUTER_STATE_CACHE_SECONDS": _seconds_text(state_cache),
            "POWERTOOLS_SERVICE_NAME": self.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        if state_table is not None:
            environment["ROUTER_STATE_TABLE"] = state_table.table.table_name
        if max_body_size is not None:
            environment["ROUTER_MAX_BODY_BYTES"] = str(int(max_body_size.to_bytes()))
        layers = [powertools_layer]
        if streaming:
            layers.append(web_adapter_layer or _public_web_adapter_layer(self, architecture))
            environment.update(
                {
                    "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
                    "AWS_LWA_INVOKE_MODE": "response_stream",
                    "AWS_LWA_PORT": str(WEB_ADAPTER_PORT),
                    "AWS_LWA_READINESS_CHECK_PATH": READY_PATH,
                    "AWS_LWA_READINESS_CHECK_HEALTHY_STATUS": "200",
                    "AWS_LWA_PASS_THROUGH_PATH": EVENTS_PATH,
                    # the deadline of a request whose Lambda context does not say (web_adapter.AdapterContext)
                    FUNCTION_TIMEOUT_ENV: str(int(timeout.to_milliseconds())),
                }
            )
        self.streaming = streaming
        self.function = lambda_.Function(
            self,
            "Router",
            description="Streams answers from Bedrock models routed per the routing policy (Lambda Web Adapter)"
            if streaming
            else "Decides and records the model calls of the routing state machine"
            if state_machine_tasks
            else "Routes each request to a Bedrock model per the routing policy",
            runtime=ROUTER_RUNTIME,
            architecture=architecture,
            handler=STREAM_HANDLER if streaming else STEPS_HANDLER if state_machine_tasks else ROUTER_HANDLER,
            code=router_code(bootstrap_text=self.document.text, digest=self.document.digest),
            layers=layers,
            role=self.role,
            memory_size=memory_size_mib,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment=environment,
        )
        # Converse is authorized by bedrock:InvokeModel (there is no bedrock:Converse action), ConverseStream by
        # bedrock:InvokeModelWithResponseStream: only a router that serves streams gets the second.
        streams = streaming if serves_streams is None else serves_streams
        actions = ["bedrock:InvokeModel", *(["bedrock:InvokeModelWithResponseStream"] if streams else [])]
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokePolicyModels",
                actions=actions,
                resources=model_invoke_arns(self.document.policy),
            )
        )
        cdk.Validations.of(self.function).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-L1",
                reason="Python 3.13 is pinned to match the Powertools layer release the function uses "
                f"({POWERTOOLS_VERSION}); the runtime and the layer are upgraded together.",
            )
        )


def _check_powertools_region(region: str) -> None:
    if cdk.Token.is_unresolved(region) or region in POWERTOOLS_LAYER_REGIONS:
        return
    raise ValueError(
        f"region '{region}' has no public Powertools for AWS Lambda (Python) layer parameter "
        f"({POWERTOOLS_LAYER_PARAMETER.split('{', 1)[0]}...): pass a layer you publish there (powertools_layer; "
        "router_powertools_layer on RoutedBedrockEndpoint), or deploy to one of POWERTOOLS_LAYER_REGIONS"
    )


def _check_web_adapter_region(region: str) -> None:
    if cdk.Token.is_unresolved(region) or not region.startswith(("cn-", "us-gov-", "eusc-", "us-iso")):
        return
    raise ValueError(
        f"region '{region}' is outside the commercial partition the public Lambda Web Adapter layer is published "
        f"in (account {WEB_ADAPTER_LAYER_ACCOUNT}): pass web_adapter_layer (router_web_adapter_layer on "
        "RoutedBedrockEndpoint) with the layer for that partition, or streaming=False"
    )


def _public_web_adapter_layer(scope: Construct, architecture: lambda_.Architecture) -> lambda_.ILayerVersion:
    name = (
        "LambdaAdapterLayerArm64" if architecture.name == lambda_.Architecture.ARM_64.name else "LambdaAdapterLayerX86"
    )
    region = cdk.Stack.of(scope).region
    arn = f"arn:aws:lambda:{region}:{WEB_ADAPTER_LAYER_ACCOUNT}:layer:{name}:{WEB_ADAPTER_LAYER_VERSION}"
    return lambda_.LayerVersion.from_layer_version_arn(scope, "WebAdapterLayer", arn)


def _seconds_text(duration: Duration) -> str:
    """A duration as decimal seconds for an environment variable: ``2``, ``0.5`` (a token stays a token)."""
    if duration.is_unresolved():
        return cdk.Tokenization.stringify_number(duration.to_seconds())
    return f"{duration.to_milliseconds() / 1000:g}"
