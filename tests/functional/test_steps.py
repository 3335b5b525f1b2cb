"""The Step Functions orchestration's tasks, driven by a loop that does what the state machine does.

Every scenario is also run through the Lambda orchestration's handler: both must give the same answer (model,
region, fallback, degraded, attempts) for the same failures.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from lambdas.router import steps
from lambdas.router.executor import ModelCallError
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.policy import DEFAULT_POLICY_PATH, compile_policy
from lambdas.router.policy_store import PolicyStore, file_fetcher
from lambdas.router.replay import sdk_shape
from lambdas.router.state_store import InMemoryBackend
from tests.functional.conftest import FakeBedrock, Invoke

HOME = "us-east-1"


class SdkIntegration:
    """Step Functions' Bedrock SDK integration over the fake Bedrock: PascalCase in, PascalCase out, errors caught
    as ``{"Error": "BedrockRuntime.<code>", "Cause": ...}`` (a Catch with ResultPath)."""

    def __init__(self, bedrock: FakeBedrock, policy_models: dict[str, str]) -> None:
        self.bedrock = bedrock
        self.key_of = {model_id: key for key, model_id in policy_models.items()}
        self.calls: list[dict[str, Any]] = []

    def __call__(self, call: dict[str, Any]) -> dict[str, Any]:
        assert call["Region"] == HOME, "the state machine calls its own region only"
        self.calls.append(call)
        planned = _Planned(self.key_of[call["ModelId"]], call["ModelId"], call["Region"])
        try:
            reply = self.bedrock.converse(
                planned,  # type: ignore[arg-type]
                float(call["TimeoutSeconds"]),
                messages=call["Messages"],
                system=call.get("System", []),
                inference_config=call["InferenceConfig"],
            )
        except ModelCallError as exc:
            return {"Error": f"BedrockRuntime.{exc.code}", "Cause": exc.message}
        return sdk_shape(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": reply.text}]}},
                "usage": {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens},
                "stopReason": reply.stop_reason,
            }
        )


class _Model:
    def __init__(self, key: str, model_id: str) -> None:
        self.key, self.model_id = key, model_id


class _Planned:
    def __init__(self, key: str, model_id: str, region: str) -> None:
        self.model = _Model(key, model_id)
        self.region = region


@pytest.fixture
def machine(bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch):
    """Runs one request through the tasks the way the state machine does; returns (answer, tasks run)."""
    monkeypatch.setenv("AWS_REGION", HOME)
    policies = PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=300)
    tracker = LiveStateTracker(InMemoryBackend())
    steps.configure((policies, tracker, bedrock))
    models = {key: spec.model_id for key, spec in policies.current().models.items()}
    sdk = SdkIntegration(bedrock, models)

    def run(body: Any, headers: dict[str, str] | None = None, raw: str | None = None) -> tuple[dict[str, Any], int]:
        request = {
            "body": raw if raw is not None else json.dumps(body),
            "headers": {"Content-Type": "application/json", **(headers or {})},
            "requestContext": {"requestId": "req-123", "identity": {"sourceIp": "203.0.113.9"}},
        }
        step = steps.handle({"phase": "decide", "request": request})
        tasks = 1
        while step["action"] == "call":
            json.dumps(step)  # the state is JSON, as in Step Functions
            outcome = sdk(step["call"])
            step = steps.handle({"phase": "record", "request": request, "run": step["run"], "outcome": outcome})
            tasks += 1
            assert tasks < 20
        return step["answer"], tasks

    run.sdk = sdk  # type: ignore[attr-defined]
    run.tracker = tracker  # type: ignore[attr-defined]
    yield run
    steps.configure(None)


def _both(machine, invoke: Invoke, body: dict[str, Any], headers: dict[str, str] | None = None):
    answer, tasks = machine(body, headers)
    status, response_headers, lambda_body = invoke("POST", "/generate", body, headers)
    return answer, json.loads(answer["body"]), tasks, (status, response_headers, lambda_body)


def _same(steps_body: dict[str, Any], lambda_body: dict[str, Any]) -> None:
    for key in ("model_used", "route", "region", "fallback_used", "degraded", "usage", "cost_usd", "output"):
        assert steps_body.get(key) == lambda_body.get(key), key
    strip = [{k: v for k, v in a.items() if k != "latency_ms"} for a in steps_body["decision"]["attempts"]]
    expected = [{k: v for k, v in a.items() if k != "latency_ms"} for a in lambda_body["decision"]["attempts"]]
    assert strip == expected


def test_primary_answer_takes_two_tasks_and_matches_the_lambda_orchestration(machine, invoke, bedrock):
    # Given a healthy Bedrock
    # When a simple prompt goes through both orchestrations
    answer, body, tasks, (status, headers, lambda_body) = _both(machine, invoke, {"prompt": "What is 2+2?"})
    # Then the state machine ran decide and one record task, and answers as the Lambda does
    assert tasks == 2
    assert answer["statusCode"] == status == 200
    assert answer["headers"]["X-Selected-Model"] == headers["X-Selected-Model"]
    _same(body, lambda_body)
    assert body["fallback_used"] is False and body["region"] == HOME


def test_next_region_is_called_from_the_task(machine, invoke, bedrock):
    # Given the primary model failing in the home region only
    probe, _ = machine({"prompt": "What is 2+2?"})
    primary = json.loads(probe["body"])["decision"]["attempts"][0]["model"]
    bedrock.calls.clear()
    bedrock.fail(primary, HOME)
    # When the request runs
    _answer, body, tasks, (_status, _headers, lambda_body) = _both(machine, invoke, {"prompt": "What is 2+2?"})
    # Then the home call failed in the state machine and the task called the next region itself
    assert body["region"] == "us-west-2" and body["fallback_used"] is False
    assert [a["outcome"] for a in body["decision"]["attempts"]] == ["regional", "ok"]
    assert tasks == 2
    _same(body, lambda_body)


def test_fallback_model_after_both_regions_fail(machine, invoke, bedrock):
    probe, _ = machine({"prompt": "What is 2+2?"})
    primary = json.loads(probe["body"])["decision"]["attempts"][0]["model"]
    bedrock.fail(primary)
    _answer, body, tasks, (_status, _headers, lambda_body) = _both(machine, invoke, {"prompt": "What is 2+2?"})
    assert body["fallback_used"] is True and body["model_used"].startswith("FALLBACK:")
    assert tasks == 3  # decide, record (home failed; west failed in-task), record (fallback's home answer)
    _same(body, lambda_body)


def test_degraded_answer_when_every_model_fails(machine, invoke, bedrock):
    bedrock.fail("*", "*")
    answer, body, _tasks, (status, headers, lambda_body) = _both(machine, invoke, {"prompt": "What is 2+2?"})
    assert answer["statusCode"] == status == 200
    assert body["degraded"] is True and answer["headers"]["X-Degraded"] == headers["X-Degraded"] == "true"
    assert body["output"] == lambda_body["output"]
    _same(body, lambda_body)


def test_rejects_bad_body_in_the_first_task_without_a_call(machine, bedrock):
    answer, tasks = machine(None, raw="{not json")
    assert tasks == 1 and answer["statusCode"] == 400
    assert "JSON" in json.loads(answer["body"])["message"]
    assert bedrock.calls == []


def test_caller_error_on_every_model_is_a_400(machine, invoke, bedrock):
    bedrock.fail("*", "*", code="ValidationException")
    answer, body, _tasks, (status, _headers, lambda_body) = _both(machine, invoke, {"prompt": "What is 2+2?"})
    assert answer["statusCode"] == status == 400
    assert body["message"] == lambda_body["message"]


def test_each_attempt_reaches_the_breaker_once(machine, bedrock):
    # Given the primary failing in the home region
    probe, _ = machine({"prompt": "What is 2+2?"})
    primary = json.loads(probe["body"])["decision"]["attempts"][0]["model"]
    bedrock.fail(primary, HOME)
    reported: list[tuple[str, str, str]] = []
    tracker = machine.tracker
    original = tracker.record_attempt

    def spy(policy, model_id, region, outcome, latency_ms, **kw):
        reported.append((model_id, region, outcome))
        return original(policy, model_id, region, outcome, latency_ms, **kw)

    tracker.record_attempt = spy
    # When a request fails over and the tasks replay its calls
    machine({"prompt": "What is 2+2?"})
    # Then each call was reported exactly once
    assert [r[2] for r in reported] == ["regional", "ok"]


def test_rejects_a_task_without_phase():
    with pytest.raises(ValueError, match="phase"):
        steps.handle({"request": {}})


def test_timeout_of_the_call_is_whole_seconds(machine, bedrock):
    machine({"prompt": "hello"})
    call = machine.sdk.calls[-1]
    assert isinstance(call["TimeoutSeconds"], int) and 1 <= call["TimeoutSeconds"] <= 25


def test_cascade_escalates_across_tasks_like_the_lambda(machine, invoke, bedrock):
    # Given the cheap model's answer to a maths ask has no final answer (the fake answers with prose)
    body_in = {"prompt": "Tom has 3 apples and buys 4 more. How many apples does he have?", "use_case": "math"}
    # When the cascade route runs in both orchestrations
    _answer, body, tasks, (_status, _headers, lambda_body) = _both(machine, invoke, body_in)
    # Then the escalation decision and every paid call match, one record task per call
    assert body["route"] == "math-cascade"
    assert body["decision"]["cascade"] == lambda_body["decision"]["cascade"]
    assert "escalated" in body["decision"]["cascade"]["steps"][0]
    assert len(body["decision"]["attempts"]) >= 2
    assert tasks == 1 + len(body["decision"]["attempts"])
    _same(body, lambda_body)


def test_fuzzed_bodies_and_headers_always_get_an_answer_without_a_500(machine):
    # Given random and mutated bodies (deep nesting, odd types, binary, huge numbers) and odd headers
    rng = random.Random(7)
    seeds = [
        '{"prompt": "hi"}',
        '{"prompt": "hi", "max_tokens": 5}',
        '{"messages": [{"role": "user", "content": "x"}]}',
    ]
    pieces = ['"', "{", "}", "[", "]", ",", ":", "\\", "\x00", "é", "1e999", "null", "true", '"prompt"', " "]
    for case in range(300):
        body = rng.choice(seeds)
        for _ in range(rng.randint(0, 4)):
            at = rng.randint(0, len(body))
            body = body[:at] + rng.choice(pieces) + body[at + rng.randint(0, 2) :]
        if case % 25 == 0:
            body = "[" * 5000 + "]" * 5000
        headers = {
            "X-Latency-Budget-Ms": rng.choice(["", "0", "-1", "abc", "99999999", "1500"]),
            "X-Caller-Id": "é\x01",
        }
        # When it runs through the tasks
        answer, _tasks = machine(None, headers=headers, raw=body)
        # Then it is answered: a 2xx or a 4xx with a JSON message, never a 5xx
        assert answer["statusCode"] < 500, (body, answer)
        parsed = json.loads(answer["body"])
        if answer["statusCode"] >= 400:
            assert parsed["message"]


class _SwitchingStore:
    """A policy store whose policy in force changes between tasks (an AppConfig rollout), keeping old ones by digest."""

    def __init__(self, first: Any, keep_old: bool) -> None:
        self.policies = {"old": first}
        self.now = first
        self.digest = "old"
        self.keep_old = keep_old

    def switch(self, policy: Any) -> None:
        self.now, self.digest = policy, "new"
        self.policies = {"new": policy, **({"old": self.policies["old"]} if self.keep_old else {})}

    def current(self) -> Any:
        return self.now

    def current_with_digest(self) -> tuple[Any, str]:
        return self.now, self.digest

    def by_digest(self, digest: str) -> Any:
        return self.policies.get(digest)


def _cascade_run(bedrock: FakeBedrock, store: _SwitchingStore, switch_to: Any) -> tuple[dict[str, Any], list[str]]:
    tracker = LiveStateTracker(InMemoryBackend())
    steps.configure((store, tracker, bedrock))
    models = {key: spec.model_id for key, spec in store.current().models.items()}
    sdk = SdkIntegration(bedrock, models)
    request = {
        "body": json.dumps(
            {"prompt": "Tom has 3 apples and buys 4 more. How many apples does he have?", "use_case": "math"}
        ),
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"requestId": "req-9", "identity": {"sourceIp": "203.0.113.9"}},
    }
    step = steps.handle({"phase": "decide", "request": request})
    store.switch(switch_to)  # the next tasks run after this instance loaded a newer policy
    while step["action"] == "call":
        step = steps.handle({"phase": "record", "request": request, "run": step["run"], "outcome": sdk(step["call"])})
    steps.configure(None)
    return json.loads(step["answer"]["body"]), [call["ModelId"] for call in sdk.calls]


def test_later_tasks_replay_under_the_policy_the_request_started_with(bedrock, default_policy, monkeypatch):
    monkeypatch.setenv("AWS_REGION", HOME)
    # Given a cascade that escalates under the policy in force, and a newer policy that would accept the cheap answer
    document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["routes"]["math-cascade"]["cascade"]["threshold"] = 0.0
    document["policy_version"] = "newer"
    newer = compile_policy(document)
    baseline, baseline_calls = _cascade_run(bedrock, _SwitchingStore(default_policy, keep_old=True), default_policy)
    # When the policy changes between the tasks of one request
    body, calls = _cascade_run(bedrock, _SwitchingStore(default_policy, keep_old=True), newer)
    # Then the request finishes as it began: the same calls, the same answer, the old policy's version
    assert calls == baseline_calls and len(calls) == 2
    assert body["model_used"] == baseline["model_used"] and body["cost_usd"] == baseline["cost_usd"]
    assert body["decision"]["policy_version"] == default_policy.version


def test_a_request_whose_policy_is_gone_ends_degraded_and_pays_for_its_calls(bedrock, default_policy, monkeypatch):
    monkeypatch.setenv("AWS_REGION", HOME)
    document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["policy_version"] = "newer"
    # Given an instance that no longer holds the policy the request started with
    body, calls = _cascade_run(bedrock, _SwitchingStore(default_policy, keep_old=False), compile_policy(document))
    # Then the request ends after the call already made, degraded, its answer charged
    assert len(calls) == 1
    assert body["degraded"] is True and body["decision"]["gave_up"] == "policy changed"
    assert body["cost_usd"] > 0


def test_abandon_charges_the_calls_made_and_settles(machine, bedrock):
    # Given a request whose first call answered, and whose record task then failed
    request = {
        "body": json.dumps({"prompt": "What is 2+2?"}),
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"requestId": "req-7", "identity": {"sourceIp": "203.0.113.9"}},
    }
    step = steps.handle({"phase": "decide", "request": request})
    outcome = machine.sdk(step["call"])
    # When the state machine's Abandon task runs with the last record and that outcome
    answer = steps.handle({"phase": "abandon", "request": request, "run": step["run"], "outcome": outcome})
    body = json.loads(answer["answer"]["body"])
    # Then the caller gets the degraded answer, the answered call is charged, and its attempt reaches the breakers
    assert body["degraded"] is True and body["decision"]["gave_up"] == "routing task failed"
    assert body["cost_usd"] > 0
    assert machine.tracker.snapshot(default_policy_of(machine), ()).state.open_circuits == frozenset()


def default_policy_of(machine) -> Any:
    from lambdas.router.policy import load_policy_file

    return load_policy_file(DEFAULT_POLICY_PATH)


def test_a_judges_verdict_is_one_more_state_machine_call_and_matches_the_lambda(bedrock, monkeypatch, tmp_path, invoke):
    monkeypatch.setenv("AWS_REGION", HOME)
    # Given a cascade with a judge consulted on every answer, a worked cheap answer, and a judge that rejects it
    document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["routes"]["math-cascade"]["cascade"]["judge"] = {
        "model": "nova-lite",
        "consult_from": 0.0,
        "consult_below": 1.0,
    }
    judged = compile_policy(document)
    answer = bedrock.converse

    def converse(call, timeout_s, **kwargs):
        reply = answer(call, timeout_s, **kwargs)
        if call.model.key == "nova-micro":
            return reply._replace(text="Tom has 3 + 4 = 7 apples.\n#### 7")
        if call.model.key == "nova-lite":
            return reply._replace(text="INCORRECT", output_tokens=1)
        return reply

    monkeypatch.setattr(bedrock, "converse", converse)
    # When the request runs through the state machine's tasks
    body, calls = _cascade_run(bedrock, _SwitchingStore(judged, keep_old=True), judged)
    # Then the state machine made the judge's call between the two answers, and the judge's verdict escalated
    assert calls == [judged.models[key].model_id for key in ("nova-micro", "nova-lite", "claude-sonnet-4-5")]
    first = body["decision"]["cascade"]["steps"][0]
    assert first["judge"] == {"model": "nova-lite", "verdict": "incorrect"}
    assert body["model_used"] == judged.models["claude-sonnet-4-5"].model_id
    judge_call = next(call for call in bedrock.calls if call["model"] == "nova-lite")
    assert "Tom has 3 + 4 = 7 apples." in json.dumps(judge_call["messages"])  # as the SDK integration sent it
    # And the Lambda orchestration on the same policy gives the same answer, cost and attempts
    policy_file = tmp_path / "judged.json"
    policy_file.write_text(json.dumps(document), encoding="utf-8")
    from lambdas.router import handler
    from lambdas.router.service import RouterService

    handler.configure(
        RouterService(
            policies=PolicyStore(file_fetcher(policy_file), max_age_s=300), gateway=bedrock, sleep=lambda _s: None
        )
    )
    status, _headers, lambda_body = invoke(
        "POST",
        "/generate",
        {"prompt": "Tom has 3 apples and buys 4 more. How many apples does he have?", "use_case": "math"},
    )
    assert status == 200
    assert body["decision"]["cascade"] == lambda_body["decision"]["cascade"]
    _same(body, lambda_body)
