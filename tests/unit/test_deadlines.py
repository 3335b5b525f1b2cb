"""Attempt and request deadlines: what the executor hands each call, the service's cap, the gateway's clients."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from lambdas.router.bedrock import MAX_CLIENTS, BedrockGateway
from lambdas.router.engine import PlannedCall, RoutingRequest, decide
from lambdas.router.executor import DEADLINE_MARGIN_SECONDS as MARGIN
from lambdas.router.executor import AttemptTimeout, ModelCallError, ModelReply, execute_plan
from lambdas.router.policy import compile_policy
from lambdas.router.policy_store import PolicyStore
from lambdas.router.service import DEGRADED_MODEL, RESPONSE_RESERVE_MS, CallerContext, RouterService

OK = ModelReply(text="fine", input_tokens=12, output_tokens=7, stop_reason="end_turn")
# Nothing listens on the discard port of loopback: a connection is refused at once, no AWS is called.
REFUSING_URL = "http://127.0.0.1:9"
SIM_CREDENTIALS = {"aws_access_key_id": "sim", "aws_secret_access_key": "sim"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class RecordingGateway:
    """Fails every call after ``call_seconds`` of fake time; records the timeout each call was handed."""

    def __init__(self, clock: FakeClock | None = None, call_seconds: float = 0.0) -> None:
        self.timeouts: list[float] = []
        self.clock = clock
        self.call_seconds = call_seconds

    def converse(self, call: PlannedCall, timeout_s: float, **_: Any) -> ModelReply:
        self.timeouts.append(timeout_s)
        if self.clock is not None:
            self.clock.now += min(self.call_seconds, timeout_s)
        raise ModelCallError("ServiceUnavailableException", "down")


def service_for(document: dict[str, Any], gateway: Any, clock: Any = None) -> RouterService:
    raw = json.dumps(document).encode()
    extra = {"clock": clock, "sleep": clock.sleep} if clock is not None else {}
    return RouterService(
        policies=PolicyStore(lambda: raw, max_age_s=300), gateway=gateway, rng=random.Random(1), **extra
    )


def caller(remaining_ms: int | None = None) -> CallerContext:
    return CallerContext(headers={}, sticky_key="k", remaining_ms=remaining_ms)


# --- the executor ----------------------------------------------------------------------------------------


def test_each_attempt_gets_the_policys_connect_timeout(policy_document):
    # Given a policy whose connect timeout is 700 ms and attempt timeout 3 s
    policy_document["resilience"].update(connect_timeout_ms=700, attempt_timeout_ms=3000)
    policy = compile_policy(policy_document)
    plan = decide(policy, RoutingRequest(text="Hello!", input_chars=6, sticky_key="k")).plan
    clock, handed = FakeClock(), []

    def invoke(call: PlannedCall, timeout_s: float) -> ModelReply:
        handed.append(timeout_s)
        return OK

    # When the plan runs
    execute_plan(
        plan, invoke, policy.resilience, deadline=clock() + 25, clock=clock, sleep=clock.sleep, rng=random.Random(1)
    )
    # Then the call is handed the attempt timeout and the policy's connect timeout
    assert isinstance(handed[0], AttemptTimeout)
    assert (float(handed[0]), handed[0].connect_s) == (3.0, 0.7)


def test_an_attempt_near_the_deadline_gets_only_the_time_left_to_connect_and_read(policy_document):
    # Given 0.5 s left of the request and a policy allowing 20 s per attempt and 2 s to connect
    policy = compile_policy(policy_document)
    plan = decide(policy, RoutingRequest(text="Hello!", input_chars=6, sticky_key="k")).plan
    clock, handed = FakeClock(), []

    def invoke(call: PlannedCall, timeout_s: float) -> ModelReply:
        handed.append(timeout_s)
        return OK

    execute_plan(
        plan, invoke, policy.resilience, deadline=clock() + 0.5, clock=clock, sleep=clock.sleep, rng=random.Random(1)
    )
    # Then both timeouts are the half second left
    assert (float(handed[0]), handed[0].connect_s) == pytest.approx((0.5 - MARGIN, 0.5 - MARGIN))


def test_every_model_timing_out_ends_at_the_deadline_not_past_it(policy_document):
    # Given a 1.5 s deadline, 1 s attempts and calls that each use their whole timeout
    policy_document["resilience"].update(attempt_timeout_ms=1000, total_deadline_ms=1500)
    clock = FakeClock()
    gateway = RecordingGateway(clock, call_seconds=60.0)
    service = service_for(policy_document, gateway, clock)
    started = clock()
    # When a request is routed
    outcome = service.generate(json.dumps({"prompt": "Hello!"}), caller())
    # Then the second attempt gets the half second left but the margin, and the degraded answer comes just
    # before the deadline, never past it
    assert [round(float(t), 3) for t in gateway.timeouts] == [1.0, round(0.5 - MARGIN, 3)]
    assert outcome.body["model_used"] == DEGRADED_MODEL
    assert clock() - started == pytest.approx(1.5 - MARGIN)


# --- the service's cap -----------------------------------------------------------------------------------


def test_the_deadline_is_capped_by_the_lambdas_remaining_time_minus_the_response_reserve(policy_document):
    # Given a Lambda with 1.2 s left and a policy allowing 25 s
    clock = FakeClock()
    gateway = RecordingGateway()
    service = service_for(policy_document, gateway, clock)
    # When a request is routed
    service.generate(json.dumps({"prompt": "Hello!"}), caller(remaining_ms=1200))
    # Then the first attempt may take only what is left once the reserve is kept back
    assert float(gateway.timeouts[0]) == pytest.approx((1200 - RESPONSE_RESERVE_MS) / 1000 - MARGIN)


def test_a_lambda_nearly_out_of_time_answers_degraded_without_calling_a_model(policy_document):
    gateway = RecordingGateway()
    outcome = service_for(policy_document, gateway, FakeClock()).generate(
        json.dumps({"prompt": "Hello!"}), caller(remaining_ms=RESPONSE_RESERVE_MS + 100)
    )
    assert gateway.timeouts == []
    assert outcome.body["model_used"] == DEGRADED_MODEL
    assert outcome.body["decision"]["gave_up"] == "deadline"


# --- the Bedrock gateway's clients -----------------------------------------------------------------------


def test_clients_take_the_connect_and_read_timeouts_on_a_50_ms_grid():
    gateway = BedrockGateway(endpoint_url=REFUSING_URL, credentials=SIM_CREDENTIALS)
    config = gateway.client("us-east-1", 0.349, 0.7).meta.config
    # The connect timeout never exceeds the read timeout: both are the time the attempt has
    assert (config.connect_timeout, config.read_timeout) == (0.3, 0.3)
    config = gateway.client("us-east-1", 20.0, 2.0).meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 20.0)
    # Timeouts on one grid step share a client
    assert gateway.client("us-east-1", 0.31, 0.7) is gateway.client("us-east-1", 0.349, 0.7)


def test_clients_are_bounded_and_the_least_recently_used_goes_first():
    gateway = BedrockGateway(endpoint_url=REFUSING_URL, credentials=SIM_CREDENTIALS)
    first = gateway.client("us-east-1", 20.0, 2.0)
    for step in range(MAX_CLIENTS):
        gateway.client("us-east-1", 0.3 + step * 0.05, 2.0)
        assert gateway.client("us-east-1", 20.0, 2.0) is first  # in use, so kept
    for step in range(MAX_CLIENTS):
        gateway.client("us-west-2", 0.3 + step * 0.05, 2.0)
    assert gateway.client("us-east-1", 20.0, 2.0) is not first


def test_the_service_hands_the_policys_connect_timeout_to_the_gateways_client(policy_document):
    # Given a policy connecting within 150 ms, with 1 s attempts, and a gateway towards a refusing port
    policy_document["resilience"].update(connect_timeout_ms=150, attempt_timeout_ms=1000)
    gateway = BedrockGateway(endpoint_url=REFUSING_URL, credentials=SIM_CREDENTIALS)
    sent: list[str] = []
    for region in ("us-east-1", "us-west-2"):
        client = gateway.client(region, 1.0, 0.15)
        client.meta.events.register(
            "before-send.bedrock-runtime.Converse", lambda request, **_: sent.append(request.url)
        )
    # When a request is routed (every call is refused)
    outcome = service_for(policy_document, gateway).generate(json.dumps({"prompt": "Hello!"}), caller())
    # Then every call went through the clients whose connect timeout is the policy's
    attempts = outcome.body["decision"]["attempts"]
    assert outcome.body["model_used"] == DEGRADED_MODEL
    assert len(sent) == len(attempts) > 0
    assert gateway.client("us-east-1", 1.0, 0.15).meta.config.connect_timeout == 0.15
