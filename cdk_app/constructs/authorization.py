"""How callers authenticate to ``POST /generate``: ``EndpointAuthorization`` and its ``AuthMode``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from aws_cdk import aws_cognito as cognito


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
