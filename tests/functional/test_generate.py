"""POST /generate and GET /health through the real handler, API Gateway events and a fake Bedrock."""

from __future__ import annotations

import base64
import json

import pytest

from lambdas.router import handler
from lambdas.router.policy_store import PolicyStore
from lambdas.router.service import RouterService
from local_endpoint.server import LocalLambdaContext

from .conftest import api_event


def test_simple_prompt_is_answered_by_the_cheap_model(contract_fields, invoke):
    status, headers, body = invoke("POST", "/generate", {"prompt": "Hello!", "use_case": "general"})
    assert status == 200
    assert set(body) >= contract_fields
    assert body["model_used"] == "us.amazon.nova-micro-v1:0"
    assert headers["X-Selected-Model"] == "us.amazon.nova-micro-v1:0"
    assert body["route"] == "fast"
    assert body["region"] == "us-east-1"
    assert body["fallback_used"] is False and body["degraded"] is False
    assert body["usage"] == {"input_tokens": 100, "output_tokens": 50}
    assert body["cost_usd"] == pytest.approx((100 * 0.000035 + 50 * 0.00014) / 1000)
    assert body["decision"]["complexity"]["class"] == "simple"
    assert body["decision"]["attempts"][0]["outcome"] == "ok"


def test_complex_prompt_is_answered_by_a_strong_model(invoke):
    prompt = (
        "Analyze the trade-offs of moving our batch ETL to streaming. First list the risks, then compare "
        "the costs, and finally recommend a strategy with its implications."
    )
    status, _, body = invoke("POST", "/generate", {"prompt": prompt})
    assert status == 200
    assert body["model_used"] == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert body["decision"]["complexity"]["class"] == "complex"


def test_premium_tier_header_reaches_the_premium_route(invoke):
    prompt = "Analyze and compare the two designs step by step, then recommend one."
    _, _, body = invoke("POST", "/generate", {"prompt": prompt}, headers={"x-user-tier": "premium"})
    assert body["route"] == "premium"
    assert body["model_used"] == "us.anthropic.claude-opus-4-5-20251101-v1:0"


def test_route_defaults_and_request_overrides_reach_bedrock(invoke, bedrock):
    invoke(
        "POST",
        "/generate",
        {
            "prompt": "Hi",
            "system": "Be brief.",
            "max_tokens": 64,
            "temperature": 0.9,
            "messages": [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Yes?"}],
        },
    )
    sent = bedrock.calls[0]
    assert sent["inference_config"] == {"maxTokens": 64, "temperature": 0.9}
    assert sent["system"] == [{"text": "Be brief."}]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][-1]["content"] == [{"text": "Hi"}]
    assert 0 < sent["timeout_s"] <= 20


def test_images_are_sent_as_bytes_to_a_vision_model(invoke, bedrock):
    png = base64.b64encode(b"\x89PNG fake image bytes").decode()
    status, _, body = invoke(
        "POST", "/generate", {"prompt": "What is this?", "use_case": "faq", "images": [{"format": "png", "data": png}]}
    )
    assert status == 200
    assert body["model_used"] != "us.amazon.nova-micro-v1:0"  # text-only model skipped
    first_block = bedrock.calls[0]["messages"][-1]["content"][0]
    assert first_block == {"image": {"format": "png", "source": {"bytes": b"\x89PNG fake image bytes"}}}


def test_regional_outage_is_served_from_the_next_region(invoke, bedrock):
    bedrock.fail("nova-micro", "us-east-1")
    _, _, body = invoke("POST", "/generate", {"prompt": "Hello!"})
    assert body["model_used"] == "us.amazon.nova-micro-v1:0"
    assert body["region"] == "us-west-2"
    assert body["fallback_used"] is False


def test_model_outage_answers_with_a_fallback(invoke, bedrock):
    bedrock.fail("nova-micro")
    status, headers, body = invoke("POST", "/generate", {"prompt": "Hello!"})
    assert status == 200
    assert body["model_used"] == "FALLBACK:us.amazon.nova-lite-v1:0"
    assert body["fallback_used"] is True
    assert headers["X-Selected-Model"] == "us.amazon.nova-lite-v1:0"
    assert [a["outcome"] for a in body["decision"]["attempts"]] == ["regional", "regional", "ok"]


def test_access_denied_is_an_operator_error_never_the_callers(invoke, bedrock):
    # Given nova-micro denied in every region
    bedrock.fail("nova-micro", code="AccessDeniedException")
    status, _, body = invoke("POST", "/generate", {"prompt": "Hello!"})
    # Then each of its regions is tried (access is per region), then the fallback answers
    assert status == 200
    assert body["model_used"] == "FALLBACK:us.amazon.nova-lite-v1:0"
    attempts = body["decision"]["attempts"]
    assert [(a["model"], a["region"], a["outcome"]) for a in attempts] == [
        ("nova-micro", "us-east-1", "configuration"),
        ("nova-micro", "us-west-2", "configuration"),
        ("nova-lite", "us-east-1", "ok"),
    ]


