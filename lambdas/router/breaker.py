"""Circuit breaker and rolling-latency arithmetic per (model, region). Pure: no I/O, no clock.

Calls are counted in fixed windows of ``window_seconds``; a sliding count weighs the previous window by the
share of it that still overlaps the last ``window_seconds`` (the usual sliding-window-counter estimate).
Failures (regional and configuration) and throttles are counted apart:

- open when sliding failures reach ``failure_threshold``, or failures are ``failure_rate_percent`` of the
  calls (throttles excluded) once there are ``min_calls`` — where no single caller's failures count for more
  than ``failure_threshold / min_failing_callers``: a request whose content makes the model fail (a poison
  request), sent again and again by one caller, cannot open a circuit for everyone, and needs the failures
  of several other callers besides. Failures are counted per caller bucket (``CALLER_BUCKETS`` of them, a
  hash of the caller's identity), so the shared store holds a fixed number of counters; two callers share a
  bucket one time in 32, which only delays an opening;
- open when throttles are ``throttle_rate_percent`` of all calls once there are ``min_calls`` (kept high:
  backoff, not the breaker, is the answer to ordinary throttling);
- an open breaker turns half-open after ``cooldown_seconds``; up to ``half_open_probes`` calls go through;
  a probe's success closes it, its failure opens it again for another cooldown.
"""

from __future__ import annotations

import zlib
from enum import StrEnum
from typing import NamedTuple

from .policy import BreakerSettings

# Upper bounds (ms) of the latency histogram's buckets; one more bucket holds everything slower.
LATENCY_BOUNDS_MS = (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600)
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1
CALLER_BUCKETS = 32


class Phase(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class WindowCounts(NamedTuple):
    """Calls to one (model, region) in one window. ``latency`` is a histogram of answered calls;
    ``failed_by_caller`` the failures per caller bucket (``caller_bucket``)."""

    ok: int = 0
    failed: int = 0
    throttled: int = 0
    latency: tuple[int, ...] = (0,) * LATENCY_BUCKETS
    failed_by_caller: tuple[int, ...] = (0,) * CALLER_BUCKETS

    def plus(self, other: WindowCounts) -> WindowCounts:
        return WindowCounts(
            self.ok + other.ok,
            self.failed + other.failed,
            self.throttled + other.throttled,
            tuple(a + b for a, b in zip(self.latency, other.latency, strict=True)),
            tuple(a + b for a, b in zip(self.failed_by_caller, other.failed_by_caller, strict=True))
            if other.failed
            else self.failed_by_caller,
        )

    @property
    def empty(self) -> bool:
        return not (self.ok or self.failed or self.throttled)


EMPTY = WindowCounts()


def latency_bucket(latency_ms: float) -> int:
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BOUNDS_MS)


def caller_bucket(identity: str | None) -> int:
    """The bucket a caller's failures are counted under (``CALLER_BUCKETS`` of them); no identity is one bucket."""
    return zlib.crc32((identity or "").encode("utf-8", "replace")) % CALLER_BUCKETS


def one_call(outcome: str, latency_ms: float, caller: str | None = None) -> WindowCounts:
    """The counts of a single call; ``outcome`` is "ok", "throttled", or another failure class; ``caller``
    the caller's identity (a failure is counted in its bucket)."""
    if outcome == "ok":
        histogram = [0] * LATENCY_BUCKETS
        histogram[latency_bucket(latency_ms)] = 1
        return WindowCounts(ok=1, latency=tuple(histogram))
    if outcome == "throttled":
        return WindowCounts(throttled=1)
    if outcome == "caller":  # the input's fault, not the model's or the region's
        return EMPTY
    by_caller = [0] * CALLER_BUCKETS
    by_caller[caller_bucket(caller)] = 1
    return WindowCounts(failed=1, failed_by_caller=tuple(by_caller))


def window_id(now: float, window_seconds: int) -> int:
    return int(now // window_seconds)


class Sliding(NamedTuple):
    ok: float
    failed: float
    throttled: float
    failed_by_caller: tuple[float, ...] = ()  # empty: every failure from one caller (unit tests)


def sliding(current: WindowCounts, previous: WindowCounts, now: float, window_seconds: int) -> Sliding:
    """Counts over the last ``window_seconds``: all of the current window, the overlapping part of the last."""
    elapsed = (now % window_seconds) / window_seconds
    weight = 1.0 - elapsed
    # Never below zero: closing a circuit subtracts the failures it knew of, and two instances' views of
    # the shared counts may differ by a cache period.
    return Sliding(
        max(0.0, current.ok + previous.ok * weight),
        max(0.0, current.failed + previous.failed * weight),
        max(0.0, current.throttled + previous.throttled * weight),
        tuple(
            max(0.0, now_ + before * weight)
            for now_, before in zip(current.failed_by_caller, previous.failed_by_caller, strict=True)
        ),
    )


def counted_failures(counts: Sliding, settings: BreakerSettings) -> float:
    """The failures that count toward opening: each caller's up to ``failure_threshold / min_failing_callers``."""
    if settings.min_failing_callers <= 1:
        return counts.failed
    cap = settings.failure_threshold / settings.min_failing_callers
    by_caller = counts.failed_by_caller or (counts.failed,)
    return min(counts.failed, sum(min(failed, cap) for failed in by_caller))


def trip_reason(counts: Sliding, settings: BreakerSettings) -> str | None:
    """Why the breaker should open now, or None to stay closed."""
    answered_or_failed = counts.ok + counts.failed
    counted = counted_failures(counts, settings)
    callers = sum(1 for failed in counts.failed_by_caller if failed >= 0.5) or 1
    from_callers = f" from {callers} callers" if settings.min_failing_callers > 1 else ""
    if counted >= settings.failure_threshold:
        return f"{counts.failed:.0f} failures in {settings.window_seconds}s{from_callers}"
    if (
        answered_or_failed >= settings.min_calls
        and counted * 100.0 >= settings.failure_rate_percent * answered_or_failed
    ):
        rate = 100.0 * counts.failed / answered_or_failed
        return f"failure rate {rate:.0f}% over {answered_or_failed:.0f} calls{from_callers}"
    calls = answered_or_failed + counts.throttled
    if calls >= settings.min_calls and counts.throttled * 100.0 >= settings.throttle_rate_percent * calls:
        return f"throttle rate {100.0 * counts.throttled / calls:.0f}% over {calls:.0f} calls"
    return None


def phase(opened_at: float | None, now: float, settings: BreakerSettings) -> Phase:
    if opened_at is None:
        return Phase.CLOSED
    if now < opened_at + settings.cooldown_seconds:
        return Phase.OPEN
    return Phase.HALF_OPEN


def latency_percentile_ms(histogram: tuple[int, ...], percentile: int, min_samples: int) -> float | None:
    """The upper bound of the bucket holding the percentile, or None with fewer than ``min_samples`` calls.

    The slowest bucket has no upper bound; it reports twice the last bound.
    """
    total = sum(histogram)
    if total < min_samples or total == 0:
        return None
    rank = percentile / 100.0 * total
    cumulative = 0
    for index, count in enumerate(histogram):
        cumulative += count
        if cumulative >= rank and count:
            return float(LATENCY_BOUNDS_MS[index]) if index < len(LATENCY_BOUNDS_MS) else 2.0 * LATENCY_BOUNDS_MS[-1]
    return 2.0 * LATENCY_BOUNDS_MS[-1]
