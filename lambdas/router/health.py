"""``GET /health``: can this region serve ``/generate`` right now? A verdict cached for a few seconds.

Route 53 health checkers (and load balancers) call ``/health`` every 10-30 s from many locations, so the
verdict is computed at most once per ``cache_s`` per instance and every check in between gets the cached one.
The region cannot serve, and ``/health`` answers 503, when:

- ``no_policy``: no valid routing policy can be loaded (neither AppConfig's nor the bootstrap one);
- ``all_circuits_open``: every (model, region) pair of every route's candidates and fallbacks is behind an
  open circuit breaker (shared by all instances through the live-state table): every request would degrade;
- ``bedrock_unreachable``: no model call has succeeded on this instance for ``probe_interval_s`` (or a
  request has found no model to answer it since the last success) and a probe
  (one Converse call of one output token to the policy's cheapest model, in the first of its regions whose
  circuit is not open, then to the cheapest in another region) failed within ``probe_timeout_s``. A probe
  throttled or rejected for its input proves Bedrock is reachable; a timeout, a connection failure, a server
  or an access error does not. Real traffic is the evidence when
  there is some: an instance that answers requests never probes, and an idle one probes at most once per
  ``probe_interval_s`` (after a failed probe, once per verdict, so recovery shows within ``cache_s``): health
  checks never call a model on every check.

A circuit that has cooled down (half-open) counts as servable: with traffic moved elsewhere by DNS nothing
would ever close it, so the probe decides instead.

The answer reveals nothing internal: ``{"status": "ok", ...}`` or ``{"status": "unavailable"}``; the reason
goes to the log when the verdict changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from .engine import PlannedCall
from .executor import FailureClass, ModelCallError
from .policy import Policy
from .policy_store import PolicyUnavailable

NO_POLICY = "no_policy"
ALL_CIRCUITS_OPEN = "all_circuits_open"
BEDROCK_UNREACHABLE = "bedrock_unreachable"
PROBE_MESSAGES = ({"role": "user", "content": [{"text": "Reply with the word ok."}]},)
PROBE_INFERENCE = {"maxTokens": 1}

DEFAULT_CACHE_S = 5.0
DEFAULT_PROBE_INTERVAL_S = 60.0
DEFAULT_PROBE_TIMEOUT_S = 1.0
PROBE_PAIRS = 2
"""Pairs a probe may try, the second in another region or of another model: one bad pair is not the region."""


class HealthSettings(NamedTuple):
    """How often the verdict is computed and how Bedrock is probed when there is no traffic to judge by.

    Attributes:
        cache_s: how long a verdict is reused (every check in between gets it).
        probe_interval_s: with no successful model call for this long, probe Bedrock (and at most this often).
        probe_timeout_s: the probe's whole budget (shared by its ``PROBE_PAIRS`` calls): no answer within it is
            ``bedrock_unreachable``. Route 53 wants the answer within 2 s of connecting, API Gateway, Lambda and
            the live-state read included, so it stays well under that.
    """

    cache_s: float = DEFAULT_CACHE_S
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S

    def checked(self) -> HealthSettings:
        """These settings, or ``ValueError`` naming the first that is not a finite number above 0 (or in order).

        Raises:
            ValueError: a setting that is not finite and above 0, or a probe timeout not under 10 s.
        """
        for name in self._fields:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValueError(f"health setting {name} must be a finite number of seconds above 0, got {value!r}")
        if self.probe_timeout_s >= 10:
            raise ValueError(f"health setting probe_timeout_s must be under 10 s, got {self.probe_timeout_s!r}")
        return self


class Verdict(NamedTuple):
    healthy: bool
    reason: str | None
    policy: Policy | None

    def body(self) -> dict[str, Any]:
        """The public answer: nothing about models, regions, errors or why."""
        if not self.healthy or self.policy is None:
            return {"status": "unavailable"}
        return {"status": "ok", "policy_version": self.policy.version, "models": len(self.policy.models)}


Probe = Callable[[PlannedCall, float], object]
"""Makes one minimal model call within the timeout (seconds); raises ``ModelCallError`` when it fails."""


class HealthMonitor:
    """Computes and caches the region's verdict.

    Args:
        current_policy: the policy in force (raises ``PolicyUnavailable`` when there is none).
        open_pairs: the (model key, region) pairs behind an open circuit for a policy.
        last_success: monotonic time of this instance's newest successful model call, or None.
        last_failure: monotonic time of this instance's newest request that no model could answer, or None: a
            success older than it is no evidence.
        probe: one minimal model call (``Probe``); None never probes (nothing to judge Bedrock by).
        settings: cache and probe timing.
        clock: monotonic seconds.
        logger: where verdict changes are reported.
    """

    def __init__(
        self,
        *,
        current_policy: Callable[[], Policy],
        open_pairs: Callable[[Policy], frozenset[tuple[str, str]]],
        last_success: Callable[[], float | None],
        probe: Probe | None,
        last_failure: Callable[[], float | None] = lambda: None,
        settings: HealthSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: Any = None,
    ) -> None:
        self._current_policy = current_policy
        self._open_pairs = open_pairs
        self._last_success = last_success
        self._last_failure = last_failure
        self._probe = probe
        self.settings = (settings or HealthSettings()).checked()
        self._clock = clock
        self._logger = logger
        self._computing = threading.Lock()
        self._verdict: Verdict | None = None
        self._verdict_at = float("-inf")
        self._probed_at = float("-inf")
        self._probe_ok = True

    def verdict(self) -> Verdict:
        """The cached verdict, recomputed when older than ``cache_s``.

        One thread computes (it may wait on the live-state table and the probe); the others get the previous
        verdict meanwhile, and wait only when there is none yet.
        """
        previous = self._verdict
        if previous is not None and self._clock() - self._verdict_at < self.settings.cache_s:
            return previous
        if not self._computing.acquire(blocking=previous is None):
            assert previous is not None
            return previous
        try:
            previous = self._verdict
            now = self._clock()
            if previous is not None and now - self._verdict_at < self.settings.cache_s:
                return previous  # another thread computed it while this one waited
            verdict = self._compute(now)
            self._verdict, self._verdict_at = verdict, self._clock()
            if previous is None or previous.reason != verdict.reason:
                self._report(verdict)
            return verdict
        finally:
            self._computing.release()

    def _compute(self, now: float) -> Verdict:
        try:
            policy = self._current_policy()
        except PolicyUnavailable:
            return Verdict(False, NO_POLICY, None)
        open_pairs = self._open_pairs(policy)
        reachable = [pair for pair in _serving_pairs(policy) if pair not in open_pairs]
        if not reachable:
            return Verdict(False, ALL_CIRCUITS_OPEN, policy)
        if self._probe is not None and not self._recent_success(now):
            # A failed probe is repeated with every new verdict (a call that fails is not billed), so the
            # region turns healthy within ``cache_s`` of Bedrock answering again; a good one lasts the interval.
            # A request that found no model since the last probe makes one due at once.
            due = self.settings.probe_interval_s if self._probe_ok else self.settings.cache_s
            failed = self._last_failure()
            if now - self._probed_at >= due or (failed is not None and failed > self._probed_at):
                self._probed_at = now
                self._probe_ok = self._run_probe(policy, reachable)
            if not self._probe_ok:
                return Verdict(False, BEDROCK_UNREACHABLE, policy)
        return Verdict(True, None, policy)

    def _recent_success(self, now: float) -> bool:
        last, failed = self._last_success(), self._last_failure()
        if last is None or now - last >= self.settings.probe_interval_s:
            return False
        return failed is None or failed < last

    def _run_probe(self, policy: Policy, reachable: list[tuple[str, str]]) -> bool:
        """Whether Bedrock answered one of up to ``PROBE_PAIRS`` pairs within the probe budget.

        The cheapest pair first; then the cheapest in another region (else of another model), so one model the
        account cannot invoke, or one region's outage, is not taken for the region's.
        """
        assert self._probe is not None
        ranked = sorted(reachable, key=lambda pair: (_price(policy, pair[0]), pair))
        tried = [ranked[0]]
        other = next((p for p in ranked if p[1] != tried[0][1]), None) or next(
            (p for p in ranked if p[0] != tried[0][0]), None
        )
        if other is not None and PROBE_PAIRS > 1:
            tried.append(other)
        deadline = self._clock() + self.settings.probe_timeout_s
        for key, region in tried:
            budget = deadline - self._clock()
            if budget <= 0:
                return False
            try:
                self._probe(PlannedCall(policy.models[key], region, fallback=False), budget)
            except ModelCallError as exc:
                # Throttled, or rejected for its input: Bedrock answered. Timeouts, connection, server and
                # access errors: not from this pair.
                if exc.failure_class in (FailureClass.THROTTLED, FailureClass.CALLER):
                    return True
            except Exception:  # anything else the probe raises means no answer came back
                pass
            else:
                return True
        return False

    def _report(self, verdict: Verdict) -> None:
        if self._logger is None:
            return
        if verdict.healthy:
            self._logger.info("health: the region can serve", extra={"health": "ok"})
        else:
            self._logger.warning("health: the region cannot serve", extra={"health": verdict.reason})


def _serving_pairs(policy: Policy) -> list[tuple[str, str]]:
    """Every (model key, region) a route may call: its candidates' and fallbacks' regions, in policy order."""
    seen: dict[tuple[str, str], None] = {}
    for route in policy.routes.values():
        for key in [c.model for c in route.candidates] + list(route.fallbacks):
            for region in policy.models[key].regions:
                seen[(key, region)] = None
    return list(seen)


def _price(policy: Policy, key: str) -> float:
    spec = policy.models[key]
    return spec.price_per_1k_input_usd + spec.price_per_1k_output_usd