def test_total_outage_degrades_gracefully(contract_fields, invoke, bedrock):
    bedrock.fail("*")
    status, headers, body = invoke("POST", "/generate", {"prompt": "Hello!"})
    assert status == 200
    assert set(body) >= contract_fields
    assert body["model_used"] == "DEGRADED_SERVICE"
    assert body["degraded"] is True
    assert headers["X-Degraded"] == "true"
    assert "temporarily unavailable" in body["output"]
    assert body["decision"]["gave_up"] == "plan_exhausted"


def test_input_every_model_rejects_is_a_400_with_the_reason(invoke, bedrock):
    bedrock.fail("*", code="ValidationException")
    status, _, body = invoke("POST", "/generate", {"prompt": "Hello!"})
    assert status == 400
    assert "Input is too long" in body["message"]


def test_health_reports_the_policy_version(invoke):
    status, _, body = invoke("GET", "/health")
    assert status == 200
    assert body == {"status": "ok", "policy_version": "2026-12-01.5", "models": 6}


def test_health_is_503_revealing_nothing_when_bedrock_does_not_answer_the_probe(invoke, bedrock):
    # Given an idle instance (no request has proved Bedrock reachable) and Bedrock failing everywhere
    bedrock.fail("*", code="ServiceUnavailableException")
    # When a health checker calls
    status, headers, body = invoke("GET", "/health")
    # Then the region reports it cannot serve, and nothing about why
    assert status == 503
    assert body == {"status": "unavailable"}
    assert headers["Cache-Control"] == "no-store"
    # And the probe asked for a single token of the cheapest model, in its two regions
    assert [(c["model"], c["region"]) for c in bedrock.calls] == [
        ("nova-micro", "us-east-1"),
        ("nova-micro", "us-west-2"),
    ]
    assert all(c["inference_config"] == {"maxTokens": 1} for c in bedrock.calls)


def test_health_is_503_when_no_policy_can_be_loaded(bedrock):
    def no_policy() -> bytes:
        raise OSError("AppConfig unreachable")

    handler.configure(RouterService(policies=PolicyStore(no_policy, max_age_s=300), gateway=bedrock))
    try:
        result = handler.lambda_handler(api_event("GET", "/health"), LocalLambdaContext("r"))
    finally:
        handler.configure(None)
    assert result["statusCode"] == 503
    assert json.loads(result["body"]) == {"status": "unavailable"}
    assert bedrock.calls == []


def test_health_checks_answered_by_traffic_make_no_model_call(invoke, bedrock):
    # Given a request just answered
    assert invoke("POST", "/generate", {"prompt": "Hello!"})[0] == 200
    calls = len(bedrock.calls)
    # When health checkers call many times, Then they are healthy and no model is called for them
    for _ in range(5):
        assert invoke("GET", "/health")[0] == 200
    assert len(bedrock.calls) == calls


def test_unknown_path_is_a_json_404(invoke):
    status, _, body = invoke("GET", "/nope")
    assert status == 404
    assert "message" in body


def test_metrics_carry_route_model_and_outcome_dimension_sets(invoke, bedrock, capsys):
    # Given metrics enabled, When a fallback answers
    bedrock.fail("nova-micro")
    invoke("POST", "/generate", {"prompt": "Hello!"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    request_blob = next(b for b in lines if "Requests" in b and "Route" in b)
    # Then one EMF blob holds the request metrics under each dimension set the dashboard uses
    dims = request_blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert ["service"] in dims
    assert ["service", "Route"] in dims
    assert ["service", "Model"] in dims
    assert ["service", "Outcome"] in dims
    assert ["service", "Model", "Region"] not in dims  # 9 metrics x (model, region) pairs: billed, never read
    assert request_blob["Outcome"] == "fallback"
    # And requests and latency per (model, region) come in a line of their own, under that one set
    [region_blob] = [b for b in lines if "Region" in b and "Requests" in b]
    assert region_blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Region", "service"]]
    assert {metric["Name"] for metric in region_blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "Requests",
        "LatencyMs",
    }
    assert region_blob["Model"] == request_blob["Model"]
    assert request_blob["Model"] == "us.amazon.nova-lite-v1:0"
    assert request_blob["Fallbacks"] == [1.0]
    # And each failed call is counted per model, region and failure class
    failures = [b for b in lines if "ModelCallFailures" in b]
    assert {(b["Model"], b["Region"], b["FailureClass"]) for b in failures} == {
        ("us.amazon.nova-micro-v1:0", "us-east-1", "regional"),
        ("us.amazon.nova-micro-v1:0", "us-west-2", "regional"),
    }
