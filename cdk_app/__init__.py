"""The CDK side: the ``RoutedBedrockEndpoint`` construct (and, in ``cdk_app.stacks``, its reference stack).

Example::

    from cdk_app import DEFAULT_POLICY_PATH, EndpointAuthorization, RoutedBedrockEndpoint

    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH, auth=EndpointAuthorization.iam())
"""

from lambdas.router.policy import DEFAULT_POLICY_PATH

from .constructs import AuthMode, EndpointAuthorization, RoutedBedrockEndpoint

__all__ = ["DEFAULT_POLICY_PATH", "AuthMode", "EndpointAuthorization", "RoutedBedrockEndpoint"]
