"""The math-cascade route through the real handler: the cheap answer kept or escalated, every answer paid."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.router import handler
from lambdas.router import metric_names as m
from lambdas.router.budget import scopes_for
from lambdas.router.cascade import JUDGE_DEADLINE_MS, JUDGE_SYSTEM
from lambdas.router.classifier import estimate_tokens
from lambdas.router.executor import ModelCallError, ModelReply
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.policy import DEFAULT_POLICY_PATH, Policy, compile_policy
from lambdas.router.policy_store import PolicyStore, file_fetcher
from lambdas.router.service import RouterService
from lambdas.router.state_store import InMemoryBackend
from local_endpoint.server import LocalLambdaContext

from .conftest import FakeBedrock, api_event, reserved_at_each_call, today_key

NOVA_MICRO = "us.amazon.nova-micro-v1:0"
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
CLIPS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
MATHS = {"prompt": CLIPS, "use_case": "math"}
CONFIDENT = ModelReply(
    text="In April, Natalia sold 48 clips.\nIn May, she sold half as many: 48 / 2 = 24 clips.\n"
    "Altogether she sold 48 + 24 = 72 clips.\n#### 72",
    input_tokens=60,
    output_tokens=40,
    stop_reason="end_turn",
)
STRONG = ModelReply(
    text="In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72 in all.\n#### 72",
    input_tokens=60,
    output_tokens=40,
    stop_reason="end_turn",
)

Call = Callable[..., tuple[int, dict[str, str], dict[str, Any]]]


def script(bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch, replies: dict[str, ModelReply]) -> None:
    """Have the fake Bedrock answer each named model with its reply; failures it was told of still raise."""
    answer = bedrock.converse

    def converse(call, timeout_s, **kwargs):
        reply = answer(call, timeout_s, **kwargs)  # records the call, raises when told to fail
        return replies.get(call.model.key, reply)

    monkeypatch.setattr(bedrock, "converse", converse)


def cost(policy: Policy, model: str, reply: ModelReply) -> float:
    spec = policy.models[model]
    return (
        reply.input_tokens * spec.price_per_1k_input_usd + reply.output_tokens * spec.price_per_1k_output_usd
    ) / 1000


def attempts(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["model"], a["region"], a["outcome"]) for a in body["decision"]["attempts"]]


def emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


@pytest.fixture
def make_invoke(bedrock: FakeBedrock, tmp_path: Path) -> Iterator[Callable[..., Call]]:
    """A handler on the default policy (changed by ``mutate``), with live state in ``store`` when given."""

    def make(mutate: Callable[[dict[str, Any]], None] | None = None, store: InMemoryBackend | None = None) -> Call:
        document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
        if mutate is not None:
            mutate(document)
        policy_file = tmp_path / "policy.json"
        policy_file.write_text(json.dumps(document), encoding="utf-8")
        service = RouterService(
            policies=PolicyStore(file_fetcher(policy_file), max_age_s=300),
            gateway=bedrock,
            live_state=LiveStateTracker(store, cache_ttl_s=0.0) if store is not None else None,
            sleep=lambda _s: None,
        )
        handler.configure(service)

        def call(body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
            event = api_event("POST", "/generate", body, headers)
            result = handler.lambda_handler(event, LocalLambdaContext("req-123"))
            return result["statusCode"], result.get("headers") or {}, json.loads(result["body"])

        return call

    yield make
    handler.configure(None)


# --- Kept or escalated ---------------------------------------------------------------------------------------


def test_a_confident_cheap_answer_is_returned_after_one_call(invoke, bedrock, monkeypatch, default_policy):
    # Given nova-micro answers the word problem with its working and a final answer
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT})
    # When asked with use_case math
    status, headers, body = invoke("POST", "/generate", MATHS)
    # Then the cheap answer is returned after one call
    assert status == 200
    assert body["output"] == CONFIDENT.text
    assert body["model_used"] == NOVA_MICRO and headers["X-Selected-Model"] == NOVA_MICRO
    assert body["route"] == "math-cascade"
    assert [call["model"] for call in bedrock.calls] == ["nova-micro"]
    assert body["usage"] == {"input_tokens": 60, "output_tokens": 40}
    assert body["cost_usd"] == pytest.approx(cost(default_policy, "nova-micro", CONFIDENT))
    # And the decision shows the step accepted with its confidence over the threshold
    cascade = body["decision"]["cascade"]
    settings = default_policy.routes["math-cascade"].cascade
    assert cascade["threshold"] == settings.threshold
    assert cascade["calibration"] == {
        "metric": settings.calibration["metric"],
        "target": settings.calibration["target"],
    }
    [step] = cascade["steps"]
    assert step["model"] == "nova-micro" and step["accepted"] is True
    assert cascade["threshold"] <= step["confidence"] <= 1
    assert "escalated" not in step


@pytest.mark.parametrize(
    ("cheap_text", "reason"),
    [
        ("She sold some clips in April and fewer in May.", "no final answer to a maths ask"),
        ("Natalia sold 48 + 24 = 70 clips.\n#### 70", "its arithmetic does not hold"),
    ],
)
def test_a_doubtful_cheap_answer_escalates_and_both_calls_are_paid(
    invoke, bedrock, monkeypatch, default_policy, cheap_text, reason
):
    # Given nova-micro's answer is doubtful (no final number, or working that does not add up)
    cheap = ModelReply(text=cheap_text, input_tokens=60, output_tokens=15, stop_reason="end_turn")
    script(bedrock, monkeypatch, {"nova-micro": cheap, "claude-sonnet-4-5": STRONG})
    # When asked
    status, _, body = invoke("POST", "/generate", MATHS)
    # Then Sonnet's answer is returned, after both calls
    assert status == 200
    assert body["output"] == STRONG.text
    assert body["model_used"] == SONNET
    assert body["fallback_used"] is False and body["degraded"] is False
    assert [(call["model"], call["region"]) for call in bedrock.calls] == [
        ("nova-micro", "us-east-1"),
        ("claude-sonnet-4-5", "us-east-1"),
    ]
    # And usage and cost count both answers
    assert body["usage"] == {"input_tokens": 120, "output_tokens": 55}
    assert body["cost_usd"] == pytest.approx(
        cost(default_policy, "nova-micro", cheap) + cost(default_policy, "claude-sonnet-4-5", STRONG)
    )
    # And the decision says why it escalated, and lists both calls
    cascade = body["decision"]["cascade"]
    first, last = cascade["steps"]
    assert first["model"] == "nova-micro"
    assert first["confidence"] < cascade["threshold"]
    assert reason in first["escalated"]
    assert f"< {cascade['threshold']}" in first["escalated"]
    assert "accepted" not in first
    assert last == {"model": "claude-sonnet-4-5", "final": True}
    assert attempts(body) == [("nova-micro", "us-east-1", "ok"), ("claude-sonnet-4-5", "us-east-1", "ok")]


def test_a_cheap_answer_cut_at_max_tokens_escalates(invoke, bedrock, monkeypatch):
    # Given nova-micro ran out of tokens in the middle of its working
    cut = ModelReply(
        text="Natalia sold 48 clips in April. In May she sold half as many: 48 / 2 = 24 clips. Altogether she",
        input_tokens=60,
        output_tokens=2048,
        stop_reason="max_tokens",
    )
    script(bedrock, monkeypatch, {"nova-micro": cut, "claude-sonnet-4-5": STRONG})
    # When asked
    _, _, body = invoke("POST", "/generate", MATHS)
    # Then it escalates, and the step says it was cut
    assert body["model_used"] == SONNET
    assert body["stop_reason"] == "end_turn"
    first = body["decision"]["cascade"]["steps"][0]
    assert first["signals"]["truncated"] == 1.0
    assert "escalated" in first


def test_truncation_alone_escalates_when_the_policy_weights_it(make_invoke, bedrock, monkeypatch):
    # Given a policy whose confidence model distrusts a cut answer
    def weigh_truncation(document: dict[str, Any]) -> None:
        document["routes"]["math-cascade"]["cascade"]["confidence"]["weights"]["truncated"] = -5.0

    invoke = make_invoke(weigh_truncation)
    # And nova-micro's otherwise confident answer stopped at max_tokens
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT._replace(stop_reason="max_tokens")})
    # When asked
    _, _, body = invoke(MATHS)
    # Then it escalates because it was cut
    assert body["model_used"] == SONNET
    first = body["decision"]["cascade"]["steps"][0]
    assert first["escalated"].startswith("stopped at max_tokens (confidence")


def test_the_learned_prompt_score_feeds_the_confidence(invoke, bedrock, monkeypatch):
    # Given the default policy's learned router scores the prompt
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT})
    _, _, body = invoke("POST", "/generate", MATHS)
    complexity = body["decision"]["complexity"]
    assert complexity["router"] == "learned"
    # Then the cascade's step carries that score as a signal
    step = body["decision"]["cascade"]["steps"][0]
    assert step["signals"]["prompt_score"] == pytest.approx(complexity["score"], abs=1e-3)


# --- Failures ------------------------------------------------------------------------------------------------


def fail_the_strong_step(bedrock: FakeBedrock) -> None:
    for model in ("claude-sonnet-4-5", "claude-haiku-4-5", "nova-pro"):
        bedrock.fail(model)


DOUBTFUL = ModelReply(
    text="She sold some clips in April and fewer in May.", input_tokens=60, output_tokens=15, stop_reason="end_turn"
)


def test_a_failed_escalation_returns_the_cheap_answer(invoke, bedrock, monkeypatch, default_policy):
    # Given a doubtful cheap answer, and Sonnet and its fallbacks down in every region
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL})
    fail_the_strong_step(bedrock)
    # When asked
    status, _, body = invoke("POST", "/generate", MATHS)
    # Then the cheap answer is returned rather than the degraded message
    assert status == 200
    assert body["output"] == DOUBTFUL.text
    assert body["model_used"] == NOVA_MICRO
    assert body["degraded"] is False and body["fallback_used"] is False
    # And only the answer that came back is paid for
    assert body["usage"] == {"input_tokens": 60, "output_tokens": 15}
    assert body["cost_usd"] == pytest.approx(cost(default_policy, "nova-micro", DOUBTFUL))
    # And the step says it escalated and that the escalation failed
    [step] = body["decision"]["cascade"]["steps"]
    assert "escalated" in step
    assert step["escalation_failed"] == "plan_exhausted"
    assert [call["model"] for call in bedrock.calls] == ["nova-micro"] + [
        model for model in ("claude-sonnet-4-5", "claude-haiku-4-5", "nova-pro") for _region in range(2)
    ]


def test_a_failed_escalation_lists_each_attempt_once_in_order(invoke, bedrock, monkeypatch):
    # Given a doubtful cheap answer and every later step down
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL})
    fail_the_strong_step(bedrock)
    # When asked
    _, _, body = invoke("POST", "/generate", MATHS)
    # Then the attempts are the calls made, each once, in the order they were made
    assert attempts(body) == [("nova-micro", "us-east-1", "ok")] + [
        (model, region, "regional")
        for model in ("claude-sonnet-4-5", "claude-haiku-4-5", "nova-pro")
        for region in ("us-east-1", "us-west-2")
    ]


@pytest.mark.parametrize("where", ["escalation", "cheap_step"])
def test_failed_calls_of_an_escalated_request_are_counted_in_the_metrics(invoke, bedrock, monkeypatch, capsys, where):
    # Given a doubtful cheap answer and a failed call: in the failed escalation, or the cheap model's first region
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, "claude-sonnet-4-5": STRONG})
    if where == "escalation":
        fail_the_strong_step(bedrock)
        failed = ("claude-sonnet-4-5", SONNET, "us-east-1")
    else:
        bedrock.fail("nova-micro", "us-east-1")
        failed = ("nova-micro", NOVA_MICRO, "us-east-1")
    capsys.readouterr()
    # When asked
    _, _, body = invoke("POST", "/generate", MATHS)
    assert (failed[0], failed[2], "regional") in attempts(body)
    # Then the failed call is in the request's FailedAttempts and has its ModelCallFailures line, as for any request
    lines = emf_lines(capsys.readouterr().out)
    request_line = next(line for line in lines if m.REQUESTS in line and m.ROUTE_DIMENSION in line)
    assert request_line[m.FAILED_ATTEMPTS] not in (0.0, [0.0])
    failures = [line for line in lines if m.MODEL_CALL_FAILURES in line]
    assert any(line[m.MODEL_DIMENSION] == failed[1] and line[m.REGION_DIMENSION] == failed[2] for line in failures)


def test_a_failed_cheap_region_escalates_without_calling_the_cheap_model_again(invoke, bedrock, monkeypatch):
    # Given nova-micro down in us-east-1 and doubtful from us-west-2
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, "claude-sonnet-4-5": STRONG})
    bedrock.fail("nova-micro", "us-east-1")
    # When asked
    _, _, body = invoke("POST", "/generate", MATHS)
    # Then the escalation runs the later step only
    assert [(call["model"], call["region"]) for call in bedrock.calls] == [
        ("nova-micro", "us-east-1"),
        ("nova-micro", "us-west-2"),
        ("claude-sonnet-4-5", "us-east-1"),
    ]
    assert body["model_used"] == SONNET
    assert attempts(body) == [
        ("nova-micro", "us-east-1", "regional"),
        ("nova-micro", "us-west-2", "ok"),
        ("claude-sonnet-4-5", "us-east-1", "ok"),
    ]


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailableException", "InternalServerException"])
def test_a_failing_cheap_model_goes_straight_to_sonnet_whose_answer_is_final(
    invoke, bedrock, monkeypatch, default_policy, code
):
    # Given nova-micro failing in both regions, and Sonnet answering doubtfully
    bedrock.fail("nova-micro", code=code)
    script(bedrock, monkeypatch, {"claude-sonnet-4-5": DOUBTFUL})
    # When asked
    status, _, body = invoke("POST", "/generate", MATHS)
    # Then Sonnet's answer is returned as the last step's: not scored, not escalated
    assert status == 200
    assert body["output"] == DOUBTFUL.text
    assert body["model_used"] == SONNET and body["fallback_used"] is False
    assert body["decision"]["cascade"]["steps"] == [{"model": "claude-sonnet-4-5", "final": True}]
    assert [call["model"] for call in bedrock.calls if call["model"] != "nova-micro"] == ["claude-sonnet-4-5"]
    assert {call["region"] for call in bedrock.calls if call["model"] == "nova-micro"} == {"us-east-1", "us-west-2"}
    # And only Sonnet's answer is paid for
    assert body["usage"] == {"input_tokens": 60, "output_tokens": 15}
    assert body["cost_usd"] == pytest.approx(cost(default_policy, "claude-sonnet-4-5", DOUBTFUL))


def test_an_escalation_answered_by_a_fallback_is_reported_as_a_fallback(invoke, bedrock, monkeypatch, default_policy):
    # Given a doubtful cheap answer and Sonnet down: Claude Haiku 4.5, the last step's fallback, answers
    haiku = ModelReply(text="#### 72", input_tokens=60, output_tokens=5, stop_reason="end_turn")
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, "claude-haiku-4-5": haiku})
    bedrock.fail("claude-sonnet-4-5")
    # When asked
    _, headers, body = invoke("POST", "/generate", MATHS)
    # Then it is a fallback answer, and both answers are paid for
    assert body["model_used"] == f"FALLBACK:{HAIKU}"
    assert body["fallback_used"] is True and headers["X-Selected-Model"] == HAIKU
    assert body["usage"] == {"input_tokens": 120, "output_tokens": 20}
    assert body["cost_usd"] == pytest.approx(
        cost(default_policy, "nova-micro", DOUBTFUL) + cost(default_policy, "claude-haiku-4-5", haiku)
    )
    assert body["decision"]["cascade"]["steps"][-1] == {"model": "claude-haiku-4-5", "final": True}


def test_a_model_pinned_by_the_caller_answers_without_a_cascade(invoke, bedrock, monkeypatch):
    # Given the caller names nova-micro, whose answer is doubtful
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL})
    # When asked
    status, _, body = invoke("POST", "/generate", {**MATHS, "model": "nova-micro"})
    # Then that answer is returned as it is: one call, no cascade
    assert status == 200
    assert body["model_used"] == NOVA_MICRO and body["output"] == DOUBTFUL.text
    assert len(bedrock.calls) == 1
    assert body["decision"]["cascade"] == {"skipped": "the caller named a model"}
    assert body["decision"]["rule"] == "explicit_model"


def test_a_cheap_answer_nesting_parentheses_deeply_is_still_answered(invoke, bedrock, monkeypatch):
    # Given nova-micro writes an equation nested 400 parentheses deep
    nested = "(" * 400 + "48 + 24" + ")" * 400 + " = 72\n#### 72"
    script(bedrock, monkeypatch, {"nova-micro": ModelReply(nested, 60, 900, "end_turn")})
    # When asked, Then an answer comes back (never a 500)
    status, _, body = invoke("POST", "/generate", MATHS)
    assert status == 200
    assert body["degraded"] is False


# --- Budget --------------------------------------------------------------------------------------------------


def spend(store: InMemoryBackend, usd: float) -> None:
    policy = compile_policy(json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")))
    for scope in scopes_for(policy.budget, time.time(), tier="standard", api_key=None):
        store.spend[scope.key] = usd


def dearest_answer_per_step(policy: Policy) -> float:
    """One math-cascade answer per step at its dearest (nova-micro's, Sonnet's): the estimated input of CLIPS
    plus all of the route's 2048 max_tokens."""
    tokens = estimate_tokens(len(CLIPS))
    return sum(
        (tokens * spec.price_per_1k_input_usd + 2048 * spec.price_per_1k_output_usd) / 1000
        for spec in (policy.models["nova-micro"], policy.models["claude-sonnet-4-5"])
    )


