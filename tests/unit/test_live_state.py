"""The per-instance live-state tracker over a shared in-memory store: two trackers model two Lambda instances."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lambdas.router.budget import scopes_for
from lambdas.router.live_state import FLUSH_BUDGET_S, MAX_WRITES_PER_FLUSH, LiveStateTracker
from lambdas.router.policy import compile_policy
from lambdas.router.state_store import InMemoryBackend

NOVA_MICRO = "us.amazon.nova-micro-v1:0"
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


def caller(index: int) -> str:
    """The index-th distinct caller (distinct breaker tags for the first six)."""
    return f"ip:198.51.100.{index % 6}"


def fail(t: LiveStateTracker, policy, times: int, outcome: str = "regional") -> None:
    """``times`` failures, from several callers (as an outage looks)."""
    for index in range(times):
        t.record_attempt(policy, NOVA_MICRO, HOME, outcome, 30.0, caller=caller(index))


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


PAIR = (NOVA_MICRO, HOME)


def open_then_cool_down(a: LiveStateTracker, policy, clock: Clock) -> None:
    fail(a, policy, policy.breaker.failure_threshold)
    clock.now += policy.breaker.cooldown_seconds + 1


def take_probe(t: LiveStateTracker, policy, clock: Clock) -> set[tuple[str, str]]:
    """A request that reaches the half-open pair: it claims the probe just before calling; returns its probes."""
    held = snapshot(t, policy, clock).probes
    assert not t.is_open(policy, *PAIR, held)
    assert held == {PAIR}
    return held


def test_half_open_lets_one_probe_through_across_instances_and_success_closes(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    first, second = snapshot(a, default_policy, clock), snapshot(b, default_policy, clock)
    # Half-open: both instances still plan the pair, and a snapshot alone claims nothing
    assert ("nova-micro", HOME) not in first.state.open_circuits
    assert ("nova-micro", HOME) not in second.state.open_circuits
    assert store.circuits[PAIR].probes == 0
    # When both reach the call, exactly one gets the probe; the other skips it
    assert not a.is_open(default_policy, *PAIR, first.probes)
    assert b.is_open(default_policy, *PAIR, second.probes)
    assert first.probes == {PAIR}
    assert second.probes == set()
    # And B's next plan leaves the pair out (it knows the probe is taken)
    assert ("nova-micro", HOME) in snapshot(b, default_policy, clock).state.open_circuits
    # Then the probe's success closes the circuit for everyone
    a.record_attempt(default_policy, *PAIR, "ok", 100.0, probes=first.probes)
    assert first.probes == set()
    clock.now += 2.0
    assert ("nova-micro", HOME) not in snapshot(b, default_policy, clock).state.open_circuits
    assert store.circuits == {}


def test_failed_probe_reopens_for_another_cooldown(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    first_opened = store.circuits[PAIR].opened_at
    held = take_probe(a, default_policy, clock)
    a.record_attempt(default_policy, *PAIR, "regional", 30.0, probes=held)
    assert store.circuits[PAIR].opened_at == pytest.approx(clock.now)
    assert store.circuits[PAIR].opened_at > first_opened
    assert "half-open probe failed" in store.circuits[PAIR].reason
    clock.now += 1
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits


def test_a_probe_given_back_without_a_verdict_is_claimable_at_once(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    held = take_probe(a, default_policy, clock)
    # When the request ends before the probe gave a verdict (its deadline passed)
    a.release(held)
    # Then the slot is free in the store, and another instance probes without waiting a cooldown
    assert store.circuits[PAIR].probes == 0
    theirs = snapshot(b, default_policy, clock).probes
    assert not b.is_open(default_policy, *PAIR, theirs)
    assert theirs == {PAIR}


def test_a_probe_whose_instance_vanished_is_claimable_after_a_cooldown(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    assert not a.is_open(default_policy, *PAIR, snapshot(a, default_policy, clock).probes)
    # Instance A is frozen for good holding the probe: B is refused ...
    assert b.is_open(default_policy, *PAIR, snapshot(b, default_policy, clock).probes)
    # ... until the claim is a cooldown old
    clock.now += default_policy.breaker.cooldown_seconds + 1
    theirs = snapshot(b, default_policy, clock).probes
    assert not b.is_open(default_policy, *PAIR, theirs)
    assert theirs == {PAIR}


def test_a_throttled_probe_gives_no_verdict_and_keeps_the_probe_for_the_retry(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    opened_at = store.circuits[PAIR].opened_at
    held = take_probe(a, default_policy, clock)
    a.record_attempt(default_policy, *PAIR, "throttled", 5.0, probes=held)
    # The circuit is neither re-opened nor closed, and the retry may call the pair
    assert store.circuits[PAIR].opened_at == opened_at
    assert held == {PAIR}
    assert not a.is_open(default_policy, *PAIR, held)
    a.record_attempt(default_policy, *PAIR, "ok", 80.0, probes=held)
    assert store.circuits == {}


def test_closing_forgets_the_failures_that_opened_the_circuit(default_policy):
    # Given a circuit opened early in one window and closed by a probe early in the next
    store, clock = InMemoryBackend(), Clock(T0 + 3)
    a, b = tracker(store, clock), tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    held = take_probe(a, default_policy, clock)
    a.record_attempt(default_policy, *PAIR, "ok", 80.0, probes=held)
    # When a single failure follows, on either instance
    clock.now += 1
    fail(a, default_policy, 1)
    clock.now += 2
    fail(b, default_policy, 1)
    # Then the circuit stays closed: the failures from before the close no longer count
    assert store.circuits == {}
    assert ("nova-micro", HOME) not in snapshot(b, default_policy, clock).state.open_circuits
    # And it still opens on enough new failures
    fail(b, default_policy, default_policy.breaker.failure_threshold)
    assert PAIR in store.circuits


def test_a_request_that_never_reaches_a_half_open_pair_claims_nothing(default_policy):
    # Given the primary's secondary region half-open while its home region answers
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    west = (NOVA_MICRO, "us-west-2")
    for index in range(default_policy.breaker.failure_threshold):
        a.record_attempt(default_policy, *west, "regional", 30.0, caller=caller(index))
    clock.now += default_policy.breaker.cooldown_seconds + 1
    # When many requests are answered from the home region (no call reaches us-west-2)
    for _ in range(5):
        view = snapshot(a, default_policy, clock)
        a.record_attempt(default_policy, *PAIR, "ok", 50.0, probes=view.probes)
        a.release(view.probes)
    # Then the slot is still free for whichever request does reach it
    assert store.circuits[west].probes == 0
    assert not b.is_open(default_policy, *west, snapshot(b, default_policy, clock).probes)


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


class Flaky:
    """An in-memory store that can be taken down, or made to fail the n-th call of one method."""

    def __init__(self) -> None:
        self.inner = InMemoryBackend()
        self.down = False
        self.fail_calls: dict[str, set[int]] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.down or self.calls[name] in self.fail_calls.get(name, set()):
                raise TimeoutError(f"{name} timed out")
            return method(*args, **kwargs)

        return call


def test_circuits_opened_while_the_store_was_down_are_written_when_it_recovers(default_policy):
    store, clock = Flaky(), Clock()
    a, b = tracker(store, clock, unhealthy_for_s=5.0), tracker(store, clock)
    store.down = True
    snapshot(a, default_policy, clock)
    fail(a, default_policy, default_policy.breaker.failure_threshold)
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits
    assert store.inner.circuits == {}
    # When the store answers again
    store.down = False
    clock.now += 5.0
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits
    # Then the circuit is in the store, and the other instances skip the pair too
    assert PAIR in store.inner.circuits
    assert ("nova-micro", HOME) in snapshot(b, default_policy, clock).state.open_circuits


def test_a_spend_flush_failing_part_way_never_writes_a_counter_twice(default_policy):
    store, clock = Flaky(), Clock()
    a = tracker(store, clock, unhealthy_for_s=5.0)
    scopes = scopes_for(default_policy.budget, clock(), tier="economy", api_key="key-1")
    assert len(scopes) >= 4  # day and month, overall, for the tier and for the key
    snapshot(a, default_policy, clock, tier="economy", key="key-1")
    a.record_spend(1.0, scopes)
    store.fail_calls["add_spend"] = {3}  # the third counter's write times out
    a.flush()
    clock.now += 5.0
    a.flush()
    # Every counter holds the one dollar, once
    assert store.inner.spend == {scope.key: pytest.approx(1.0) for scope in scopes}


def test_two_catalog_entries_for_one_model_id_read_each_pair_once(default_policy, policy_document):
    # Given a catalog that lists Nova Micro twice (say, under two names with different prices)
    policy_document["models"]["nova-micro-batch"] = dict(policy_document["models"]["nova-micro"])
    policy = compile_policy(policy_document)
    read_pairs: list[list[tuple[str, str]]] = []

    class Recording(InMemoryBackend):
        def read(self, pairs, windows, spend_keys):
            read_pairs.append(list(pairs))
            return super().read(pairs, windows, spend_keys)

    store, clock = Recording(), Clock()
    a = tracker(store, clock)
    fail(a, policy, policy.breaker.failure_threshold)
    clock.now += 2.0
    view = snapshot(a, policy, clock)
    # Then the read names each (model id, region) once, and the open circuit covers both names
    assert len(read_pairs[-1]) == len(set(read_pairs[-1]))
    assert {("nova-micro", HOME), ("nova-micro-batch", HOME)} <= view.state.open_circuits


def test_one_callers_failures_never_open_a_circuit(default_policy):
    # Given one caller whose requests make the model fail (a poison input), many times over
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    for _ in range(4 * default_policy.breaker.failure_threshold):
        a.record_attempt(default_policy, NOVA_MICRO, HOME, "regional", 30.0, caller="key:attacker")
    # Then the circuit stays closed for everyone
    assert PAIR not in store.circuits
    assert ("nova-micro", HOME) not in snapshot(a, default_policy, clock).state.open_circuits
    # And one stray failure of another caller does not tip it over
    a.record_attempt(default_policy, NOVA_MICRO, HOME, "regional", 30.0, caller="key:someone-else")
    assert PAIR not in store.circuits
    # But once the other caller's failures make up their share, it opens
    for _ in range(2):
        a.record_attempt(default_policy, NOVA_MICRO, HOME, "regional", 30.0, caller="key:someone-else")
    assert PAIR in store.circuits
    assert "from 2 callers" in store.circuits[PAIR].reason


def test_a_single_caller_deployment_can_ask_for_one_caller(policy_document):
    # Given a policy for a deployment with one calling service
    policy_document["circuit_breaker"]["min_failing_callers"] = 1
    policy = compile_policy(policy_document)
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    # When that service's requests fail failure_threshold times
    for _ in range(policy.breaker.failure_threshold):
        a.record_attempt(policy, NOVA_MICRO, HOME, "regional", 30.0, caller="key:backend")
    # Then the circuit opens
    assert PAIR in store.circuits


def test_closing_forgets_the_callers_of_the_failures_that_opened_it(default_policy):
    # Given a circuit opened by two callers' failures, then closed by a successful probe
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    fail(a, default_policy, default_policy.breaker.failure_threshold)
    clock.now += default_policy.breaker.cooldown_seconds + 1
    view = snapshot(a, default_policy, clock)
    assert not a.is_open(default_policy, *PAIR, view.probes)
    a.record_attempt(default_policy, *PAIR, "ok", 50.0, probes=view.probes)
    assert PAIR not in store.circuits
    # When one caller alone then fails failure_threshold times
    for _ in range(default_policy.breaker.failure_threshold):
        a.record_attempt(default_policy, NOVA_MICRO, HOME, "regional", 30.0, caller="key:attacker")
    # Then the old callers do not count for it: the circuit stays closed
    assert PAIR not in store.circuits


# -- a policy change applies to live state at once ------------------------------------------------------


def test_disabling_the_breaker_by_a_hot_reload_stops_skipping_open_circuits_at_once(default_policy, policy_document):
    # Given a circuit open in its cooldown
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    fail(a, default_policy, default_policy.breaker.failure_threshold)
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits
    # When a hot reload disables the breaker, within the cache period
    policy_document["circuit_breaker"]["enabled"] = False
    disabled = compile_policy(policy_document)
    clock.now += 0.1
    view = snapshot(a, disabled, clock)
    # Then the pair is planned and called again at once
    assert ("nova-micro", HOME) not in view.state.open_circuits
    assert not a.is_open(disabled, *PAIR, view.probes)
    assert view.probes == set()
    # And enabling it again brings the open circuit back
    assert ("nova-micro", HOME) in snapshot(a, default_policy, clock).state.open_circuits


def test_a_model_added_back_by_a_hot_reload_is_read_before_it_is_planned(policy_document):
    # Given a catalog model whose circuit another instance opened
    titan = ("amazon.titan-text-lite-v1", HOME)
    policy_document["models"]["titan-lite"] = {
        **policy_document["models"]["nova-micro"],
        "model_id": titan[0],
        "regions": [HOME],
    }
    with_titan = compile_policy(policy_document)
    del policy_document["models"]["titan-lite"]
    without_titan = compile_policy(policy_document)
    store, clock = InMemoryBackend(), Clock()
    a, other = tracker(store, clock), tracker(store, clock)
    for index in range(with_titan.breaker.failure_threshold):
        other.record_attempt(with_titan, *titan, "regional", 30.0, caller=caller(index))
    assert titan in store.circuits
    # And an instance that last read the store under a policy without that model
    snapshot(a, without_titan, clock)
    # When a hot reload adds the model back, within the cache period
    clock.now += 0.5
    view = snapshot(a, with_titan, clock)
    # Then the instance reads the store first and leaves the open circuit out of the plan
    assert ("titan-lite", HOME) in view.state.open_circuits
    assert a.is_open(with_titan, *titan, view.probes)


def test_a_changed_counting_window_is_read_at_once(default_policy, policy_document):
    store, clock = InMemoryBackend(), Clock()
    a = tracker(store, clock)
    snapshot(a, default_policy, clock)
    policy_document["circuit_breaker"]["window_seconds"] = 60
    snapshot(a, compile_policy(policy_document), clock)
    assert store.reads == 2


# -- no store call under the lock the request path takes ------------------------------------------------


class LockWatch:
    """A store that, during every call, checks that another thread can still use the tracker (take its lock)."""

    def __init__(self, inner: Any, policy) -> None:
        self.inner = inner
        self.policy = policy
        self.tracker: LiveStateTracker | None = None
        self.called: set[str] = set()
        self.stalled: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.called.add(name)
            if self.tracker is not None and not self.stalled:
                probe = threading.Thread(target=self.tracker.is_open, args=(self.policy, "no-such-model", HOME, set()))
                probe.start()
                probe.join(timeout=0.5)
                if probe.is_alive():
                    self.stalled.append(name)
            return method(*args, **kwargs)

        return call


def test_no_store_call_is_made_while_holding_the_lock_the_request_path_takes(default_policy, policy_document):
    # Given a store that checks the tracker's lock is free during each of its calls
    policy_document["budget"] = {"daily_usd": 1.0, "modes": [{"at_percent": 100, "action": "reject"}]}
    budgeted = compile_policy(policy_document)
    flaky = Flaky()
    store, clock = LockWatch(flaky, default_policy), Clock()
    a = tracker(store, clock, unhealthy_for_s=5.0)
    store.tracker = a
    scopes = scopes_for(budgeted.budget, clock(), tier=None, api_key=None)
    # When every kind of store call happens: reads, flushes, failures written at once, an open, a probe claimed
    # and closing the circuit, a probe given back, a reservation, and a circuit written back after an outage
    a.snapshot(budgeted, scopes)
    a.record_attempt(default_policy, *PAIR, "ok", 40.0)
    open_then_cool_down(a, default_policy, clock)
    held = take_probe(a, default_policy, clock)
    a.record_attempt(default_policy, *PAIR, "ok", 40.0, probes=held)
    open_then_cool_down(a, default_policy, clock)
    a.release(take_probe(a, default_policy, clock))
    flaky.inner.spend[scopes[0].key] = 0.9
    clock.now += 2.0
    a.snapshot(budgeted, scopes)
    a.settle(a.reserve(budgeted, scopes, 0.05), 0.04)
    flaky.down = True
    west = (NOVA_MICRO, "us-west-2")
    for index in range(default_policy.breaker.failure_threshold):
        a.record_attempt(default_policy, *west, "regional", 30.0, caller=caller(index))
    flaky.down = False
    clock.now += 5.0
    a.snapshot(default_policy, scopes)
    a.flush()
    # Then each of them left the lock free
    assert store.called >= {
        "read",
        "add_counts",
        "add_spend",
        "open_circuit",
        "claim_probe",
        "close_circuit",
        "release_probe",
        "reserve_spend",
    }
    assert west in flaky.inner.circuits  # written back
    assert store.stalled == []


class Blocking(InMemoryBackend):
    """A store whose spend writes hang until released (a store that stopped answering, or retry backoff)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def add_spend(self, amounts: Any) -> None:
        self.entered.set()
        assert self.go_on.wait(10)
        super().add_spend(amounts)


