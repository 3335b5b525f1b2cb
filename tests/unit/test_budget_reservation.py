"""Spend near a budget's cap: reservations in the store, the unconfirmed share, and the overshoot bound."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.router.budget import (
    RESERVE_AT_PERCENT,
    UNCONFIRMED_SHARE_PERCENT,
    cap_usd,
    estimate_usd,
    hard_stop_percent,
    scopes_for,
)
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.policy import Policy, compile_policy
from lambdas.router.state_store import InMemoryBackend

T0 = 1_800_000_000.0
CAP = 10.0
SHARE = CAP * UNCONFIRMED_SHARE_PERCENT / 100.0  # 0.20 USD per instance


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def policy(policy_document: dict[str, Any]) -> Policy:
    """10 USD a day, requests refused at 100%."""
    policy_document["budget"] = {"daily_usd": CAP, "modes": [{"at_percent": 100, "action": "reject"}]}
    return compile_policy(policy_document)


def day_key(policy: Policy, clock: Clock) -> str:
    [scope] = [s for s in scopes_for(policy.budget, clock(), tier=None, api_key=None) if s.limit_usd]
    return scope.key


def new_instance(store: Any, clock: Clock, policy: Policy) -> tuple[LiveStateTracker, tuple[Any, ...]]:
    """A tracker that has read the store once, and the scopes of a request."""
    tracker = LiveStateTracker(store, clock=clock)
    scopes = scopes_for(policy.budget, clock(), tier=None, api_key=None)
    tracker.snapshot(policy, scopes)
    return tracker, scopes


def test_far_from_the_cap_a_request_makes_no_store_call(policy):
    # Given an instance that has read the store, with the day's budget nearly untouched
    store, clock = InMemoryBackend(), Clock()
    tracker, scopes = new_instance(store, clock, policy)
    reads, writes = store.reads, store.writes
    # When ten requests spend a little each within one cache period
    for _ in range(10):
        reservation = tracker.reserve(policy, scopes, 0.01)
        assert reservation.reserved == frozenset() and reservation.refused is None
        tracker.settle(reservation, 0.008)
    # Then the store was not called, and the spend is written with the next batched flush
    assert (store.reads, store.writes) == (reads, writes)
    clock.now += 1.0
    tracker.snapshot(policy, scopes)
    assert store.spend[day_key(policy, clock)] == pytest.approx(0.08)


def test_near_the_cap_the_estimate_is_reserved_before_the_call_and_settled_after(policy):
    # Given 85% of the cap spent
    store, clock = InMemoryBackend(), Clock()
    key = day_key(policy, clock)
    store.spend[key] = 8.5
    tracker, scopes = new_instance(store, clock, policy)
    # When a request estimated at 0.50 USD is about to call a model
    reservation = tracker.reserve(policy, scopes, 0.5)
    # Then the estimate is in the shared counter at once
    assert reservation.reserved == {key}
    assert store.spend[key] == pytest.approx(9.0)
    # And the answer's cost replaces it with the next flush
    tracker.settle(reservation, 0.2)
    tracker.flush()
    assert store.spend[key] == pytest.approx(8.7)


def test_a_call_that_was_not_answered_gives_its_reservation_back(policy):
    store, clock = InMemoryBackend(), Clock()
    key = day_key(policy, clock)
    store.spend[key] = 9.0
    tracker, scopes = new_instance(store, clock, policy)
    reservation = tracker.reserve(policy, scopes, 0.5)
    assert store.spend[key] == pytest.approx(9.5)
    tracker.settle(reservation, 0.0)
    tracker.flush()
    assert store.spend[key] == pytest.approx(9.0)


def test_rejects_a_request_the_cap_has_no_room_for_even_when_the_instance_saw_little_spend(policy):
    # Given an instance that read 5 USD spent, and another instance's spend since then up to 9.80
    store, clock = InMemoryBackend(), Clock()
    key = day_key(policy, clock)
    store.spend[key] = 5.0
    tracker, scopes = new_instance(store, clock, policy)
    store.spend[key] = 9.8
    # When it is asked for more than its unconfirmed share (so it asks the store)
    refused = tracker.reserve(policy, scopes, 0.3)
    # Then the store refuses it and the counter is unchanged
    assert refused.refused is not None and refused.refused.label == "daily"
    assert store.spend[key] == pytest.approx(9.8)
    # And the instance now knows the counter: what still fits is reserved, what does not is refused locally
    writes = store.writes
    assert tracker.reserve(policy, scopes, 0.3).refused is not None
    assert store.writes == writes
    assert tracker.reserve(policy, scopes, 0.1).reserved == {key}
    assert store.spend[key] == pytest.approx(9.9)


def test_an_instance_spends_at_most_its_unconfirmed_share_before_the_store_confirms(policy):
    # Given an instance far from the cap
    store, clock = InMemoryBackend(), Clock()
    tracker, scopes = new_instance(store, clock, policy)
    # When requests of 0.05 USD start and none has ended
    started = [tracker.reserve(policy, scopes, 0.05) for _ in range(6)]
    # Then the first four (0.20 USD, the share) go without a store call, and the next ones are reserved
    assert [bool(r.reserved) for r in started] == [False] * 4 + [True] * 2
    for reservation in started:
        tracker.settle(reservation, 0.05)


def test_two_instances_with_stale_views_overshoot_at_most_their_unconfirmed_shares(policy):
    # Given two instances that read an empty counter, and a third that has since spent 9.96 of the 10 USD
    store, clock = InMemoryBackend(), Clock()
    key = day_key(policy, clock)
    a, scopes = new_instance(store, clock, policy)
    b, _ = new_instance(store, clock, policy)
    store.spend[key] = 9.96
    # When both keep starting requests of 0.05 USD within their cache period
    answered = []
    for tracker in (a, b):
        for _ in range(10):
            reservation = tracker.reserve(policy, scopes, 0.05)
            if reservation.refused is None:
                answered.append((tracker, reservation))
    for tracker, reservation in answered:
        tracker.settle(reservation, 0.05)
    a.flush()
    b.flush()
    # Then each spent its share without the store's word, then was refused by the store
    assert len(answered) == 8
    assert store.spend[key] == pytest.approx(9.96 + 8 * 0.05)
    assert store.spend[key] <= CAP + 2 * SHARE + 1e-9


def test_with_the_store_down_an_instance_refuses_on_its_own_view(policy):
    class Down(InMemoryBackend):
        def reserve_spend(self, *args: Any, **kwargs: Any) -> Any:
            raise TimeoutError("store unreachable")

    # Given an instance that read 9.5 USD spent, then lost the store
    store, clock = Down(), Clock()
    key = day_key(policy, clock)
    store.spend[key] = 9.5
    tracker, scopes = new_instance(store, clock, policy)
    # When it needs a reservation: it spends on local knowledge, and counts a store error
    first = tracker.reserve(policy, scopes, 0.3)
    assert first.refused is None and first.reserved == frozenset()
    assert tracker.drain_events().store_errors == 1
    # Then what its own view has no room for is refused, without trying the store again
    assert tracker.reserve(policy, scopes, 0.3).refused is not None


def test_a_budget_with_no_mode_that_stops_spending_reserves_nothing(policy_document):
    policy_document["budget"] = {"daily_usd": 1.0, "modes": [{"at_percent": 90, "max_model_tier": "economy"}]}
    policy = compile_policy(policy_document)
    store, clock = InMemoryBackend(), Clock()
    store.spend[day_key(policy, clock)] = 5.0  # 500%
    tracker, scopes = new_instance(store, clock, policy)
    assert tracker.reserve(policy, scopes, 0.5) == (tuple(scopes), 0.5, frozenset(), frozenset(), None)


def test_the_cap_is_the_limit_at_the_first_mode_that_stops(policy_document):
    policy_document["budget"]["modes"] = [
        {"at_percent": 70, "max_model_tier": "standard"},
        {"at_percent": 95, "action": "degrade"},
        {"at_percent": 100, "action": "reject"},
    ]
    policy = compile_policy(policy_document)
    assert hard_stop_percent(policy.budget) == 95
    caps = {s.label: cap_usd(policy.budget, s) for s in scopes_for(policy.budget, T0, tier="economy", api_key="k")}
    assert caps == {
        "daily": pytest.approx(190.0),
        "monthly": pytest.approx(3800.0),
        "tier economy daily": pytest.approx(19.0),
        "api key daily": pytest.approx(47.5),
    }
    assert RESERVE_AT_PERCENT < 100


def test_the_estimate_is_the_dearest_models_input_and_whole_output_limit(default_policy):
    micro, opus = default_policy.models["nova-micro"], default_policy.models["claude-opus-4-5"]
    # Opus: 1,000 input tokens at 0.005 per 1K plus 4,096 output tokens at 0.025 per 1K
    assert estimate_usd([micro, opus], 1000, 4096) == pytest.approx(0.005 + 4.096 * 0.025)
    # A model's own output limit caps max_tokens (Nova Micro stops at 10,000)
    assert estimate_usd([micro], 0, 50_000) == pytest.approx(10 * 0.00014)
    assert estimate_usd([], 1000, 1000) == 0.0
