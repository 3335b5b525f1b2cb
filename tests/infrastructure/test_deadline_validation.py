"""A policy deadline the router's timeout or API Gateway's 29 s cannot hold is rejected at synth."""

from __future__ import annotations

import copy
from typing import Any

import aws_cdk as cdk
import pytest

from cdk_app import RoutedBedrockEndpoint, RouterFunction

pytestmark = pytest.mark.xdist_group("deadline-validation")


def with_deadline(document: dict[str, Any], total_deadline_ms: int) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    changed["resilience"]["total_deadline_ms"] = total_deadline_ms
    return changed


def endpoint(policy: dict[str, Any], **props: Any) -> RoutedBedrockEndpoint:
    return RoutedBedrockEndpoint(cdk.Stack(cdk.App(), "Check"), "Llm", policy=policy, **props)


def router_function(policy: dict[str, Any], timeout: cdk.Duration) -> RouterFunction:
    return RouterFunction(
        cdk.Stack(cdk.App(), "Check"),
        "RouterFunction",
        policy=policy,
        appconfig_application_name="app",
        appconfig_environment_name="dev",
        timeout=timeout,
    )


def test_rejects_a_deadline_api_gateway_would_cut_off(shipped_policy):
    # Given a schema-valid 28.5 s deadline and the default 29 s function timeout
    # Then the endpoint refuses it: with the reserve and a cold start the answer would come after 29 s
    with pytest.raises(ValueError) as error:
        endpoint(with_deadline(shipped_policy, 28_500))
    message = str(error.value)
    assert "resilience.total_deadline_ms (28500 ms)" in message
    assert "response reserve (500 ms)" in message
    assert "API Gateway's 29000 ms integration timeout" in message
    assert "at most 26500 ms" in message


def test_rejects_a_deadline_past_api_gateway_even_with_a_longer_function_timeout(shipped_policy):
    with pytest.raises(ValueError, match="API Gateway's 29000 ms integration timeout"):
        endpoint(with_deadline(shipped_policy, 28_000), router_timeout=cdk.Duration.seconds(60))


def test_rejects_a_deadline_the_router_timeout_cannot_hold(shipped_policy):
    # Given the shipped 25 s deadline and a 20 s function
    with pytest.raises(ValueError) as error:
        endpoint(shipped_policy, router_timeout=cdk.Duration.seconds(20))
    message = str(error.value)
    assert "resilience.total_deadline_ms (25000 ms)" in message
    assert "exceeds router_timeout (20000 ms)" in message
    assert "at most 19500 ms" in message


def test_rejects_a_deadline_the_router_function_timeout_cannot_hold_when_used_alone(shipped_policy):
    with pytest.raises(ValueError, match=r"exceeds timeout \(10000 ms\)"):
        router_function(shipped_policy, cdk.Duration.seconds(10))


def test_accepts_the_largest_deadlines_that_fit(shipped_policy):
    # The endpoint: 26.5 s + 0.5 s reserve + 2 s for the invoke and a cold start = 29 s
    assert endpoint(with_deadline(shipped_policy, 26_500)).policy.resilience.total_deadline_ms == 26_500
    # With a 20 s function: 19.5 s + 0.5 s
    endpoint(with_deadline(shipped_policy, 19_500), router_timeout=cdk.Duration.seconds(20))
    # A function alone is not behind API Gateway's 29 s
    router_function(with_deadline(shipped_policy, 59_500), cdk.Duration.seconds(60))


def test_skips_an_unresolved_router_timeout(shipped_policy):
    stack = cdk.Stack(cdk.App(), "Tokens")
    seconds = cdk.CfnParameter(stack, "Timeout", type="Number", default=10)
    RoutedBedrockEndpoint(
        stack, "Llm", policy=shipped_policy, router_timeout=cdk.Duration.seconds(seconds.value_as_number)
    )
