"""Run a routing plan: call models in order, back off on throttling, move on when a call fails.

Pure apart from what it is handed: the model call, the clock, sleep and the random source. Failure
classes decide what happens next:

- throttled: exponential backoff with full jitter on the same (model, region), within the deadline and
  ``throttle_retries``; then the next planned call (the same model's next region).
- regional (5xx, unavailable, timeouts, model not ready): the next planned call, i.e. the same model in
  its next region, then the next model.
- configuration (access denied, model not found or past its end of life, not served on demand in that region,
  invalid model id): an operator's mistake in that (model, region), never blamed on the caller. Model access,
  on-demand serving and end of life are all per region, so the next planned call (the same model's next
  region) is still tried.
- caller (the input is invalid for this model, e.g. too long): the next model; when every model tried
  failed this way the caller gets HTTP 400 with the model's reason.

Time: each attempt gets ``min(attempt_timeout_ms, time left)`` and a connect timeout of
``min(connect_timeout_ms, that)``, handed to the model call as an ``AttemptTimeout``; the call must return or
raise within it (the Bedrock gateway enforces this), so the plan ends by the deadline plus a few ms.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import StrEnum
from typing import NamedTuple

from .engine import PlannedCall
from .policy import Resilience

# Below this much time left there is no point starting a model call.
MIN_ATTEMPT_SECONDS = 0.25
DEADLINE_MARGIN_SECONDS = 0.05
"""An attempt cut short by the deadline ends this much before it: the gateway's guard grace, waking the
waiting thread and building the answer fit in it, so the answer (degraded if need be) is not late."""


class FailureClass(StrEnum):
    THROTTLED = "throttled"
    REGIONAL = "regional"
    CONFIGURATION = "configuration"
    CALLER = "caller"


_THROTTLE_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"})
_CONFIGURATION_CODES = frozenset(
    {
        "AccessDeniedException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "UnauthorizedException",
    }
)
# ValidationException messages that point at the model id or its access mode rather than the input.
_MODEL_CONFIGURATION_HINTS = (
    "model identifier",
    "model id",
    "on-demand throughput",
    "inference profile",
    "model is not supported",
    "doesn't support the model",
    "does not support the model",
    "end of its life",
    "access to the model",
)


def classify_failure(code: str, message: str) -> FailureClass:
    """Map a Bedrock error code and message to what the router should do about it."""
    if code in _THROTTLE_CODES:
        return FailureClass.THROTTLED
    if code in _CONFIGURATION_CODES:
        return FailureClass.CONFIGURATION
    if code == "ValidationException":
        lowered = message.lower()
        if any(hint in lowered for hint in _MODEL_CONFIGURATION_HINTS):
            return FailureClass.CONFIGURATION
        return FailureClass.CALLER
    return FailureClass.REGIONAL


class ModelCallError(Exception):
    """A model call failed; carries the Bedrock error code and its failure class."""

    def __init__(self, code: str, message: str, failure_class: FailureClass | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.failure_class = failure_class or classify_failure(code, message)


class AttemptTimeout(float):
    """An attempt's time budget in seconds, carrying the TCP connect timeout to use within it.

    A float, so that a model call that needs only the budget (a test fake, an adapter without sockets)
    takes it as one; the Bedrock gateway also reads ``connect_s``.
    """

    connect_s: float

    def __new__(cls, seconds: float, *, connect_s: float) -> AttemptTimeout:
        timeout = super().__new__(cls, seconds)
        timeout.connect_s = min(connect_s, seconds)
        return timeout

    def __repr__(self) -> str:
        return f"AttemptTimeout({float(self)!r}, connect_s={self.connect_s!r})"


class ModelReply(NamedTuple):
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str


class AttemptRecord(NamedTuple):
    model: str  # the policy's catalog key
    model_id: str
    region: str
    outcome: str  # "ok" or a FailureClass value
    code: str | None
    latency_ms: float
    retry: int

    def as_dict(self) -> dict[str, object]:
        record: dict[str, object] = {
            "model": self.model,
            "region": self.region,
            "outcome": self.outcome,
            "latency_ms": round(self.latency_ms, 1),
        }
        if self.code:
            record["code"] = self.code
        if self.retry:
            record["retry"] = self.retry
        return record


class ExecutionResult:
    """What running a plan produced; filled in as execution goes."""

    __slots__ = ("answered_by", "attempts", "caller_error", "reply", "stop_reason")

    def __init__(self) -> None:
        self.answered_by: PlannedCall | None = None
        self.reply: ModelReply | None = None
        self.attempts: list[AttemptRecord] = []
        self.caller_error: str | None = None
        self.stop_reason: str | None = None  # why execution gave up, when nothing answered

    @property
    def failed_attempts(self) -> int:
        return sum(1 for a in self.attempts if a.outcome != "ok")


def backoff_delay_seconds(retry: int, base_ms: int, cap_ms: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**retry)] milliseconds, returned in seconds."""
    ceiling_ms = min(float(cap_ms), base_ms * (2.0**retry))
    return rng.uniform(0.0, ceiling_ms) / 1000.0


