"""The live-state store's interface and its in-memory implementation (local mode, tests).

``StateBackend`` is what ``live_state.LiveStateTracker`` needs of a store shared by every router instance;
``InMemoryBackend`` is the store in one process (share one between trackers to model instances);
``dynamo_state.DynamoBackend`` is the deployed one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from . import breaker as b

Pair = tuple[str, str]
"""(Bedrock model id, region)."""
CountKey = tuple[Pair, int]
"""(pair, counting window)."""

# A window's counts are kept this many windows after it ends (the sliding count reads the last two), then TTL
# removes them from the store.
WINDOWS_KEPT = 4


def window_expires_at(window: int, window_seconds: int) -> float:
    return float((window + WINDOWS_KEPT) * window_seconds)


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

    def reserve_spend(self, key: str, usd: float, *, cap_usd: float, expires_at: float) -> tuple[bool, float]:
        """Atomically add ``usd`` (at most ``cap_usd``) to one spend counter if it then holds at most ``cap_usd``.

        Returns whether it was added, and the counter's value: after the add, or as found when refused.
        """
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

    def reserve_spend(self, key: str, usd: float, *, cap_usd: float, expires_at: float) -> tuple[bool, float]:
        with self._lock:
            self.writes += 1
            current = self.spend.get(key, 0.0)
            if key in self.spend and current > cap_usd - usd:  # the condition DynamoBackend sends
                return False, current
            self.spend[key] = current + usd
            return True, current + usd
