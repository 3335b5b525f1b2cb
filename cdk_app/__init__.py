"""The CDK side: ``RoutedBedrockEndpoint`` and its parts (and, in ``cdk_app.stacks``, the reference stack).

Example::

    from cdk_app import DEFAULT_POLICY_PATH, EndpointAuthorization, RoutedBedrockEndpoint

    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH, auth=EndpointAuthorization.iam())
"""

from lambdas.router.policy import DEFAULT_POLICY_PATH

from .constructs import (
    HEALTH_CHECKER_REGIONS,
    POLICY_PROFILE_NAME,
    POWERTOOLS_LAYER_REGIONS,
    POWERTOOLS_VERSION,
    ROLLBACK_ALARMS,
    AuthMode,
    EndpointAuthorization,
    FailoverRole,
    FailoverRouting,
    LiveStateTable,
    Orchestration,
    RegionalFailover,
    RoutedBedrockEndpoint,
    RouterAlarms,
    RouterDashboard,
    RouterFunction,
    RouterMetrics,
    RoutingPolicy,
    RoutingPolicyDocument,
    RoutingStateMachine,
)

__all__ = [
    "DEFAULT_POLICY_PATH",
    "HEALTH_CHECKER_REGIONS",
    "POLICY_PROFILE_NAME",
    "POWERTOOLS_LAYER_REGIONS",
    "POWERTOOLS_VERSION",
    "ROLLBACK_ALARMS",
    "AuthMode",
    "EndpointAuthorization",
    "FailoverRole",
    "FailoverRouting",
    "LiveStateTable",
    "Orchestration",
    "RegionalFailover",
    "RoutedBedrockEndpoint",
    "RouterAlarms",
    "RouterDashboard",
    "RouterFunction",
    "RouterMetrics",
    "RoutingPolicy",
    "RoutingPolicyDocument",
    "RoutingStateMachine",
]
