"""One ``/generate`` request end to end: parse, decide, execute, answer. Framework-free.

The handler wraps this in Powertools (routing, logging, metrics); tests drive it with fakes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from . import metric_names as m
from .budget import SpendScope, estimate_usd, hard_stop_percent, scopes_for
from .cascade import JUDGE_DEADLINE_MS, JUDGE_SYSTEM, JUDGE_TIME_SHARE, judge_request, judge_verdict
from .cascade_run import PaidAnswer, Spent, run_cascade
from .classifier import estimate_tokens
from .contract import (
    BadRequest,
    GenerateInput,
    UnknownModel,
    converse_messages,
    converse_system,
    parse_body,
    parse_generate,
)
from .engine import Decision, LiveState, PlannedCall, RoutingError, RoutingRequest, decide
from .executor import AttemptRecord, ExecutionResult, ModelReply, execute_plan
from .health import PROBE_INFERENCE, PROBE_MESSAGES, HealthMonitor, HealthSettings
from .live_state import LiveStateTracker, Reservation, Snapshot
from .policy import JudgeSettings, ModelSpec, Policy, Resilience
from .policy_store import PolicyStore
from .streaming import NOT_THE_MODELS_FAULT, LiveStream, StreamEnd

if TYPE_CHECKING:  # the Bedrock adapter imports botocore: the handler loads it only when it builds the gateway
    from .bedrock import ModelStream

DEGRADED_MODEL = "DEGRADED_SERVICE"
FALLBACK_PREFIX = "FALLBACK:"
# Time kept back from the Lambda's remaining time to build and return the answer.
RESPONSE_RESERVE_MS = 500
LATENCY_BUDGET_HEADER = "X-Latency-Budget-Ms"
MAX_LATENCY_BUDGET_MS = 900_000


class ModelGateway(Protocol):
    def converse(
        self,
        call: PlannedCall,
        timeout_s: float,
        *,
        messages: list[dict[str, Any]],
        system: list[dict[str, str]],
        inference_config: dict[str, Any],
    ) -> ModelReply: ...

    def converse_stream(
        self,
        call: PlannedCall,
        first_token_timeout_s: float,
        *,
        idle_timeout_s: float,
        messages: list[dict[str, Any]],
        system: list[dict[str, str]],
        inference_config: dict[str, Any],
    ) -> ModelStream: ...


RequestParser = Callable[[dict[str, Any], Policy], GenerateInput]
"""Reads a decoded JSON body into the request, for the policy in force (``openai_api.parse_chat``)."""


class Outcome(NamedTuple):
    """What happened, for the response and for metrics.

    ``input_tokens``, ``output_tokens`` and ``cost_usd`` are the returned answer's own; a cascade's escalated
    answers are in ``escalated`` (the body's ``usage`` and ``cost_usd`` sum them all).
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    outcome: str = m.OUTCOME_OK
    route: str | None = None
    model: str | None = None
    region: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    failed_attempts: tuple[AttemptRecord, ...] = ()
    budget_used_percent: float | None = None
    spend_today_usd: float | None = None
    escalated: tuple[PaidAnswer, ...] = ()
    stream: LiveStream | None = None  # a streamed answer under way (``stream: true``): the body is its start
    stream_requested: bool = False  # the caller asked for a stream (a cascade's whole answer is sent as one)
    include_usage: bool = False  # ... ending with a usage chunk


class CallerContext(NamedTuple):
    """Who is calling and how much time is left.

    Attributes:
        headers: request headers, looked up case-insensitively (the policy names the tier header).
        sticky_key: caller identity that keeps one caller on one canary variant.
        remaining_ms: the Lambda's remaining time, or None outside Lambda.
        api_key_id: API Gateway's id of the caller's API key, for per-key budgets.
        principal: who is calling as API Gateway established it (user, IAM identity, API key or source IP),
            never a header the caller writes: circuit breakers count failures per distinct principal.
    """

    headers: Mapping[str, str]
    sticky_key: str
    remaining_ms: int | None
    api_key_id: str | None = None
    principal: str | None = None
    streams_live: bool = False
    """The front end sends a streamed answer as it is made (the streaming function, local mode): the stream may
    then run ``resilience.stream_deadline_ms``; a buffered front end keeps it within ``total_deadline_ms``."""


class RouterService:
    """Routes ``/generate`` requests.

    Args:
        policies: the live policy.
        gateway: makes model calls.
        live_state: the instance's view of shared circuits, latency and spend; None routes without it.
        max_body_bytes: request bodies above this are rejected before parsing.
        health: how ``/health`` caches its verdict and probes Bedrock (``health.HealthSettings``).
        logger: where health verdict changes are reported; None: nowhere.
        clock: monotonic seconds; sleep: waits; rng: jitter source. Handed in so tests control time.
        decider: makes the routing decision (``engine.decide``; the Step Functions orchestration pins it).
        retry_throttles: back off and retry a throttled call here; False where something else retries it (the
            state machine's Retry).
    """

    def __init__(
        self,
        *,
        policies: PolicyStore,
        gateway: ModelGateway,
        live_state: LiveStateTracker | None = None,
        wall_clock: Callable[[], float] = time.time,
        max_body_bytes: int = 6_000_000,
        health: HealthSettings | None = None,
        logger: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        decider: Callable[[Policy, RoutingRequest, LiveState], Decision] = decide,
        retry_throttles: bool = True,
    ) -> None:
        self.policies = policies
        self._decide = decider
        self._retry_throttles = retry_throttles
        self._gateway = gateway
        self.live_state = live_state
        self._wall_clock = wall_clock
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.last_success_at: float | None = None  # monotonic time of the newest model call that answered
        self.last_failure_at: float | None = None  # ... and of the newest request no model could answer
        self.health = HealthMonitor(
            current_policy=policies.current,
            open_pairs=self._open_pairs,
            last_success=lambda: self.last_success_at,
            last_failure=lambda: self.last_failure_at,
            probe=self._probe,
            settings=health or HealthSettings(),
            clock=clock,
            logger=logger,
        )

    def _open_pairs(self, policy: Policy) -> frozenset[tuple[str, str]]:
        if self.live_state is None:
            return frozenset()
        return self.live_state.snapshot(policy, ()).state.open_circuits

    def _probe(self, call: PlannedCall, timeout_s: float) -> ModelReply:
        reply = self._gateway.converse(
            call, timeout_s, messages=list(PROBE_MESSAGES), system=[], inference_config=dict(PROBE_INFERENCE)
        )
        self.last_success_at = self._clock()
        return reply

    def generate(
        self,
        raw_body: str | bytes | None,
        caller: CallerContext,
        *,
        parse: RequestParser | None = None,
        base64_encoded: bool = False,
    ) -> Outcome:
        """Answer one request; ``parse`` reads its body (default: the ``/generate`` contract), decoded first
        when the event says it is base64 (``isBase64Encoded``).

        ``parse`` raises ``BadRequest`` (HTTP 400) or ``UnknownModel`` (404) naming the problem.
        """
        started = self._clock()
        policy = self.policies.current()
        try:
            body = parse_body(raw_body, max_body_bytes=self._max_body_bytes, base64_encoded=base64_encoded)
            request = parse(body, policy) if parse is not None else parse_generate(body, policy.limits)
            latency_budget_ms = _latency_budget(caller.headers.get(LATENCY_BUDGET_HEADER))
        except UnknownModel as exc:
            return bad_request(str(exc), status=404)
        except BadRequest as exc:
            return bad_request(str(exc))
        tier_header = caller.headers.get(policy.tier_header)
        scopes = scopes_for(
            policy.budget, self._wall_clock(), tier=policy.tier_of(tier_header), api_key=caller.api_key_id
        )
        snapshot = self.live_state.snapshot(policy, scopes) if self.live_state is not None else None
        charge = _Charge()
        charge.probes = snapshot.probes if snapshot is not None else set()
        try:
            outcome = self._route(
                policy,
                request,
                caller=caller,
                started=started,
                snapshot=snapshot,
                scopes=scopes,
                tier_header=tier_header,
                latency_budget_ms=latency_budget_ms,
                charge=charge,
            )
            return (
                outcome._replace(stream_requested=True, include_usage=request.include_usage)
                if request.stream
                else outcome
            )
        finally:
            if self.live_state is not None and not charge.deferred:
                if charge.reservation is not None:
                    self.live_state.settle(charge.reservation, charge.usd)
                if snapshot is not None:
                    self.live_state.release(snapshot.probes)

    def _route(
        self,
        policy: Policy,
        request: GenerateInput,
        *,
        caller: CallerContext,
        started: float,
        snapshot: Snapshot | None,
        scopes: tuple[SpendScope, ...],
        tier_header: str | None,
        latency_budget_ms: int | None,
        charge: _Charge,
    ) -> Outcome:
        state = snapshot.state if snapshot is not None else LiveState()
        used_percent = state.budget_used_percent
        spend_today = snapshot.spend_today_usd if snapshot is not None else None
        routing_request = RoutingRequest(
            text=request.text,
            input_chars=len(request.text),
            images=len(request.images),
            use_case=request.use_case,
            tier=tier_header,
            model=request.model,
            max_tokens=request.max_tokens,
            sticky_key=caller.sticky_key,
            latency_budget_ms=latency_budget_ms,
            ask=request.ask,
            route=request.route,
        )
        try:
            decision = self._decide(policy, routing_request, state)
        except RoutingError as exc:
            return bad_request(str(exc))
        if self.live_state is not None and decision.plan:
            # Near a budget's cap the answer's most possible cost is reserved in the store before any call.
            charge.reservation = self.live_state.reserve(
                policy, scopes, _answer_estimate_usd(policy, decision, request)
            )
            refused = charge.reservation.refused
            if refused is not None:  # no room left under that cap: route as the policy says at the cap
                at_cap = max(used_percent or 0.0, hard_stop_percent(policy.budget) or 100.0)
                state = state._replace(budget_used_percent=at_cap, budget_scope=refused.label)
                decision = self._decide(policy, routing_request, state)
        if decision.budget_action == "reject":
            return budget_refusal(state, self._wall_clock())._replace(
                budget_used_percent=used_percent, spend_today_usd=spend_today
            )

        budget_ms = policy.resilience.total_deadline_ms
        if caller.remaining_ms is not None:
            budget_ms = min(budget_ms, caller.remaining_ms - RESPONSE_RESERVE_MS)
        messages = converse_messages(request)
        system = converse_system(request)

        streaming = request.stream and decision.cascade is None  # a cascade must read a whole answer first
        opened: list[ModelStream] = []  # the stream that started answering is the last one
        answering: list[AttemptRecord] = []  # its attempt, reported to the breaker when the stream ends

        def invoke(call: PlannedCall, timeout_s: float) -> ModelReply:
            config = _inference_config(call, decision.max_tokens, request, decision.temperature)
            if streaming:
                # The attempt ends when the first text arrives (or at the first-token timeout): the rest streams
                first_s = min(policy.resilience.first_token_timeout_ms / 1000.0, float(timeout_s))
                stream = self._gateway.converse_stream(
                    call,
                    first_s,
                    idle_timeout_s=policy.resilience.attempt_timeout_ms / 1000.0,
                    messages=messages,
                    system=system,
                    inference_config=config,
                )
                opened.append(stream)
                return ModelReply(text=stream.first_text, input_tokens=0, output_tokens=0, stop_reason="streaming")
            return self._gateway.converse(call, timeout_s, messages=messages, system=system, inference_config=config)

        tracker = self.live_state
        skip = on_attempt = None
        if tracker is not None:
            held = snapshot.probes if snapshot is not None else set()

            def skip(call: PlannedCall) -> bool:
                return tracker.is_open(policy, call.model.model_id, call.region, held)

            def on_attempt(attempt: AttemptRecord) -> None:
                if streaming and attempt.outcome == "ok":  # the stream's end says how the call went
                    answering.append(attempt)
                    return
                tracker.record_attempt(
                    policy,
                    attempt.model_id,
                    attempt.region,
                    attempt.outcome,
                    attempt.latency_ms,
                    probes=held,
                    caller=caller.principal,
                )

        resilience = policy.resilience if self._retry_throttles else policy.resilience._replace(throttle_retries=0)

        def run(
            plan: tuple[PlannedCall, ...],
            call: Callable[[PlannedCall, float], ModelReply] = invoke,
            *,
            within_s: float | None = None,
            settings: Resilience = resilience,
        ) -> ExecutionResult:
            deadline = started + budget_ms / 1000.0
            if within_s is not None:
                deadline = min(deadline, self._clock() + within_s)
            return execute_plan(
                plan,
                call,
                settings,
                deadline=deadline,
                clock=self._clock,
                sleep=self._sleep,
                rng=self._rng,
                skip=skip,
                on_attempt=on_attempt,
            )

        def judge(settings: JudgeSettings, prompt: str, answer: str) -> tuple[str, ExecutionResult]:
            """One verdict: the judge model in its regions in order, as resilient as any call."""
            spec = policy.models[settings.model]
            ask = judge_request(settings, spec, prompt, answer)
            left_s = started + budget_ms / 1000.0 - self._clock()
            judged = run(
                tuple(PlannedCall(spec, region, fallback=False) for region in spec.regions),
                lambda call, timeout_s: self._gateway.converse(call, timeout_s, **ask),
                within_s=min(JUDGE_DEADLINE_MS / 1000.0, left_s * JUDGE_TIME_SHARE),
                settings=resilience._replace(
                    throttle_retries=0, attempt_timeout_ms=min(resilience.attempt_timeout_ms, JUDGE_DEADLINE_MS)
                ),
            )
            return (judge_verdict(judged.reply.text) if judged.reply is not None else "failed"), judged

        result = run(decision.plan)
        spent = Spent()
        cascade_reason: dict[str, Any] | None = None
        if decision.cascade is not None and decision.plan:
            judging = judge if not request.images else None  # the judge reads text: it cannot see the images
            result, cascade_reason = run_cascade(
                decision, decision.cascade, prompt=request.ask, result=result, run=run, spent=spent, judge=judging
            )
            if decision.cascade.judge is not None and judging is None:
                cascade_reason["judge"] = "not consulted: the request has images, which the judge cannot see"
        latency_ms = (self._clock() - started) * 1000.0
        if result.reply is not None or spent.answers:
            self.last_success_at = self._clock()  # Bedrock answered: /health needs no probe for a while
        explained = {
            **decision.reasons,
            "policy_version": policy.version,
            "attempts": [attempt.as_dict() for attempt in spent.attempts + result.attempts],
        }
        if cascade_reason is not None:
            explained["cascade"] = cascade_reason
        failed = tuple(a for a in spent.attempts + result.attempts if a.outcome != "ok")
        if result.reply is None or result.answered_by is None:
            if result.caller_error is not None:
                return bad_request(f"no model accepted the input: {result.caller_error}", failed_attempts=failed)
            if decision.budget_action == "degrade":
                explained["gave_up"] = "budget"
            elif not decision.plan:
                explained["gave_up"] = "all circuits open"
            elif result.stop_reason:
                explained["gave_up"] = result.stop_reason
            if decision.budget_action != "degrade":
                self.last_failure_at = self._clock()  # no model answered: /health looks again at its next verdict
            return _degraded(policy, decision.route, explained, latency_ms, failed)._replace(
                budget_used_percent=used_percent, spend_today_usd=spend_today
            )

        call = result.answered_by
        reply = result.reply
        if streaming and opened:
            return self._live_stream(
                policy,
                request=request,
                decision=decision,
                call=call,
                stream=opened[-1],
                first_token=answering[-1] if answering else None,
                failed=tuple(a for a in result.attempts if a.outcome != "ok"),
                budget=(used_percent, spend_today),
                explained=explained,
                started=started,
                budget_ms=budget_ms,
                charge=charge,
                caller=caller,
            )
        own_cost = call.model.cost_usd(reply.input_tokens, reply.output_tokens)
        cost = own_cost + sum(answer.cost_usd for answer in spent.answers)
        charge.usd = cost  # settled when the request ends (``generate``); a cascade's every answer counts
        usage = {
            "input_tokens": reply.input_tokens + sum(answer.input_tokens for answer in spent.answers),
            "output_tokens": reply.output_tokens + sum(answer.output_tokens for answer in spent.answers),
        }
        model_used = f"{FALLBACK_PREFIX}{call.model.model_id}" if call.fallback else call.model.model_id
        body = {
            "output": reply.text,
            "model_used": model_used,
            "route": decision.route,
            "region": call.region,
            "fallback_used": call.fallback,
            "degraded": False,
            "usage": usage,
            "cost_usd": round(cost, 8),
            "latency_ms": round(latency_ms, 1),
            "stop_reason": reply.stop_reason,
            "decision": explained,
        }
        return Outcome(
            status=200,
            body=body,
            headers={"X-Selected-Model": call.model.model_id},
            outcome=m.OUTCOME_FALLBACK if call.fallback else m.OUTCOME_OK,
            route=decision.route,
            model=call.model.model_id,
            region=call.region,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost_usd=own_cost,
            latency_ms=latency_ms,
            failed_attempts=failed,
            budget_used_percent=used_percent,
            spend_today_usd=spend_today,
            escalated=tuple(spent.answers),
        )

    def _live_stream(
        self,
        policy: Policy,
        *,
        request: GenerateInput,
        decision: Decision,
        call: PlannedCall,
        stream: ModelStream,
        first_token: AttemptRecord | None,
        failed: tuple[AttemptRecord, ...],
        budget: tuple[float | None, float | None],
        explained: dict[str, Any],
        started: float,
        budget_ms: float,
        charge: _Charge,
        caller: CallerContext,
    ) -> Outcome:
        """The answer as a ``LiveStream``; the budget, the breaker and the metrics are settled when it ends."""
        tracker = self.live_state
        snapshot_probes = charge.probes
        charge.deferred = True
        model_used = f"{FALLBACK_PREFIX}{call.model.model_id}" if call.fallback else call.model.model_id
        details = {
            "model_used": model_used,
            "route": decision.route,
            "region": call.region,
            "fallback_used": call.fallback,
            "decision": explained,
        }

        def finish(end: StreamEnd) -> None:
            blameless = end.error is None or end.error.code in NOT_THE_MODELS_FAULT
            if blameless:
                self.last_success_at = self._clock()
            if tracker is not None:  # one outcome per call: ok, or the failure that broke the stream
                tracker.record_attempt(
                    policy,
                    call.model.model_id,
                    call.region,
                    "ok" if blameless or end.error is None else end.error.failure_class.value,
                    first_token.latency_ms if first_token is not None else end.latency_ms,
                    probes=snapshot_probes,
                    caller=caller.principal,
                )
                if charge.reservation is not None:
                    tracker.settle(charge.reservation, end.cost_usd)
                tracker.release(snapshot_probes)

        # A live stream's own deadline: the policy's, within what the function has left; a buffered front end
        # sends the answer when it ends, inside API Gateway's 29 s, so its stream keeps the request's deadline.
        stream_ms = budget_ms
        if caller.streams_live:
            stream_ms = float(policy.resilience.stream_deadline_ms)
            if caller.remaining_ms is not None:
                stream_ms = min(stream_ms, caller.remaining_ms - RESPONSE_RESERVE_MS)
        live = LiveStream(
            call,
            stream,
            deadline=started + max(stream_ms, budget_ms) / 1000.0,
            clock=self._clock,
            started=started,
            estimate_input_tokens=estimate_tokens(len(request.text), len(request.images)),
            finish=finish,
            details=details,
        )
        return Outcome(
            status=200,
            body={**details, "output": None, "degraded": False},
            headers={"X-Selected-Model": call.model.model_id},
            outcome=m.OUTCOME_FALLBACK if call.fallback else m.OUTCOME_OK,
            route=decision.route,
            model=call.model.model_id,
            region=call.region,
            stream=live,
            failed_attempts=failed,
            budget_used_percent=budget[0],
            spend_today_usd=budget[1],
        )


class _Charge:
    """What one request reserved and spent; settled when it ends, however it ends.

    ``deferred``: a streamed answer is still running when ``generate`` returns; its end settles instead.
    """

    def __init__(self) -> None:
        self.reservation: Reservation | None = None
        self.usd = 0.0
        self.deferred = False
        self.probes: set[tuple[str, str]] = set()  # the request's half-open probes, released when it ends


def _answer_estimate_usd(policy: Policy, decision: Decision, request: GenerateInput) -> float:
    """The most the answer may cost (``budget.estimate_usd``), counting every message's text.

    A cascade may pay for one answer per step: the dearest model of each step, summed; with a judge, also one
    verdict per step but the last (reading the question and a whole answer).
    """
    chars = sum(len(text) for _role, text in request.messages) + len(request.system or "")
    tokens = estimate_tokens(chars, len(request.images))
    by_step: dict[int, dict[str, ModelSpec]] = {}
    for call in decision.plan:
        by_step.setdefault(call.step if decision.cascade is not None else 0, {})[call.model.key] = call.model
    total = sum(estimate_usd(list(models.values()), tokens, decision.max_tokens) for models in by_step.values())
    judge = decision.cascade.judge if decision.cascade is not None else None
    if judge is not None:
        judged_tokens = tokens + decision.max_tokens + estimate_tokens(len(JUDGE_SYSTEM) + 200, 0)
        total += (len(by_step) - 1) * estimate_usd([policy.models[judge.model]], judged_tokens, judge.max_tokens)
    return total


def _latency_budget(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    text = raw.strip()
    # Digits only: int() would also take "1_000", "+5" and non-ASCII digits.
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 7 else 0
    if not 1 <= value <= MAX_LATENCY_BUDGET_MS:
        raise BadRequest(
            f"{LATENCY_BUDGET_HEADER} must be a whole number of milliseconds from 1 to {MAX_LATENCY_BUDGET_MS} "
            f"(got {raw[:40]!r})"
        )
    return value


def seconds_to_reset(scope: str, now: float) -> int:
    """Seconds until the budget ``scope`` (a label ending in ``daily`` or ``monthly``) starts a new period (UTC)."""
    if scope.endswith("monthly"):
        import calendar  # only on this rare path: it is not worth its import on every cold start

        year, month = time.gmtime(now)[:2]
        next_start = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
        return max(1, int(next_start - now))
    return max(1, int((int(now // 86_400) + 1) * 86_400 - now))


def budget_refusal(state: LiveState, now: float) -> Outcome:
    """HTTP 429: a budget is spent and the policy says to refuse; Retry-After is the next period's start."""
    scope = state.budget_scope or "budget"
    retry_after = seconds_to_reset(scope, now)
    percent = state.budget_used_percent or 100.0
    return Outcome(
        status=429,
        body={
            "error": "BudgetExceeded",
            "message": f"the {scope} spend budget is used up ({percent:.0f}%); the policy refuses requests "
            f"until it resets in {retry_after} s",
            "budget_scope": scope,
            "budget_used_percent": round(percent, 1),
        },
        headers={"Retry-After": str(retry_after)},
        outcome=m.OUTCOME_ERROR,
    )


def _inference_config(
    call: PlannedCall, max_tokens: int, request: GenerateInput, route_temperature: float | None
) -> dict[str, Any]:
    limit = call.model.max_output_tokens
    config: dict[str, Any] = {"maxTokens": min(max_tokens, limit) if limit else max_tokens}
    # A caller's top_p replaces the route's temperature: Claude 4.5 models refuse the two together.
    default = route_temperature if request.top_p is None else None
    temperature = request.temperature if request.temperature is not None else default
    if temperature is not None:
        config["temperature"] = temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    return config


def _degraded(
    policy: Policy, route: str, explained: dict[str, Any], latency_ms: float, failed: tuple[AttemptRecord, ...]
) -> Outcome:
    body = {
        "output": policy.resilience.degraded_message,
        "model_used": DEGRADED_MODEL,
        "route": route,
        "region": None,
        "fallback_used": False,
        "degraded": True,
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "cost_usd": 0.0,
        "latency_ms": round(latency_ms, 1),
        "decision": explained,
    }
    return Outcome(
        status=200,
        body=body,
        headers={"X-Selected-Model": DEGRADED_MODEL, "X-Degraded": "true"},
        outcome=m.OUTCOME_DEGRADED,
        route=route,
        latency_ms=latency_ms,
        failed_attempts=failed,
    )


MAX_MESSAGE_CHARS = 500
"""A 400's message (and the log's ``reason``) is cut here: messages quote the caller's input, which is large."""


def bad_request(message: str, *, failed_attempts: tuple[AttemptRecord, ...] = (), status: int = 400) -> Outcome:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return Outcome(
        status=status,
        body={"error": "BadRequest" if status == 400 else "NotFound", "message": message},
        outcome=m.OUTCOME_ERROR,
        failed_attempts=failed_attempts,
    )
