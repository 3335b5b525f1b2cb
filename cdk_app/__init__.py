"""The CDK side: ``RoutedBedrockEndpoint`` and its reference stack.

from cdk_app import RoutedBedrockEndpoint, EndpointAuthorization
"""

from lambdas.router.policy import DEFAULT_POLICY_PATH

from .constructs import AuthMode, EndpointAuthorization, RoutedBedrockEndpoint

__all__ = ["DEFAULT_POLICY_PATH", "AuthMode", "EndpointAuthorization", "RoutedBedrockEndpoint"]
