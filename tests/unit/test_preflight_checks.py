"""The preflight's pure parts: what each Bedrock error means, one call per (model id, region), route verdicts."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lambdas.router.policy import compile_policy
from routed_bedrock.preflight import CallFailed, Probe, classify, probes_of, run_preflight

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("AccessDeniedException", "You don't have access to the model with the specified model ID.", "access denied"),
        ("UnrecognizedClientException", "The security token included in the request is invalid.", "access denied"),
        (
            "ValidationException",
            "Invocation of model ID amazon.nova-micro-v1:0 with on-demand throughput isn\u2019t supported. Retry your "
            "request with the ID or ARN of an inference profile that contains this model.",
            "not served on demand there",
        ),
        ("ValidationException", "The provided model identifier is invalid.", "not found"),
        ("ValidationException", "This model version has reached the end of its life.", "not found"),
        ("ResourceNotFoundException", "Model not found.", "not found"),
        ("ThrottlingException", "Too many requests, please wait before trying again.", "throttled"),
        ("ServiceQuotaExceededException", "Your request exceeds the service quota.", "throttled"),
        ("ValidationException", "inferenceConfig.maxTokens must be a positive integer.", "validation error"),
        ("ServiceUnavailableException", "Bedrock is unavailable.", "other"),
        ("InternalServerException", "An internal server error occurred.", "other"),
    ],
)
def test_classifies_bedrock_errors(code, message, expected):
    assert classify(code, message) == expected


@pytest.fixture
def two_keys_one_model(policy_document):
    """The shipped policy plus a second catalog key, "copy", for its first model's id, used by no route."""
    first = next(iter(policy_document["models"].values()))
    policy_document["models"]["copy"] = dict(first)
    return compile_policy(policy_document)


def test_calls_each_model_id_and_region_once_even_under_two_catalog_keys(two_keys_one_model):
    # Given a fake Bedrock that records its calls
    calls: list[Probe] = []
    lock = threading.Lock()

    def call(probe: Probe) -> None:
        with lock:
            calls.append(probe)

    # When the preflight runs
    report = run_preflight(two_keys_one_model, call, workers=4)
    # Then every row is reported, but each (model id, region) was called once
    assert len(report.results) == len(probes_of(two_keys_one_model))
    copies = [r for r in report.results if r.probe.model == "copy"]
    assert len(calls) == len({(p.model_id, p.region) for p in calls}) == len(report.results) - len(copies)
    assert copies and {r.result for r in copies} == {"ok"}
    assert report.ok


def test_a_route_lists_its_working_pairs_in_its_own_model_order(default_policy):
    # Given the fast route's primary model fails everywhere
    fast = default_policy.routes["fast"]
    primary = fast.candidates[0].model

    def call(probe: Probe) -> None:
        if probe.model == primary:
            raise CallFailed("AccessDeniedException", "no access")

    report = run_preflight(default_policy, call)
    check = next(route for route in report.routes if route.route == "fast")
    # Then its working pairs are its fallbacks', in the route's order
    expected = [model for model in fast.fallbacks for _ in default_policy.models[model].regions]
    assert [model for model, _ in check.working] == expected
    assert check.ok


def test_fails_the_routes_with_no_working_model_and_reports_broken_calls_in_their_rows(default_policy):
    # Given a call that breaks unexpectedly for every model
    def call(probe: Probe) -> None:
        raise RuntimeError("boom")

    report = run_preflight(default_policy, call)
    # Then each row says "other" with the exception's type, and every route failed
    assert {(r.result, r.code) for r in report.results} == {("other", "RuntimeError")}
    assert report.failed_routes == list(default_policy.routes)
    assert not report.ok


def test_unreachable_calls_are_reported_as_unreachable(default_policy):
    def call(probe: Probe) -> None:
        raise CallFailed("EndpointConnectionError", "Could not connect", unreachable=True)

    report = run_preflight(default_policy, call)
    assert {r.result for r in report.results} == {"unreachable"}


def test_importing_the_cli_imports_neither_aws_cdk_nor_botocore():
    code = (
        "import sys, routed_bedrock.cli, routed_bedrock.preflight\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('aws_cdk', 'constructs', 'botocore')]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
