"""``/health``'s verdict: policy, circuits and a Bedrock probe, cached, and revealing nothing internal."""

from __future__ import annotations

import json

import pytest

from lambdas.router import health as h
from lambdas.router.executor import FailureClass, ModelCallError
from lambdas.router.policy import DEFAULT_POLICY_PATH, compile_policy
from lambdas.router.policy_store import PolicyUnavailable

POLICY = compile_policy(json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")))
ALL_PAIRS = frozenset(h._serving_pairs(POLICY))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """What the monitor reads: a policy (or none), open circuits, the last success, and a probe outcome."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.policy_missing = False
        self.open: frozenset[tuple[str, str]] = frozenset()
        self.last_success: float | None = None
        self.probe_error: Exception | None = None
        self.probes: list[tuple[str, str, float]] = []
        self.policy_reads = 0

    def current_policy(self):
        self.policy_reads += 1
        if self.policy_missing:
            raise PolicyUnavailable("no routing policy loaded")
        return POLICY

    def probe(self, call, timeout_s):
        self.probes.append((call.model.key, call.region, timeout_s))
        if self.probe_error is not None:
            raise self.probe_error
        return "ok"

    def monitor(self, **settings) -> h.HealthMonitor:
        return h.HealthMonitor(
            current_policy=self.current_policy,
            open_pairs=lambda policy: self.open,
            last_success=lambda: self.last_success,
            probe=self.probe,
            settings=h.HealthSettings(**settings),
            clock=self.clock,
        )


@pytest.fixture
def world() -> World:
    return World()


def test_a_region_with_a_policy_and_a_reachable_bedrock_is_healthy(world):
    verdict = world.monitor().verdict()
    assert verdict.healthy and verdict.reason is None
    assert verdict.body() == {"status": "ok", "policy_version": POLICY.version, "models": len(POLICY.models)}
    # And the probe went to the cheapest model, in its first region, with the probe budget
    assert world.probes == [("nova-micro", "us-east-1", h.DEFAULT_PROBE_TIMEOUT_S)]


def test_no_loadable_policy_is_unavailable(world):
    world.policy_missing = True
    verdict = world.monitor().verdict()
    assert (verdict.healthy, verdict.reason) == (False, h.NO_POLICY)
    assert world.probes == []


def test_every_circuit_open_is_unavailable_without_probing(world):
    world.open = ALL_PAIRS
    verdict = world.monitor().verdict()
    assert (verdict.healthy, verdict.reason) == (False, h.ALL_CIRCUITS_OPEN)
    assert world.probes == []


def test_one_pair_left_closed_keeps_the_region_serving_and_is_the_one_probed(world):
    # Given every pair open but Claude Sonnet 4.5 in us-west-2
    spare = ("claude-sonnet-4-5", "us-west-2")
    assert spare in ALL_PAIRS
    world.open = ALL_PAIRS - {spare}
    verdict = world.monitor().verdict()
    assert verdict.healthy
    assert [(key, region) for key, region, _ in world.probes] == [spare]


@pytest.mark.parametrize(
    ("error", "healthy"),
    [
        (ModelCallError("ServiceUnavailableException", "down"), False),
        (ModelCallError("Timeout", "no reply", FailureClass.REGIONAL), False),
        (ModelCallError("AccessDeniedException", "not allowed"), False),
        (ConnectionError("refused"), False),
        (ModelCallError("ThrottlingException", "slow down"), True),
        (ModelCallError("ValidationException", "maxTokens too small"), True),
    ],
)
def test_a_probe_that_got_an_answer_from_bedrock_proves_it_reachable(world, error, healthy):
    world.probe_error = error
    verdict = world.monitor().verdict()
    assert verdict.healthy is healthy
    assert verdict.reason == (None if healthy else h.BEDROCK_UNREACHABLE)


def test_recent_traffic_is_the_evidence_and_no_probe_is_made(world):
    world.last_success = world.clock.now - 10
    assert world.monitor().verdict().healthy
    assert world.probes == []


def test_the_verdict_is_cached_so_checks_in_between_cost_nothing(world):
    monitor = world.monitor(cache_s=5.0)
    first = monitor.verdict()
    world.clock.now += 4.9
    world.policy_missing = True  # would change the verdict, but the cached one is served
    assert monitor.verdict() is first
    assert world.policy_reads == 1
    world.clock.now += 0.2
    assert monitor.verdict().reason == h.NO_POLICY


def test_a_good_probe_lasts_the_probe_interval(world):
    monitor = world.monitor(cache_s=5.0, probe_interval_s=60.0)
    for _ in range(11):  # 55 s of verdicts
        assert monitor.verdict().healthy
        world.clock.now += 5.0
    assert len(world.probes) == 1
    world.clock.now += 5.0
    monitor.verdict()
    assert len(world.probes) == 2


def test_a_failed_probe_is_retried_each_verdict_so_recovery_shows_within_the_cache_time(world):
    monitor = world.monitor(cache_s=5.0, probe_interval_s=60.0)
    world.probe_error = ModelCallError("ServiceUnavailableException", "down")
    assert not monitor.verdict().healthy
    world.clock.now += 5.0
    assert not monitor.verdict().healthy
    # When Bedrock answers again
    world.probe_error = None
    world.clock.now += 5.0
    # Then the next verdict is healthy
    assert monitor.verdict().healthy
    assert len(world.probes) == 3


def test_an_unavailable_answer_reveals_nothing_internal(world):
    world.probe_error = ModelCallError("ServiceUnavailableException", "us-east-1 nova-micro is down")
    body = world.monitor().verdict().body()
    assert body == {"status": "unavailable"}


def test_a_monitor_without_a_probe_judges_by_policy_and_circuits(world):
    monitor = h.HealthMonitor(
        current_policy=world.current_policy, open_pairs=lambda p: frozenset(), last_success=lambda: None, probe=None
    )
    assert monitor.verdict().healthy


def test_a_request_no_model_could_answer_makes_the_last_success_no_evidence(world):
    # Given traffic answered 10 s ago, then a request that degraded 2 s ago
    world.last_success = world.clock.now - 10
    failures = [world.clock.now - 2]
    monitor = h.HealthMonitor(
        current_policy=world.current_policy,
        open_pairs=lambda p: frozenset(),
        last_success=lambda: world.last_success,
        last_failure=lambda: failures[0],
        probe=world.probe,
        clock=world.clock,
    )
    world.probe_error = ModelCallError("ServiceUnavailableException", "down")
    # When the verdict is computed, Then Bedrock is probed at once and found unreachable
    assert monitor.verdict().reason == h.BEDROCK_UNREACHABLE
    assert len(world.probes) == 1
