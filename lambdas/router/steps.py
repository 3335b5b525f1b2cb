"""The tasks of the Step Functions orchestration: decide, then record each model call's outcome.

The state machine (``cdk_app/constructs/routing_state_machine.py``) calls this handler with
``{"phase": "decide", "request": ...}`` first, and after every model call it makes with
``{"phase": "record", "request": ..., "run": ..., "outcome": ...}``, where ``outcome`` is the Bedrock SDK
integration's Converse answer or the error it caught (``Error``, ``Cause``). Each task answers either

- ``{"action": "call", "call": {...}, "run": {...}}``: the next model call (``ModelId``, ``Messages``,
  ``System``, ``InferenceConfig`` as the SDK integration takes them, ``TimeoutSeconds``) and the run record to
  hand back with its outcome; or
- ``{"action": "answer", "answer": {"statusCode", "headers", "body"}}``: the response, ``body`` a JSON text.

``request`` is what API Gateway's mapping template builds: the raw body and the headers (``body64`` and
``headers64``, in base64; or ``body`` and ``headers`` as text), and the
``requestContext`` fields the router reads (request id, source IP, API key id, user ARN, Cognito ``sub``).
Each task runs ``RouterService.generate`` over the request with the calls so far replayed (``replay.py``);
metrics are written by the task that answers, exactly as the Lambda orchestration writes them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
from datetime import datetime
from typing import Any, cast

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import handler as glue
from .engine import decide
from .executor import AttemptRecord, classify_failure
from .live_state import LiveStateTracker
from .policy import Policy
from .policy_store import PolicyStore
from .replay import (
    RUN_FORMAT,
    Attempt,
    CallNeeded,
    PinnedDecider,
    PinnedTracker,
    Replay,
    ReplayMismatch,
    StateMachineRetry,
    _reservation_from,
    check_format,
    decision_json,
    error_from_sdk,
    probes_from,
    reply_from_sdk,
    sdk_shape,
)
from .service import Outcome, RouterService, _degraded

logger = glue.logger
metrics = glue.metrics

_shared: tuple[Any, LiveStateTracker, Any] | None = None


def _parts() -> tuple[Any, LiveStateTracker, Any]:
    """The policy store, the live-state tracker and the Bedrock gateway: built once per instance."""
    global _shared
    if _shared is None:
        built = glue.service()
        assert built.live_state is not None  # the handler always builds one
        _shared = (built.policies, built.live_state, built._gateway)
    return _shared


def configure(parts: tuple[Any, LiveStateTracker, Any] | None) -> None:
    """Use these (policy store, tracker, gateway) (tests); None rebuilds them from the environment."""
    global _shared
    _shared = parts


def _home_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@logger.inject_lambda_context(correlation_id_path="request.requestContext.requestId")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    glue._forget_unflushed_metrics()
    return handle(event)


PHASES = ("decide", "record", "abandon")


class _Pinned:
    """A policy store that serves one policy: the one this request runs under."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.last_error: str | None = None

    def current(self) -> Policy:
        return self._policy


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """One task of the state machine (see the module docstring)."""
    phase = event.get("phase")
    request = event.get("request")
    if phase not in PHASES or not isinstance(request, dict):
        raise ValueError(f"a routing task needs a phase ({', '.join(PHASES)}) and a request, got {phase!r}")
    store, tracker, gateway = _parts()
    now = time.time()
    run: dict[str, Any] | None = None
    attempts: list[Attempt] = []
    reported = 0  # the attempts the breakers have heard of
    if phase == "decide":
        policy, digest = store.current_with_digest()
        started_at = _started_at(event.get("started_at"), now)
    else:
        run = event.get("run")
        if not isinstance(run, dict):
            raise ValueError(f"a '{phase}' task needs the run record the last task returned")
        check_format(run)
        started_at = float(run["started_at"])
        attempts = [Attempt.from_json(raw) for raw in run.get("attempts", ())]
        reported = int(run.get("reported", len(attempts)))
        if isinstance(event.get("outcome"), dict) and run.get("call"):
            attempts.append(_attempt_from(run["call"], event["outcome"], now))
        digest = str(run.get("policy_digest") or "")
        pinned_policy = store.by_digest(digest)
        if phase == "abandon" or pinned_policy is None:
            reason = "routing task failed" if phase == "abandon" else "policy changed"
            policy = store.current() if pinned_policy is None else pinned_policy
            return _abandon(run, attempts, reported, policy=policy, reason=reason, request=request, tracker=tracker)
        policy = pinned_policy
    replay = Replay(
        started_at=started_at, attempts=attempts, fresh_from=reported, home_region=_home_region(), remote=gateway
    )
    pinned = PinnedTracker(tracker, replay, run)
    decider = PinnedDecider(decide, run["decision"] if run is not None else None)
    service = RouterService(
        policies=cast(PolicyStore, _Pinned(policy)),
        gateway=replay,
        live_state=cast(LiveStateTracker, pinned),
        clock=replay.clock,
        sleep=lambda _s: None,  # never asked: throttles are retried by the state machine
        decider=decider,
        retry_throttles=False,
        max_body_bytes=int(os.environ.get("ROUTER_MAX_BODY_BYTES", "6000000")),
    )
    api_event = _api_event(request)
    try:
        outcome = service.generate(api_event.body, glue._caller(api_event, None))
    except CallNeeded as needed:
        if decider.decision is None:  # the decision is made before any call
            raise RuntimeError("a model call was planned without a decision") from None
        if run is None:
            run = {"format": RUN_FORMAT, "started_at": started_at, "policy_digest": digest, **pinned.pin()}
        return _call(needed, run, replay=replay, pinned=pinned, decider=decider, policy=policy)
    except ReplayMismatch as exc:
        logger.warning("the running request no longer fits the policy", extra={"reason": str(exc)})
        assert run is not None  # a mismatch needs a record
        return _abandon(
            run, replay.attempts, reported, policy=policy, reason="policy changed", request=request, tracker=tracker
        )
    glue._record(outcome, _request_id(request), tracker=tracker)
    return {"action": "answer", "answer": answer_of(outcome)}