def test_an_escalated_answer_charges_both_calls_to_the_budget(make_invoke, bedrock, monkeypatch, default_policy):
    # Given live state, and a doubtful cheap answer that escalates
    store = InMemoryBackend()
    invoke = make_invoke(store=store)
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, "claude-sonnet-4-5": STRONG})
    # When asked
    _, _, body = invoke(MATHS)
    handler.service().live_state.flush()
    # Then the day's spend holds both answers' cost
    both = cost(default_policy, "nova-micro", DOUBTFUL) + cost(default_policy, "claude-sonnet-4-5", STRONG)
    assert body["cost_usd"] == pytest.approx(both)
    assert store.spend[today_key(store)] == pytest.approx(both)


def test_a_failed_escalation_charges_the_cheap_answer_only(make_invoke, bedrock, monkeypatch, default_policy):
    store = InMemoryBackend()
    invoke = make_invoke(store=store)
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL})
    fail_the_strong_step(bedrock)
    invoke(MATHS)
    handler.service().live_state.flush()
    assert store.spend[today_key(store)] == pytest.approx(cost(default_policy, "nova-micro", DOUBTFUL))


def test_near_the_cap_a_cascade_reserves_the_dearest_answer_of_each_step(
    make_invoke, bedrock, monkeypatch, default_policy
):
    # Given 85% of the daily budget spent, and no tier cap before 100% (so the cascade still runs)
    def only_degrade_at_the_cap(document: dict[str, Any]) -> None:
        document["budget"]["modes"] = [{"at_percent": 100, "action": "degrade"}]

    store = InMemoryBackend()
    invoke = make_invoke(only_degrade_at_the_cap, store=store)
    spend(store, 170.0)
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, "claude-sonnet-4-5": STRONG})
    seen = reserved_at_each_call(bedrock, monkeypatch, store)
    # When a doubtful answer escalates
    _, _, body = invoke(MATHS)
    # Then during both calls the counter held one answer of each step at its dearest: nova-micro's and Sonnet's
    # (dearer than its fallbacks), each the estimated input plus all of the route's 2048 max_tokens
    assert seen == [pytest.approx(170.0 + dearest_answer_per_step(default_policy))] * 2
    # And once settled the counter holds both answers' cost
    handler.service().live_state.flush()
    assert store.spend[today_key(store)] == pytest.approx(170.0 + body["cost_usd"])


