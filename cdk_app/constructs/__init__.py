"""The reusable constructs: the composed endpoint, and each of its parts, usable alone."""

from .authorization import AuthMode, EndpointAuthorization
from .live_state_table import LiveStateTable
from .policy_document import POLICY_PROFILE_NAME, RoutingPolicyDocument
from .regional_failover import HEALTH_CHECKER_REGIONS, FailoverRole, FailoverRouting, RegionalFailover
from .routed_bedrock_endpoint import RoutedBedrockEndpoint
from .router_alarms import ROLLBACK_ALARMS, RouterAlarms
from .router_dashboard import RouterDashboard
from .router_function import POWERTOOLS_LAYER_REGIONS, POWERTOOLS_VERSION, RouterFunction
from .router_metrics import RouterMetrics
from .routing_policy import RoutingPolicy
from .routing_state_machine import Orchestration, RoutingStateMachine

__all__ = [
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
