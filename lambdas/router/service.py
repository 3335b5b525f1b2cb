"""One ``/generate`` request end to end: parse, decide, execute, answer. Framework-free.

The handler wraps this in Powertools (routing, logging, metrics); tests drive it with fakes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from . import metric_names as m
from .contract import BadRequest, GenerateInput, converse_messages, converse_system, parse_body, parse_generate
from .engine import LiveState, PlannedCall, RoutingError, RoutingRequest, decide
from .executor import AttemptRecord, ModelReply, execute_plan
from .policy import Policy
from .policy_store import PolicyStore

DEGRADED_MODEL = "DEGRADED_SERVICE"
FALLBACK_PREFIX = "FALLBACK:"
# Time kept back from the Lambda's remaining time to build and return the answer.
RESPONSE_RESERVE_MS = 500


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


class Outcome(NamedTuple):
    """What happened, for the response and for metrics."""

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


class CallerContext(NamedTuple):
    """Who is calling and how much time is left.

    Attributes:
        headers: request headers, looked up case-insensitively (the policy names the tier header).
        sticky_key: caller identity that keeps one caller on one canary variant.
        remaining_ms: the Lambda's remaining time, or None outside Lambda.
    """

    headers: Mapping[str, str]
    sticky_key: str
    remaining_ms: int | None


class RouterService:
    """Routes ``/generate`` requests.

    Args:
        policies: the live policy.
        gateway: makes model calls.
        live_state: returns the current snapshot of circuits (and, later, latency and spend).
        max_body_bytes: request bodies above this are rejected before parsing.
        clock: monotonic seconds; sleep: waits; rng: jitter source. Handed in so tests control time.
    """

    def __init__(
        self,
        *,
        policies: PolicyStore,
        gateway: ModelGateway,
        live_state: Callable[[], LiveState] = LiveState,
        max_body_bytes: int = 6_000_000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policies = policies
        self._gateway = gateway
        self._live_state = live_state
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    def generate(self, raw_body: str | bytes | None, caller: CallerContext) -> Outcome:
        started = self._clock()
        policy = self.policies.current()
        try:
            request = parse_generate(parse_body(raw_body, max_body_bytes=self._max_body_bytes), policy.limits)
            decision = decide(
                policy,
                RoutingRequest(
                    text=request.text,
                    input_chars=len(request.text),
                    images=len(request.images),
                    use_case=request.use_case,
                    tier=caller.headers.get(policy.tier_header),
                    model=request.model,
                    max_tokens=request.max_tokens,
                    sticky_key=caller.sticky_key,
                ),
                self._live_state(),
            )
        except (BadRequest, RoutingError) as exc:
            return bad_request(str(exc))

        budget_ms = policy.resilience.total_deadline_ms
        if caller.remaining_ms is not None:
            budget_ms = min(budget_ms, caller.remaining_ms - RESPONSE_RESERVE_MS)
        messages = converse_messages(request)
        system = converse_system(request)

        def invoke(call: PlannedCall, timeout_s: float) -> ModelReply:
            return self._gateway.converse(
                call,
                timeout_s,
                messages=messages,
                system=system,
                inference_config=_inference_config(call, decision.max_tokens, request, decision.temperature),
            )

        result = execute_plan(
            decision.plan,
            invoke,
            policy.resilience,
            deadline=started + budget_ms / 1000.0,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
        )
        latency_ms = (self._clock() - started) * 1000.0
        explained = {
            **decision.reasons,
            "policy_version": policy.version,
            "attempts": [attempt.as_dict() for attempt in result.attempts],
        }
        failed = tuple(a for a in result.attempts if a.outcome != "ok")
        if result.reply is None or result.answered_by is None:
            if result.caller_error is not None:
                return bad_request(f"no model accepted the input: {result.caller_error}", failed_attempts=failed)
            if result.stop_reason:
                explained["gave_up"] = result.stop_reason
            return _degraded(policy, decision.route, explained, latency_ms, failed)

        call = result.answered_by
        reply = result.reply
        cost = call.model.cost_usd(reply.input_tokens, reply.output_tokens)
        model_used = f"{FALLBACK_PREFIX}{call.model.model_id}" if call.fallback else call.model.model_id
        body = {
            "output": reply.text,
            "model_used": model_used,
            "route": decision.route,
            "region": call.region,
            "fallback_used": call.fallback,
            "degraded": False,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
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
            cost_usd=cost,
            latency_ms=latency_ms,
            failed_attempts=failed,
        )


def _inference_config(
    call: PlannedCall, max_tokens: int, request: GenerateInput, route_temperature: float | None
) -> dict[str, Any]:
    limit = call.model.max_output_tokens
    config: dict[str, Any] = {"maxTokens": min(max_tokens, limit) if limit else max_tokens}
    temperature = request.temperature if request.temperature is not None else route_temperature
    if temperature is not None:
        config["temperature"] = temperature
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


def bad_request(message: str, *, failed_attempts: tuple[AttemptRecord, ...] = ()) -> Outcome:
    return Outcome(
        status=400,
        body={"error": "BadRequest", "message": message},
        outcome=m.OUTCOME_ERROR,
        failed_attempts=failed_attempts,
    )