# --- Fuzz ----------------------------------------------------------------------------------------------------


def _random_text(rng: random.Random) -> str:
    alphabet = 'abc xyz 0123456789 +-*/=().,$#\n\t\x00\u00e9\u4e2d\U0001f600\ud800\udfff"\\{}[]'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["text", "int", "huge", "float", "bool", "null", "list", "dict"]
    kind = rng.choice(kinds if depth < 4 else kinds[:6])
    if kind == "text":
        return _random_text(rng)
    if kind == "int":
        return rng.randint(-(2**40), 2**40)
    if kind == "huge":
        return rng.choice([10**400, -(10**300), 2**63, 1e308, -1e-308])
    if kind == "float":
        return rng.uniform(-5, 5)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_random_text(rng)[:10]: _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


_FIELDS = ("prompt", "use_case", "system", "max_tokens", "temperature", "model", "messages", "images")


def _fuzz_body(rng: random.Random) -> tuple[Any, str | None]:
    """A /generate body (or raw text) derived from a valid maths request."""
    roll = rng.random()
    if roll < 0.1:
        depth = rng.choice([10, 900, 5_000, 50_000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        return None, '{"prompt": ' + opener * depth + "1" + closer * depth + ', "use_case": "math"}'
    if roll < 0.15:
        text = json.dumps(MATHS)
        return None, text[: rng.randint(0, len(text))]
    body: dict[str, Any] = dict(MATHS)
    if roll < 0.5:  # well-formed: random numbers, text and options, so that many reach the cascade
        words = [str(rng.randint(0, 10 ** rng.randint(1, 30))) if rng.random() < 0.3 else "clips" for _ in range(40)]
        body["prompt"] = f"How many {' '.join(rng.sample(words, rng.randint(1, 40)))}? {_random_text(rng)}"
        body["prompt"] = body["prompt"].replace("\ud800", "").replace("\udfff", "")
        if rng.random() < 0.5:
            body["max_tokens"] = rng.randint(1, 8192)
        if rng.random() < 0.5:
            body["temperature"] = rng.random()
        if rng.random() < 0.3:
            body["system"] = "Answer with #### and the number."
        return body, None
    for _ in range(rng.randint(1, 4)):
        field = rng.choice((*_FIELDS, "unknown"))
        mutation = rng.random()
        if mutation < 0.2:
            body.pop(field, None)
        elif field == "messages" and mutation < 0.6:
            body.pop("prompt", None)
            body["messages"] = [
                {"role": rng.choice(["user", "assistant", "system", 7]), "content": _random_value(rng)}
                for _ in range(rng.randint(0, 4))
            ]
        elif field == "prompt" and mutation < 0.6:
            body["prompt"] = CLIPS + _random_text(rng) * rng.randint(1, 50)
        else:
            body[field] = _random_value(rng)
    if rng.random() < 0.8:
        body["use_case"] = "math"
    return body, None


def _fuzz_answer(rng: random.Random) -> ModelReply:
    pieces = ["#### 72", "12 * 4 = 46", "(3 + 4) * 2 = 14", "I think", "As an AI", "1/0 = 5", "So 72.", "\ud800"]
    text = " ".join(rng.choice([*pieces, _random_text(rng)]) for _ in range(rng.randint(0, 12)))
    return ModelReply(text, rng.randint(1, 5000), rng.randint(0, 5000), rng.choice(["end_turn", "max_tokens"]))


def test_fuzzed_maths_requests_answer_200_or_a_json_400(invoke, bedrock, monkeypatch):
    # Given a fake Bedrock answering each call with a random answer (or failing now and then)
    rng = random.Random(20261201)
    answer = bedrock.converse

    def converse(call, timeout_s, **kwargs):
        answer(call, timeout_s, **kwargs)
        if rng.random() < 0.1:
            raise ModelCallError("ServiceUnavailableException", "unavailable")
        return _fuzz_answer(rng)

    monkeypatch.setattr(bedrock, "converse", converse)
    # When 200 random and mutated maths requests are sent
    for index in range(200):
        body, raw = _fuzz_body(rng)
        status, _, reply = invoke("POST", "/generate", body, raw=raw)
        # Then each is answered or refused with a message, never a 500 or a stack trace
        shown = raw[:200] if raw is not None else json.dumps(body)[:200]
        assert status in (200, 400), (index, status, shown, reply)
        assert "Traceback" not in json.dumps(reply)
        if status == 400:
            assert isinstance(reply["message"], str) and reply["message"], (index, shown)
        else:
            assert isinstance(reply["output"], str) and reply["route"], (index, shown)


def test_an_escalated_answers_cost_is_counted_under_its_own_model(invoke, bedrock, monkeypatch, capsys, default_policy):
    # Given a doubtful cheap answer that escalates to Sonnet
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, "claude-sonnet-4-5": STRONG})
    capsys.readouterr()
    # When asked
    _, _, body = invoke("POST", "/generate", MATHS)
    lines = emf_lines(capsys.readouterr().out)
    # Then the request's line carries Sonnet's own tokens and cost, under Sonnet
    request_line = next(line for line in lines if m.REQUESTS in line and m.ROUTE_DIMENSION in line)
    assert request_line[m.MODEL_DIMENSION] == SONNET
    assert one(request_line[m.COST_USD]) == pytest.approx(cost(default_policy, "claude-sonnet-4-5", STRONG))
    assert one(request_line[m.INPUT_TOKENS]) == STRONG.input_tokens
    # And Nova Micro's paid answer has a line of its own, under Nova Micro and the route
    [escalated] = [line for line in lines if m.COST_USD in line and m.REQUESTS not in line]
    assert escalated[m.MODEL_DIMENSION] == NOVA_MICRO
    assert escalated[m.ROUTE_DIMENSION] == "math-cascade"
    assert one(escalated[m.COST_USD]) == pytest.approx(cost(default_policy, "nova-micro", DOUBTFUL))
    assert one(escalated[m.OUTPUT_TOKENS]) == DOUBTFUL.output_tokens
    # And the answer's body still sums both, as the caller pays both
    assert body["cost_usd"] == pytest.approx(one(escalated[m.COST_USD]) + one(request_line[m.COST_USD]))


