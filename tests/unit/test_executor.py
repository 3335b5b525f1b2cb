"""Plan execution: backoff arithmetic, failure classes, deadlines and attempt limits, on a fake clock."""

from __future__ import annotations

import random

import pytest

from lambdas.router.engine import PlannedCall, RoutingRequest, decide
from lambdas.router.executor import (
    DEADLINE_MARGIN_SECONDS,
    FailureClass,
    ModelCallError,
    ModelReply,
    backoff_delay_seconds,
    classify_failure,
    execute_plan,
)

OK = ModelReply(text="fine", input_tokens=12, output_tokens=7, stop_reason="end_turn")
# The fast route's chain in the default policy: the primary, then its fallbacks, each in two regions.
FAST_CHAIN = ("nova-micro", "nova-lite", "claude-haiku-4-5")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedModels:
    """Answers per (model key, region) from a script of errors; advances the clock per call."""

    def __init__(self, clock: FakeClock, script: dict[tuple[str, str], list[str]], call_seconds: float = 0.05):
        self.clock = clock
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[tuple[str, str, float]] = []
        self.call_seconds = call_seconds

    def __call__(self, call: PlannedCall, timeout_s: float) -> ModelReply:
        self.calls.append((call.model.key, call.region, timeout_s))
        self.clock.now += self.call_seconds
        queue = self.script.get((call.model.key, call.region)) or self.script.get((call.model.key, "*"))
        if queue:
            code = queue.pop(0) if len(queue) > 1 else queue[0]
            if code != "ok":
                raise ModelCallError(code, f"{code} from fake")
        return OK


@pytest.fixture
def plan(default_policy):
    return decide(default_policy, RoutingRequest(text="Hello!", input_chars=6, sticky_key="k")).plan


def run(plan, models, resilience, clock, budget_s=25.0):
    return execute_plan(
        plan, models, resilience, deadline=clock() + budget_s, clock=clock, sleep=clock.sleep, rng=random.Random(7)
    )


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("ThrottlingException", "Too many requests", FailureClass.THROTTLED),
        ("ServiceUnavailableException", "down", FailureClass.REGIONAL),
        ("InternalServerException", "oops", FailureClass.REGIONAL),
        ("ModelNotReadyException", "warming", FailureClass.REGIONAL),
        ("ModelTimeoutException", "slow", FailureClass.REGIONAL),
        ("AccessDeniedException", "no access", FailureClass.CONFIGURATION),
        ("ResourceNotFoundException", "no model", FailureClass.CONFIGURATION),
        ("ValidationException", "The provided model identifier is invalid.", FailureClass.CONFIGURATION),
        (
            "ValidationException",
            "Invocation of model ID x with on-demand throughput isn't supported.",
            FailureClass.CONFIGURATION,
        ),
        ("ValidationException", "Input is too long for requested model.", FailureClass.CALLER),
    ],
)
def test_classifies_bedrock_errors(code, message, expected):
    assert classify_failure(code, message) is expected


def test_backoff_is_full_jitter_under_an_exponential_ceiling_with_a_cap():
    rng = random.Random(1)
    for retry, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (6, 2.0), (20, 2.0)]:
        delays = [backoff_delay_seconds(retry, 100, 2000, rng) for _ in range(500)]
        assert min(delays) >= 0
        assert max(delays) <= ceiling
        assert max(delays) > ceiling * 0.9  # the whole range is used
        assert sum(delays) / len(delays) == pytest.approx(ceiling / 2, rel=0.15)


def test_first_call_answers(plan, default_policy):
    clock = FakeClock()
    models = ScriptedModels(clock, {})
    result = run(plan, models, default_policy.resilience, clock)
    assert result.reply == OK
    assert result.answered_by == plan[0]
    assert result.failed_attempts == 0


def test_throttling_backs_off_then_succeeds_on_the_same_model_and_region(plan, default_policy):
    clock = FakeClock()
    models = ScriptedModels(clock, {("nova-micro", "us-east-1"): ["ThrottlingException", "ThrottlingException", "ok"]})
    result = run(plan, models, default_policy.resilience, clock)
    assert result.answered_by == plan[0]
    assert [c[:2] for c in models.calls] == [("nova-micro", "us-east-1")] * 3
    assert len(clock.sleeps) == 2
    assert [a.retry for a in result.attempts] == [0, 1, 2]


def test_throttling_past_the_retries_moves_to_the_next_region(plan, default_policy):
    clock = FakeClock()
    models = ScriptedModels(clock, {("nova-micro", "us-east-1"): ["ThrottlingException"]})
    result = run(plan, models, default_policy.resilience, clock)
    assert result.answered_by.region == "us-west-2"
    assert result.answered_by.model.key == "nova-micro"
    assert len(clock.sleeps) == default_policy.resilience.throttle_retries


def test_a_circuit_that_opens_during_backoff_ends_the_retries_there(plan, default_policy):
    # Given throttling that opens the home region's circuit after the first throttle (as other instances'
    # throttles might)
    clock = FakeClock()
    models = ScriptedModels(clock, {("nova-micro", "us-east-1"): ["ThrottlingException"]})
    opened: set[tuple[str, str]] = set()

    def on_attempt(attempt):
        if attempt.outcome == "throttled":
            opened.add((attempt.model, attempt.region))

    result = execute_plan(
        plan,
        models,
        default_policy.resilience,
        deadline=clock() + 25.0,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
        skip=lambda call: (call.model.key, call.region) in opened,
        on_attempt=on_attempt,
    )
    # Then the retry is not made: the next region answers after one throttled call
    assert [c[:2] for c in models.calls] == [("nova-micro", "us-east-1"), ("nova-micro", "us-west-2")]
    assert result.answered_by.region == "us-west-2"