def _api_event(request: dict[str, Any]) -> APIGatewayProxyEvent:
    body, headers = _body_and_headers(request)
    return APIGatewayProxyEvent(
        {
            "body": body,
            "headers": headers,
            "requestContext": request.get("requestContext") or {},
            "httpMethod": "POST",
            "path": "/generate",
        }
    )


def _request_id(request: dict[str, Any]) -> str:
    return str((request.get("requestContext") or {}).get("requestId") or "")


def _started_at(raw: Any, now: float) -> float:
    """When the execution started (``$$.Execution.StartTime``, ISO 8601), so the deadline counts from there; now if
    it is missing, unreadable or ahead of this clock."""
    if isinstance(raw, str) and raw:
        try:
            return min(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp(), now)
        except ValueError:
            logger.warning("unreadable execution start time", extra={"started_at": raw[:40]})
    return now


def _abandon(
    run: dict[str, Any],
    attempts: list[Attempt],
    fresh_from: int,
    *,
    policy: Policy,
    reason: str,
    request: dict[str, Any],
    tracker: LiveStateTracker,
) -> dict[str, Any]:
    """End a request that cannot go on (a task failed, or its policy is gone from this instance): the calls made
    are charged and the newest one reported to the breakers, the reservation settled, its probes given back, and
    the caller gets the degraded answer, counted in the metrics like any other."""
    probes = probes_from(run.get("probes", ()))
    tracker.adopt_probes(probes)
    held = set(probes)
    by_id = {spec.model_id: spec for spec in policy.models.values()}
    spent = 0.0
    failed: list[AttemptRecord] = []
    for index, attempt in enumerate(attempts):
        spec = by_id.get(attempt.model_id)
        if attempt.reply is not None and spec is not None:
            spent += spec.cost_usd(attempt.reply.input_tokens, attempt.reply.output_tokens)
        outcome = "ok" if attempt.reply is not None else classify_failure(attempt.code or "", attempt.message).value
        latency_ms = max(0.0, attempt.ended_at - (attempt.started_at or attempt.ended_at)) * 1000.0
        if outcome != "ok":
            failed.append(AttemptRecord(spec.key if spec else attempt.model_id, attempt.model_id, attempt.region,
                                        outcome, attempt.code, latency_ms, 0))  # fmt: skip
        if index >= fresh_from:
            tracker.record_attempt(policy, attempt.model_id, attempt.region, outcome, latency_ms, probes=held)
    reservation = _reservation_from(run.get("reservation"))
    if reservation is not None:
        tracker.settle(reservation, spent)
    tracker.release(held)
    started_at = float(run.get("started_at") or time.time())
    explained = {"gave_up": reason, "policy_version": policy.version, "attempts": [a._asdict() for a in failed]}
    route = str((run.get("decision") or {}).get("route") or "none")
    outcome_ = _degraded(policy, route, explained, (time.time() - started_at) * 1000.0, tuple(failed))
    if spent:  # what the calls made cost, in the answer and its metrics, although none is returned
        outcome_ = outcome_._replace(cost_usd=spent, body={**outcome_.body, "cost_usd": round(spent, 8)})
    logger.warning("routing request abandoned", extra={"reason": reason, "spent_usd": spent})
    glue._record(outcome_, _request_id(request), tracker=tracker)
    return {"action": "answer", "answer": answer_of(outcome_)}