def one(value: Any) -> Any:
    """An EMF metric's value: Powertools writes a list when it collected one in a line."""
    return value[0] if isinstance(value, list) else value


# --- Judge ---------------------------------------------------------------------------------------------------

JUDGE = "nova-lite"
NOVA_LITE = "us.amazon.nova-lite-v1:0"


def with_judge(consult_from: float = 0.0, consult_below: float = 1.0, **extra: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        document["routes"]["math-cascade"]["cascade"]["judge"] = {
            "model": JUDGE,
            "consult_from": consult_from,
            "consult_below": consult_below,
            **extra,
        }

    return mutate


def verdict(text: str) -> ModelReply:
    return ModelReply(text=text, input_tokens=180, output_tokens=2, stop_reason="end_turn")


def judge_calls(bedrock: FakeBedrock) -> list[dict[str, Any]]:
    return [call for call in bedrock.calls if call["model"] == JUDGE]


def test_a_judge_accepts_a_doubtful_answer_it_finds_correct_and_its_call_is_paid(
    make_invoke, bedrock, monkeypatch, default_policy
):
    # Given a cascade whose judge is consulted on every answer, and an answer the signals doubt
    invoke = make_invoke(with_judge())
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, JUDGE: verdict("CORRECT")})
    # When asked
    status, _, body = invoke(MATHS)
    # Then the judge's verdict keeps the cheap answer: no Sonnet call
    assert status == 200
    assert body["output"] == DOUBTFUL.text and body["model_used"] == NOVA_MICRO
    assert [call["model"] for call in bedrock.calls] == ["nova-micro", JUDGE]
    [step] = body["decision"]["cascade"]["steps"]
    assert step["confidence"] < body["decision"]["cascade"]["threshold"]
    assert step["judge"] == {"model": JUDGE, "verdict": "correct"} and step["accepted"] is True
    # And the judge's tokens and cost count in the answer's usage and cost
    assert body["usage"] == {"input_tokens": 60 + 180, "output_tokens": 15 + 2}
    judged = cost(default_policy, "nova-micro", DOUBTFUL) + cost(default_policy, JUDGE, verdict("CORRECT"))
    assert body["cost_usd"] == pytest.approx(judged)
    assert attempts(body) == [("nova-micro", "us-east-1", "ok"), (JUDGE, "us-east-1", "ok")]