InvokeFn = Callable[[PlannedCall, float], ModelReply]


def execute_plan(
    plan: tuple[PlannedCall, ...],
    invoke: InvokeFn,
    resilience: Resilience,
    *,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    rng: random.Random,
    skip: Callable[[PlannedCall], bool] | None = None,
    on_attempt: Callable[[AttemptRecord], None] | None = None,
) -> ExecutionResult:
    """Call the plan's models in order until one answers.

    Args:
        plan: ordered (model, region) calls from the engine.
        invoke: makes one model call within an ``AttemptTimeout`` (seconds); raises ``ModelCallError``.
        resilience: retry, backoff and attempt limits from the policy.
        deadline: the ``clock()`` value by which execution must be done.
        clock: monotonic seconds.
        sleep: waits a number of seconds.
        rng: the random source for backoff jitter.
        skip: whether a planned call should no longer be made (its circuit opened after planning).
        on_attempt: told about every attempt as it ends (circuit breakers, latency).
    """
    result = ExecutionResult()
    abandoned_models: set[str] = set()
    caller_failures: dict[str, str] = {}
    tried_models: set[str] = set()
    attempt_timeout = resilience.attempt_timeout_ms / 1000.0
    connect_timeout = resilience.connect_timeout_ms / 1000.0
    record = result.attempts.append
    if on_attempt is not None:
        report = on_attempt

        def record(attempt: AttemptRecord) -> None:
            result.attempts.append(attempt)
            report(attempt)

    for call in plan:
        if call.model.key in abandoned_models or (skip is not None and skip(call)):
            continue
        retry = 0
        while True:
            remaining = deadline - clock()
            if remaining < MIN_ATTEMPT_SECONDS:
                result.stop_reason = "deadline"
                return _finish(result, tried_models, caller_failures)
            if len(result.attempts) >= resilience.max_attempts:
                result.stop_reason = "max_attempts"
                return _finish(result, tried_models, caller_failures)
            tried_models.add(call.model.key)
            started = clock()
            try:
                budget_s = min(attempt_timeout, remaining - DEADLINE_MARGIN_SECONDS)
                reply = invoke(call, AttemptTimeout(budget_s, connect_s=connect_timeout))
            except ModelCallError as error:
                elapsed_ms = (clock() - started) * 1000.0
                record(
                    AttemptRecord(
                        call.model.key,
                        call.model.model_id,
                        call.region,
                        error.failure_class.value,
                        error.code,
                        elapsed_ms,
                        retry,
                    )
                )
                if error.failure_class is FailureClass.THROTTLED and retry < resilience.throttle_retries:
                    delay = backoff_delay_seconds(retry, resilience.backoff_base_ms, resilience.backoff_cap_ms, rng)
                    if clock() + delay + MIN_ATTEMPT_SECONDS < deadline:
                        sleep(delay)
                        retry += 1
                        if skip is None or not skip(call):  # the throttles may have opened its circuit
                            continue
                if error.failure_class is FailureClass.CALLER:
                    abandoned_models.add(call.model.key)
                    caller_failures[call.model.key] = error.message
                break
            record(
                AttemptRecord(
                    call.model.key, call.model.model_id, call.region, "ok", None, (clock() - started) * 1000.0, retry
                )
            )
            result.answered_by = call
            result.reply = reply
            return result
    result.stop_reason = "plan_exhausted"
    return _finish(result, tried_models, caller_failures)


def _finish(result: ExecutionResult, tried: set[str], caller_failures: dict[str, str]) -> ExecutionResult:
    if tried and set(caller_failures) == tried:
        result.caller_error = next(reversed(caller_failures.values()))
    return result
