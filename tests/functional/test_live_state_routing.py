"""The handler with live state: budgets (429 and degrade), latency budgets, breakers sparing later requests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.router import handler
from lambdas.router.budget import scopes_for
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.policy import DEFAULT_POLICY_PATH, compile_policy
from lambdas.router.policy_store import PolicyStore, file_fetcher
from lambdas.router.service import RouterService
from lambdas.router.state_store import InMemoryBackend
from local_endpoint.server import LocalLambdaContext

from .conftest import FakeBedrock, api_event, reserved_at_each_call, today_key

Call = Callable[..., tuple[int, dict[str, str], dict[str, Any]]]


@pytest.fixture
def store() -> InMemoryBackend:
    return InMemoryBackend()


@pytest.fixture
def make_invoke(bedrock: FakeBedrock, store: InMemoryBackend, tmp_path: Path) -> Iterator[Callable[..., Call]]:
    def make(mutate: Callable[[dict[str, Any]], None] | None = None, backend: Any = None) -> Call:
        document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
        if mutate is not None:
            mutate(document)
        policy_file = tmp_path / "policy.json"
        policy_file.write_text(json.dumps(document), encoding="utf-8")
        service = RouterService(
            policies=PolicyStore(file_fetcher(policy_file), max_age_s=300),
            gateway=bedrock,
            live_state=LiveStateTracker(backend or store, cache_ttl_s=0.0),
            sleep=lambda _s: None,
        )
        handler.configure(service)

        callers = iter(range(1_000_000))

        def call(
            body: Any, headers: dict[str, str] | None = None, source_ip: str | None = None
        ) -> tuple[int, dict[str, str], dict[str, Any]]:
            event = api_event("POST", "/generate", body, headers)
            # Each request from another caller (as API Gateway sees them), unless the test names one
            event["requestContext"]["identity"]["sourceIp"] = source_ip or f"203.0.113.{next(callers) % 250}"
            result = handler.lambda_handler(event, LocalLambdaContext("req-123"))
            flat = {k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}
            flat.update(result.get("headers") or {})
            return result["statusCode"], flat, json.loads(result["body"])

        return call

    yield make
    handler.configure(None)


def spend(store: InMemoryBackend, usd: float) -> None:
    policy = compile_policy(json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")))
    for scope in scopes_for(policy.budget, time.time(), tier="standard", api_key=None):
        store.spend[scope.key] = usd


def test_spent_budget_with_reject_action_answers_429_with_retry_after(make_invoke, store, bedrock):
    invoke = make_invoke(lambda d: d["budget"]["modes"].__setitem__(2, {"at_percent": 100, "action": "reject"}))
    spend(store, 250.0)  # of 200 USD a day
    status, headers, body = invoke({"prompt": "Hello!"})
    assert status == 429
    assert body["error"] == "BudgetExceeded"
    assert "daily spend budget is used up (125%)" in body["message"]
    assert 0 < int(headers["Retry-After"]) <= 86_400
    assert bedrock.calls == []


def test_spent_budget_with_degrade_action_gives_the_degraded_answer(make_invoke, store, bedrock, contract_fields):
    invoke = make_invoke()
    spend(store, 200.0)
    status, headers, body = invoke({"prompt": "Hello!"})
    assert status == 200
    assert set(body) >= contract_fields
    assert body["model_used"] == "DEGRADED_SERVICE" and headers["X-Degraded"] == "true"
    assert body["decision"]["gave_up"] == "budget"
    assert bedrock.calls == []


def test_answers_are_charged_to_the_budget(make_invoke, store):
    invoke = make_invoke()
    _, _, body = invoke({"prompt": "Hello!"})
    handler.service().live_state.flush()
    today = next(key for key in store.spend if key.startswith("d:"))
    assert store.spend[today] == pytest.approx(body["cost_usd"])


def test_capped_budget_moves_a_hard_prompt_to_a_standard_model(make_invoke, store):
    invoke = make_invoke()
    spend(store, 150.0)  # 75%
    prompt = "Analyze the trade-offs step by step, first the risks, then compare costs, and recommend a strategy."
    status, _, body = invoke({"prompt": prompt})
    assert status == 200
    assert body["model_used"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert body["decision"]["budget"]["mode"] == "max tier standard"


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1000000", "1_000", "+5", "١٠٠", " ", "9" * 5000])
def test_rejects_a_bad_latency_budget_header(make_invoke, value):
    status, _, body = make_invoke()({"prompt": "Hello!"}, {"X-Latency-Budget-Ms": value})
    assert status == 400
    assert "X-Latency-Budget-Ms must be a whole number of milliseconds" in body["message"]
    assert repr(value[:40]) in body["message"]  # echoed at most 40 characters
    assert len(body["message"]) < 200


def test_a_failing_region_is_skipped_once_its_breaker_opens(make_invoke, bedrock):
    # Given nova-micro down in its home region
    invoke = make_invoke()
    bedrock.fail("nova-micro", "us-east-1")
    failed = []
    for _ in range(10):
        status, _, body = invoke({"prompt": "Hello!"})
        assert status == 200 and body["region"] == "us-west-2"
        failed.append(sum(a["outcome"] != "ok" for a in body["decision"]["attempts"]))
    # Then the first requests pay one failed attempt each, and after the breaker opens none do
    assert failed[:5] == [1, 1, 1, 1, 1]
    assert failed[5:] == [0] * 5
    assert {"model": "nova-micro", "region": "us-east-1", "reason": "circuit open"} in body["decision"]["skipped"]


def test_one_callers_poison_requests_cannot_open_circuits_for_another_caller(make_invoke, bedrock):
    # Given a request whose content makes every model fail with a server error (as a lone surrogate once did)
    invoke = make_invoke()
    bedrock.fail("*", "*", code="InternalServerException")
    for _ in range(12):
        status, _, body = invoke({"prompt": "poison", "use_case": "faq"}, source_ip="198.51.100.66")
        assert status == 200 and body["degraded"]
    # When another caller asks once the input is gone
    bedrock.failures.clear()
    status, _, body = invoke({"prompt": "Hello!", "use_case": "faq"}, source_ip="192.0.2.10")
    # Then a model answers it: no circuit was opened by the first caller's requests
    assert status == 200, body
    assert body["degraded"] is False
    assert body["model_used"] == "us.amazon.nova-micro-v1:0"
    assert "skipped" not in body["decision"] or not body["decision"]["skipped"]


def test_a_callers_self_declared_id_is_not_a_distinct_caller_for_breakers(make_invoke, bedrock, store):
    # Given one source (one IP, no API key) that writes a new X-Caller-Id on every request
    invoke = make_invoke()
    bedrock.fail("*", "*", code="InternalServerException")
    for index in range(12):
        invoke({"prompt": "poison", "use_case": "faq"}, {"X-Caller-Id": f"user-{index}"}, source_ip="198.51.100.66")
    # Then no circuit opened
    assert store.circuits == {}


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def test_budget_gauges_and_opened_circuits_use_the_dimensions_the_alarms_query(
    make_invoke, bedrock, store, capsys, monkeypatch
):
    # Given a budget 60% spent, nova-micro down in its home region, and a gauge on every request
    monkeypatch.setattr(handler, "GAUGE_INTERVAL_S", 0.0)
    invoke = make_invoke()
    spend(store, 120.0)
    bedrock.fail("nova-micro", "us-east-1")
    capsys.readouterr()
    # When requests open the breaker
    for _ in range(5):
        invoke({"prompt": "Hello!"})
    lines = emf_lines(capsys)
    # Then the budget gauges are in their own line under [service] only, never under route or model
    gauges = [line for line in lines if "BudgetUsedPercent" in line]
    assert len(gauges) == 5
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] for line in gauges)
    assert gauges[0]["BudgetUsedPercent"] == [pytest.approx(60.0)]
    assert gauges[0]["SpendTodayUsd"] == [pytest.approx(120.0)]
    assert not [line for line in lines if "Requests" in line and "BudgetUsedPercent" in line]
    # And the opened circuit is counted once, per model and region
    [opened] = [line for line in lines if "CircuitsOpened" in line]
    assert opened["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Region", "service"]]
    assert (opened["Model"], opened["Region"]) == ("us.amazon.nova-micro-v1:0", "us-east-1")


def test_store_errors_are_counted_under_service(make_invoke, capsys):
    class Down(InMemoryBackend):
        def read(self, *args: Any, **kwargs: Any) -> Any:
            raise TimeoutError("read timed out")

    invoke = make_invoke(backend=Down())
    capsys.readouterr()
    status, _, _ = invoke({"prompt": "Hello!"})
    assert status == 200
    [errors] = [line for line in emf_lines(capsys) if "StateStoreErrors" in line]
    assert errors["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert errors["StateStoreErrors"] == [1.0]


def test_budget_gauges_are_written_at_most_once_per_interval(make_invoke, capsys, monkeypatch):
    monkeypatch.setattr(handler, "GAUGE_INTERVAL_S", 3600.0)
    invoke = make_invoke()
    capsys.readouterr()
    for _ in range(5):
        assert invoke({"prompt": "Hello!"})[0] == 200
    lines = emf_lines(capsys)
    assert len([line for line in lines if "BudgetUsedPercent" in line]) == 1
    assert len([line for line in lines if "Requests" in line and "Route" in line]) == 5


def test_an_assumed_role_is_one_caller_whatever_its_session_name():
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    from lambdas.router.handler import _principal

    def principal(user_arn: str) -> str:
        event = api_event("POST", "/generate", {"prompt": "hi"})
        event["requestContext"]["identity"]["userArn"] = user_arn
        return _principal(APIGatewayProxyEvent(event))

    # The session name is the caller's choice when it assumes the role: it must not make new callers
    role = "arn:aws:sts::123456789012:assumed-role/Reporting"
    assert principal(f"{role}/session-1") == principal(f"{role}/session-2") == f"iam:{role}"
    # An IAM user is itself
    assert principal("arn:aws:iam::123456789012:user/alice") == "iam:arn:aws:iam::123456789012:user/alice"


@pytest.mark.parametrize(("action", "status"), [("reject", 429), ("degrade", 200)])
def test_rejects_before_any_model_call_a_request_whose_answer_the_cap_has_no_room_for(
    make_invoke, store, bedrock, action, status
):
    # Given a budget just under its cap: below 100% (so the mode in force still routes), but with less room than
    # the answer could cost (its input plus all of max_tokens)
    invoke = make_invoke(lambda d: d["budget"]["modes"].__setitem__(2, {"at_percent": 100, "action": action}))
    spend(store, 199.99995)
    # When a request comes
    got, headers, body = invoke({"prompt": "Hello!", "use_case": "faq"})
    # Then the policy's action at the cap applies, and no model is called
    assert got == status
    if action == "reject":
        assert body["budget_scope"] == "daily" and "(100%)" in body["message"]
        assert int(headers["Retry-After"]) > 0
    else:
        assert body["degraded"] and body["decision"]["gave_up"] == "budget"
    assert bedrock.calls == []
    assert store.spend[today_key(store)] == pytest.approx(199.99995)


def test_near_the_cap_the_answers_most_possible_cost_is_in_the_shared_counter_during_the_call(
    make_invoke, store, bedrock, monkeypatch
):
    # Given 85% of the daily budget spent
    invoke = make_invoke()
    spend(store, 170.0)
    seen = reserved_at_each_call(bedrock, monkeypatch, store)
    # When a request is answered
    _, _, body = invoke({"prompt": "Hello!", "use_case": "faq"})
    # Then while the model was called the counter held the estimate: 2 input and 512 output tokens (the route's
    # max_tokens) of the dearest model in the plan, its fallback Claude Haiku 4.5
    estimate = (2 * 0.001 + 512 * 0.005) / 1000
    assert seen == [pytest.approx(170.0 + estimate)]
    # And once settled it holds the answer's cost
    handler.service().live_state.flush()
    assert store.spend[today_key(store)] == pytest.approx(170.0 + body["cost_usd"])