def test_a_judge_escalates_a_confident_answer_it_finds_incorrect(make_invoke, bedrock, monkeypatch, default_policy):
    # Given a confident cheap answer the judge finds incorrect
    invoke = make_invoke(with_judge())
    script(
        bedrock, monkeypatch, {"nova-micro": CONFIDENT, JUDGE: verdict("**Incorrect.**"), "claude-sonnet-4-5": STRONG}
    )
    # When asked
    _, _, body = invoke(MATHS)
    # Then it escalates to Sonnet, saying the judge found it incorrect, and all three calls are paid
    assert body["output"] == STRONG.text and body["model_used"] == SONNET
    assert [call["model"] for call in bedrock.calls] == ["nova-micro", JUDGE, "claude-sonnet-4-5"]
    first, last = body["decision"]["cascade"]["steps"]
    assert first["confidence"] >= body["decision"]["cascade"]["threshold"]
    assert first["judge"] == {"model": JUDGE, "verdict": "incorrect"}
    assert first["escalated"].startswith("the judge found it incorrect (confidence")
    assert last == {"model": "claude-sonnet-4-5", "final": True}
    paid = sum(
        cost(default_policy, k, r)
        for k, r in (("nova-micro", CONFIDENT), (JUDGE, verdict("x")), ("claude-sonnet-4-5", STRONG))
    )
    assert body["cost_usd"] == pytest.approx(paid)


