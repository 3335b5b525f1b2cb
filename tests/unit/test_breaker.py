"""Circuit breaker arithmetic: sliding counts, trip rules (failures and throttles apart), phases, latency."""

from __future__ import annotations

import pytest

from lambdas.router import breaker as b
from lambdas.router.policy import BreakerSettings

SETTINGS = BreakerSettings(
    window_seconds=30,
    failure_threshold=5,
    failure_rate_percent=50,
    throttle_rate_percent=90,
    min_calls=20,
    cooldown_seconds=30,
    half_open_probes=1,
)


def counts(ok: int = 0, failed: int = 0, throttled: int = 0) -> b.WindowCounts:
    return b.WindowCounts(ok=ok, failed=failed, throttled=throttled)


def test_one_call_counts_each_outcome_in_its_own_column():
    assert b.one_call("ok", 120).ok == 1
    assert b.one_call("ok", 120).latency[b.latency_bucket(120)] == 1
    assert b.one_call("throttled", 5) == counts(throttled=1)
    assert b.one_call("regional", 5, "ip:1").failed == 1
    assert b.one_call("configuration", 5, "ip:1").failed == 1
    # A failure carries its caller's tag, one of CALLER_BUCKETS
    assert b.one_call("regional", 5, "ip:1").failed_by_caller[b.caller_bucket("ip:1")] == 1
    assert sum(b.one_call("regional", 5, "ip:1").failed_by_caller) == 1
    assert 0 <= b.caller_bucket("ip:1") < b.CALLER_BUCKETS
    # The caller's bad input says nothing about the model's health.
    assert b.one_call("caller", 5).empty


def test_sliding_weighs_the_previous_window_by_its_overlap():
    # Given 10 failures in the previous window, 2 in this one, 15 s (half) into this window
    sliding = b.sliding(counts(failed=2), counts(failed=10), now=30 * 100 + 15, window_seconds=30)
    # Then half of the previous window still counts
    assert sliding.failed == pytest.approx(7.0)


def test_opens_after_failure_threshold():
    assert b.trip_reason(b.Sliding(ok=100, failed=4, throttled=0, failed_by_caller=(1, 1, 1, 1)), SETTINGS) is None
    assert "5 failures" in (
        b.trip_reason(b.Sliding(ok=100, failed=5, throttled=0, failed_by_caller=(1, 2, 2)), SETTINGS) or ""
    )


def test_opens_on_failure_rate_only_above_min_volume():
    lenient = SETTINGS._replace(failure_threshold=1000)
    # 3 of 4 calls failed, but 4 calls are below min_calls
    assert b.trip_reason(b.Sliding(ok=1, failed=3, throttled=0, failed_by_caller=(1, 2)), lenient) is None
    reason = b.trip_reason(b.Sliding(ok=10, failed=10, throttled=0, failed_by_caller=(5, 5)), lenient)
    assert reason is not None and "failure rate 50%" in reason


def test_throttles_are_counted_apart_from_failures():
    # Given half of all calls throttled (a storm that backoff handles): the breaker stays closed
    assert b.trip_reason(b.Sliding(ok=50, failed=0, throttled=50), SETTINGS) is None
    # And throttles never count towards the failure threshold
    assert b.trip_reason(b.Sliding(ok=0, failed=4, throttled=15), SETTINGS) is None
    # But nearly every call throttled opens it
    reason = b.trip_reason(b.Sliding(ok=2, failed=0, throttled=38), SETTINGS)
    assert reason is not None and "throttle rate 95%" in reason


def test_phases_closed_open_half_open():
    assert b.phase(None, 1000.0, SETTINGS) is b.Phase.CLOSED
    assert b.phase(1000.0, 1000.0 + 29.9, SETTINGS) is b.Phase.OPEN
    assert b.phase(1000.0, 1000.0 + 30.0, SETTINGS) is b.Phase.HALF_OPEN


def test_latency_percentile_needs_min_samples_and_reports_bucket_bound():
    histogram = [0] * b.LATENCY_BUCKETS
    histogram[b.latency_bucket(80)] = 4
    assert b.latency_percentile_ms(tuple(histogram), 90, min_samples=5) is None
    histogram[b.latency_bucket(3000)] = 6
    assert b.latency_percentile_ms(tuple(histogram), 50, min_samples=5) == 3200.0
    assert b.latency_percentile_ms(tuple(histogram), 90, min_samples=5) == 3200.0
    histogram = [0] * b.LATENCY_BUCKETS
    histogram[b.latency_bucket(80)] = 95
    histogram[b.latency_bucket(60_000)] = 5
    assert b.latency_percentile_ms(tuple(histogram), 90, min_samples=5) == 100.0
    assert b.latency_percentile_ms(tuple(histogram), 99, min_samples=5) == 2 * b.LATENCY_BOUNDS_MS[-1]


def test_no_callers_failures_count_for_more_than_their_share():
    # Given 500 failures, all from one caller (a poison request, again and again)
    one_caller = b.Sliding(ok=0, failed=500, throttled=0, failed_by_caller=(500,))
    # Then neither the count nor the rate rule trips: that caller counts for threshold / min_failing_callers
    assert b.counted_failures(one_caller, SETTINGS) == 2.5
    assert b.trip_reason(one_caller, SETTINGS) is None
    # And one stray failure from someone else is not enough either
    assert b.trip_reason(b.Sliding(ok=0, failed=501, throttled=0, failed_by_caller=(500, 1)), SETTINGS) is None
    # But enough of others' failures are: an outage seen by more than one caller
    assert "from 2 callers" in (b.trip_reason(b.Sliding(0, 503, 0, failed_by_caller=(500, 3)), SETTINGS) or "")
    # Unless the policy asks for one caller (a single calling service): then every failure counts
    assert b.trip_reason(one_caller, SETTINGS._replace(min_failing_callers=1)) == "500 failures in 30s"
    # And throttling, which no request content causes, trips whatever the callers
    assert b.trip_reason(b.Sliding(ok=0, failed=0, throttled=40), SETTINGS) is not None


def test_sliding_weighs_each_callers_failures_like_the_totals():
    previous = b.one_call("regional", 1, "ip:a").plus(b.one_call("regional", 1, "ip:b"))
    current = b.one_call("regional", 1, "ip:a")
    sliding = b.sliding(current, previous, now=30 * 100 + 15, window_seconds=30)
    assert sliding.failed_by_caller[b.caller_bucket("ip:a")] == pytest.approx(1.5)
    assert sliding.failed_by_caller[b.caller_bucket("ip:b")] == pytest.approx(0.5)
    assert sum(sliding.failed_by_caller) == pytest.approx(sliding.failed)
