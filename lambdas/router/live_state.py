"""Live state shared by every router instance: circuit breakers, rolling latency and spend.

One interface (``StateBackend``), two implementations: ``InMemoryBackend`` (local mode, tests) and
``dynamo_state.DynamoBackend`` (deployed). ``LiveStateTracker`` is the per-instance side:

- request path: at most one backend read per request, and only when the cached view is older than
  ``cache_ttl_s`` or lacks a spend counter the request needs;
- answered calls (counts, latency) and spend are batched and flushed at most every ``flush_interval_s``
  (atomic adds); failures and throttles are written at once (an atomic add that returns the shared totals),
  so one instance's failures open the breaker for all; opening, probing and closing a breaker are
  conditional writes, so instances agree on one ``opened_at`` and on the number of half-open probes;
- a half-open probe is claimed just before the call that uses it (``is_open``), held by that request only,
  and given back in the store when the request ends without a verdict; closing a breaker forgets the
  failures that opened it, so one failure right after a close does not open it again;
- when the backend fails or is slow it is left alone for ``unhealthy_for_s`` and the tracker routes on
  local knowledge (its own counts and breakers); a request never fails because of the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from . import breaker as b
from .budget import SpendScope, spent_today, used_percent
from .engine import LiveState
from .policy import BreakerSettings, Policy

Pair = tuple[str, str]
"""(Bedrock model id, region)."""
CountKey = tuple[Pair, int]
"""(pair, counting window)."""

# A window's counts are kept this many windows after it ends (the sliding count reads the last two), then TTL
# removes them from the store.
WINDOWS_KEPT = 4


def window_expires_at(window: int, window_seconds: int) -> float:
    return float((window + WINDOWS_KEPT) * window_seconds)


def _add(counts: dict[CountKey, b.WindowCounts], key: CountKey, delta: b.WindowCounts) -> None:
    counts[key] = counts.get(key, b.EMPTY).plus(delta)


class CircuitRecord(NamedTuple):
    """A breaker that is not closed, as the store holds it."""

    opened_at: float
    probes: int = 0
    probe_at: float = 0.0
    reason: str = ""


class RemoteView(NamedTuple):
    """What one backend read returned."""

    circuits: Mapping[Pair, CircuitRecord]
    counts: Mapping[CountKey, b.WindowCounts]
    spend: Mapping[str, float]


class StateBackend(Protocol):
    def read(self, pairs: Sequence[Pair], windows: Sequence[int], spend_keys: Sequence[str]) -> RemoteView:
        """One read: every pair's circuit, its counts in ``windows``, and the spend counters."""
        ...

    def add_counts(self, pair: Pair, window: int, delta: b.WindowCounts, expires_at: float) -> b.WindowCounts:
        """Atomically add ``delta`` to the pair's window; returns the window's new totals."""
        ...

    def open_circuit(self, pair: Pair, *, opened_at: float, expected: float | None, reason: str) -> bool:
        """Open (or re-open) the circuit if its ``opened_at`` is still ``expected`` (None: closed)."""
        ...

    def claim_probe(self, pair: Pair, *, opened_at: float, max_probes: int, now: float, stale_before: float) -> bool:
        """Take a half-open probe slot (at ``now``) of the circuit opened at ``opened_at``; slots claimed before
        ``stale_before`` whose probe never reported count as free."""
        ...

    def release_probe(self, pair: Pair, *, opened_at: float) -> bool:
        """Give back a half-open probe slot that was claimed but not used (no verdict)."""
        ...

    def close_circuit(self, pair: Pair, *, opened_at: float) -> bool:
        """Close the circuit if it is still the one opened at ``opened_at``."""
        ...

    def add_spend(self, amounts: Mapping[str, tuple[float, float]]) -> None:
        """Atomically add USD to spend counters: key -> (usd, expires_at)."""
        ...