def test_the_judge_is_asked_about_the_question_and_the_answer_in_one_word(make_invoke, bedrock, monkeypatch):
    invoke = make_invoke(with_judge(max_tokens=4))
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT, JUDGE: verdict("CORRECT")})
    invoke(MATHS)
    [call] = judge_calls(bedrock)
    text = call["messages"][0]["content"][0]["text"]
    assert call["messages"][0]["role"] == "user" and len(call["messages"]) == 1
    assert CLIPS in text and CONFIDENT.text in text and "CORRECT or INCORRECT" in text
    assert "CORRECT" in call["system"][0]["text"]
    assert call["inference_config"] == {"maxTokens": 4, "temperature": 0}


@pytest.mark.parametrize(
    ("cheap", "escalates"),
    [(CONFIDENT, False), (DOUBTFUL, True)],
)
def test_an_unclear_verdict_leaves_the_decision_to_the_threshold(make_invoke, bedrock, monkeypatch, cheap, escalates):
    # Given a judge that does not answer in the one word asked for
    invoke = make_invoke(with_judge())
    script(
        bedrock,
        monkeypatch,
        {"nova-micro": cheap, JUDGE: verdict("I think it is probably right"), "claude-sonnet-4-5": STRONG},
    )
    # When asked
    _, _, body = invoke(MATHS)
    # Then the threshold decides, as without a judge, and the judge's call is still paid
    step = body["decision"]["cascade"]["steps"][0]
    assert step["judge"] == {"model": JUDGE, "verdict": "unclear", "reply": "I think it is probably right"}
    assert ("escalated" in step) is escalates
    assert body["model_used"] == (SONNET if escalates else NOVA_MICRO)
    assert body["usage"]["input_tokens"] == 60 + 180 + (60 if escalates else 0)


