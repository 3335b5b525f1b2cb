"""The budget's overshoot bound with two instances and 32 concurrent callers, on the in-memory store (the
DynamoDB variant is in ``test_dynamo_state.py``)."""

from __future__ import annotations

import pytest

from benchmarks.budget_drill import bound_usd, two_instances_spend, write_policy
from lambdas.router.state_store import InMemoryBackend

DAILY_USD = 2.0


def test_two_instances_spend_at_most_the_cap_plus_their_unconfirmed_shares(tmp_path):
    # Given two instances sharing one store, and a 2 USD daily budget that refuses requests at its cap
    store = InMemoryBackend()
    # When 32 callers spend it concurrently, each until refused
    run = two_instances_spend((store, store), write_policy(tmp_path, DAILY_USD))
    # Then the spend stays within the stated bound, the budget was used, and the counter holds what was spent
    assert run.answered_usd <= bound_usd(DAILY_USD, instances=2)
    assert run.answered_usd >= 0.9 * DAILY_USD
    assert run.refusals == 32
    assert run.counter_usd == pytest.approx(run.answered_usd)
