"""The DynamoDB store's request shapes and its handling of partial answers, on a recording fake client."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.router.budget import scopes_for
from lambdas.router.dynamo_state import DynamoBackend, IncompleteRead, _n
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.state_store import InMemoryBackend

PAIR = ("us.amazon.nova-micro-v1:0", "us-east-1")


class Switchable:
    """A backend whose implementation the test swaps mid-way."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class UnprocessedClient:
    """BatchGetItem that answers some keys and leaves the rest unprocessed, every time."""

    def __init__(self, answer_unprocessed_after: int | None = None) -> None:
        self.calls = 0
        self.answer_unprocessed_after = answer_unprocessed_after

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        [(table, request)] = RequestItems.items()
        keys = request["Keys"]
        if self.answer_unprocessed_after is not None and self.calls > self.answer_unprocessed_after:
            return {"Responses": {table: [{"pk": key["pk"], "usd": {"N": "1"}} for key in keys]}}
        return {"Responses": {table: []}, "UnprocessedKeys": {table: {"Keys": keys}}}


def test_keys_left_unprocessed_raise_instead_of_reading_as_absent():
    client = UnprocessedClient()
    backend = DynamoBackend("t", client=client)
    with pytest.raises(IncompleteRead, match="unprocessed after 3"):
        backend.read([PAIR], [1, 0], ["d:2026-11-23"])
    assert client.calls == 3


def test_unprocessed_keys_answered_on_a_retry_are_read():
    backend = DynamoBackend("t", client=UnprocessedClient(answer_unprocessed_after=1))
    assert backend.read([], [], ["d:2026-11-23"]).spend == {"d:2026-11-23": 1.0}


def test_an_incomplete_read_keeps_the_trackers_previous_view(default_policy):
    # Given an instance that knows of an open circuit and of spend
    store = Switchable(InMemoryBackend())
    store.open_circuit(PAIR, opened_at=1_800_000_000.0, expected=None, reason="x")
    now = [1_800_000_001.0]
    tracker = LiveStateTracker(store, clock=lambda: now[0])
    scopes = scopes_for(default_policy.budget, now[0], tier="standard", api_key=None)
    assert ("nova-micro", "us-east-1") in tracker.snapshot(default_policy, scopes).state.open_circuits
    # When its next read comes back incomplete
    store.inner = DynamoBackend("t", client=UnprocessedClient())
    now[0] += 3
    view = tracker.snapshot(default_policy, scopes)
    # Then it routes on what it knew, and counts a store error
    assert ("nova-micro", "us-east-1") in view.state.open_circuits
    assert tracker.drain_events().store_errors == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.05e-05, "0.0000105"), (4000.5, "4000.5"), (0.0, "0"), (-0.0, "0"), (3, "3"), (-5, "-5"), (1e-13, "0")],
)
def test_numbers_are_sent_in_fixed_point(value, text):
    assert _n(value) == {"N": text}


class ConditionFailed(Exception):
    def __init__(self, item: dict[str, Any]) -> None:
        super().__init__("The conditional request failed")
        self.response = {"Error": {"Code": "ConditionalCheckFailedException"}, "Item": item}


class ReservingClient:
    """UpdateItem on one spend counter, with DynamoDB's condition semantics; records each request."""

    class exceptions:  # botocore spells it so
        ConditionalCheckFailedException = ConditionFailed

    def __init__(self, usd: float | None = None) -> None:
        self.usd = usd
        self.requests: list[dict[str, Any]] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        values = request["ExpressionAttributeValues"]
        if self.usd is not None and self.usd > float(values[":room"]["N"]):
            raise ConditionFailed({"pk": request["Key"]["pk"], "usd": {"N": str(self.usd)}})
        self.usd = (self.usd or 0.0) + float(values[":usd"]["N"])
        return {"Attributes": {"usd": {"N": str(self.usd)}}}


def test_a_reservation_is_one_conditional_add_that_keeps_the_counter_within_the_cap():
    client = ReservingClient(usd=0.9)
    backend = DynamoBackend("t", client=client)
    assert backend.reserve_spend("d:2026-11-23", 0.05, cap_usd=1.0, expires_at=1_800_000_000.5) == (
        True,
        pytest.approx(0.95),
    )
    [request] = client.requests
    assert request["Key"] == {"pk": {"S": "s#d:2026-11-23"}}
    assert request["UpdateExpression"] == "ADD usd :usd SET expires_at = :expires"
    assert request["ConditionExpression"] == "attribute_not_exists(usd) OR usd <= :room"
    assert request["ExpressionAttributeValues"] == {
        ":usd": {"N": "0.05"},
        ":room": {"N": "0.95"},
        ":expires": {"N": "1800000000"},
    }
    assert request["ReturnValues"] == "UPDATED_NEW"
    # Refused: the counter as DynamoDB found it comes back with the failure
    assert request["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert backend.reserve_spend("d:2026-11-23", 0.1, cap_usd=1.0, expires_at=9e9) == (False, pytest.approx(0.95))
