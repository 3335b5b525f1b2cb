"""One ``/generate`` request run across Step Functions states by replaying the router's own code.

In the Step Functions orchestration the state machine makes the model calls (its Bedrock SDK integration), so
no Lambda waits on Bedrock. Between calls a short task runs ``RouterService.generate`` again over the request,
with the calls made so far *replayed*: the gateway answers each from the record, the clock reads the time
each one ended, and the decision is the one the first task pinned. The service thus walks the same code path
as in the Lambda orchestration (fallbacks, caller errors, deadlines, cascades, the degraded answer) until it
needs a call nobody has made yet; ``CallNeeded`` carries that call out to the state machine. Side effects
happen once: an attempt is reported to the circuit breakers in the task that first sees it, the budget is
reserved by the first task and settled by the last, and metrics are written with the answer.

A call planned in another region is made from the task itself (Step Functions' SDK integrations call their
own region only): the task waits for it, which costs Lambda time only when a request fails over.

Pure apart from the clock and the gateway it is handed.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .budget import SpendScope
from .engine import Decision, LiveState, PlannedCall, RoutingRequest
from .executor import ModelCallError, ModelReply
from .live_state import LiveStateTracker, Reservation, Snapshot, TrackerEvents
from .policy import Policy, PolicyError, Resilience

RUN_FORMAT = 1
"""The run record's format; a task refuses a record of another format (a deploy mid-request)."""


class CallNeeded(Exception):
    """The replay reached a call nobody has made yet: the state machine makes it."""

    def __init__(
        self,
        call: PlannedCall,
        timeout_s: float,
        *,
        messages: list[dict[str, Any]],
        system: list[dict[str, str]],
        inference_config: dict[str, Any],
        issued_at: float = 0.0,
    ) -> None:
        super().__init__(f"call {call.model.model_id} in {call.region}")
        self.call = call
        self.timeout_s = float(timeout_s)
        self.issued_at = issued_at
        self.messages = messages
        self.system = system
        self.inference_config = inference_config


class ReplayMismatch(RuntimeError):
    """The record does not fit the plan (a policy changed under a running request): the request cannot go on."""


class Attempt(NamedTuple):
    """One model call made for this request: its answer or its error, and when it ended (epoch seconds)."""

    model_id: str
    region: str
    ended_at: float
    reply: ModelReply | None = None
    code: str | None = None
    message: str = ""
    started_at: float | None = None  # when the call was handed out (None: right after the one before ended)

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"model_id": self.model_id, "region": self.region, "ended_at": self.ended_at}
        if self.started_at is not None:
            record["started_at"] = self.started_at
        if self.reply is not None:
            record["reply"] = self.reply._asdict()
        else:
            record["error"] = {"code": self.code, "message": self.message}
        return record

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Attempt:
        reply = raw.get("reply")
        error = raw.get("error") or {}
        return cls(
            str(raw["model_id"]),
            str(raw["region"]),
            float(raw["ended_at"]),
            ModelReply(**reply) if reply is not None else None,
            None if reply is not None else str(error.get("code") or "Unknown"),
            "" if reply is not None else str(error.get("message") or ""),
            float(raw["started_at"]) if raw.get("started_at") is not None else None,
        )


