"""The reusable constructs."""

from .routed_bedrock_endpoint import AuthMode, EndpointAuthorization, RoutedBedrockEndpoint

__all__ = ["AuthMode", "EndpointAuthorization", "RoutedBedrockEndpoint"]
