"""Live state shared by every router instance: circuit breakers, rolling latency and spend.

One store interface (``state_store.StateBackend``), two implementations: ``state_store.InMemoryBackend``
(local mode, tests) and ``dynamo_state.DynamoBackend`` (deployed). ``LiveStateTracker`` is the per-instance
side:

- request path: at most one backend read per request, and only when the cached view is older than
  ``cache_ttl_s``, lacks a spend counter the request needs, or does not cover the policy in force (a hot
  reload that adds a model or changes the counting window is read at once);
- answered calls (counts, latency) and spend are batched and flushed at most every ``flush_interval_s``
  (atomic adds, at most ``MAX_WRITES_PER_FLUSH`` items a flush); failures and throttles are written at once
  (an atomic add that returns the shared totals), so one instance's failures open the breaker for all;
  opening, probing and closing a breaker are conditional writes, so instances agree on one ``opened_at`` and
  on the number of half-open probes;
- a half-open probe is claimed just before the call that uses it (``is_open``), held by that request only,
  and given back in the store when the request ends without a verdict; closing a breaker forgets the
  failures that opened it, so one failure right after a close does not open it again;
- near a budget's cap a call reserves its estimated cost in the store first (``reserve``), so instances
  cannot together spend far past it (the bound is stated on ``reserve``);
- no store call is made while holding the tracker's lock: the lock guards the cached view and the buffers
  only, a flush and read is done by one thread at a time (the others route on the cached view meanwhile),
  and results are merged back under the lock, newest store answer winning;
- when the backend fails or is slow it is left alone for ``unhealthy_for_s`` and the tracker routes on
  local knowledge (its own counts and breakers); a request never fails because of the store;
- a policy change applies at once: a disabled breaker skips nothing, and a model added back is read from
  the store before it is planned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from . import breaker as b
from .budget import RESERVE_AT_PERCENT, UNCONFIRMED_SHARE_PERCENT, SpendScope, cap_usd, spent_today, used_percent
from .engine import LiveState
from .policy import BreakerSettings, Policy
from .state_store import CircuitRecord, CountKey, Pair, RemoteView, StateBackend, window_expires_at

# A flush writes at most this many items (counts and spend counters): after a long store outage the backlog is
# written over several flushes, and the request that happens to flush pays for a few writes, not hundreds.
MAX_WRITES_PER_FLUSH = 16
# How long a request that needs a fresh read (a new spend counter, a policy the cache does not cover) waits for
# another thread's read to end before reading itself; waiting holds no lock.
SYNC_WAIT_S = 2.0
# A flush stops writing (the rest waits for the next one) once it has taken this long: a slow but answering
# store costs the request that flushes this much, plus one call.
FLUSH_BUDGET_S = 0.25


def _add(counts: dict[CountKey, b.WindowCounts], key: CountKey, delta: b.WindowCounts) -> None:
    counts[key] = counts.get(key, b.EMPTY).plus(delta)


class Snapshot(NamedTuple):
    """The engine's view for one request, and the half-open probes this request holds (filled by
    ``is_open`` as the request claims them; pass it to ``record_attempt`` and ``release``)."""

    state: LiveState
    probes: set[Pair]
    spend_today_usd: float


class TrackerEvents(NamedTuple):
    store_errors: int
    circuits_opened: tuple[Pair, ...]


class Reservation(NamedTuple):
    """Where one request's spend is counted until it ends (``LiveStateTracker.reserve`` and ``settle``).

    Attributes:
        scopes: the spend counters the request is charged to.
        estimate_usd: the most its answer may cost (``budget.estimate_usd``).
        reserved: counters the estimate was added to in the store (the request was near their cap).
        unconfirmed: capped counters it is counted against on this instance only (far from their cap).
        refused: a scope whose cap the answer could pass: the request must not call a model.
    """

    scopes: tuple[SpendScope, ...]
    estimate_usd: float
    reserved: frozenset[str] = frozenset()
    unconfirmed: frozenset[str] = frozenset()
    refused: SpendScope | None = None


WRITTEN_BACK_REASON = "opened while the live-state store was unreachable"


class _Sync(NamedTuple):
    """One flush (and read), taken from the buffers under the lock and done outside it."""

    seq: int
    now: float
    window_seconds: int
    policy: Policy | None  # None: flush only
    spend: tuple[tuple[str, float, float], ...]
    counts: tuple[tuple[CountKey, b.WindowCounts], ...]
    pairs: tuple[Pair, ...] = ()
    windows: tuple[int, ...] = ()
    spend_keys: tuple[str, ...] = ()
    local_circuits: tuple[tuple[Pair, float], ...] = ()


class _SyncResult:
    def __init__(self) -> None:
        self.spend: list[tuple[str, float]] = []
        self.counts: list[tuple[CountKey, b.WindowCounts, b.WindowCounts]] = []
        self.view: RemoteView | None = None
        self.written_back: list[tuple[Pair, float, bool | None]] = []  # None: not needed
        self.error: tuple[str, Exception] | None = None


def _minus(counts: b.WindowCounts, written: b.WindowCounts) -> b.WindowCounts:
    """What is left to write of ``counts`` once ``written`` is in the store (never below zero: a close may have
    forgotten failures meanwhile)."""
    return b.WindowCounts(
        max(0, counts.ok - written.ok),
        max(0, counts.failed - written.failed),
        max(0, counts.throttled - written.throttled),
        tuple(max(0, a - w) for a, w in zip(counts.latency, written.latency, strict=True)),
        tuple(max(0, a - w) for a, w in zip(counts.failed_by_caller, written.failed_by_caller, strict=True)),
    )


class LiveStateTracker:
    """Per-instance cache and write buffer in front of a ``StateBackend``.

    Thread-safe. The lock guards memory only; every store call is made outside it, so a slow or failing
    store (timeouts, botocore's retry backoff) delays the request that makes the call and no other.

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
        self._lock = threading.Lock()
        self._adopted: dict[Pair, float] = {}  # probes adopted from another instance, claimed in the store
        self._sync_done = threading.Condition(self._lock)
        self._syncing = False  # one thread at a time flushes and reads
        self._seq = 0  # numbers store calls in the order they are made; the newest answer wins a merge
        self._learned: dict[tuple[str, Any], int] = {}  # ("c"|"w"|"s", key) -> call number of the value held
        self._read_at: float | None = None
        self._read_pairs: frozenset[Pair] = frozenset()
        self._read_window_seconds: int | None = None
        self._pairs_policy: Policy | None = None
        self._pairs: tuple[Pair, ...] = ()
        self._flushed_at = 0.0
        self._unhealthy_until = 0.0
        self._remote_circuits: dict[Pair, CircuitRecord] = {}
        self._remote_counts: dict[CountKey, b.WindowCounts] = {}
        self._remote_spend: dict[str, float] = {}
        self._local_circuits: dict[Pair, float] = {}  # opened here while the store could not be written
        self._opening: dict[Pair, float] = {}  # being written to the store by a thread of this instance
        self._local_counts: dict[CountKey, b.WindowCounts] = {}
        self._pending_counts: dict[CountKey, b.WindowCounts] = {}
        self._pending_spend: dict[str, tuple[float, float]] = {}
        self._in_flight_usd: dict[str, float] = {}  # estimates of unreserved calls under way, per capped counter
        self._unconfirmed_usd: dict[str, float] = {}  # unreserved spend the store's last answer may not hold
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
        """The live state for one request; reads the store only when the cached view is stale, lacks one of
        ``scopes``' counters or does not cover ``policy`` (then it waits for a read another thread is making)."""
        now = self._clock()
        self._sync(policy, scopes, now)
        with self._lock:
            if self._latency_policy is not policy:
                self._compute_latency(policy, now)
            open_pairs = self._circuits_for(policy, now)
            spend = {scope.key: self._spend(scope.key) for scope in scopes}
            latency = self._latency
        percent, scope_label = used_percent(spend, scopes)
        state = LiveState(
            open_circuits=frozenset(open_pairs),
            latency_ms=latency,
            budget_used_percent=percent,
            budget_scope=scope_label,
        )
        return Snapshot(state=state, probes=set(), spend_today_usd=spent_today(spend, scopes))

    def is_open(self, policy: Policy, model_id: str, region: str, probes: set[Pair]) -> bool:
        """Whether a planned call must be skipped, asked just before making it.

        Open (cooling down): skip. Half-open: the request claims a probe slot (shared by all instances) and
        the call goes ahead as the probe; with no slot left it is skipped. ``probes`` is the request's own
        set of held probes (``Snapshot.probes``): a probe it holds is never skipped (throttle retries). With
        the breaker disabled nothing is skipped.
        """
        if not policy.breaker.enabled:
            return False
        pair = (model_id, region)
        now = self._clock()
        with self._lock:
            if pair in probes:
                return False
            opened_at = self._opened_at(pair)
            state = b.phase(opened_at, now, policy.breaker)
            if state is b.Phase.CLOSED or opened_at is None:
                return False
            if state is b.Phase.OPEN or pair in self._probing or self._denied.get(pair) == opened_at:
                return True
            remote = self._remote_circuits.get(pair)
            ask_store = remote is not None and remote.opened_at == opened_at and self._healthy(now)
            self._probing[pair] = opened_at  # this instance's other requests skip it while the claim is made
        claimed = True  # a breaker only this instance knows about, or the store is down: probe on local knowledge
        if ask_store:
            try:
                claimed = self._backend.claim_probe(
                    pair,
                    opened_at=opened_at,
                    max_probes=policy.breaker.half_open_probes,
                    now=now,
                    stale_before=now - policy.breaker.cooldown_seconds,
                )
            except Exception as exc:
                with self._lock:
                    self._failed("claim a half-open probe", exc, now)
        if claimed:
            probes.add(pair)
            return False
        with self._lock:
            if self._probing.get(pair) == opened_at:
                del self._probing[pair]
            self._denied[pair] = opened_at
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
        if probes is not None and pair in probes:
            self._probe_verdict(pair, key, delta, outcome, probes=probes, now=now)
            return
        with self._lock:
            if delta.empty:
                return
            _add(self._local_counts, key, delta)
            # Only failures that may open a circuit are worth a write of their own.
            write_now = outcome != "ok" and settings.enabled and self._healthy(now)
            if not write_now:
                _add(self._pending_counts, key, delta)
                if outcome == "ok" or not settings.enabled:
                    return
            seq = self._next_seq()
        totals: b.WindowCounts | None = None
        if write_now:
            try:
                totals = self._backend.add_counts(
                    pair, window, delta, window_expires_at(window, settings.window_seconds)
                )
            except Exception as exc:
                with self._lock:
                    self._failed("record a failed call", exc, now)
                    _add(self._pending_counts, key, delta)
        with self._lock:
            if totals is not None:
                self._learn_counts(key, totals, seq)
                current = self._remote_counts.get(key, b.EMPTY).plus(self._pending_counts.get(key, b.EMPTY))
                previous = self._remote_counts.get((pair, window - 1), b.EMPTY).plus(
                    self._pending_counts.get((pair, window - 1), b.EMPTY)
                )
            else:
                current = self._local_counts.get(key, b.EMPTY)
                previous = self._local_counts.get((pair, window - 1), b.EMPTY)
            opened_at = self._opened_at(pair)
            if opened_at is not None and b.phase(opened_at, now, settings) is b.Phase.OPEN:
                return
            reason = b.trip_reason(b.sliding(current, previous, now, settings.window_seconds), settings)
        if reason is not None:
            self._open(pair, now, opened_at, reason, now)

    def _probe_verdict(
        self, pair: Pair, key: CountKey, delta: b.WindowCounts, outcome: str, *, probes: set[Pair], now: float
    ) -> None:
        with self._lock:
            if not delta.empty:
                _add(self._local_counts, key, delta)
                _add(self._pending_counts, key, delta)
            if outcome == "throttled":
                return
            probes.discard(pair)
            opened_at = self._probing.pop(pair, None)
            self._adopted.pop(pair, None)
            if opened_at is None:
                return
            undo = self._begin_close(pair, opened_at, now) if outcome == "ok" else None
        if outcome == "ok":
            self._finish_close(pair, opened_at, undo, now)
        elif delta.empty:
            self._give_back(pair, opened_at, now)
        else:
            self._open(pair, now, opened_at, f"half-open probe failed ({outcome})", now)

    def hand_off_probes(self, probes: set[Pair]) -> dict[Pair, tuple[float, bool]]:
        """The request goes on elsewhere (the Step Functions orchestration's next task): its half-open probes leave
        this instance's books, still claimed; returns when each one's circuit opened, and whether the claim is in
        the store (else this instance probed on its own knowledge)."""
        handed: dict[Pair, tuple[float, bool]] = {}
        with self._lock:
            for pair in probes:
                opened_at = self._probing.pop(pair, None)
                if opened_at is None:
                    continue
                remote = self._remote_circuits.get(pair)
                in_store = (remote is not None and remote.opened_at == opened_at) or pair in self._adopted
                self._adopted.pop(pair, None)
                handed[pair] = (opened_at, in_store)
        return handed

    def adopt_probes(self, probes: Mapping[Pair, tuple[float, bool]]) -> None:
        """Probes another instance claimed for this request (``hand_off_probes``): this one gives their verdict or
        gives them back (in the store too, when the claim is there)."""
        with self._lock:
            for pair, (opened_at, in_store) in probes.items():
                self._probing.setdefault(pair, opened_at)
                if in_store:
                    self._adopted[pair] = opened_at

    def hand_off(self, reservation: Reservation) -> Reservation:
        """The request is settled elsewhere: what this instance counts in flight for it is dropped here, and the
        reservation returned has no instance-local (unconfirmed) scopes, so any instance can settle it."""
        estimate = reservation.estimate_usd
        if not reservation.unconfirmed or reservation.refused is not None:
            return reservation
        with self._lock:
            self._count_unconfirmed(list(reservation.unconfirmed), -estimate)
        return reservation._replace(unconfirmed=frozenset())

    def release(self, probes: set[Pair]) -> None:
        """End of request: probes it still holds (no verdict: throttled, deadline) are given back."""
        if not probes:
            return
        now = self._clock()
        with self._lock:
            held = [(pair, self._probing.pop(pair)) for pair in probes if pair in self._probing]
        probes.clear()
        for pair, opened_at in held:
            self._give_back(pair, opened_at, now)

    def reserve(self, policy: Policy, scopes: Sequence[SpendScope], estimate_usd: float) -> Reservation:
        """Before a request calls a model: where its spend is counted, or that a budget has no room for it.

        For each scope with a cap (``budget.cap_usd``), with ``C`` the cap and ``e`` the estimate:

        - the counter as this instance knows it (last store answer plus its unwritten spend) plus ``e`` above
          ``C``: refused, no store call;
        - else, when this instance's view with its calls under way plus ``e`` stays below
          ``RESERVE_AT_PERCENT`` of ``C`` and its unconfirmed spend (unreserved spend the store's last answer
          to it may not hold: in flight, unflushed, or made since) plus ``e`` stays within
          ``UNCONFIRMED_SHARE_PERCENT`` of ``C``: counted here only (no store call);
        - else ``e`` is added to the store's counter by an atomic conditional update that fails if the
          counter would pass ``C`` (refused); the answer's cost is settled later (``settle``).

        The bound that follows, while the store answers: a counter ends at most
        ``C + N x UNCONFIRMED_SHARE_PERCENT% of C + X`` where ``N`` is the number of instances spending on it
        and ``X`` what answers cost beyond their estimates (only an input-token underestimate can). Reserved
        estimates never take the counter past ``C``, and what lands on top of them is unreserved spend, which
        each instance holds under that share until it hears a counter at ``RESERVE_AT_PERCENT`` and from then
        on reserves. With the store down, each instance refuses on its own view (with its calls under way).
        """
        scopes = tuple(scopes)
        capped = [(scope, cap) for scope in scopes if (cap := cap_usd(policy.budget, scope)) is not None]
        estimate = max(estimate_usd, 0.0)
        if not capped or estimate == 0.0:
            return Reservation(scopes, estimate)
        now = self._clock()
        to_reserve: list[tuple[SpendScope, float]] = []
        unconfirmed: list[str] = []
        with self._lock:
            for scope, cap in capped:
                known = self._spend(scope.key)
                if known + estimate > cap:
                    return Reservation(scopes, estimate, refused=scope)
                with_in_flight = known + self._in_flight_usd.get(scope.key, 0.0) + estimate
                unconfirmed_after = self._unconfirmed_usd.get(scope.key, 0.0) + estimate
                if (
                    with_in_flight < cap * RESERVE_AT_PERCENT / 100.0
                    and unconfirmed_after <= cap * UNCONFIRMED_SHARE_PERCENT / 100.0
                ):
                    unconfirmed.append(scope.key)
                else:
                    to_reserve.append((scope, cap))
            if to_reserve and not self._healthy(now):  # spend on local knowledge, calls under way included
                for scope, cap in to_reserve:
                    if self._spend(scope.key) + self._in_flight_usd.get(scope.key, 0.0) + estimate > cap:
                        return Reservation(scopes, estimate, refused=scope)
                unconfirmed += [scope.key for scope, _cap in to_reserve]
                to_reserve = []
            self._count_unconfirmed(unconfirmed, estimate)
            seq = self._next_seq()
        reserved: list[SpendScope] = []
        refused: SpendScope | None = None
        for index, (scope, cap) in enumerate(to_reserve):
            try:
                added, counter = self._backend.reserve_spend(
                    scope.key, estimate, cap_usd=cap, expires_at=scope.expires_at
                )
            except Exception as exc:
                rest = [later.key for later, _cap in to_reserve[index:]]
                with self._lock:
                    self._failed("reserve spend", exc, now)
                    self._count_unconfirmed(rest, estimate)
                unconfirmed += rest
                break
            with self._lock:
                self._learn_spend(scope.key, counter, seq)
            if not added:
                refused = scope
                break
            reserved.append(scope)
        if refused is not None:
            with self._lock:
                for scope in reserved:  # given back with the next flush
                    self._add_pending_spend(scope.key, -estimate, scope.expires_at)
                self._count_unconfirmed(unconfirmed, -estimate)
            return Reservation(scopes, estimate, refused=refused)
        return Reservation(scopes, estimate, frozenset(scope.key for scope in reserved), frozenset(unconfirmed))

    def settle(self, reservation: Reservation, usd: float) -> None:
        """The request ended having spent ``usd`` (0 when no model answered): charge it to every scope, and
        give back what was reserved (in the next flush)."""
        usd = max(usd, 0.0)
        if reservation.refused is not None:
            self.record_spend(usd, reservation.scopes)
            return
        estimate = reservation.estimate_usd
        with self._lock:
            for scope in reservation.scopes:
                key = scope.key
                delta = usd
                if key in reservation.reserved:
                    delta = usd - estimate
                elif key in reservation.unconfirmed:
                    left = self._in_flight_usd.get(key, 0.0) - estimate
                    if left > 1e-12:
                        self._in_flight_usd[key] = left
                    else:
                        self._in_flight_usd.pop(key, None)
                    self._unconfirmed_usd[key] = max(0.0, self._unconfirmed_usd.get(key, 0.0) - estimate + usd)
                self._add_pending_spend(key, delta, scope.expires_at)

    def record_spend(self, usd: float, scopes: Sequence[SpendScope]) -> None:
        """Charge spend made without a reservation (batched)."""
        if usd <= 0:
            return
        with self._lock:
            for scope in scopes:
                self._add_pending_spend(scope.key, usd, scope.expires_at)
                self._unconfirmed_usd[scope.key] = self._unconfirmed_usd.get(scope.key, 0.0) + usd

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
            self._read_pairs = frozenset()
            self._read_window_seconds = None
            self._unhealthy_until = 0.0
            for cache in (
                self._remote_circuits,
                self._remote_counts,
                self._remote_spend,
                self._local_circuits,
                self._opening,
                self._local_counts,
                self._pending_counts,
                self._pending_spend,
                self._in_flight_usd,
                self._unconfirmed_usd,
                self._learned,
                self._denied,
                self._probing,
                self._scopes,
            ):
                cache.clear()
            self._latency = {}
            self._latency_policy = None

    def flush(self) -> None:
        """Write batched counts and spend now (tests, shutdown), ``MAX_WRITES_PER_FLUSH`` items at a time."""
        for _ in range(10_000):
            with self._lock:
                while self._syncing:
                    if not self._sync_done.wait(SYNC_WAIT_S):
                        return
                now = self._clock()
                if not (self._healthy(now) and (self._pending_counts or self._pending_spend)):
                    return
                job = self._take_sync(now, None)
            self._run_sync(job)

    # -- internals: store round trips (called without the lock) -------------------------------------

    def _sync(self, policy: Policy, scopes: Sequence[SpendScope], now: float) -> None:
        """Flush and read when due, in this thread unless another one already is (single flight)."""
        with self._lock:
            self._window_seconds = policy.breaker.window_seconds
            for scope in scopes:
                self._scopes[scope.key] = now
            waited = False
            while True:
                if not self._healthy(now):
                    return
                must_read = self._must_read(policy, scopes)
                read = must_read or self._read_at is None or now - self._read_at >= self._cache_ttl_s
                flush = bool(self._pending_counts or self._pending_spend) and (
                    now - self._flushed_at >= self._flush_interval_s
                )
                if not (read or flush):
                    return
                if not self._syncing:
                    break
                if not must_read or waited:
                    return  # route on the cached view; the other thread's read lands soon
                self._sync_done.wait(SYNC_WAIT_S)
                waited = True
                now = self._clock()
            job = self._take_sync(now, policy if read else None)
        self._run_sync(job)

    def _run_sync(self, job: _Sync) -> None:
        result = _SyncResult()
        try:
            self._do_sync(job, result)
        finally:
            with self._lock:
                try:
                    self._merge_sync(job, result)
                finally:
                    self._syncing = False
                    self._sync_done.notify_all()

    def _do_sync(self, job: _Sync, result: _SyncResult) -> None:
        # Spend first: it is what a budget waits on. Each item is dropped from the buffer once written, so a
        # failure part-way never writes an item twice; the first failure ends the round.
        what = "flush spend"
        give_up_at = time.monotonic() + FLUSH_BUDGET_S
        try:
            for spend_key, usd, expires_at in job.spend:
                if time.monotonic() > give_up_at:
                    break
                self._backend.add_spend({spend_key: (usd, expires_at)})
                result.spend.append((spend_key, usd))
            what = "flush counts"
            for count_key, delta in job.counts:
                if time.monotonic() > give_up_at:
                    break
                (model_id, region), window = count_key
                totals = self._backend.add_counts(
                    (model_id, region), window, delta, window_expires_at(window, job.window_seconds)
                )
                result.counts.append((count_key, delta, totals))
            if job.policy is None:
                return
            what = "read"
            view = result.view = self._backend.read(job.pairs, job.windows, job.spend_keys)
            what = "write back a circuit"
            for pair, opened_at in job.local_circuits:
                if pair in view.circuits or b.phase(opened_at, job.now, job.policy.breaker) is b.Phase.CLOSED:
                    result.written_back.append((pair, opened_at, None))
                    continue
                written = self._backend.open_circuit(
                    pair, opened_at=opened_at, expected=None, reason=WRITTEN_BACK_REASON
                )
                result.written_back.append((pair, opened_at, written))
        except Exception as exc:
            result.error = (what, exc)

    def _open(self, pair: Pair, opened_at: float, expected: float | None, reason: str, now: float) -> None:
        with self._lock:
            if not self._healthy(now):
                self._local_circuits[pair] = opened_at
                self._opened.append(pair)
                return
            if pair in self._opening:
                return  # another request of this instance is opening it
            self._opening[pair] = opened_at
            seq = self._next_seq()
        error: Exception | None = None
        written = False
        try:
            written = self._backend.open_circuit(pair, opened_at=opened_at, expected=expected, reason=reason)
        except Exception as exc:
            error = exc
        with self._lock:
            self._opening.pop(pair, None)
            if error is not None:
                self._failed("open a circuit", error, now)
                self._local_circuits[pair] = opened_at
                self._opened.append(pair)
            elif written:
                self._remote_circuits[pair] = CircuitRecord(opened_at=opened_at, reason=reason)
                self._learned[("c", pair)] = seq
                self._opened.append(pair)
            else:  # another instance changed it first: its view wins at the next read
                self._read_at = None
        if written:
            self._logger.warning("circuit opened", extra={"model": pair[0], "region": pair[1], "reason": reason})

    def _finish_close(
        self, pair: Pair, opened_at: float, undo: list[tuple[CountKey, b.WindowCounts]] | None, now: float
    ) -> None:
        """The store side of a close (``_begin_close`` did this instance's side)."""
        if undo is None:
            return
        with self._lock:
            seq = self._next_seq()
        try:
            if not self._backend.close_circuit(pair, opened_at=opened_at):
                return
            # The failures that opened the circuit are history: take them out of the shared windows too.
            for key, minus in undo:
                window = key[1]
                totals = self._backend.add_counts(pair, window, minus, window_expires_at(window, self._window_seconds))
                with self._lock:
                    self._learn_counts(key, totals, seq)
        except Exception as exc:
            with self._lock:
                self._failed("close a circuit", exc, now)

    def _give_back(self, pair: Pair, opened_at: float, now: float) -> None:
        with self._lock:
            remote = self._remote_circuits.get(pair)
            adopted = self._adopted.pop(pair, None) == opened_at  # claimed in the store by another instance
            if not (adopted or (remote is not None and remote.opened_at == opened_at)) or not self._healthy(now):
                return
        try:
            self._backend.release_probe(pair, opened_at=opened_at)
        except Exception as exc:
            with self._lock:
                self._failed("give back a half-open probe", exc, now)

    # -- internals: memory (called with the lock held) ----------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _healthy(self, now: float) -> bool:
        return now >= self._unhealthy_until

    def _failed(self, what: str, exc: Exception, now: float) -> None:
        self._errors += 1
        self._unhealthy_until = now + self._unhealthy_for_s
        self._logger.warning(
            "live-state store call failed; routing on local knowledge",
            extra={"operation": what, "error": f"{type(exc).__name__}: {exc}", "retry_in_s": self._unhealthy_for_s},
        )

    def _pairs_of(self, policy: Policy) -> tuple[Pair, ...]:
        # One entry per pair even when two catalog entries share a model id (BatchGetItem rejects duplicates).
        if self._pairs_policy is not policy:
            self._pairs = tuple(
                dict.fromkeys((spec.model_id, region) for spec in policy.models.values() for region in spec.regions)
            )
            self._pairs_policy = policy
        return self._pairs

    def _must_read(self, policy: Policy, scopes: Sequence[SpendScope]) -> bool:
        """The cached view cannot serve this request: a counter it needs was never read, or the policy names a
        (model, region) the last read did not ask for (a hot reload added it back: its circuit may be open),
        or counts in windows of another length."""
        if self._read_window_seconds != policy.breaker.window_seconds:
            return True
        if any(scope.key not in self._remote_spend for scope in scopes):
            return True
        return not self._read_pairs.issuperset(self._pairs_of(policy))

    def _take_sync(self, now: float, policy: Policy | None) -> _Sync:
        self._syncing = True
        self._flushed_at = now
        seq = self._next_seq()
        window_seconds = self._window_seconds
        window = b.window_id(now, window_seconds)
        # Windows before the previous one are never read again (an outage's backlog): not worth a write.
        for count_key in [count_key for count_key in self._pending_counts if count_key[1] < window - 1]:
            del self._pending_counts[count_key]
        spend = tuple((spend_key, usd, expires) for spend_key, (usd, expires) in self._pending_spend.items())
        spend = spend[:MAX_WRITES_PER_FLUSH]
        counts = tuple(self._pending_counts.items())[: MAX_WRITES_PER_FLUSH - len(spend)]
        if policy is None:
            return _Sync(seq, now, window_seconds, None, spend, counts)
        horizon = now - 10 * max(self._cache_ttl_s, 1.0)
        for key in [key for key, seen in self._scopes.items() if seen < horizon]:
            del self._scopes[key]
        return _Sync(
            seq,
            now,
            window_seconds,
            policy,
            spend,
            counts,
            pairs=self._pairs_of(policy),
            windows=(window, window - 1),
            spend_keys=tuple(self._scopes),
            local_circuits=tuple(self._local_circuits.items()),
        )

    def _merge_sync(self, job: _Sync, result: _SyncResult) -> None:
        for spend_key, usd in result.spend:
            self._add_pending_spend(spend_key, -usd, 0.0)
            self._remote_spend[spend_key] = self._remote_spend.get(spend_key, 0.0) + usd
        for count_key, delta, totals in result.counts:
            left = _minus(self._pending_counts.get(count_key, b.EMPTY), delta)
            if left.empty:
                self._pending_counts.pop(count_key, None)
            else:
                self._pending_counts[count_key] = left
            self._learn_counts(count_key, totals, job.seq)
        if result.error is not None:
            self._failed(*result.error, job.now)
        if result.view is not None and job.policy is not None:
            self._merge_read(job, job.policy, result.view)
        for pair, opened_at, written in result.written_back:
            if self._local_circuits.get(pair) == opened_at:
                del self._local_circuits[pair]
            if written:
                self._remote_circuits[pair] = CircuitRecord(opened_at=opened_at, reason=WRITTEN_BACK_REASON)
                self._learned[("c", pair)] = job.seq
            elif written is not None:
                self._read_at = None  # another instance wrote one first: read it next time

    def _merge_read(self, job: _Sync, policy: Policy, view: RemoteView) -> None:
        seq = job.seq

        def newer(key: tuple[str, Any]) -> bool:
            """This instance changed the item after the read was sent: keep what it knows."""
            return self._learned.get(key, -1) > seq

        self._read_at = job.now
        self._read_pairs = frozenset(job.pairs)
        self._read_window_seconds = job.window_seconds
        wanted = set(job.pairs)
        for pair in [pair for pair in self._remote_circuits if pair not in wanted and not newer(("c", pair))]:
            del self._remote_circuits[pair]
        for pair in job.pairs:
            if newer(("c", pair)):
                continue
            record = view.circuits.get(pair)
            if record is None:
                self._remote_circuits.pop(pair, None)
            else:
                self._remote_circuits[pair] = record
            self._learned[("c", pair)] = seq
        count_keys = {(pair, window) for pair in job.pairs for window in job.windows}
        for key in [key for key in self._remote_counts if key not in count_keys and not newer(("w", key))]:
            del self._remote_counts[key]
        for key in count_keys:
            if newer(("w", key)):
                continue
            totals = view.counts.get(key)
            if totals is None:
                self._remote_counts.pop(key, None)
            else:
                self._remote_counts[key] = totals
            self._learned[("w", key)] = seq
        read_keys = set(job.spend_keys)
        for spend_key in [key for key in self._remote_spend if key not in read_keys and not newer(("s", key))]:
            del self._remote_spend[spend_key]  # not asked for lately: read again when a request needs it
            self._unconfirmed_usd.pop(spend_key, None)
        for spend_key in job.spend_keys:
            self._learn_spend(spend_key, view.spend.get(spend_key, 0.0), seq)
        self._learned = {key: number for key, number in self._learned.items() if number >= seq}
        self._denied.clear()
        for stale in [key for key in self._local_counts if key[1] < job.windows[0] - 1]:
            del self._local_counts[stale]
        self._compute_latency(policy, job.now)

    def _learn_counts(self, key: CountKey, totals: b.WindowCounts, seq: int) -> None:
        if self._learned.get(("w", key), -1) <= seq:
            self._remote_counts[key] = totals
            self._learned[("w", key)] = seq

    def _learn_spend(self, key: str, usd: float, seq: int) -> None:
        """The store's counter, as of store call ``seq``; what this instance spent that the value may not
        hold is what it has not written yet and its unreserved calls under way."""
        if self._learned.get(("s", key), -1) > seq:
            return
        self._learned[("s", key)] = seq
        self._remote_spend[key] = usd
        unwritten = max(0.0, self._pending_spend.get(key, (0.0, 0.0))[0])
        self._unconfirmed_usd[key] = unwritten + self._in_flight_usd.get(key, 0.0)

    def _count_unconfirmed(self, keys: Sequence[str], usd: float) -> None:
        for key in keys:
            self._in_flight_usd[key] = max(0.0, self._in_flight_usd.get(key, 0.0) + usd)
            self._unconfirmed_usd[key] = max(0.0, self._unconfirmed_usd.get(key, 0.0) + usd)

    def _add_pending_spend(self, key: str, usd: float, expires_at: float) -> None:
        pending, expires = self._pending_spend.get(key, (0.0, 0.0))
        total = pending + usd
        if abs(total) < 1e-12:
            self._pending_spend.pop(key, None)
        else:
            self._pending_spend[key] = (total, max(expires, expires_at))

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
        known = [
            opened_at
            for opened_at in (
                self._remote_circuits[pair].opened_at if pair in self._remote_circuits else None,
                self._local_circuits.get(pair),
                self._opening.get(pair),
            )
            if opened_at is not None
        ]
        return max(known) if known else None

    def _circuits_for(self, policy: Policy, now: float) -> set[tuple[str, str]]:
        """(model key, region) pairs to leave out of the plan: open ones, and half-open ones whose probe
        this instance already knows it cannot take. Other half-open pairs stay planned: the request claims
        the probe just before calling (``is_open``). None with the breaker disabled."""
        open_pairs: set[tuple[str, str]] = set()
        if not policy.breaker.enabled or not (self._remote_circuits or self._local_circuits or self._opening):
            return open_pairs
        keys: dict[str, list[str]] = {}
        for spec in policy.models.values():
            keys.setdefault(spec.model_id, []).append(spec.key)
        for pair in set(self._remote_circuits) | set(self._local_circuits) | set(self._opening):
            opened_at = self._opened_at(pair)
            state = b.phase(opened_at, now, policy.breaker)
            if state is b.Phase.CLOSED:
                continue
            if state is b.Phase.HALF_OPEN and pair not in self._probing and self._denied.get(pair) != opened_at:
                continue
            open_pairs.update((model_key, pair[1]) for model_key in keys.get(pair[0], ()))
        return open_pairs

    def _begin_close(self, pair: Pair, opened_at: float, now: float) -> list[tuple[CountKey, b.WindowCounts]] | None:
        """A probe succeeded: this instance's side of the close at once; returns the shared counts to take
        back (``_finish_close``), or None when the store is left alone."""
        self._local_circuits.pop(pair, None)
        remote = self._remote_circuits.get(pair)
        if remote is not None and remote.opened_at == opened_at:
            del self._remote_circuits[pair]
            self._learned[("c", pair)] = self._next_seq()  # a read already under way must not bring it back
        self._forget_failures(pair)
        if not self._healthy(now):
            return None
        return [
            (
                key,
                b.WindowCounts(
                    failed=-known.failed,
                    throttled=-known.throttled,
                    failed_by_caller=tuple(-failed for failed in known.failed_by_caller),
                ),
            )
            for key, known in self._remote_counts.items()
            if key[0] == pair and (known.failed or known.throttled)
        ]

    def _forget_failures(self, pair: Pair) -> None:
        for counts in (self._local_counts, self._pending_counts):
            for key, known in list(counts.items()):
                if key[0] == pair and (known.failed or known.throttled):
                    counts[key] = known._replace(failed=0, throttled=0, failed_by_caller=b.EMPTY.failed_by_caller)