def test_regional_outage_goes_to_the_same_model_in_the_next_region(plan, default_policy):
    clock = FakeClock()
    models = ScriptedModels(clock, {("nova-micro", "us-east-1"): ["ServiceUnavailableException"]})
    result = run(plan, models, default_policy.resilience, clock)
    assert (result.answered_by.model.key, result.answered_by.region) == ("nova-micro", "us-west-2")
    assert not result.answered_by.fallback
    assert clock.sleeps == []


def test_model_down_everywhere_falls_back_to_the_next_model(plan, default_policy):
    clock = FakeClock()
    models = ScriptedModels(clock, {("nova-micro", "*"): ["ServiceUnavailableException"]})
    result = run(plan, models, default_policy.resilience, clock)
    assert (result.answered_by.model.key, result.answered_by.region) == ("nova-lite", "us-east-1")
    assert result.answered_by.fallback
    assert result.failed_attempts == 2


@pytest.mark.parametrize("code", ["AccessDeniedException", "ResourceNotFoundException"])
def test_configuration_error_in_one_region_moves_to_the_same_models_next_region(plan, default_policy, code):
    # Given nova-micro misconfigured in its home region only (access, serving and end of life are per region)
    clock = FakeClock()
    models = ScriptedModels(clock, {("nova-micro", "us-east-1"): [code]})
    # When the plan runs
    result = run(plan, models, default_policy.resilience, clock)
    # Then the same model answers from its next region, with no fallback and nothing blamed on the caller
    assert [c[:2] for c in models.calls] == [("nova-micro", "us-east-1"), ("nova-micro", "us-west-2")]
    assert (result.answered_by.model.key, result.answered_by.region) == ("nova-micro", "us-west-2")
    assert not result.answered_by.fallback
    assert result.attempts[0].outcome == FailureClass.CONFIGURATION.value
    assert result.caller_error is None


def test_model_misconfigured_in_every_region_falls_back_to_the_next_model(plan, default_policy):
    # Given nova-micro misconfigured in both of its regions
    clock = FakeClock()
    models = ScriptedModels(clock, {("nova-micro", "*"): ["AccessDeniedException"]})
    # When the plan runs
    result = run(plan, models, default_policy.resilience, clock)
    # Then each region is tried once, then the route's first fallback answers
    assert [c[:2] for c in models.calls] == [
        ("nova-micro", "us-east-1"),
        ("nova-micro", "us-west-2"),
        ("nova-lite", "us-east-1"),
    ]
    assert result.answered_by.model.key == "nova-lite"
    assert result.answered_by.fallback
    assert result.caller_error is None


def test_everything_down_exhausts_the_plan_without_an_answer(plan, default_policy):
    clock = FakeClock()
    models = ScriptedModels(clock, {(k, "*"): ["ServiceUnavailableException"] for k in FAST_CHAIN})
    result = run(plan, models, default_policy.resilience, clock)
    assert result.reply is None
    assert result.stop_reason == "plan_exhausted"
    assert result.failed_attempts == len(plan)


def test_input_rejected_by_every_model_is_the_callers_error(plan, default_policy):
    clock = FakeClock()
    script = {(k, "*"): ["ValidationException"] for k in FAST_CHAIN}
    models = ScriptedModels(clock, script)
    result = run(plan, models, default_policy.resilience, clock)
    assert result.caller_error == "ValidationException from fake"
    assert len(models.calls) == 3  # one region per model: the input is the problem, not the region


def test_mixed_failures_are_not_blamed_on_the_caller(plan, default_policy):
    clock = FakeClock()
    script = {
        ("nova-micro", "*"): ["ValidationException"],
        ("nova-lite", "*"): ["ServiceUnavailableException"],
        ("claude-haiku-4-5", "*"): ["ServiceUnavailableException"],
    }
    result = run(plan, ScriptedModels(clock, script), default_policy.resilience, clock)
    assert result.reply is None
    assert result.caller_error is None


def test_stops_at_the_deadline(plan, default_policy):
    # Given calls that each take 2 s before failing, and a 5 s budget
    clock = FakeClock()
    models = ScriptedModels(
        clock,
        {(k, "*"): ["ServiceUnavailableException"] for k in FAST_CHAIN},
        call_seconds=2.0,
    )
    result = run(plan, models, default_policy.resilience, clock, budget_s=5.0)
    assert result.stop_reason == "deadline"
    assert len(models.calls) == 3
    # And each call's timeout is bounded by the time left
    assert models.calls[-1][2] == pytest.approx(1.0 - DEADLINE_MARGIN_SECONDS)  # ends just before the deadline


def test_backoff_that_would_overrun_the_deadline_is_skipped(plan, default_policy):
    clock = FakeClock()
    resilience = default_policy.resilience._replace(backoff_base_ms=10_000, backoff_cap_ms=10_000)
    models = ScriptedModels(clock, {("nova-micro", "us-east-1"): ["ThrottlingException"]})
    result = execute_plan(
        plan, models, resilience, deadline=clock() + 1.0, clock=clock, sleep=clock.sleep, rng=random.Random(3)
    )
    assert all(s < 1.0 for s in clock.sleeps)
    assert result.answered_by is not None


def test_stops_at_max_attempts(plan, default_policy):
    clock = FakeClock()
    resilience = default_policy.resilience._replace(max_attempts=2)
    models = ScriptedModels(clock, {(k, "*"): ["ServiceUnavailableException"] for k in FAST_CHAIN})
    result = run(plan, models, resilience, clock)
    assert result.stop_reason == "max_attempts"
    assert len(models.calls) == 2
