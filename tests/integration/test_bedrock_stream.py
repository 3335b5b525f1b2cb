"""``BedrockGateway.converse_stream`` against the simulator over real HTTP: the first text within a first-token
timeout, the rest as events, and failures before and after the start mapped as the router needs them."""

from __future__ import annotations

import json
import time

import pytest

from lambdas.router.bedrock import BedrockGateway, StreamEvent
from lambdas.router.engine import PlannedCall
from lambdas.router.executor import FailureClass, ModelCallError
from lambdas.router.policy import DEFAULT_POLICY_PATH, compile_policy
from local_endpoint.bedrock_sim import Fault

CREDENTIALS = {"aws_access_key_id": "sim", "aws_secret_access_key": "sim"}
POLICY = compile_policy(json.loads(DEFAULT_POLICY_PATH.read_text()))
CALL = PlannedCall(POLICY.models["nova-micro"], "us-east-1", fallback=False)
MODEL_ID = CALL.model.model_id
MESSAGES = [{"role": "user", "content": [{"text": "Hello there"}]}]


def stream(url: str, *, first_token_s: float = 2.0, idle_s: float = 2.0):
    gateway = BedrockGateway(endpoint_url=url, credentials=CREDENTIALS)
    return gateway.converse_stream(
        CALL, first_token_s, idle_timeout_s=idle_s, messages=MESSAGES, system=[], inference_config={"maxTokens": 500}
    )


def test_the_stream_yields_the_answer_then_the_stop_reason_and_usage(sim, simulator):
    _, url = sim
    events = list(stream(url))
    text = "".join(e.text for e in events)
    assert text.startswith(f"[sim {MODEL_ID} @ us-east-1]")
    assert events[0].text and len([e for e in events if e.text]) > 1
    stops = [e.stop_reason for e in events if e.stop_reason]
    assert stops in (["end_turn"], ["max_tokens"])
    [usage] = [e for e in events if e.input_tokens is not None]
    assert usage == StreamEvent(input_tokens=3, output_tokens=usage.output_tokens) and usage.output_tokens > 0


def test_a_stream_that_does_not_start_in_time_is_a_first_token_timeout(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault(model=MODEL_ID, latency_ms=800))  # Bedrock holding the request
    started = time.perf_counter()
    with pytest.raises(ModelCallError) as raised:
        stream(url, first_token_s=0.2)
    assert raised.value.code == "FirstTokenTimeout"
    assert raised.value.failure_class is FailureClass.REGIONAL
    assert time.perf_counter() - started < 0.5  # the caller moves on at the timeout, not when Bedrock answers


@pytest.mark.parametrize(
    ("error", "failure_class"),
    [
        ("ThrottlingException", FailureClass.THROTTLED),
        ("ServiceUnavailableException", FailureClass.REGIONAL),
        ("AccessDeniedException", FailureClass.CONFIGURATION),
    ],
)
def test_an_error_before_the_stream_is_classified_as_for_converse(sim, simulator, error, failure_class):
    _, url = sim
    simulator.faults.put(Fault(model=MODEL_ID, error=error))
    with pytest.raises(ModelCallError) as raised:
        stream(url)
    assert raised.value.code == error and raised.value.failure_class is failure_class


def test_a_failure_after_the_start_is_raised_while_iterating(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault.from_json({"model": MODEL_ID, "stream_fails_after": 2}))
    answer = stream(url)
    seen = []
    with pytest.raises(ModelCallError) as raised:
        for event in answer:
            seen.append(event.text)
    assert raised.value.code == "modelStreamErrorException"
    assert raised.value.failure_class is FailureClass.REGIONAL
    assert len(seen) == 2 and all(seen)


def test_a_stream_that_stalls_after_the_start_times_out_at_the_idle_timeout(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault.from_json({"model": MODEL_ID, "stream_delay_ms": 1500}))
    answer = stream(url, idle_s=0.3)
    started = time.perf_counter()
    with pytest.raises(ModelCallError) as raised:
        list(answer)
    assert raised.value.failure_class is FailureClass.REGIONAL
    assert time.perf_counter() - started < 1.2
