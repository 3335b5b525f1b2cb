"""The per-instance live-state tracker over a shared in-memory store: two trackers model two Lambda instances."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.router.budget import scopes_for
from lambdas.router.live_state import InMemoryBackend, LiveStateTracker

NOVA_MICRO = "amazon.nova-micro-v1:0"
HOME = "us-east-1"
T0 = 1_800_000_000.0  # a window boundary for 30 s windows


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class DownBackend:
    """A store that is unreachable: every call raises, and is counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            raise ConnectionError("store unreachable")

        return fail


def tracker(backend: Any, clock: Clock, **options: Any) -> LiveStateTracker:
    return LiveStateTracker(backend, clock=clock, **options)


def snapshot(t: LiveStateTracker, policy, clock: Clock, **caller: Any):
    return t.snapshot(policy, scopes_for(policy.budget, clock(), tier=caller.get("tier"), api_key=caller.get("key")))


def fail(t: LiveStateTracker, policy, times: int, outcome: str = "regional") -> None:
    for _ in range(times):
        t.record_attempt(policy, NOVA_MICRO, HOME, outcome, 30.0)


def test_one_instances_failures_open_the_circuit_for_every_instance(default_policy):
    # Given two instances sharing one store
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    assert ("nova-micro", HOME) not in snapshot(b, default_policy, clock).state.open_circuits
    # When instance A sees failure_threshold regional failures
    fail(a, default_policy, default_policy.breaker.failure_threshold)
    # Then A skips the pair at once, and B does from its next read
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits
    clock.now += 2.0
    assert ("nova-micro", HOME) in snapshot(b, default_policy, clock).state.open_circuits
    assert a.drain_events().circuits_opened == ((NOVA_MICRO, HOME),)


def test_failures_from_several_instances_add_up(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    fail(a, default_policy, 3)
    fail(b, default_policy, 2)
    clock.now += 2.0
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits


def test_throttles_alone_do_not_open_the_circuit_below_the_throttle_rate(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    for _ in range(30):
        a.record_attempt(default_policy, NOVA_MICRO, HOME, "throttled", 5.0)
        a.record_attempt(default_policy, NOVA_MICRO, HOME, "ok", 100.0)
    assert ("nova-micro", HOME) not in snapshot(a, default_policy, clock).state.open_circuits


def test_reads_the_store_at_most_once_per_cache_period(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock, cache_ttl_s=2.0)
    for _ in range(50):
        snapshot(a, default_policy, clock)
        clock.now += 0.01
    assert store.reads == 1
    clock.now += 2.0
    snapshot(a, default_policy, clock)
    assert store.reads == 2


def test_half_open_lets_one_probe_through_across_instances_and_success_closes(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    fail(a, default_policy, 5)
    # When the cooldown has passed
    clock.now += default_policy.breaker.cooldown_seconds + 1
    first = snapshot(a, default_policy, clock)
    second = snapshot(b, default_policy, clock)
    # Then exactly one instance holds the probe; for the other the circuit is still open
    assert first.probes == frozenset({(NOVA_MICRO, HOME)})
    assert ("nova-micro", HOME) not in first.state.open_circuits
    assert ("nova-micro", HOME) in second.state.open_circuits
    # And the probe's success closes the circuit for everyone
    a.record_attempt(default_policy, NOVA_MICRO, HOME, "ok", 100.0)
    clock.now += 2.0
    assert ("nova-micro", HOME) not in snapshot(b, default_policy, clock).state.open_circuits
    assert store.circuits == {}


def test_failed_probe_reopens_for_another_cooldown(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    fail(a, default_policy, 5)
    first_opened = store.circuits[(NOVA_MICRO, HOME)].opened_at
    clock.now += default_policy.breaker.cooldown_seconds + 1
    assert snapshot(a, default_policy, clock).probes
    fail(a, default_policy, 1)
    assert store.circuits[(NOVA_MICRO, HOME)].opened_at == pytest.approx(clock.now)
    assert store.circuits[(NOVA_MICRO, HOME)].opened_at > first_opened
    clock.now += 1
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits


def test_an_unused_probe_slot_is_claimable_again_after_a_cooldown(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    fail(a, default_policy, 5)
    clock.now += default_policy.breaker.cooldown_seconds + 1
    held = snapshot(a, default_policy, clock)
    a.release(held.probes)  # the request was answered before it reached the probe
    assert not snapshot(b, default_policy, clock).probes
    clock.now += default_policy.breaker.cooldown_seconds + 2
    store.circuits[(NOVA_MICRO, HOME)] = store.circuits[(NOVA_MICRO, HOME)]._replace(probe_at=clock.now - 31)
    assert snapshot(b, default_policy, clock).probes == frozenset({(NOVA_MICRO, HOME)})


def test_store_down_routes_on_local_knowledge_and_never_raises(default_policy):
    # Given an unreachable store
    store, clock = DownBackend(), Clock()
    a = tracker(store, clock, unhealthy_for_s=5.0)
    # When requests go on
    first = snapshot(a, default_policy, clock)
    assert first.state.open_circuits == frozenset()
    calls_after_first_error = store.calls
    fail(a, default_policy, 5)
    # Then local failures still open the circuit, and the store is left alone while unhealthy
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits
    assert store.calls == calls_after_first_error
    assert a.drain_events().store_errors == 1
    # And it is tried again after the pause
    clock.now += 5.0
    snapshot(a, default_policy, clock)
    assert store.calls > calls_after_first_error


def test_spend_is_batched_but_counted_at_once_locally(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock, flush_interval_s=1.0), tracker(store, clock, flush_interval_s=1.0)
    scopes = scopes_for(default_policy.budget, clock(), tier="standard", api_key=None)
    snapshot(a, default_policy, clock)
    a.record_spend(30.0, scopes)
    # The instance that spent sees it at once; the store has not been written yet
    assert snapshot(a, default_policy, clock).spend_today_usd == pytest.approx(30.0)
    assert store.spend == {}
    clock.now += 1.0
    snapshot(a, default_policy, clock)
    b.record_spend(50.0, scopes)
    b.flush()
    clock.now += 2.0
    view = snapshot(a, default_policy, clock)
    # 80 of the 200 USD daily budget
    assert view.spend_today_usd == pytest.approx(80.0)
    assert view.state.budget_used_percent == pytest.approx(40.0)
    assert view.state.budget_scope == "daily"


def test_per_key_budget_uses_the_keys_own_counter(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    key_scopes = scopes_for(default_policy.budget, clock(), tier="standard", api_key="key-1")
    a.record_spend(40.0, key_scopes)
    a.flush()
    # 40 of key-1's 50 USD daily budget: 80%, above the overall 20%
    mine = snapshot(a, default_policy, clock, tier="standard", key="key-1").state
    assert mine.budget_used_percent == pytest.approx(80.0)
    assert mine.budget_scope == "api key daily"
    theirs = snapshot(a, default_policy, clock, tier="standard", key="key-2").state
    assert theirs.budget_used_percent == pytest.approx(20.0)


def test_latency_is_known_per_pair_after_enough_samples(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    for _ in range(default_policy.latency.min_samples):
        a.record_attempt(default_policy, NOVA_MICRO, HOME, "ok", 3000.0)
    clock.now += 2.0
    latency = snapshot(a, default_policy, clock).state.latency_ms
    assert latency[("nova-micro", HOME)] == 3200.0
    assert ("nova-micro", "us-west-2") not in latency
