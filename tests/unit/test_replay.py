"""The replay behind the Step Functions orchestration's tasks: record formats, clock, breaker reports, shapes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from lambdas.router.engine import LiveState, PlannedCall, RoutingRequest, decide
from lambdas.router.executor import ExecutionResult, ModelCallError, ModelReply, execute_plan
from lambdas.router.live_state import Reservation
from lambdas.router.policy import DEFAULT_POLICY_PATH, Policy, load_policy_file
from lambdas.router.replay import (
    Attempt,
    CallNeeded,
    PinnedTracker,
    Replay,
    ReplayMismatch,
    decision_from_json,
    decision_json,
    error_from_sdk,
    reply_from_sdk,
    sdk_shape,
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy_file(DEFAULT_POLICY_PATH)


def _plan(policy: Policy) -> tuple[PlannedCall, ...]:
    request = RoutingRequest(text="What is 2+2?", input_chars=12, images=0, use_case=None, tier=None, model=None,
                             max_tokens=None, sticky_key="k")  # fmt: skip
    return decide(policy, request, LiveState()).plan


def _run(plan: tuple[PlannedCall, ...], replay: Replay, policy: Policy) -> ExecutionResult:
    return execute_plan(
        plan,
        lambda call, timeout: replay.converse(call, timeout, messages=[], system=[], inference_config={}),
        policy.resilience._replace(throttle_retries=0),
        deadline=replay.started_at + 25,
        clock=replay.clock,
        sleep=lambda _s: None,
        rng=random.Random(0),
    )


def test_sdk_shape_is_pascal_case_with_base64_bytes():
    shaped = sdk_shape([{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}]}])
    assert shaped == [{"Role": "user", "Content": [{"Image": {"Format": "png", "Source": {"Bytes": "iVBORw=="}}}]}]


def test_reply_from_sdk_joins_text_blocks_and_skips_others():
    reply = reply_from_sdk(
        {
            "Output": {"Message": {"Content": [{"ReasoningContent": {}}, {"Text": "4"}, {"Text": "."}]}},
            "Usage": {"InputTokens": 7, "OutputTokens": 2},
            "StopReason": "end_turn",
        }
    )
    assert reply == ModelReply("4.", 7, 2, "end_turn")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("BedrockRuntime.ThrottlingException", "ThrottlingException"),
        ("BedrockRuntime.ValidationException", "ValidationException"),
        ("States.Timeout", "Timeout"),
        ("States.TaskFailed", "States.TaskFailed"),
        ("", "Unknown"),
    ],
)
def test_error_from_sdk_gives_the_code_the_executor_classifies(error: str, code: str):
    assert error_from_sdk(error, "why")[0] == code


def test_attempt_round_trips_through_json():
    ok = Attempt("m", "us-east-1", 2.0, reply=ModelReply("hi", 1, 2, "end_turn"), started_at=1.0)
    failed = Attempt("m", "us-west-2", 3.0, code="ThrottlingException", message="slow down")
    assert Attempt.from_json(ok.as_json()) == ok
    assert Attempt.from_json(failed.as_json()) == failed


def test_decision_round_trips_and_refuses_a_model_the_policy_lost(policy: Policy):
    request = RoutingRequest(text="hello", input_chars=5, images=0, use_case=None, tier=None, model=None,
                             max_tokens=None, sticky_key="k")  # fmt: skip
    decision = decide(policy, request, LiveState())
    assert decision_from_json(decision_json(decision), policy) == decision
    raw = decision_json(decision)
    raw["plan"][0][0] = "retired-model"
    with pytest.raises(ReplayMismatch, match="retired-model"):
        decision_from_json(raw, policy)


def test_a_judge_the_first_task_left_out_stays_out_in_later_tasks(policy: Policy):
    # Given a cascade route with a judge, decided once with the judge and once without (a budget cap)
    from lambdas.router.policy import JudgeSettings

    route = policy.routes["math-cascade"]
    assert route.cascade is not None
    judged_route = route._replace(cascade=route.cascade._replace(judge=JudgeSettings("nova-lite", 0.0, 1.0)))
    judged = policy._replace(routes={**policy.routes, "math-cascade": judged_route})
    request = RoutingRequest(text="Tom has 3 apples and buys 4 more. How many?", input_chars=44, use_case="math")
    with_judge = decide(judged, request, LiveState())
    assert with_judge.cascade is not None and with_judge.cascade.judge is not None
    without = with_judge._replace(cascade=with_judge.cascade._replace(judge=None))
    # When each is pinned and read back by a later task
    # Then each comes back as it was decided
    assert decision_from_json(decision_json(with_judge), judged) == with_judge
    assert decision_from_json(decision_json(without), judged) == without


def test_replay_answers_from_the_record_then_asks_for_the_next_call(policy: Policy):
    # Given a plan whose first call failed and was recorded
    plan = _plan(policy)
    first = plan[0]
    recorded = Attempt(first.model.model_id, first.region, 101.5, code="ServiceUnavailableException", started_at=100.0)
    replay = Replay(started_at=99.0, attempts=[recorded], home_region=first.region, remote=None, now=lambda: 102.0)
    # When the executor runs the plan over the replay
    with pytest.raises(CallNeeded) as needed:
        _run(plan, replay, policy)
    # Then the next planned call is asked for
    assert (needed.value.call.model.model_id, needed.value.call.region) == (plan[1].model.model_id, plan[1].region)


def test_replayed_latency_runs_from_handing_out_to_the_outcome(policy: Policy):
    plan = _plan(policy)
    first = plan[0]
    reply = ModelReply("4", 5, 1, "end_turn")
    recorded = Attempt(first.model.model_id, first.region, 101.5, reply=reply, started_at=100.0)
    replay = Replay(started_at=99.0, attempts=[recorded], home_region=first.region, now=lambda: 101.5)
    tracker = PinnedTracker(_NullTracker(), replay, None)  # type: ignore[arg-type]
    result = execute_plan(
        plan,
        lambda call, timeout: replay.converse(call, timeout, messages=[], system=[], inference_config={}),
        policy.resilience,
        deadline=124.0,
        clock=replay.clock,
        sleep=lambda _s: None,
        rng=random.Random(0),
        skip=lambda call: tracker.is_open(policy, call.model.model_id, call.region, set()),
    )
    assert result.reply == reply
    assert result.attempts[0].latency_ms == pytest.approx(1500.0)


def test_rejects_a_record_that_does_not_fit_the_plan(policy: Policy):
    plan = _plan(policy)
    recorded = Attempt("some.other-model", plan[0].region, 1.0, code="Timeout")
    replay = Replay(started_at=0.0, attempts=[recorded], home_region=plan[0].region, now=lambda: 2.0)
    with pytest.raises(ReplayMismatch):
        replay.converse(plan[0], 5.0, messages=[], system=[], inference_config={})


def test_a_call_in_another_region_is_made_through_the_remote_gateway(policy: Policy):
    plan = _plan(policy)
    elsewhere = next(call for call in plan if call.region != plan[0].region)
    remote = _Remote(fail=True)
    replay = Replay(started_at=0.0, attempts=[], home_region=plan[0].region, remote=remote, now=lambda: 3.0)
    with pytest.raises(ModelCallError):
        replay.converse(elsewhere, 5.0, messages=[], system=[], inference_config={})
    assert remote.calls == [elsewhere.region]
    assert replay.attempts[-1].code == "ServiceUnavailableException" and not replay.replaying


def test_breakers_hear_only_attempts_new_to_this_task(policy: Policy):
    # Given a record of two attempts, the second new to this task
    attempts = [Attempt("a", "r1", 1.0, code="Timeout"), Attempt("a", "r2", 2.0, reply=ModelReply("x", 1, 1, "e"))]
    replay = Replay(started_at=0.0, attempts=attempts, fresh_from=1, home_region="r1", now=lambda: 3.0)
    inner = _NullTracker()
    tracker = PinnedTracker(inner, replay, {"snapshot": {}, "reservation": None})  # type: ignore[arg-type]
    # When the executor reports both
    tracker.record_attempt(policy, "a", "r1", "regional", 10.0)
    tracker.record_attempt(policy, "a", "r2", "ok", 10.0)
    # Then only the second reaches the real tracker
    assert inner.reported == [("a", "r2", "ok")]


def test_settle_waits_for_the_end_of_the_request(policy: Policy):
    replay = Replay(started_at=0.0, attempts=[], home_region="r1", now=lambda: 1.0)
    inner = _NullTracker()
    tracker = PinnedTracker(inner, replay, None)  # type: ignore[arg-type]
    replay.pending = CallNeeded(_plan(policy)[0], 1.0, messages=[], system=[], inference_config={})
    tracker.settle(Reservation((), 0.0), 0.0)
    tracker.release(set())
    assert inner.settled == 0
    replay.pending = None
    tracker.settle(Reservation((), 0.0), 0.0)
    assert inner.settled == 1


class _NullTracker:
    def __init__(self) -> None:
        self.reported: list[tuple[str, str, str]] = []
        self.settled = 0

    def is_open(self, *_: Any) -> bool:
        return False

    def record_attempt(self, policy: Any, model_id: str, region: str, outcome: str, latency_ms: float, **_: Any):
        self.reported.append((model_id, region, outcome))

    def settle(self, *_: Any) -> None:
        self.settled += 1

    def release(self, *_: Any) -> None:
        return None

    def adopt_probes(self, *_: Any) -> None:
        return None

    def hand_off_probes(self, probes: Any) -> dict[Any, float]:
        return {}

    def hand_off(self, reservation: Any) -> Any:
        return reservation


class _Remote:
    def __init__(self, *, fail: bool) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def converse(self, call: PlannedCall, timeout_s: float, **_: Any) -> ModelReply:
        self.calls.append(call.region)
        if self.fail:
            raise ModelCallError("ServiceUnavailableException", "down")
        return ModelReply("ok", 1, 1, "end_turn")