def test_a_hanging_store_call_stalls_only_the_request_that_makes_it(default_policy):
    # Given an instance with spend to flush
    store, clock = Blocking(), Clock()
    a = tracker(store, clock)
    scopes = scopes_for(default_policy.budget, clock(), tier="standard", api_key=None)
    a.snapshot(default_policy, scopes)
    a.record_spend(0.5, scopes)
    clock.now += 2.0
    # When one request's flush hangs in the store
    flusher = threading.Thread(target=a.snapshot, args=(default_policy, scopes))
    flusher.start()
    assert store.entered.wait(5)
    reads = store.reads
    # Then other requests route, count and spend meanwhile, on the cached view, and start no second flush
    done = threading.Event()

    def other_requests() -> None:
        for _ in range(20):
            view = a.snapshot(default_policy, scopes)
            assert not a.is_open(default_policy, *PAIR, view.probes)
            a.record_attempt(default_policy, *PAIR, "ok", 40.0, probes=view.probes)
            a.settle(a.reserve(default_policy, scopes, 0.01), 0.01)
            a.release(view.probes)
        done.set()

    threading.Thread(target=other_requests).start()
    try:
        assert done.wait(2.0), "requests waited for another request's store call"
        assert store.reads == reads
    finally:
        store.go_on.set()
        flusher.join(5)
    # And once the store answers, everything is written
    a.flush()
    assert store.spend[scopes[0].key] == pytest.approx(0.5 + 20 * 0.01)