def _body_and_headers(request: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The raw body and the headers: in base64 as API Gateway's mapping template sends them (``body64``,
    ``headers64``: nothing of the caller's is escaped into JSON twice), or as text."""
    if "body64" not in request and "headers64" not in request:
        return request.get("body"), dict(request.get("headers") or {})
    try:
        body = base64.b64decode(str(request.get("body64") or ""), validate=True).decode("utf-8", "replace")
        headers = {
            base64.b64decode(name, validate=True).decode("latin-1"): base64.b64decode(value, validate=True).decode(
                "latin-1"
            )
            for name, value in dict(request.get("headers64") or {}).items()
        }
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the request's body64 or headers64 is not base64: {exc}") from None
    return body, headers


def _attempt_from(call: dict[str, Any], outcome: dict[str, Any], now: float) -> Attempt:
    model_id, region = str(call.get("ModelId") or ""), str(call.get("Region") or "")
    issued = call.get("IssuedAt")
    started_at = min(float(issued), now) if isinstance(issued, int | float) else None
    if "Error" in outcome:
        code, message = error_from_sdk(str(outcome.get("Error") or ""), str(outcome.get("Cause") or ""))
        return Attempt(model_id, region, now, code=code, message=message[:500], started_at=started_at)
    return Attempt(model_id, region, now, reply=reply_from_sdk(outcome), started_at=started_at)


def _call(
    needed: CallNeeded,
    run: dict[str, Any],
    *,
    replay: Replay,
    pinned: PinnedTracker,
    decider: PinnedDecider,
    policy: Policy,
) -> dict[str, Any]:
    """The next call for the state machine, and the run record (``run``: the last one, or the first task's pins)."""
    assert decider.decision is not None  # checked by the caller
    record = dict(run)
    record.setdefault("decision", decision_json(decider.decision))
    record["attempts"] = [attempt.as_json() for attempt in replay.attempts]
    record["reported"] = len(replay.attempts)  # the breakers have heard of these: the next task reports the rest
    record["probes"] = pinned.hand_off_probes()
    # The call's timeout leaves the state machine's throttle retries their longest wait before the deadline
    deadline = float(record["started_at"]) + policy.resilience.total_deadline_ms / 1000.0
    left_s = deadline - needed.issued_at - StateMachineRetry.of(policy.resilience).most_waited_s
    call: dict[str, Any] = {
        "ModelId": needed.call.model.model_id,
        "Region": needed.call.region,
        "Messages": sdk_shape(needed.messages),
        "InferenceConfig": sdk_shape(needed.inference_config),
        # Whole seconds (Step Functions' unit), rounded down to stay within the request's deadline; at least 1
        "TimeoutSeconds": max(1, math.floor(min(needed.timeout_s, left_s))),
    }
    if needed.system:
        call["System"] = sdk_shape(needed.system)
    record["call"] = {"ModelId": call["ModelId"], "Region": call["Region"], "IssuedAt": needed.issued_at}
    return {"action": "call", "call": call, "run": record}


def answer_of(outcome: Outcome) -> dict[str, Any]:
    """The response as the state machine returns it to API Gateway: status, headers, and the body as JSON text."""
    return {
        "statusCode": outcome.status,
        "headers": dict(outcome.headers or {}),
        "body": json.dumps(outcome.body, separators=(",", ":"), default=str),
    }
