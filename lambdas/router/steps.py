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
from typing import Any, cast

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import handler as glue
from .engine import decide
from .live_state import LiveStateTracker
from .replay import (
    RUN_FORMAT,
    Attempt,
    CallNeeded,
    PinnedDecider,
    PinnedTracker,
    Replay,
    ReplayMismatch,
    check_format,
    decision_json,
    error_from_sdk,
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


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """One task of the state machine (see the module docstring)."""
    phase = event.get("phase")
    request = event.get("request")
    if phase not in ("decide", "record") or not isinstance(request, dict):
        raise ValueError(f"a routing task needs a phase of 'decide' or 'record' and a request, got {phase!r}")
    policies, tracker, gateway = _parts()
    run: dict[str, Any] | None = None
    attempts: list[Attempt] = []
    now = time.time()
    started_at = now
    if phase == "record":
        run = event.get("run")
        if not isinstance(run, dict):
            raise ValueError("a 'record' task needs the run record the last task returned")
        check_format(run)
        started_at = float(run["started_at"])
        attempts = [Attempt.from_json(raw) for raw in run.get("attempts", ())]
        attempts.append(_attempt_from(run.get("call") or {}, event.get("outcome") or {}, now))
    replay = Replay(started_at=started_at, attempts=attempts, home_region=_home_region(), remote=gateway)
    pinned = PinnedTracker(tracker, replay, run)
    decider = PinnedDecider(decide, run["decision"] if run is not None else None)
    service = RouterService(
        policies=policies,
        gateway=replay,
        live_state=cast(LiveStateTracker, pinned),
        clock=replay.clock,
        sleep=lambda _s: None,  # never asked: throttles are retried by the state machine
        decider=decider,
        retry_throttles=False,
        max_body_bytes=int(os.environ.get("ROUTER_MAX_BODY_BYTES", "6000000")),
    )
    body, headers = _body_and_headers(request)
    api_event = APIGatewayProxyEvent(
        {
            "body": body,
            "headers": headers,
            "requestContext": request.get("requestContext") or {},
            "httpMethod": "POST",
            "path": "/generate",
        }
    )
    caller = glue._caller(api_event, None)
    request_id = str((request.get("requestContext") or {}).get("requestId") or "")
    try:
        outcome = service.generate(api_event.body, caller)
    except CallNeeded as needed:
        if decider.decision is None:  # the decision is made before any call
            raise RuntimeError("a model call was planned without a decision") from None
        pin = {"format": RUN_FORMAT, "started_at": started_at, **pinned.pin()} if run is None else run
        return _call(needed, pin, replay, decider)
    except ReplayMismatch as exc:
        logger.warning("the running request no longer fits the policy", extra={"reason": str(exc)})
        policy = policies.current()
        outcome = _degraded(policy, "none", {"gave_up": "policy changed", "reason": str(exc)}, 0.0, ())
    glue._record(outcome, request_id, tracker=tracker)
    return {"action": "answer", "answer": answer_of(outcome)}


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


def _call(needed: CallNeeded, run: dict[str, Any], replay: Replay, decider: PinnedDecider) -> dict[str, Any]:
    """The next call for the state machine, and the run record (``run``: the last one, or the first task's pins)."""
    assert decider.decision is not None  # checked by the caller
    record = dict(run)
    record.setdefault("decision", decision_json(decider.decision))
    record["attempts"] = [attempt.as_json() for attempt in replay.attempts]
    call: dict[str, Any] = {
        "ModelId": needed.call.model.model_id,
        "Region": needed.call.region,
        "Messages": sdk_shape(needed.messages),
        "InferenceConfig": sdk_shape(needed.inference_config),
        # Whole seconds (Step Functions' unit), rounded down to stay within the request's deadline; at least 1
        "TimeoutSeconds": max(1, math.floor(needed.timeout_s)),
    }
    if needed.system:
        call["System"] = sdk_shape(needed.system)
    record["call"] = {"ModelId": call["ModelId"], "Region": call["Region"], "IssuedAt": time.time()}
    return {"action": "call", "call": call, "run": record}


def answer_of(outcome: Outcome) -> dict[str, Any]:
    """The response as the state machine returns it to API Gateway: status, headers, and the body as JSON text."""
    return {
        "statusCode": outcome.status,
        "headers": dict(outcome.headers or {}),
        "body": json.dumps(outcome.body, separators=(",", ":"), default=str),
    }