def test_a_failing_judge_leaves_the_decision_to_the_threshold(make_invoke, bedrock, monkeypatch, default_policy):
    # Given the judge model is down in every region
    invoke = make_invoke(with_judge())
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT})
    bedrock.fail(JUDGE)
    # When asked
    status, _, body = invoke(MATHS)
    # Then the confident cheap answer is kept, the judge's failed attempts are listed, and nothing is charged for them
    assert status == 200 and body["model_used"] == NOVA_MICRO
    step = body["decision"]["cascade"]["steps"][0]
    assert step["judge"]["verdict"] == "failed" and step["judge"]["error"]
    assert step["accepted"] is True
    assert attempts(body)[0] == ("nova-micro", "us-east-1", "ok")
    assert [a[:2] for a in attempts(body)[1:]] == [(JUDGE, "us-east-1"), (JUDGE, "us-west-2")]
    assert all(a[2] != "ok" for a in attempts(body)[1:])
    assert body["cost_usd"] == pytest.approx(cost(default_policy, "nova-micro", CONFIDENT))


def test_no_judge_is_called_outside_its_band(make_invoke, bedrock, monkeypatch):
    # Given a judge consulted only on confidences in [0.0, 0.01), and a confident answer
    invoke = make_invoke(with_judge(0.0, 0.01))
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT})
    _, _, body = invoke(MATHS)
    assert judge_calls(bedrock) == []
    assert "judge" not in body["decision"]["cascade"]["steps"][0]


def test_a_vetoed_answer_escalates_without_asking_the_judge(make_invoke, bedrock, monkeypatch):
    # Given a judge consulted on every confidence, and a cheap answer cut at max_tokens (a veto: confidence 0)
    invoke = make_invoke(with_judge())
    script(
        bedrock, monkeypatch, {"nova-micro": CONFIDENT._replace(stop_reason="max_tokens"), JUDGE: verdict("CORRECT")}
    )
    _, _, body = invoke(MATHS)
    assert judge_calls(bedrock) == []
    assert body["model_used"] == SONNET


def test_the_judges_spend_is_counted_under_its_own_model(make_invoke, bedrock, monkeypatch, capsys, default_policy):
    invoke = make_invoke(with_judge())
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT, JUDGE: verdict("CORRECT")})
    capsys.readouterr()
    invoke(MATHS)
    lines = emf_lines(capsys.readouterr().out)
    [judged] = [line for line in lines if m.COST_USD in line and m.REQUESTS not in line]
    assert judged[m.MODEL_DIMENSION] == NOVA_LITE and judged[m.ROUTE_DIMENSION] == "math-cascade"
    assert one(judged[m.COST_USD]) == pytest.approx(cost(default_policy, JUDGE, verdict("CORRECT")))