def test_recovery_after_a_long_outage_writes_a_bounded_batch_per_flush(default_policy):
    # Given a store down for six minutes while an instance answered calls on 20 pairs in every window
    store, clock = Flaky(), Clock()
    a = tracker(store, clock, unhealthy_for_s=5.0)
    scopes = scopes_for(default_policy.budget, clock(), tier="standard", api_key=None)
    store.down = True
    snapshot(a, default_policy, clock)
    pairs = [(f"model-{index}", HOME) for index in range(20)]
    for _ in range(12):
        for pair in pairs:
            a.record_attempt(default_policy, *pair, "ok", 40.0)
        a.record_spend(0.01, scopes)
        clock.now += 30.0
    for pair in pairs:
        a.record_attempt(default_policy, *pair, "ok", 40.0)
    store.down = False
    store.calls.clear()
    # When the next request finds the store back
    a.snapshot(default_policy, scopes)
    # Then it writes at most MAX_WRITES_PER_FLUSH items, spend first, and reads
    assert store.calls.get("add_counts", 0) + store.calls.get("add_spend", 0) <= MAX_WRITES_PER_FLUSH
    assert store.calls["add_spend"] == len(scopes)
    assert store.calls["read"] == 1
    # And the rest follows, only for the windows anyone still reads (the current and the previous one)
    a.flush()
    assert store.calls["add_counts"] == 2 * len(pairs)
    assert {window for _pair, window in store.inner.counts} == {int(clock.now // 30) - 1, int(clock.now // 30)}
    assert store.inner.spend[scopes[0].key] == pytest.approx(0.12)


def test_a_slow_store_costs_the_request_that_flushes_a_bounded_time(default_policy):
    class Slow(InMemoryBackend):
        def add_counts(self, *args: Any, **kwargs: Any) -> Any:
            time.sleep(0.1)
            return super().add_counts(*args, **kwargs)

    # Given 16 counters to write, on a store that takes 100 ms a write
    store, clock = Slow(), Clock()
    a = tracker(store, clock)
    snapshot(a, default_policy, clock)
    for index in range(16):
        a.record_attempt(default_policy, f"model-{index}", HOME, "ok", 40.0)
    clock.now += 1.0
    # When the next request flushes
    started = time.monotonic()
    snapshot(a, default_policy, clock)
    # Then it stops writing after FLUSH_BUDGET_S, and the rest is written later
    assert time.monotonic() - started < FLUSH_BUDGET_S + 0.3
    assert 1 <= len(store.counts) < 16
    a.flush()
    assert len(store.counts) == 16


# --- A request that goes on on another instance (the Step Functions orchestration's tasks) -----------------------


def test_a_probe_handed_off_gets_its_verdict_on_the_next_instance(default_policy):
    # Given a half-open pair whose probe instance A claims for a request
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    held = take_probe(a, default_policy, clock)
    # When A hands the request off and B, adopting the probe, records the call's success
    handed = a.hand_off_probes(held)
    assert handed == {PAIR: (store.circuits[PAIR].opened_at, True)}
    b.adopt_probes(handed)
    b.record_attempt(default_policy, *PAIR, "ok", 100.0, probes=held)
    # Then the circuit closes for everyone, and neither instance keeps a probe in its books
    assert store.circuits == {}
    assert PAIR not in a._probing and PAIR not in b._probing and not b._adopted
    clock.now += 2.0
    assert ("nova-micro", HOME) not in snapshot(a, default_policy, clock).state.open_circuits


def test_a_probe_handed_off_without_a_verdict_is_given_back_by_the_next_instance(default_policy):
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    open_then_cool_down(a, default_policy, clock)
    held = take_probe(a, default_policy, clock)
    b.adopt_probes(a.hand_off_probes(held))
    b.release(held)  # the request ended before the call (a deadline)
    assert store.circuits[PAIR].probes == 0


def test_a_reservation_handed_off_leaves_nothing_in_flight_on_the_first_instance(policy_with_budget):
    # Given a reservation counted on instance A only (far from the cap)
    store, clock = InMemoryBackend(), Clock()
    a, b = tracker(store, clock), tracker(store, clock)
    scopes = scopes_for(policy_with_budget.budget, clock(), tier=None, api_key=None)
    reservation = a.reserve(policy_with_budget, scopes, 0.01)
    assert reservation.unconfirmed and a._in_flight_usd
    # When A hands it off and B settles it
    handed = a.hand_off(reservation)
    b.settle(handed, 0.004)
    # Then A counts nothing in flight, B subtracted nothing it never added, and the spend reaches the store
    assert not handed.unconfirmed
    assert all(value == 0 for value in a._in_flight_usd.values())
    assert b._in_flight_usd == {}
    b.flush()
    assert sum(store.spend.values()) == pytest.approx(0.004 * len(scopes))


@pytest.fixture
def policy_with_budget(default_policy):
    return default_policy
