"""The 429 a spent budget answers when the policy's action is "reject": Retry-After is the next period's start."""

from __future__ import annotations

import calendar

import pytest

from lambdas.router.engine import LiveState
from lambdas.router.service import budget_refusal


@pytest.mark.parametrize(
    ("now", "scope", "next_start"),
    [
        (calendar.timegm((2026, 11, 23, 18, 0, 0)), "daily", calendar.timegm((2026, 11, 24, 0, 0, 0))),
        (calendar.timegm((2026, 11, 23, 18, 0, 0)), "monthly", calendar.timegm((2026, 12, 1, 0, 0, 0))),
        (calendar.timegm((2026, 12, 31, 23, 59, 0)), "monthly", calendar.timegm((2027, 1, 1, 0, 0, 0))),
        (calendar.timegm((2026, 3, 29, 0, 30, 0)), "tier economy monthly", calendar.timegm((2026, 4, 1, 0, 0, 0))),
    ],
)
def test_retry_after_is_the_next_utc_period_start(now, scope, next_start):
    # Given a spent budget of that scope, When the router refuses
    outcome = budget_refusal(LiveState(budget_used_percent=104.2, budget_scope=scope), now)
    # Then 429, with Retry-After counting the seconds to the next UTC day or month
    assert outcome.status == 429
    assert outcome.headers["Retry-After"] == str(next_start - now)
    assert outcome.body["budget_scope"] == scope
    assert outcome.body["budget_used_percent"] == 104.2
    assert f"the {scope} spend budget is used up (104%)" in outcome.body["message"]


def test_retry_after_is_at_least_one_second():
    midnight = calendar.timegm((2026, 11, 24, 0, 0, 0))
    outcome = budget_refusal(LiveState(budget_used_percent=100.0, budget_scope="daily"), midnight - 0.2)
    assert outcome.headers["Retry-After"] == "1"