def test_near_the_cap_a_cascade_with_a_judge_reserves_a_verdict_too(make_invoke, bedrock, monkeypatch, default_policy):
    # Given 85% of the daily budget spent, and a cascade with a judge
    def judge_and_degrade_at_the_cap(document: dict[str, Any]) -> None:
        with_judge()(document)
        document["budget"]["modes"] = [{"at_percent": 100, "action": "degrade"}]

    store = InMemoryBackend()
    invoke = make_invoke(judge_and_degrade_at_the_cap, store=store)
    spend(store, 170.0)
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT, JUDGE: verdict("CORRECT")})
    seen = reserved_at_each_call(bedrock, monkeypatch, store)
    # When the cheap answer is judged
    _, _, body = invoke(MATHS)
    # Then the reservation held one answer per step and one verdict (the question plus a whole answer read)
    lite = default_policy.models[JUDGE]
    judged_tokens = estimate_tokens(len(CLIPS)) + 2048 + estimate_tokens(len(JUDGE_SYSTEM) + 200)
    verdict_estimate = (judged_tokens * lite.price_per_1k_input_usd + 8 * lite.price_per_1k_output_usd) / 1000
    assert seen == [pytest.approx(170.0 + dearest_answer_per_step(default_policy) + verdict_estimate)] * 2
    handler.service().live_state.flush()
    assert store.spend[today_key(store)] == pytest.approx(170.0 + body["cost_usd"])


def test_a_judge_above_the_budgets_tier_cap_is_not_called(make_invoke, bedrock, monkeypatch):
    # Given a Nova Micro -> Claude Haiku cascade with a premium judge, and 75% of the daily budget spent (models
    # capped at the standard tier: both steps stay, the judge does not)
    def premium_judge(document: dict[str, Any]) -> None:
        document["routes"]["math-cascade"]["candidates"] = [{"model": "nova-micro"}, {"model": "claude-haiku-4-5"}]
        document["routes"]["math-cascade"]["cascade"]["judge"] = {
            "model": "claude-opus-4-5",
            "consult_from": 0.0,
            "consult_below": 1.0,
        }

    store = InMemoryBackend()
    invoke = make_invoke(premium_judge, store=store)
    spend(store, 150.0)
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT})
    # When asked
    _, _, body = invoke(MATHS)
    # Then the cascade still runs, without its judge, and says why
    assert [call["model"] for call in bedrock.calls] == ["nova-micro"]
    assert {"model": "claude-opus-4-5", "reason": "budget caps models at tier standard (the cascade's judge)"} in body[
        "decision"
    ]["skipped"]
    [step] = body["decision"]["cascade"]["steps"]
    assert "judge" not in step and step["accepted"] is True


def test_a_judge_has_a_short_deadline_of_its_own_and_no_throttle_retries(make_invoke, bedrock, monkeypatch):
    # Given a judge throttled in its first region (the policy retries throttles twice, attempts may take 20 s)
    invoke = make_invoke(with_judge())
    script(bedrock, monkeypatch, {"nova-micro": CONFIDENT, JUDGE: verdict("CORRECT")})
    bedrock.fail(JUDGE, "us-east-1", code="ThrottlingException")
    # When asked
    _, _, body = invoke(MATHS)
    # Then the judge is tried once per region, each attempt within the judge's own deadline
    calls = judge_calls(bedrock)
    assert [call["region"] for call in calls] == ["us-east-1", "us-west-2"]
    assert all(0 < call["timeout_s"] <= JUDGE_DEADLINE_MS / 1000 for call in calls)
    assert body["decision"]["cascade"]["steps"][0]["judge"]["verdict"] == "correct"


def test_a_request_with_images_is_not_judged(make_invoke, bedrock, monkeypatch):
    # Given a vision cascade (Nova Lite, then Claude Sonnet) with a judge, and a maths ask with an image
    def vision_cascade(document: dict[str, Any]) -> None:
        with_judge()(document)
        document["routes"]["math-cascade"]["candidates"] = [{"model": "nova-lite"}, {"model": "claude-sonnet-4-5"}]
        document["routes"]["math-cascade"]["cascade"]["judge"]["model"] = "nova-micro"

    invoke = make_invoke(vision_cascade)
    script(bedrock, monkeypatch, {"nova-lite": CONFIDENT})
    png = base64.b64encode(b"\x89PNG fake image bytes").decode()
    # When asked
    _, _, body = invoke({**MATHS, "images": [{"format": "png", "data": png}]})
    # Then no judge is called (it would judge an answer about an image it cannot see), and the decision says so
    assert [call["model"] for call in bedrock.calls] == ["nova-lite"]
    cascade = body["decision"]["cascade"]
    assert cascade["judge"].startswith("not consulted: the request has images")
    assert "judge" not in cascade["steps"][0]
