"""End to end over real HTTP: client -> local endpoint -> router handler -> botocore -> Bedrock simulator."""

from __future__ import annotations

import pytest

from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file

pytestmark = pytest.mark.xdist_group("local_endpoint")

# The server runs the shipped policy; model ids are read from it so the tests follow its catalog.
POLICY = load_policy_file(DEFAULT_POLICY_PATH)
FAST = POLICY.routes["fast"]  # what a greeting ("general", simple) and use_case "faq" get
PRIMARY = POLICY.models[FAST.candidates[0].model]
FIRST_FALLBACK = POLICY.models[FAST.fallbacks[0]]
HOME, NEXT_REGION = PRIMARY.regions[0], PRIMARY.regions[1]


def model_id(route: str, candidate: int = 0) -> str:
    return POLICY.models[POLICY.routes[route].candidates[candidate].model].model_id


HARD = (
    "Analyze the trade-offs of migrating our monolith to microservices. First list the risks step by step, "
    "then compare the operating costs over three years, and finally recommend a strategy with its implications."
)


def test_health_reports_the_policy(endpoint):
    response = endpoint.request("GET", "/health")
    assert response.status == 200
    assert response.body["policy_version"] == POLICY.version


def test_greeting_is_answered_by_the_cheap_model_through_the_simulator(contract_fields, endpoint):
    response = endpoint.generate({"prompt": "Hello!", "use_case": "general"})
    assert response.status == 200
    assert set(response.body) >= contract_fields
    assert response.body["model_used"] == PRIMARY.model_id
    assert response.headers["X-Selected-Model"] == PRIMARY.model_id
    # the simulator's text names who answered, proving the call crossed the wire
    assert response.body["output"].startswith(f"[sim {PRIMARY.model_id} @ {HOME}]")
    assert response.body["usage"]["input_tokens"] > 0 and response.body["usage"]["output_tokens"] > 0
    assert response.body["cost_usd"] > 0


def test_long_analytical_prompt_is_answered_by_a_stronger_model(endpoint):
    response = endpoint.generate({"prompt": HARD})
    assert response.status == 200
    assert response.body["model_used"] == model_id("deep")
    assert response.body["decision"]["complexity"]["class"] == "complex"


def test_premium_tier_gets_the_premium_route(endpoint):
    response = endpoint.generate({"prompt": HARD}, headers={"X-User-Tier": "premium"})
    assert response.body["model_used"] == model_id("premium")


def test_canary_split_is_sticky_per_caller(endpoint):
    variants = {}
    for caller in range(40):
        body = endpoint.generate(
            {"prompt": "Summarize: launch moved to May.", "use_case": "summarization"},
            headers={"X-Caller-Id": f"user-{caller}"},
        ).body
        variants[caller] = body["model_used"]
        again = endpoint.generate(
            {"prompt": "Another memo.", "use_case": "summarization"}, headers={"X-Caller-Id": f"user-{caller}"}
        ).body
        assert again["model_used"] == variants[caller]
    assert set(variants.values()) == {model_id("balanced", 0), model_id("balanced", 1)}


def test_throttling_is_retried_with_backoff_and_then_succeeds(endpoint):
    # Given the primary model throttles half of its calls in its home region
    endpoint.fault(model=PRIMARY.model_id, region=HOME, throttle_rate=0.5)
    responses = [endpoint.generate({"prompt": f"Hello {i}!"}) for i in range(20)]
    # Then every request is answered by a model, and some needed a retry on the same model and region
    assert all(r.status == 200 and not r.body["degraded"] for r in responses)
    retried = [r for r in responses if any(a.get("retry") for a in r.body["decision"]["attempts"])]
    assert retried, "expected at least one request to be retried after a throttle"
    first = retried[0].body["decision"]["attempts"]
    assert first[0]["outcome"] == "throttled" and first[0]["code"] == "ThrottlingException"


def test_regional_outage_is_served_from_the_next_region(endpoint):
    endpoint.fault(model=PRIMARY.model_id, region=HOME, outage=True)
    response = endpoint.generate({"prompt": "Hello!"})
    assert response.status == 200
    assert response.body["model_used"] == PRIMARY.model_id
    assert response.body["region"] == NEXT_REGION
    assert response.body["output"].startswith(f"[sim {PRIMARY.model_id} @ {NEXT_REGION}]")
    assert response.body["decision"]["attempts"][0]["code"] == "ServiceUnavailableException"


def test_model_outage_answers_with_a_fallback_model(endpoint):
    endpoint.fault(model=PRIMARY.model_id, region="*", outage=True)
    response = endpoint.generate({"prompt": "Hello!"})
    assert response.status == 200
    assert response.body["model_used"] == f"FALLBACK:{FIRST_FALLBACK.model_id}"
    assert response.body["fallback_used"] is True


def test_access_denied_model_is_skipped_without_blaming_the_caller(endpoint):
    endpoint.fault(model=PRIMARY.model_id, region="*", error="AccessDeniedException")
    response = endpoint.generate({"prompt": "Hello!"})
    assert response.status == 200
    assert response.body["model_used"] == f"FALLBACK:{FIRST_FALLBACK.model_id}"
    attempts = response.body["decision"]["attempts"]
    # model access is per region: each of the primary's regions is tried once, then the fallback answers
    primary = [a for a in attempts if a["model"] == PRIMARY.key]
    assert [(a["region"], a["outcome"]) for a in primary] == [(region, "configuration") for region in PRIMARY.regions]


def test_total_outage_degrades_gracefully(contract_fields, endpoint):
    endpoint.fault(model="*", region="*", outage=True)
    response = endpoint.generate({"prompt": "Hello!"})
    assert response.status == 200
    assert set(response.body) >= contract_fields
    assert response.body["model_used"] == "DEGRADED_SERVICE"
    assert response.body["degraded"] is True
    assert response.headers["X-Degraded"] == "true"


def test_input_too_long_for_every_model_is_the_callers_400(endpoint):
    endpoint.fault(model="*", region="*", max_input_tokens=5)
    response = endpoint.generate({"prompt": "This prompt is longer than five tokens for sure."})
    assert response.status == 400
    assert "Input is too long" in response.body["message"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{oops", "not valid JSON"),
        (b"", "request body is empty"),
        (b'{"prompt": ""}', "prompt must be longer than or equal to 1"),
        (b'{"use_case": "general"}', "'prompt' is required"),
        (b'{"prompt": ["a"]}', "prompt must be string"),
        (b'{"prompt": "hi", "use_case": "poetry"}', "unknown use_case 'poetry'"),
        (b'{"prompt": "hi", "model": "gpt-4o"}', "model 'gpt-4o' is not in the policy's catalog"),
        (b'{"prompt": "hi", "max_tokens": -5}', "max_tokens must be bigger than or equal to 1"),
    ],
)
def test_bad_input_is_a_json_400(endpoint, raw, expected):
    response = endpoint.request("POST", "/generate", raw=raw)
    assert response.status == 400
    assert expected in response.body["message"]


def test_oversized_body_is_a_json_400(endpoint):
    response = endpoint.request("POST", "/generate", raw=b'{"prompt": "' + b"x" * 6_100_000 + b'"}')
    assert response.status == 400
    assert "over the limit" in response.body["message"]


def test_unknown_tier_is_a_json_400(endpoint):
    response = endpoint.generate({"prompt": "hi"}, headers={"X-User-Tier": "gold"})
    assert response.status == 400
    assert "unknown user tier 'gold'" in response.body["message"]