class InMemoryBackend:
    """The store in one process: local mode and tests (share one between trackers to model instances)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.circuits: dict[Pair, CircuitRecord] = {}
        self.counts: dict[CountKey, b.WindowCounts] = {}
        self.spend: dict[str, float] = {}
        self.reads = 0
        self.writes = 0

    def clear(self) -> None:
        with self._lock:
            self.circuits.clear()
            self.counts.clear()
            self.spend.clear()

    def describe(self) -> dict[str, Any]:
        """Open circuits and spend counters, as JSON (local mode's ``GET /_local/state``)."""
        with self._lock:
            return {
                "circuits": [
                    {"model_id": model_id, "region": region, **record._asdict()}
                    for (model_id, region), record in sorted(self.circuits.items())
                ],
                "spend_usd": dict(sorted(self.spend.items())),
            }

    def read(self, pairs: Sequence[Pair], windows: Sequence[int], spend_keys: Sequence[str]) -> RemoteView:
        with self._lock:
            self.reads += 1
            wanted = set(pairs)
            return RemoteView(
                circuits={pair: record for pair, record in self.circuits.items() if pair in wanted},
                counts={
                    (pair, window): self.counts[(pair, window)]
                    for pair in pairs
                    for window in windows
                    if (pair, window) in self.counts
                },
                spend={key: self.spend.get(key, 0.0) for key in spend_keys},
            )

    def add_counts(self, pair: Pair, window: int, delta: b.WindowCounts, expires_at: float) -> b.WindowCounts:
        with self._lock:
            self.writes += 1
            total = self.counts.get((pair, window), b.EMPTY).plus(delta)
            self.counts[(pair, window)] = total
            for stale in [key for key in self.counts if key[1] < window - 2]:
                del self.counts[stale]
            return total

    def open_circuit(self, pair: Pair, *, opened_at: float, expected: float | None, reason: str) -> bool:
        with self._lock:
            self.writes += 1
            current = self.circuits.get(pair)
            if (current.opened_at if current else None) != expected:
                return False
            self.circuits[pair] = CircuitRecord(opened_at=opened_at, reason=reason)
            return True

    def claim_probe(self, pair: Pair, *, opened_at: float, max_probes: int, now: float, stale_before: float) -> bool:
        with self._lock:
            self.writes += 1
            current = self.circuits.get(pair)
            if current is None or current.opened_at != opened_at:
                return False
            if current.probes < max_probes:
                self.circuits[pair] = current._replace(probes=current.probes + 1, probe_at=now)
                return True
            if current.probe_at < stale_before:
                self.circuits[pair] = current._replace(probes=1, probe_at=now)
                return True
            return False

    def release_probe(self, pair: Pair, *, opened_at: float) -> bool:
        with self._lock:
            self.writes += 1
            current = self.circuits.get(pair)
            if current is None or current.opened_at != opened_at or current.probes <= 0:
                return False
            self.circuits[pair] = current._replace(probes=current.probes - 1)
            return True

    def close_circuit(self, pair: Pair, *, opened_at: float) -> bool:
        with self._lock:
            self.writes += 1
            current = self.circuits.get(pair)
            if current is None or current.opened_at != opened_at:
                return False
            del self.circuits[pair]
            return True

    def add_spend(self, amounts: Mapping[str, tuple[float, float]]) -> None:
        with self._lock:
            self.writes += 1
            for key, (usd, _expires) in amounts.items():
                self.spend[key] = self.spend.get(key, 0.0) + usd


class Snapshot(NamedTuple):
    """The engine's view for one request, and the half-open probes this request holds (filled by
    ``is_open`` as the request claims them; pass it to ``record_attempt`` and ``release``)."""

    state: LiveState
    probes: set[Pair]
    spend_today_usd: float


class TrackerEvents(NamedTuple):
    store_errors: int
    circuits_opened: tuple[Pair, ...]


class LiveStateTracker:
    """Per-instance cache and write buffer in front of a ``StateBackend``.

    Args:
        backend: the shared store.
        cache_ttl_s: how long a read is trusted.
        flush_interval_s: how often batched counts and spend are written.
        unhealthy_for_s: after a store error, how long to route on local knowledge only.
        clock: epoch seconds (windows and days are wall-clock periods shared by instances).
        logger: where store errors go (rate-limited by ``unhealthy_for_s``).
    """

    def __init__(
        self,
        backend: StateBackend,
        *,
        cache_ttl_s: float = 2.0,
        flush_interval_s: float = 1.0,
        unhealthy_for_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        self._backend = backend
        self._cache_ttl_s = cache_ttl_s
        self._flush_interval_s = flush_interval_s
        self._unhealthy_for_s = unhealthy_for_s
        self._clock = clock
        self._logger = logger or logging.getLogger(__name__)
        self._lock = threading.RLock()
        self._read_at: float | None = None
        self._flushed_at = 0.0
        self._unhealthy_until = 0.0
        self._remote_circuits: dict[Pair, CircuitRecord] = {}
        self._remote_counts: dict[CountKey, b.WindowCounts] = {}
        self._remote_spend: dict[str, float] = {}
        self._local_circuits: dict[Pair, float] = {}  # opened here while the store could not be written
        self._local_counts: dict[CountKey, b.WindowCounts] = {}
        self._pending_counts: dict[CountKey, b.WindowCounts] = {}
        self._pending_spend: dict[str, tuple[float, float]] = {}
        self._denied: dict[Pair, float] = {}  # probe claims refused, per opened_at, until the next read
        self._probing: dict[Pair, float] = {}  # this instance's probes in flight -> the circuit's opened_at
        self._scopes: dict[str, float] = {}  # spend keys seen recently -> last seen
        self._latency: dict[tuple[str, str], float] = {}
        self._latency_policy: Policy | None = None
        self._errors = 0
        self._opened: list[Pair] = []
        self._window_seconds = BreakerSettings().window_seconds

    # -- request path -------------------------------------------------------------------------------

    def snapshot(self, policy: Policy, scopes: Sequence[SpendScope]) -> Snapshot:
        """The live state for one request; reads the store only when the cached view is stale."""
        now = self._clock()
        with self._lock:
            self._window_seconds = policy.breaker.window_seconds
            for scope in scopes:
                self._scopes[scope.key] = now
            missing = any(scope.key not in self._remote_spend for scope in scopes)
            stale = self._read_at is None or now - self._read_at >= self._cache_ttl_s
            if (stale or missing) and self._healthy(now):
                self._flush(now)
                if self._healthy(now):  # a failed flush already cost this request its store timeout
                    self._refresh(policy, now)
            elif now - self._flushed_at >= self._flush_interval_s and self._healthy(now):
                self._flush(now)
            if self._latency_policy is not policy:
                self._compute_latency(policy, now)
            open_pairs = self._circuits_for(policy, now)
            spend = {scope.key: self._spend(scope.key) for scope in scopes}
        percent, scope_label = used_percent(spend, scopes)
        state = LiveState(
            open_circuits=frozenset(open_pairs),
            latency_ms=self._latency,
            budget_used_percent=percent,
            budget_scope=scope_label,
        )
        return Snapshot(state=state, probes=set(), spend_today_usd=spent_today(spend, scopes))

    def is_open(self, policy: Policy, model_id: str, region: str, probes: set[Pair]) -> bool:
        """Whether a planned call must be skipped, asked just before making it.

        Open (cooling down): skip. Half-open: the request claims a probe slot (shared by all instances) and
        the call goes ahead as the probe; with no slot left it is skipped. ``probes`` is the request's own
        set of held probes (``Snapshot.probes``): a probe it holds is never skipped (throttle retries).
        """
        pair = (model_id, region)
        now = self._clock()
        with self._lock:
            if pair in probes:
                return False
            opened_at = self._opened_at(pair)
            state = b.phase(opened_at, now, policy.breaker)
            if state is b.Phase.CLOSED or opened_at is None:
                return False
            if state is b.Phase.HALF_OPEN and self._claim(pair, opened_at, policy, now):
                probes.add(pair)
                return False
            return True

    def record_attempt(
        self,
        policy: Policy,
        model_id: str,
        region: str,
        outcome: str,
        latency_ms: float,
        *,
        probes: set[Pair] | None = None,
        caller: str | None = None,
    ) -> None:
        """Count one model call; failures are written at once and may open the circuit. ``caller`` is who made
        the request (an identity the caller cannot choose freely): no caller's failures count for more than
        ``failure_threshold / min_failing_callers`` toward opening a circuit.

        When the call was a half-open probe (in ``probes``): success closes the circuit, a failure opens it
        again, a throttle gives no verdict (the probe stays held for the retry), and a caller-caused error
        gives the slot back.
        """
        settings = policy.breaker
        now = self._clock()
        pair = (model_id, region)
        window = b.window_id(now, settings.window_seconds)
        delta = b.one_call(outcome, latency_ms, caller)
        key = (pair, window)
        with self._lock:
            if probes is not None and pair in probes:
                if not delta.empty:
                    _add(self._local_counts, key, delta)
                    _add(self._pending_counts, key, delta)
                if outcome == "throttled":
                    return
                probes.discard(pair)
                probe_opened_at = self._probing.pop(pair, None)
                if probe_opened_at is None:
                    return
                if outcome == "ok":
                    self._close(pair, probe_opened_at, now)
                elif delta.empty:
                    self._give_back(pair, probe_opened_at, now)
                else:
                    self._open(pair, now, probe_opened_at, f"half-open probe failed ({outcome})", now)
                return
            if delta.empty:
                return
            _add(self._local_counts, key, delta)
            if outcome == "ok":
                _add(self._pending_counts, key, delta)
                return
            totals: b.WindowCounts | None = None
            if self._healthy(now):
                try:
                    totals = self._backend.add_counts(
                        pair, window, delta, window_expires_at(window, settings.window_seconds)
                    )
                except Exception as exc:
                    self._failed("record a failed call", exc, now)
            if totals is not None:
                self._remote_counts[key] = totals
                current = totals.plus(self._pending_counts.get(key, b.EMPTY))
                previous = self._remote_counts.get((pair, window - 1), b.EMPTY).plus(
                    self._pending_counts.get((pair, window - 1), b.EMPTY)
                )
            else:
                _add(self._pending_counts, key, delta)
                current = self._local_counts[key]
                previous = self._local_counts.get((pair, window - 1), b.EMPTY)
            opened_at = self._opened_at(pair)
            if opened_at is not None and b.phase(opened_at, now, settings) is b.Phase.OPEN:
                return
            if not settings.enabled:
                return
            reason = b.trip_reason(b.sliding(current, previous, now, settings.window_seconds), settings)
            if reason is not None:
                self._open(pair, now, opened_at, reason, now)

    def release(self, probes: set[Pair]) -> None:
        """End of request: probes it still holds (no verdict: throttled, deadline) are given back."""
        if not probes:
            return
        now = self._clock()
        with self._lock:
            for pair in probes:
                opened_at = self._probing.pop(pair, None)
                if opened_at is not None:
                    self._give_back(pair, opened_at, now)
            probes.clear()

    def record_spend(self, usd: float, scopes: Sequence[SpendScope]) -> None:
        if usd <= 0:
            return
        with self._lock:
            for scope in scopes:
                pending, _ = self._pending_spend.get(scope.key, (0.0, 0.0))
                self._pending_spend[scope.key] = (pending + usd, scope.expires_at)

    def drain_events(self) -> TrackerEvents:
        """Store errors and circuits this instance opened since the last call (for metrics)."""
        with self._lock:
            events = TrackerEvents(self._errors, tuple(self._opened))
            self._errors = 0
            self._opened.clear()
        return events

    @property
    def backend(self) -> StateBackend:
        return self._backend

    def reset(self) -> None:
        """Forget everything cached and buffered (local mode's ``DELETE /_local/state``)."""
        with self._lock:
            self._read_at = None
            self._unhealthy_until = 0.0
            for cache in (
                self._remote_circuits,
                self._remote_counts,
                self._remote_spend,
                self._local_circuits,
                self._local_counts,
                self._pending_counts,
                self._pending_spend,
                self._denied,
                self._probing,
                self._scopes,
            ):
                cache.clear()
            self._latency = {}
            self._latency_policy = None

    def flush(self) -> None:
        """Write batched counts and spend now (tests, shutdown)."""
        now = self._clock()
        with self._lock:
            if self._healthy(now):
                self._flush(now)

    # -- internals ----------------------------------------------------------------------------------

    def _healthy(self, now: float) -> bool:
        return now >= self._unhealthy_until

    def _failed(self, what: str, exc: Exception, now: float) -> None:
        self._errors += 1
        self._unhealthy_until = now + self._unhealthy_for_s
        self._logger.warning(
            "live-state store call failed; routing on local knowledge",
            extra={"operation": what, "error": f"{type(exc).__name__}: {exc}", "retry_in_s": self._unhealthy_for_s},
        )

    def _refresh(self, policy: Policy, now: float) -> None:
        window = b.window_id(now, policy.breaker.window_seconds)
        # One entry per pair even when two catalog entries share a model id (BatchGetItem rejects duplicates).
        pairs = list(
            dict.fromkeys((spec.model_id, region) for spec in policy.models.values() for region in spec.regions)
        )
        horizon = now - 10 * max(self._cache_ttl_s, 1.0)
        for key in [key for key, seen in self._scopes.items() if seen < horizon]:
            del self._scopes[key]
        try:
            view = self._backend.read(pairs, (window, window - 1), list(self._scopes))
        except Exception as exc:
            self._failed("read", exc, now)
            return
        self._read_at = now
        self._remote_circuits = dict(view.circuits)
        self._remote_counts = dict(view.counts)
        self._remote_spend = dict(view.spend)
        self._denied.clear()
        self._write_back_local_circuits(policy, now)
        for stale in [key for key in self._local_counts if key[1] < window - 1]:
            del self._local_counts[stale]
        self._compute_latency(policy, now)

    def _flush(self, now: float) -> None:
        self._flushed_at = now
        for key, delta in list(self._pending_counts.items()):
            pair, window = key
            try:
                totals = self._backend.add_counts(pair, window, delta, window_expires_at(window, self._window_seconds))
            except Exception as exc:
                self._failed("flush counts", exc, now)
                return
            self._remote_counts[key] = totals
            del self._pending_counts[key]
        # One counter at a time, each dropped from the buffer once written: a failure part-way never writes
        # the earlier counters twice.
        for spend_key, (usd, expires_at) in list(self._pending_spend.items()):
            try:
                self._backend.add_spend({spend_key: (usd, expires_at)})
            except Exception as exc:
                self._failed("flush spend", exc, now)
                return
            self._remote_spend[spend_key] = self._remote_spend.get(spend_key, 0.0) + usd
            del self._pending_spend[spend_key]

    def _spend(self, key: str) -> float:
        return self._remote_spend.get(key, 0.0) + self._pending_spend.get(key, (0.0, 0.0))[0]

    def _compute_latency(self, policy: Policy, now: float) -> None:
        window = b.window_id(now, policy.breaker.window_seconds)
        latency: dict[tuple[str, str], float] = {}
        for spec in policy.models.values():
            for region in spec.regions:
                pair = (spec.model_id, region)
                histogram = b.EMPTY
                for key in ((pair, window), (pair, window - 1)):
                    histogram = histogram.plus(self._remote_counts.get(key, b.EMPTY))
                    histogram = histogram.plus(self._pending_counts.get(key, b.EMPTY))
                value = b.latency_percentile_ms(
                    histogram.latency, policy.latency.percentile, policy.latency.min_samples
                )
                if value is not None:
                    latency[(spec.key, region)] = value
        self._latency = latency
        self._latency_policy = policy

    def _opened_at(self, pair: Pair) -> float | None:
        remote = self._remote_circuits.get(pair)
        local = self._local_circuits.get(pair)
        if remote is None:
            return local
        return remote.opened_at if local is None else max(remote.opened_at, local)

    def _circuits_for(self, policy: Policy, now: float) -> set[tuple[str, str]]:
        """(model key, region) pairs to leave out of the plan: open ones, and half-open ones whose probe
        this instance already knows it cannot take. Other half-open pairs stay planned: the request claims
        the probe just before calling (``is_open``)."""
        open_pairs: set[tuple[str, str]] = set()
        if not (self._remote_circuits or self._local_circuits):
            return open_pairs
        keys: dict[str, list[str]] = {}
        for spec in policy.models.values():
            keys.setdefault(spec.model_id, []).append(spec.key)
        for pair in set(self._remote_circuits) | set(self._local_circuits):
            opened_at = self._opened_at(pair)
            state = b.phase(opened_at, now, policy.breaker)
            if state is b.Phase.CLOSED:
                continue
            if state is b.Phase.HALF_OPEN and pair not in self._probing and self._denied.get(pair) != opened_at:
                continue
            open_pairs.update((model_key, pair[1]) for model_key in keys.get(pair[0], ()))
        return open_pairs

    def _claim(self, pair: Pair, opened_at: float, policy: Policy, now: float) -> bool:
        if pair in self._probing or self._denied.get(pair) == opened_at:
            return False
        claimed = False
        remote = self._remote_circuits.get(pair)
        if remote is not None and remote.opened_at == opened_at and self._healthy(now):
            try:
                claimed = self._backend.claim_probe(
                    pair,
                    opened_at=opened_at,
                    max_probes=policy.breaker.half_open_probes,
                    now=now,
                    stale_before=now - policy.breaker.cooldown_seconds,
                )
            except Exception as exc:
                self._failed("claim a half-open probe", exc, now)
                claimed = True  # the store is down: probe on local knowledge, one at a time
        else:
            claimed = True  # a breaker only this instance knows about
        if claimed:
            self._probing[pair] = opened_at
        else:
            self._denied[pair] = opened_at
        return claimed

    def _open(self, pair: Pair, opened_at: float, expected: float | None, reason: str, now: float) -> None:
        written = False
        if self._healthy(now):
            try:
                written = self._backend.open_circuit(pair, opened_at=opened_at, expected=expected, reason=reason)
            except Exception as exc:
                self._failed("open a circuit", exc, now)
            else:
                if written:
                    self._remote_circuits[pair] = CircuitRecord(opened_at=opened_at, reason=reason)
                    self._opened.append(pair)
                    self._logger.warning(
                        "circuit opened", extra={"model": pair[0], "region": pair[1], "reason": reason}
                    )
                else:  # another instance changed it first: its view wins at the next read
                    self._read_at = None
                return
        self._local_circuits[pair] = opened_at
        self._opened.append(pair)

    def _close(self, pair: Pair, opened_at: float, now: float) -> None:
        self._local_circuits.pop(pair, None)
        remote = self._remote_circuits.get(pair)
        if remote is not None and remote.opened_at == opened_at:
            del self._remote_circuits[pair]
        self._forget_failures(pair)
        if not self._healthy(now):
            return
        try:
            closed = self._backend.close_circuit(pair, opened_at=opened_at)
            if not closed:
                return
            # The failures that opened the circuit are history: take them out of the shared windows too.
            for key, known in list(self._remote_counts.items()):
                if key[0] != pair or not (known.failed or known.throttled):
                    continue
                window = key[1]
                undo = b.WindowCounts(
                    failed=-known.failed,
                    throttled=-known.throttled,
                    failed_by_caller=tuple(-failed for failed in known.failed_by_caller),
                )
                self._remote_counts[key] = self._backend.add_counts(
                    pair, window, undo, window_expires_at(window, self._window_seconds)
                )
        except Exception as exc:
            self._failed("close a circuit", exc, now)

    def _forget_failures(self, pair: Pair) -> None:
        for counts in (self._local_counts, self._pending_counts):
            for key, known in list(counts.items()):
                if key[0] == pair and (known.failed or known.throttled):
                    counts[key] = known._replace(failed=0, throttled=0, failed_by_caller=b.EMPTY.failed_by_caller)

    def _give_back(self, pair: Pair, opened_at: float, now: float) -> None:
        remote = self._remote_circuits.get(pair)
        if remote is None or remote.opened_at != opened_at or not self._healthy(now):
            return
        try:
            self._backend.release_probe(pair, opened_at=opened_at)
        except Exception as exc:
            self._failed("give back a half-open probe", exc, now)

    def _write_back_local_circuits(self, policy: Policy, now: float) -> None:
        """Circuits this instance opened while the store was down: write them now that it answers."""
        for pair, opened_at in list(self._local_circuits.items()):
            del self._local_circuits[pair]
            if pair in self._remote_circuits or b.phase(opened_at, now, policy.breaker) is b.Phase.CLOSED:
                continue
            reason = "opened while the live-state store was unreachable"
            try:
                written = self._backend.open_circuit(pair, opened_at=opened_at, expected=None, reason=reason)
            except Exception as exc:
                self._local_circuits[pair] = opened_at
                self._failed("write back a circuit", exc, now)
                return
            if written:
                self._remote_circuits[pair] = CircuitRecord(opened_at=opened_at, reason=reason)
            else:
                self._read_at = None  # another instance wrote one first: read it next time
