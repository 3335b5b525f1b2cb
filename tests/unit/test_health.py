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
        error = self.probe_error(call) if callable(self.probe_error) else self.probe_error
        if error is not None:
            raise error
        self.last_success = self.clock.now  # as the service's probe does: an answer is a success
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
    assert len(world.probes) == 5  # two pairs for each failed verdict, then the first pair answers


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
    assert [(key, region) for key, region, _ in world.probes] == [
        ("nova-micro", "us-east-1"),
        ("nova-micro", "us-west-2"),
    ]


def test_one_bad_pair_is_not_the_region_the_probe_tries_another_region(world):
    # Given the cheapest model refused in its first region (say, no access there) but served in the next
    world.probe_error = lambda call: (
        ModelCallError("AccessDeniedException", "no access") if call.region == "us-east-1" else None
    )
    # When the verdict is computed, Then the second pair answers and the region can serve
    assert world.monitor().verdict().healthy
    assert [(key, region) for key, region, _ in world.probes] == [
        ("nova-micro", "us-east-1"),
        ("nova-micro", "us-west-2"),
    ]


def test_the_probe_pairs_share_one_budget(world):
    # Given a first pair that times out after using the whole budget
    def slow(call):
        world.clock.now += h.DEFAULT_PROBE_TIMEOUT_S
        return ModelCallError("Timeout", "no reply", FailureClass.REGIONAL)

    world.probe_error = slow
    # When the verdict is computed, Then no second call is started past the budget
    assert world.monitor().verdict().reason == h.BEDROCK_UNREACHABLE
    assert len(world.probes) == 1


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("cache_s", 0),
        ("cache_s", float("nan")),
        ("probe_interval_s", float("inf")),
        ("probe_timeout_s", -1),
        ("cache_s", True),
        ("probe_timeout_s", 10),
    ],
)
def test_bad_settings_are_a_value_error_naming_the_setting(world, setting, value):
    with pytest.raises(ValueError, match=setting):
        world.monitor(**{setting: value})


def test_while_one_thread_computes_the_others_get_the_previous_verdict(world):
    import threading

    monitor = world.monitor(cache_s=5.0)
    first = monitor.verdict()
    world.clock.now += 6
    entered, release = threading.Event(), threading.Event()

    def blocking_probe(call):
        entered.set()
        release.wait(5)
        return None

    world.last_success = None
    world.probe_error = blocking_probe
    monitor._probed_at = float("-inf")
    worker = threading.Thread(target=monitor.verdict)
    worker.start()
    assert entered.wait(5)
    # When another check arrives during the computation, Then it is answered at once with the previous verdict
    assert monitor.verdict() is first
    release.set()
    worker.join(5)
    assert not worker.is_alive()


def test_the_service_reports_all_circuits_open_from_the_real_tracker_and_the_probe_decides_after_cooldown():
    from lambdas.router.live_state import LiveStateTracker
    from lambdas.router.policy_store import PolicyStore, file_fetcher
    from lambdas.router.service import RouterService
    from lambdas.router.state_store import InMemoryBackend

    class Gateway:
        def __init__(self) -> None:
            self.calls = 0
            self.down = True

        def converse(self, call, timeout_s, **request):
            from lambdas.router.executor import ModelReply

            self.calls += 1
            if self.down:
                raise ModelCallError("ServiceUnavailableException", "down")
            return ModelReply("ok", 7, 1, "max_tokens")

    clock = Clock()
    gateway = Gateway()
    tracker = LiveStateTracker(InMemoryBackend(), clock=clock)
    service = RouterService(
        policies=PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=300, clock=clock),
        gateway=gateway,
        live_state=tracker,
        clock=clock,
        health=h.HealthSettings(cache_s=1.0),
    )
    # Given every (model, region) pair of the policy failing for many callers, until its circuit opens
    for key, region in ALL_PAIRS:
        for n in range(25):
            tracker.record_attempt(POLICY, POLICY.models[key].model_id, region, "regional", 30.0, caller=f"ip:{n}")
    tracker.flush()
    # When a health checker calls, Then the region cannot serve, and no model was called to say so
    verdict = service.health.verdict()
    assert (verdict.healthy, verdict.reason) == (False, h.ALL_CIRCUITS_OPEN)
    assert gateway.calls == 0
    # And once the circuits have cooled down (half-open) with Bedrock back, the probe proves the region serves
    gateway.down = False
    clock.now += POLICY.breaker.cooldown_seconds + 1
    assert service.health.verdict().healthy
    assert gateway.calls == 1


@pytest.mark.parametrize("raw", ["nan", "-1", "0", "inf", "soon"])
def test_a_bad_health_setting_in_the_environment_names_the_variable(monkeypatch, raw):
    from lambdas.router import handler

    monkeypatch.setenv("ROUTER_HEALTH_CACHE_SECONDS", raw)
    with pytest.raises(ValueError, match=r"ROUTER_HEALTH_CACHE_SECONDS must be a finite number of seconds above 0"):
        handler._seconds_from_env("ROUTER_HEALTH_CACHE_SECONDS", 5.0)


def test_an_unset_health_setting_is_the_default(monkeypatch):
    from lambdas.router import handler

    monkeypatch.delenv("ROUTER_HEALTH_CACHE_SECONDS", raising=False)
    assert handler._seconds_from_env("ROUTER_HEALTH_CACHE_SECONDS", 5.0) == 5.0
    monkeypatch.setenv("ROUTER_HEALTH_CACHE_SECONDS", "0.5")
    assert handler._seconds_from_env("ROUTER_HEALTH_CACHE_SECONDS", 5.0) == 0.5
