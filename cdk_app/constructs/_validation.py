"""Prop checks shared by the constructs: each raises ``ValueError`` naming the prop and its value.

Every check skips unresolved tokens (a ``CfnParameter``, say): those are CloudFormation's to check at deploy
time. The prop name is an argument so that a part alone and the endpoint composing it name their own prop.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import Duration, Size

from lambdas.router.service import RESPONSE_RESERVE_MS

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_APPCONFIG_NAME_MAX_LENGTH = 64
_LAMBDA_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_MAX_STATE_CACHE_TTL_MS = 60_000
API_GATEWAY_INTEGRATION_TIMEOUT_MS = 29_000
"""API Gateway's default (and, without a quota increase, maximum) Lambda integration timeout."""
INVOKE_ALLOWANCE_MS = 2_000
"""Time API Gateway counts and the function's timeout does not: the invoke itself and a cold start's init (up to
~1.2 s of init CPU at the default 512 MB, ``benchmarks/routing_cost.py``)."""


def resolved(value: object) -> bool:
    return not cdk.Token.is_unresolved(value)


def check_service_name(name: str, value: str) -> None:
    if resolved(value) and not _NAME.match(value):
        raise ValueError(f"{name} '{value}' must be 1-64 letters, digits, '-' or '_'")


_NAMESPACE = re.compile(r"^[0-9A-Za-z._/#: -]+$")


def check_metrics_namespace(name: str, value: str) -> None:
    """CloudWatch namespaces: 1-255 letters, digits, ``. - _ / # :`` or spaces, not starting with ':' or the
    ``AWS/`` that AWS's own services keep (PutMetricData refuses those: every metric and alarm would stay silent)."""
    if not resolved(value):
        return
    if not 1 <= len(value) <= 255:
        raise ValueError(f"{name} '{value}' must be 1-255 characters")
    if not _NAMESPACE.match(value):
        raise ValueError(f"{name} {value!r} may hold only letters, digits, '.', '-', '_', '/', '#', ':' and spaces")
    if value.startswith(("AWS/", ":")):
        raise ValueError(f"{name} '{value}' must not start with 'AWS/' (AWS's own namespaces) or ':'")


_DASHBOARD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def check_dashboard_name(name: str, value: str | None) -> None:
    if value is not None and resolved(value) and not _DASHBOARD_NAME.match(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ValueError(f"{name} '{shown}' must be 1-255 letters, digits, '-' or '_' (CloudWatch's dashboard names)")


_REMOVAL_POLICIES = (cdk.RemovalPolicy.DESTROY, cdk.RemovalPolicy.RETAIN, cdk.RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE)


def check_removal_policy(name: str, value: cdk.RemovalPolicy) -> None:
    """DESTROY or RETAIN (or RETAIN_ON_UPDATE_OR_DELETE): SNAPSHOT is for resources that take snapshots, which
    tables, log groups and configuration versions do not, and CloudFormation refuses it at deploy."""
    if value not in _REMOVAL_POLICIES:
        raise ValueError(f"{name} {value} is not supported here: use RemovalPolicy.DESTROY or RemovalPolicy.RETAIN")


def check_appconfig_name(name: str, value: str) -> None:
    """AppConfig application and environment names are 1-64 characters."""
    if resolved(value) and not 1 <= len(value) <= _APPCONFIG_NAME_MAX_LENGTH:
        raise ValueError(f"{name} '{value}' must be 1-64 characters (AppConfig's limit)")


def check_memory_size(name: str, value: int) -> None:
    if resolved(value) and not 128 <= value <= 10240:
        raise ValueError(f"{name} must be 128-10240, got {value}")


def check_function_timeout(name: str, value: Duration) -> None:
    if not value.is_unresolved() and not 3 <= value.to_seconds() <= 900:
        raise ValueError(f"{name} must be 3 s to 15 min, got {value.to_seconds()} s")


def check_at_least_one(name: str, value: float | None) -> None:
    if value is not None and resolved(value) and value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def check_body_size(name: str, value: Size | None) -> None:
    if value is not None and not value.is_unresolved():
        size_bytes = value.to_bytes()
        if not 1 <= size_bytes <= _LAMBDA_MAX_PAYLOAD_BYTES:
            raise ValueError(f"{name} must be 1 byte to 6 MiB (Lambda's limit), got {size_bytes} bytes")


def check_policy_max_age(name: str, value: Duration) -> None:
    if not value.is_unresolved() and not 15 <= value.to_seconds() <= 86400:
        raise ValueError(f"{name} must be 15 s to 24 h (AppConfig's polling), got {value.to_seconds()} s")


def check_state_cache_ttl(name: str, value: Duration) -> None:
    if not value.is_unresolved() and not 0 < value.to_milliseconds() <= _MAX_STATE_CACHE_TTL_MS:
        raise ValueError(f"{name} must be above 0 s and at most 60 s, got {value.to_milliseconds() / 1000:g} s")


def check_percent(name: str, value: float | None, *, maximum: float = 100) -> None:
    if value is not None and resolved(value) and not 0 < value <= maximum:
        raise ValueError(f"{name} must be in (0, {maximum:g}], got {value}")


def check_positive_duration(name: str, value: Duration | None) -> None:
    if value is not None and not value.is_unresolved() and value.to_milliseconds() <= 0:
        raise ValueError(f"{name} must be positive, got {value.to_milliseconds()} ms")


_STAGE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def check_stage_name(name: str, value: str) -> None:
    """A stage name that is also a valid AppConfig environment name (64 characters at most)."""
    if resolved(value) and not _STAGE_NAME.match(value):
        raise ValueError(
            f"{name} '{value}' must be 1-64 letters, digits or '_' (the AppConfig environment shares its name)"
        )


def check_deadline_fits_timeout(
    name: str, timeout: Duration, total_deadline_ms: int, *, setting: str = "total_deadline_ms"
) -> None:
    """The policy's deadline (``resilience.{setting}``) plus the router's response reserve must fit the timeout.

    At run time the router caps the deadline at the Lambda's remaining time minus the reserve anyway: a deadline
    that does not fit would be cut short without a word.
    """
    if timeout.is_unresolved():
        return
    timeout_ms = timeout.to_milliseconds()
    if total_deadline_ms + RESPONSE_RESERVE_MS > timeout_ms:
        raise ValueError(
            f"the policy's resilience.{setting} ({total_deadline_ms} ms) plus the router's response "
            f"reserve ({RESPONSE_RESERVE_MS} ms) exceeds {name} ({timeout_ms:g} ms): lower the deadline to at most "
            f"{timeout_ms - RESPONSE_RESERVE_MS:g} ms or raise {name}"
        )


def check_deadline_fits_api(total_deadline_ms: int) -> None:
    """The policy's deadline, the response reserve and the invoke's overhead must fit API Gateway's 29 s."""
    limit_ms = API_GATEWAY_INTEGRATION_TIMEOUT_MS - RESPONSE_RESERVE_MS - INVOKE_ALLOWANCE_MS
    if total_deadline_ms > limit_ms:
        raise ValueError(
            f"the policy's resilience.total_deadline_ms ({total_deadline_ms} ms) plus the router's response "
            f"reserve ({RESPONSE_RESERVE_MS} ms) and {INVOKE_ALLOWANCE_MS} ms for the invoke and a cold start "
            f"exceeds API Gateway's {API_GATEWAY_INTEGRATION_TIMEOUT_MS} ms integration timeout: lower the "
            f"deadline to at most {limit_ms} ms"
        )