class Replay:
    """The record of one request's model calls, and the clock and gateway that replay it.

    Args:
        started_at: when the request started (epoch seconds).
        attempts: the calls made so far, oldest first.
        fresh_from: the index of the first attempt the breakers have not heard of (the run record's ``reported``):
            this task reports it and those after it.
        home_region: the region the state machine calls; calls elsewhere are made here, through ``remote``.
        remote: the real gateway, for calls in other regions (``None``: every call goes to the state machine).
        now: wall-clock seconds.
    """

    def __init__(
        self,
        *,
        started_at: float,
        attempts: Sequence[Attempt],
        fresh_from: int = 0,
        home_region: str,
        remote: Any = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.started_at = started_at
        self.attempts = list(attempts)
        self.fresh_from = fresh_from
        self.home_region = home_region
        self._remote = remote
        self._now = now
        self._cursor = 0
        self._time = started_at
        self.pending: CallNeeded | None = None
        self.checked_at: float | None = None
        """When the live call about to be made was checked (the breaker's check, just before the executor's
        deadline check): its ``started_at``, so that a replay finds the time left it found."""

    @property
    def replaying(self) -> bool:
        return self._cursor < len(self.attempts)

    def clock(self) -> float:
        """While replaying, the time the last replayed call ended (the request's start before the first)."""
        return self._time if self.replaying else self._now()

    def next_is(self, model_id: str, region: str) -> bool:
        if not self.replaying:
            return False
        attempt = self.attempts[self._cursor]
        return attempt.model_id == model_id and attempt.region == region

    def starting(self, model_id: str, region: str) -> bool:
        """Asked before a planned call is made (the breaker's check): whether the record's next call is this one;
        if so the clock moves to when it was handed out, so its latency and time left read as they did then."""
        if not self.next_is(model_id, region):
            return False
        started_at = self.attempts[self._cursor].started_at
        if started_at is not None:
            self._time = started_at
        return True

    # The gateway (``service.ModelGateway``)
    def converse(
        self,
        call: PlannedCall,
        timeout_s: float,
        *,
        messages: list[dict[str, Any]],
        system: list[dict[str, str]],
        inference_config: dict[str, Any],
    ) -> ModelReply:
        if self.replaying:
            attempt = self.attempts[self._cursor]
            if not self.next_is(call.model.model_id, call.region):
                raise ReplayMismatch(
                    f"the record's call {self._cursor + 1} is {attempt.model_id} in {attempt.region}, the plan's is "
                    f"{call.model.model_id} in {call.region}"
                )
            self._cursor += 1
            self._time = attempt.ended_at
            return _outcome(attempt)
        checked_at = self.checked_at if self.checked_at is not None else self._now()
        self.checked_at = None
        if call.region != self.home_region and self._remote is not None:
            model_id, region = call.model.model_id, call.region
            try:
                reply: ModelReply = self._remote.converse(
                    call, timeout_s, messages=messages, system=system, inference_config=inference_config
                )
            except ModelCallError as error:
                failed = Attempt(
                    model_id, region, self._now(), code=error.code, message=error.message, started_at=checked_at
                )
                self._made(failed)
                raise
            self._made(Attempt(model_id, region, self._now(), reply=reply, started_at=checked_at))
            return reply
        self.pending = CallNeeded(
            call, timeout_s, messages=messages, system=system, inference_config=inference_config, issued_at=checked_at
        )
        raise self.pending

    def converse_stream(self, call: PlannedCall, first_token_timeout_s: float, **_: Any) -> Any:
        raise ModelCallError("ValidationException", "streaming is not served by the Step Functions orchestration")

    def _made(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        self._cursor = len(self.attempts)


def _outcome(attempt: Attempt) -> ModelReply:
    if attempt.reply is None:
        raise ModelCallError(attempt.code or "Unknown", attempt.message)
    return attempt.reply


class PinnedTracker:
    """The live state as the first task saw it, over the real tracker (``LiveStateTracker``'s interface).

    The first task (no ``pinned`` record) reads and reserves for real and keeps what it got; later tasks get the
    same snapshot and reservation back. Breaker reports go through for attempts new to this task only; the
    reservation is settled and probes released only when the request ends (not when it waits on a call).
    """

    def __init__(self, tracker: LiveStateTracker, replay: Replay, pinned: Mapping[str, Any] | None = None) -> None:
        self._tracker = tracker
        self._replay = replay
        self._pinned = pinned
        self._reported = 0
        self.snapshot_taken: Snapshot | None = None
        self.reservation: Reservation | None = _reservation_from(pinned.get("reservation")) if pinned else None
        self._adopted: dict[tuple[str, str], tuple[float, bool]] = {}
        if pinned:  # the probes the request holds, claimed by an earlier task: this instance gives their verdict
            self._adopted = probes_from(pinned.get("probes", ()))
            tracker.adopt_probes(self._adopted)

    def snapshot(self, policy: Policy, scopes: Sequence[SpendScope]) -> Snapshot:
        if self._pinned is None:
            self.snapshot_taken = self._tracker.snapshot(policy, scopes)
            return self.snapshot_taken
        raw = self._pinned["snapshot"]
        state = LiveState(budget_used_percent=raw.get("budget_used_percent"), budget_scope=raw.get("budget_scope"))
        self.snapshot_taken = Snapshot(state, set(self._adopted), float(raw.get("spend_today_usd") or 0.0))
        return self.snapshot_taken

    def reserve(self, policy: Policy, scopes: Sequence[SpendScope], estimate_usd: float) -> Reservation:
        if self._pinned is None:
            self.reservation = self._tracker.reserve(policy, scopes, estimate_usd)
        if self.reservation is None:  # pinned before any reservation was needed
            self.reservation = Reservation(tuple(scopes), 0.0)
        return self.reservation

    def is_open(self, policy: Policy, model_id: str, region: str, probes: set[tuple[str, str]]) -> bool:
        if self._replay.replaying:  # skipped then exactly when the record's next call is a later one
            return not self._replay.starting(model_id, region)
        self._replay.checked_at = self._replay.clock()
        return self._tracker.is_open(policy, model_id, region, probes)

    def record_attempt(
        self, policy: Policy, model_id: str, region: str, outcome: str, latency_ms: float, **kw: Any
    ) -> None:
        index = self._reported
        self._reported += 1
        if index >= self._replay.fresh_from:
            self._tracker.record_attempt(policy, model_id, region, outcome, latency_ms, **kw)

    def settle(self, reservation: Reservation, usd: float) -> None:
        if self._replay.pending is None:
            self._tracker.settle(reservation, usd)

    def release(self, probes: set[tuple[str, str]]) -> None:
        if self._replay.pending is None:
            self._tracker.release(probes)

    def drain_events(self) -> TrackerEvents:
        return self._tracker.drain_events()

    def pin(self) -> dict[str, Any]:
        """The snapshot and reservation for the tasks that follow (the first task's)."""
        snapshot = self.snapshot_taken
        state = snapshot.state if snapshot is not None else LiveState()
        reservation = self._tracker.hand_off(self.reservation) if self.reservation is not None else None
        return {
            "snapshot": {
                "budget_used_percent": state.budget_used_percent,
                "budget_scope": state.budget_scope,
                "spend_today_usd": snapshot.spend_today_usd if snapshot is not None else 0.0,
            },
            "reservation": _reservation_json(reservation),
        }

    def hand_off_probes(self) -> list[list[Any]]:
        """The probes the request holds now (claimed by this task or adopted), for the next task; this instance
        stops holding them."""
        held = self.snapshot_taken.probes if self.snapshot_taken is not None else set()
        handed = {**self._adopted, **self._tracker.hand_off_probes(held)}
        return sorted([m, r, at, in_store] for (m, r), (at, in_store) in handed.items() if (m, r) in held)


class PinnedDecider:
    """``engine.decide`` in the first task (keeping its answer); the kept decision in the tasks after it."""

    def __init__(
        self, decide: Callable[[Policy, RoutingRequest, LiveState], Decision], pinned: Mapping[str, Any] | None
    ):
        self._decide = decide
        self._pinned = pinned
        self.decision: Decision | None = None

    def __call__(self, policy: Policy, request: RoutingRequest, state: LiveState | None = None) -> Decision:
        if self._pinned is None:
            self.decision = self._decide(policy, request, state or LiveState())
        else:
            self.decision = decision_from_json(self._pinned, policy)
        return self.decision


def probes_from(raw: Sequence[Sequence[Any]]) -> dict[tuple[str, str], tuple[float, bool]]:
    """The run record's probes (``[model_id, region, opened_at, in_store]``) as ``adopt_probes`` takes them."""
    return {(str(m), str(r)): (float(at), bool(in_store)) for m, r, at, in_store in raw}


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "route": decision.route,
        "primary_model": decision.primary_model,
        "plan": [[call.model.key, call.region, call.fallback, call.step] for call in decision.plan],
        "max_tokens": decision.max_tokens,
        "temperature": decision.temperature,
        "reasons": decision.reasons,
        "budget_action": decision.budget_action,
        "cascade": decision.cascade is not None,
        "judge": decision.cascade is not None and decision.cascade.judge is not None,
    }


def decision_from_json(raw: Mapping[str, Any], policy: Policy) -> Decision:
    """The pinned decision against the policy in force; ``ReplayMismatch`` if it names what that policy lacks."""
    plan: list[PlannedCall] = []
    for key, region, fallback, step in raw["plan"]:
        model = policy.models.get(key)
        if model is None:
            raise ReplayMismatch(f"model {key!r} of the running request is not in policy {policy.version}")
        plan.append(PlannedCall(model, str(region), bool(fallback), int(step)))
    route = policy.routes.get(raw["route"])
    cascade = route.cascade if raw.get("cascade") and route is not None else None
    if raw.get("cascade") and cascade is None:
        raise ReplayMismatch(f"route {raw['route']!r} is no cascade in policy {policy.version}")
    if cascade is not None and not raw.get("judge", True):  # the first task left the judge out (a budget cap)
        cascade = cascade._replace(judge=None)
    return Decision(
        route=str(raw["route"]),
        primary_model=str(raw["primary_model"]),
        plan=tuple(plan),
        max_tokens=int(raw["max_tokens"]),
        temperature=raw.get("temperature"),
        reasons=dict(raw.get("reasons") or {}),
        budget_action=raw.get("budget_action"),
        cascade=cascade,
    )


def _reservation_json(reservation: Reservation | None) -> dict[str, Any] | None:
    if reservation is None:
        return None
    return {
        "scopes": [list(scope) for scope in reservation.scopes],
        "estimate_usd": reservation.estimate_usd,
        "reserved": sorted(reservation.reserved),
        "unconfirmed": sorted(reservation.unconfirmed),
        "refused": list(reservation.refused) if reservation.refused is not None else None,
    }


def _reservation_from(raw: Mapping[str, Any] | None) -> Reservation | None:
    if raw is None:
        return None

    def scope(values: Sequence[Any]) -> SpendScope:
        key, label, limit, expires = values
        return SpendScope(str(key), str(label), None if limit is None else float(limit), float(expires))

    refused = raw.get("refused")
    return Reservation(
        tuple(scope(values) for values in raw["scopes"]),
        float(raw["estimate_usd"]),
        frozenset(raw.get("reserved", ())),
        frozenset(raw.get("unconfirmed", ())),
        scope(refused) if refused else None,
    )


# What Step Functions' Bedrock SDK integration takes and gives: the Converse API's shapes with PascalCase names.
def sdk_shape(value: Any) -> Any:
    """A Converse request part (boto3's shapes) as the SDK integration takes it: PascalCase keys, bytes in base64."""
    if isinstance(value, Mapping):
        return {key[:1].upper() + key[1:]: sdk_shape(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [sdk_shape(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def reply_from_sdk(result: Mapping[str, Any]) -> ModelReply:
    """The SDK integration's Converse answer (``Output``, ``Usage``, ``StopReason``) as a ``ModelReply``."""
    content = ((result.get("Output") or {}).get("Message") or {}).get("Content") or []
    text = "".join(str(block.get("Text", "")) for block in content if isinstance(block, Mapping))
    usage = result.get("Usage") or {}
    return ModelReply(
        text=text,
        input_tokens=int(usage.get("InputTokens", 0)),
        output_tokens=int(usage.get("OutputTokens", 0)),
        stop_reason=str(result.get("StopReason") or "end_turn"),
    )


SDK_ERROR_PREFIX = "BedrockRuntime."
STATES_TIMEOUT = "States.Timeout"


def error_from_sdk(error: str, cause: str) -> tuple[str, str]:
    """A caught error (``Error``, ``Cause``) as the Bedrock error code and message the executor classifies."""
    if error.startswith(SDK_ERROR_PREFIX):
        return error[len(SDK_ERROR_PREFIX) :], cause
    if error == STATES_TIMEOUT:
        return "Timeout", cause or "no reply within the attempt's timeout"
    return error or "Unknown", cause


class StateMachineRetry(NamedTuple):
    """The state machine's Retry of a throttled call: the policy's backoff in whole seconds (Step Functions' unit),
    rounded up; each wait is drawn with full jitter below ``min(interval_s * 2**n, max_delay_s)``."""

    interval_s: int
    max_delay_s: int
    max_attempts: int

    @classmethod
    def of(cls, resilience: Resilience) -> StateMachineRetry:
        return cls(
            max(1, math.ceil(resilience.backoff_base_ms / 1000)),
            max(1, math.ceil(resilience.backoff_cap_ms / 1000)),
            resilience.throttle_retries,
        )

    @property
    def most_waited_s(self) -> int:
        """The longest the retries can wait in all: a call's timeout leaves this much of the request's time."""
        return sum(min(self.interval_s * 2**n, self.max_delay_s) for n in range(self.max_attempts))


def check_format(raw: Mapping[str, Any]) -> None:
    if raw.get("format") != RUN_FORMAT:
        raise PolicyError(
            f"the running request's record has format {raw.get('format')!r}, this task reads {RUN_FORMAT}"
        )
