"""Lambda entry point: Powertools glue around ``RouterService``.

Configuration (environment variables, set by the construct or by local mode):

- ``ROUTER_POLICY_FILE``: read the policy from this file (local mode); otherwise AppConfig:
  ``APPCONFIG_APPLICATION``, ``APPCONFIG_ENVIRONMENT``, ``APPCONFIG_PROFILE``.
- ``ROUTER_POLICY_MAX_AGE_SECONDS``: how long a fetched policy is trusted (default 45; at least 15, AppConfig's
  shortest poll interval).
- ``ROUTER_BOOTSTRAP_POLICY_FILE``: the synth-validated policy in the asset (relative to the asset root),
  served until AppConfig has deployed a version to this instance.
- ``ROUTER_POLICY_SHA256``: digest of the policy the construct validated at synth; that exact document
  skips the schema pass on load (a cold-start saving), any other is fully validated.
- ``BEDROCK_ENDPOINT_URL``: call this Bedrock Runtime endpoint instead of AWS (the local simulator).
- ``ROUTER_MAX_BODY_BYTES``: larger request bodies get HTTP 400 (default 6,000,000: Lambda's payload limit).
- ``ROUTER_STATE_TABLE``: the DynamoDB live-state table shared by all instances (circuit breakers, latency,
  spend); without it the state lives in this process only (local mode). ``DYNAMODB_ENDPOINT_URL`` points
  the client elsewhere (moto's server in tests); ``ROUTER_STATE_CACHE_SECONDS`` (default 2) is how long
  a read of the table is trusted.
- ``ROUTER_HEALTH_CACHE_SECONDS`` (default 5) and ``ROUTER_HEALTH_PROBE_INTERVAL_SECONDS`` (default 60): how
  long a ``/health`` verdict is reused, and how long without a successful model call before it probes Bedrock.
- Powertools: ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``.

Tracer is left out on purpose: it costs about 0.45 s of cold start (X-Ray SDK import and patching).
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import metric_names as m
from . import openai_api
from .cascade_run import PaidAnswer
from .health import DEFAULT_CACHE_S, DEFAULT_PROBE_INTERVAL_S, HealthSettings
from .live_state import LiveStateTracker
from .policy_store import BOOTSTRAP_POLICY_ENV, PolicyStore, PolicyUnavailable, appconfig_fetcher, file_fetcher
from .service import CallerContext, Outcome, RouterService, seconds_to_reset
from .state_store import InMemoryBackend, StateBackend
from .streaming import CLIENT_GONE

# /health publishes no metric on purpose; Powertools would warn about it on every call.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", m.NAMESPACE))
# Budget and live-state gauges go in a second, small EMF line under [service] only: in the request's line they
# would be stored under all five of its dimension sets, some hundred custom metrics nobody reads.
state_metrics = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
# The budget gauges are read as 5-minute maxima: one sample a second per instance is plenty, and spares a log
# line (CPU and CloudWatch Logs ingestion) on every other request. Counts are written when they happen.
GAUGE_INTERVAL_S = 1.0
_gauges_written_at = float("-inf")
app = APIGatewayRestResolver()
ASSET_ROOT = Path(__file__).resolve().parent.parent
"""The function's code root (``/var/task``): the ``lambdas`` package directory, holding ``router/``."""

_service: RouterService | None = None


def configure(service: RouterService | None) -> None:
    """Use this service (tests, local mode); None rebuilds it from the environment on next use."""
    global _service, _gauges_written_at
    _service = service
    _gauges_written_at = float("-inf")


def _build_live_state() -> LiveStateTracker:
    table = os.environ.get("ROUTER_STATE_TABLE")
    backend: StateBackend
    if table:
        from .dynamo_state import DynamoBackend

        backend = DynamoBackend(
            table, region=os.environ.get("AWS_REGION"), endpoint_url=os.environ.get("DYNAMODB_ENDPOINT_URL") or None
        )
    else:
        backend = InMemoryBackend()
    return LiveStateTracker(
        backend, cache_ttl_s=float(os.environ.get("ROUTER_STATE_CACHE_SECONDS", "2")), logger=logger
    )


def _build_service() -> RouterService:
    from .bedrock import BedrockGateway

    max_age = float(os.environ.get("ROUTER_POLICY_MAX_AGE_SECONDS", "45"))
    policy_file = os.environ.get("ROUTER_POLICY_FILE")
    if policy_file:
        fetch = file_fetcher(policy_file)
    else:
        fetch = appconfig_fetcher(
            application=os.environ["APPCONFIG_APPLICATION"],
            environment=os.environ["APPCONFIG_ENVIRONMENT"],
            profile=os.environ["APPCONFIG_PROFILE"],
            region=os.environ.get("AWS_REGION"),
        )
    bootstrap_name = os.environ.get(BOOTSTRAP_POLICY_ENV)
    return RouterService(
        policies=PolicyStore(
            fetch,
            max_age_s=max_age,
            logger=logger,
            trusted_digest=os.environ.get("ROUTER_POLICY_SHA256") or None,
            bootstrap=file_fetcher(ASSET_ROOT / bootstrap_name) if bootstrap_name else None,
        ),
        gateway=BedrockGateway(endpoint_url=os.environ.get("BEDROCK_ENDPOINT_URL") or None),
        live_state=_build_live_state(),
        max_body_bytes=int(os.environ.get("ROUTER_MAX_BODY_BYTES", "6000000")),
        health=HealthSettings(
            cache_s=_seconds_from_env("ROUTER_HEALTH_CACHE_SECONDS", DEFAULT_CACHE_S),
            probe_interval_s=_seconds_from_env("ROUTER_HEALTH_PROBE_INTERVAL_SECONDS", DEFAULT_PROBE_INTERVAL_S),
        ),
        logger=logger,
    )


def _seconds_from_env(name: str, default: float) -> float:
    """A positive, finite number of seconds from the environment, or ``ValueError`` naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds above 0, got {raw!r}")
    return value


def service() -> RouterService:
    global _service
    if _service is None:
        _service = _build_service()
    return _service


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=body, headers=headers or {})


@app.get("/health")
def health() -> Response[Any]:
    """200 when this region can serve ``/generate``, 503 when it cannot (``health.py``); never cached downstream."""
    verdict = service().health.verdict()
    body = verdict.body()
    if verdict.healthy and service().policies.last_error:
        body["policy_warning"] = "the newest policy version could not be used; the last good one is in force"
    return _json_response(200 if verdict.healthy else 503, body, {"Cache-Control": "no-store"})


@app.post("/generate")
def generate() -> Response[Any]:
    event = app.current_event
    outcome = service().generate(
        event.body, _caller(event, app.lambda_context), base64_encoded=event.is_base64_encoded is True
    )
    _record(outcome, event.request_context.request_id, tracker=service().live_state)
    return _json_response(outcome.status, outcome.body, outcome.headers or {})


@app.post(openai_api.CHAT_PATH)
def chat_completions() -> Response[Any]:
    """OpenAI's chat completions over the same routing, budgets and breakers (``openai_api.py``).

    Through API Gateway's buffered Lambda integration a ``stream: true`` answer is the same server-sent
    events, sent at once; front ends that stream (local mode) call ``stream_chat_completions`` instead.
    """
    event = app.current_event
    status, body, headers = _openai_answer(event, app.lambda_context)
    if isinstance(body, dict):
        return _json_response(status, body, headers)
    return Response(status_code=status, content_type=SSE_CONTENT_TYPE, body=b"".join(body).decode(), headers=headers)


SSE_CONTENT_TYPE = "text/event-stream"


def stream_chat_completions(event: dict[str, Any], context: Any) -> tuple[int, dict[str, str], bytes | Iterator[bytes]]:
    """``POST /v1/chat/completions`` for a front end that can send the answer as it is made (local mode).

    Returns the status, headers and either the JSON body or the server-sent events as they come (an iterator
    whose ``close`` ends the answer if the caller goes away before reading it all); the request's metrics
    line is written when the answer has ended.
    """
    json_headers = {"Content-Type": "application/json"}
    try:
        status, body, headers = _openai_answer(APIGatewayProxyEvent(event), context, flush=True)
    except PolicyUnavailable as exc:
        logger.error("no routing policy available", extra={"error": str(exc)})
        error = openai_api.error_body(503, "the routing policy is not available yet")
        return 503, json_headers, json.dumps(error).encode()
    except Exception:
        logger.exception("unhandled error")
        return 500, json_headers, json.dumps(openai_api.error_body(500, "internal error")).encode()
    if isinstance(body, dict):
        return status, {**json_headers, **headers}, json.dumps(body).encode()
    return status, {"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache", **headers}, body


_METRICS_LOCK = threading.Lock()
"""Local mode streams concurrently: each streamed request's metrics line is built and written under it."""


def _emit(outcome: Outcome, request_id: str, *, flush: bool, stream_failed: bool = False) -> None:
    """The request's metrics line: recorded now (the Lambda handler writes it) or, with ``flush``, written now."""

    def record() -> None:
        metrics.add_metadata(key="api", value="openai")
        if stream_failed:
            metrics.add_metric(name=m.STREAM_FAILURES, unit=MetricUnit.Count, value=1)
        _record(outcome, request_id, tracker=service().live_state)

    if not flush:
        record()
        return
    with _METRICS_LOCK:
        _forget_unflushed_metrics()
        record()
        metrics.flush_metrics()


def _openai_answer(
    event: Any, context: Any, *, flush: bool = False
) -> tuple[int, dict[str, Any] | Iterator[bytes], dict[str, str]]:
    """The status, the JSON body (or the server-sent events of a streamed answer) and the headers."""
    request_id = event.request_context.request_id
    # flush: a front end that streams as it goes (the streaming function, local mode), not a buffered one
    caller = _caller(event, context, streams_live=flush)
    outcome = service().generate(
        event.body, caller, parse=openai_api.parse_chat, base64_encoded=event.is_base64_encoded is True
    )
    headers = dict(outcome.headers or {})
    if outcome.status != 200:
        _emit(outcome, request_id, flush=flush)
        return outcome.status, openai_api.error_body(outcome.status, outcome.body["message"]), headers
    if outcome.outcome == m.OUTCOME_DEGRADED:  # an OpenAI client takes no answer for an answer
        _emit(outcome, request_id, flush=flush)
        decision = outcome.body.get("decision") or {}
        if decision.get("gave_up") == "budget":  # the policy degrades at the cap: no retry helps until it resets
            scope = str((decision.get("budget") or {}).get("scope") or "daily")
            retry = {"Retry-After": str(seconds_to_reset(scope, time.time())), "x-should-retry": "false"}
            message = f"the {scope} spend budget is used up; the policy answers no model until it resets"
            return 429, openai_api.error_body(429, message), {**headers, **retry}
        message = f"no model could answer: {outcome.body['output']}"
        return 503, openai_api.error_body(503, message), {**headers, "Retry-After": "5"}
    headers.pop("X-Selected-Model", None)
    headers.update({"x-selected-model": outcome.model or "", "x-route": outcome.route or ""})
    if not outcome.stream_requested:
        _emit(outcome, request_id, flush=flush)
        return 200, openai_api.chat_completion(outcome.body, request_id=request_id), headers
    return 200, _Events(outcome, request_id, include_usage=outcome.include_usage, flush=flush), headers


class _Events(Iterator[bytes]):
    """A streamed answer's server-sent events; its metrics line once it has ended, however it ends.

    ``close`` (the front end's, when the caller went away) ends the model's stream and settles the request
    even if no event was ever asked for.
    """

    def __init__(self, outcome: Outcome, request_id: str, *, include_usage: bool, flush: bool) -> None:
        self._outcome = outcome
        self._request_id = request_id
        self._include_usage = include_usage
        self._flush = flush
        self._emitted = False
        self._events: Generator[bytes, None, None] = self._generate()

    def __next__(self) -> bytes:
        return next(self._events)

    def close(self) -> None:
        self._events.close()
        if self._outcome.stream is not None:
            self._outcome.stream.close()
        self._finish()

    def _generate(self) -> Generator[bytes, None, None]:
        live = self._outcome.stream
        try:
            if live is None:  # answered whole (a cascade reads the full answer before it returns one): one chunk
                body = self._outcome.body
                usage = body.get("usage") or {}
                yield from openai_api.sse(
                    body,
                    iter([body.get("output") or ""]),
                    lambda: (
                        str(body.get("stop_reason")),
                        usage.get("input_tokens", 0),
                        usage.get("output_tokens", 0),
                        None,
                    ),
                    request_id=self._request_id,
                    include_usage=self._include_usage,
                )
                return

            def end() -> tuple[str, int, int, str | None]:
                ended = live.end
                assert ended is not None
                error = None if ended.error is None else f"the answer broke off: {ended.error.code}"
                return ended.stop_reason, ended.input_tokens, ended.output_tokens, error

            yield from openai_api.sse(
                live.details, live.pieces(), end, request_id=self._request_id, include_usage=self._include_usage
            )
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._emitted:
            return
        live = self._outcome.stream
        if live is None:
            self._emitted = True
            _emit(self._outcome, self._request_id, flush=self._flush)
            return
        ended = live.end
        if ended is None:
            return  # still streaming: its end (or close) emits
        self._emitted = True
        outcome = self._outcome._replace(
            input_tokens=ended.input_tokens,
            output_tokens=ended.output_tokens,
            cost_usd=ended.cost_usd,
            latency_ms=ended.latency_ms,
            body={**self._outcome.body, "output": ended.text, "stop_reason": ended.stop_reason},
        )
        failed = ended.error is not None and ended.error.code != CLIENT_GONE
        _emit(outcome, self._request_id, flush=self._flush, stream_failed=failed)


@app.get(openai_api.MODELS_PATH)
def models() -> Response[Any]:
    return _json_response(200, openai_api.models_list(service().policies.current()))


def _caller(event: Any, context: LambdaContext | None, *, streams_live: bool = False) -> CallerContext:
    return CallerContext(
        headers=event.headers,  # Powertools' headers mapping is case-insensitive
        sticky_key=_sticky_key(event),
        remaining_ms=context.get_remaining_time_in_millis() if context is not None else None,
        api_key_id=_identity(event, "apiKeyId"),
        principal=_principal(event),
        streams_live=streams_live,
    )


def _identity(event: Any, name: str) -> str | None:
    """A string of the request context's ``identity`` (None when absent: a hand-made event may omit it)."""
    identity = event.raw_event["requestContext"].get("identity")
    value = identity.get(name) if isinstance(identity, dict) else None
    return value if isinstance(value, str) and value else None


def _user(event: Any) -> str | None:
    """The authorizer's ``sub`` claim (a Cognito user), when there is one."""
    authorizer = event.raw_event["requestContext"].get("authorizer")
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    value = claims.get("sub") if isinstance(claims, dict) else None
    return value if isinstance(value, str) and value else None


def _sticky_key(event: Any) -> str:
    """Who is calling, so one caller stays on one canary variant."""
    explicit = event.headers.get("X-Caller-Id")  # Powertools headers are case-insensitive
    if explicit:
        return f"caller:{explicit}"
    for kind, value in (
        ("user", _user(event)),
        ("key", _identity(event, "apiKeyId")),
        ("ip", _identity(event, "sourceIp")),
    ):
        if value:
            return f"{kind}:{value}"
    return f"request:{event.request_context.request_id}"


def _principal(event: Any) -> str:
    """Who is calling, as API Gateway authenticated it (never ``X-Caller-Id``, which the caller writes)."""
    iam = _identity(event, "userArn")
    if iam and ":assumed-role/" in iam:  # the session name is the caller's choice: one role is one caller
        iam = iam.rsplit("/", 1)[0]
    for kind, value in (("user", _user(event)), ("iam", iam), ("key", _identity(event, "apiKeyId"))):
        if value:
            return f"{kind}:{value}"
    return f"ip:{_identity(event, 'sourceIp')}"


def _event_problem(event: Any) -> str | None:
    """What makes ``event`` not an API Gateway REST proxy event the router can read (None: nothing).

    API Gateway always sends these keys with these types; a hand-made event (a direct invoke, a test) may not,
    and gets a 400 naming the problem instead of an error deep inside the router.
    """
    if not isinstance(event, dict):
        return f"the event must be an API Gateway proxy event (a JSON object), got {type(event).__name__}"
    for key in ("httpMethod", "path"):
        if not isinstance(event.get(key), str):
            return f"the event's {key} must be a string"
    context = event.get("requestContext")
    if not isinstance(context, dict) or not isinstance(context.get("requestId"), str):
        return "the event's requestContext must be an object with a requestId string"
    if event.get("body") is not None and not isinstance(event["body"], str):
        return "the event's body must be a string or null"
    headers = event.get("headers")
    if headers is not None and not (isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())):
        return "the event's headers must be an object of strings or null"
    multi = event.get("multiValueHeaders")
    if multi is not None and not (
        isinstance(multi, dict)
        and all(isinstance(vs, list) and all(isinstance(v, str) for v in vs) for vs in multi.values())
    ):
        return "the event's multiValueHeaders must be an object of string arrays or null"
    return None


def _record(outcome: Outcome, request_id: str, *, tracker: LiveStateTracker | None) -> None:
    """One EMF line per request: the metrics, plus the decision as metadata (searchable in Logs Insights).

    The EMF line doubles as the access log, so no separate log line is written on the happy path: a
    Powertools log line costs about a third of the router's per-request time.
    """
    metrics.add_metadata(key="request_id", value=request_id)
    _record_budget_and_state(outcome, tracker)
    if outcome.status >= 400:
        metrics.add_metric(name=m.BAD_REQUESTS, unit=MetricUnit.Count, value=int(outcome.status == 400))
        metrics.add_metadata(key="reason", value=outcome.body.get("message"))
    else:
        metrics.add_metric(name=m.REQUESTS, unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=m.LATENCY_MS, unit=MetricUnit.Milliseconds, value=outcome.latency_ms)
        metrics.add_metric(name=m.FALLBACKS, unit=MetricUnit.Count, value=int(outcome.outcome == m.OUTCOME_FALLBACK))
        metrics.add_metric(name=m.DEGRADED, unit=MetricUnit.Count, value=int(outcome.outcome == m.OUTCOME_DEGRADED))
        metrics.add_metric(name=m.FAILED_ATTEMPTS, unit=MetricUnit.Count, value=len(outcome.failed_attempts))
        if outcome.model is not None:
            metrics.add_metric(name=m.INPUT_TOKENS, unit=MetricUnit.Count, value=outcome.input_tokens)
            metrics.add_metric(name=m.OUTPUT_TOKENS, unit=MetricUnit.Count, value=outcome.output_tokens)
            metrics.add_metric(name=m.COST_USD, unit=MetricUnit.NoUnit, value=outcome.cost_usd)
        model = outcome.model or outcome.body.get("model_used", "none")
        service_name = {m.SERVICE_DIMENSION: metrics.service or "router"}
        metrics.add_dimensions(**service_name, **{m.ROUTE_DIMENSION: outcome.route or "none"})
        metrics.add_dimensions(**service_name, **{m.MODEL_DIMENSION: model})
        metrics.add_dimensions(**service_name, **{m.OUTCOME_DIMENSION: outcome.outcome})
        if outcome.region is not None:
            _record_region(model, outcome.region, outcome.latency_ms)
        decision = outcome.body.get("decision", {})
        canary = decision.get("canary") or {}
        if canary.get("variant"):
            variant = {m.ROUTE_DIMENSION: outcome.route or "none", m.VARIANT_DIMENSION: str(canary["variant"])}
            metrics.add_dimensions(**service_name, **variant)
        escalated = _escalated(decision)
        if escalated is not None:
            metrics.add_metric(name=m.ESCALATIONS, unit=MetricUnit.Count, value=int(escalated))
        experiment = decision.get("experiment") or {}
        if experiment.get("arm"):
            _record_arm(outcome, str(experiment["route"]), str(experiment["arm"]), escalated)
        metrics.add_metadata(key="policy_version", value=decision.get("policy_version"))
        metrics.add_metadata(key="complexity", value=decision.get("complexity", {}).get("class"))
        metrics.add_metadata(key="rule", value=decision.get("rule"))
        if outcome.failed_attempts:
            metrics.add_metadata(key="attempts", value=decision.get("attempts"))
        if outcome.outcome == m.OUTCOME_DEGRADED:
            logger.warning("answered with the degraded message", extra={"attempts": decision.get("attempts")})
    for answer in outcome.escalated:
        _record_escalated(answer, outcome.route)
    for attempt in outcome.failed_attempts:
        _count_one(
            m.MODEL_CALL_FAILURES,
            {
                m.MODEL_DIMENSION: attempt.model_id,
                m.REGION_DIMENSION: attempt.region,
                m.FAILURE_CLASS_DIMENSION: attempt.outcome,
            },
        )


def _escalated(decision: dict[str, Any]) -> bool | None:
    """Whether a cascade escalated past its first answer; None for a request that ran no cascade."""
    steps = (decision.get("cascade") or {}).get("steps")
    return any("escalated" in step for step in steps) if steps else None


def _record_arm(outcome: Outcome, experiment: str, arm: str, escalated: bool | None) -> None:
    """An A/B request's metrics again, under [service, Experiment, Variant] only, in a line of their own."""
    line = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
    line.add_metric(name=m.REQUESTS, unit=MetricUnit.Count, value=1)
    line.add_metric(name=m.LATENCY_MS, unit=MetricUnit.Milliseconds, value=outcome.latency_ms)
    line.add_metric(name=m.FALLBACKS, unit=MetricUnit.Count, value=int(outcome.outcome == m.OUTCOME_FALLBACK))
    line.add_metric(name=m.DEGRADED, unit=MetricUnit.Count, value=int(outcome.outcome == m.OUTCOME_DEGRADED))
    cost = outcome.cost_usd + sum(answer.cost_usd for answer in outcome.escalated)  # what the arm paid in all
    line.add_metric(name=m.COST_USD, unit=MetricUnit.NoUnit, value=cost)
    if escalated is not None:
        line.add_metric(name=m.ESCALATIONS, unit=MetricUnit.Count, value=int(escalated))
    # One dimension set, [service, Experiment, Variant]: a [service] set here would count the request twice
    line.add_dimension(name=m.EXPERIMENT_DIMENSION, value=experiment)
    line.add_dimension(name=m.VARIANT_DIMENSION, value=arm)
    line.flush_metrics()


def _record_region(model: str, region: str, latency_ms: float) -> None:
    """Requests and latency per (model, region), in a small line of their own: under the request line's dimension
    sets the other seven metrics would be billed once per (model, region) too, and nothing reads them there
    (``benchmarks/routing_cost.py``: about a third of the custom metrics)."""
    line = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
    line.add_metric(name=m.REQUESTS, unit=MetricUnit.Count, value=1)
    line.add_metric(name=m.LATENCY_MS, unit=MetricUnit.Milliseconds, value=latency_ms)
    line.add_dimension(name=m.MODEL_DIMENSION, value=model)  # one set: [service, Model, Region]
    line.add_dimension(name=m.REGION_DIMENSION, value=region)
    line.flush_metrics()


def _record_escalated(answer: PaidAnswer, route: str | None) -> None:
    """A cascade answer paid for and escalated past: its tokens and cost under its own model, in a line of its own
    (the request's line carries the returned answer's), so cost by model and by route both add up."""
    spend = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
    spend.add_metric(name=m.INPUT_TOKENS, unit=MetricUnit.Count, value=answer.input_tokens)
    spend.add_metric(name=m.OUTPUT_TOKENS, unit=MetricUnit.Count, value=answer.output_tokens)
    spend.add_metric(name=m.COST_USD, unit=MetricUnit.NoUnit, value=answer.cost_usd)
    service_name = {m.SERVICE_DIMENSION: metrics.service or "router"}
    spend.add_dimensions(**service_name, **{m.ROUTE_DIMENSION: route or "none"})
    spend.add_dimensions(**service_name, **{m.MODEL_DIMENSION: answer.model_id})
    spend.flush_metrics()


def _count_one(name: str, dimensions: dict[str, str]) -> None:
    """A count of 1 in its own EMF line, under [service] plus ``dimensions`` only."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,
    ) as single:
        for dimension, value in dimensions.items():
            single.add_dimension(name=dimension, value=value)


def _record_budget_and_state(outcome: Outcome, tracker: LiveStateTracker | None) -> None:
    """Budget gauges (at most every ``GAUGE_INTERVAL_S``) and counts under [service], in their own EMF line;
    opened circuits per (model, region)."""
    global _gauges_written_at
    now = time.monotonic()
    if now - _gauges_written_at >= GAUGE_INTERVAL_S and outcome.budget_used_percent is not None:
        state_metrics.add_metric(name=m.BUDGET_USED_PERCENT, unit=MetricUnit.Percent, value=outcome.budget_used_percent)
        if outcome.spend_today_usd is not None:
            state_metrics.add_metric(name=m.SPEND_TODAY_USD, unit=MetricUnit.NoUnit, value=outcome.spend_today_usd)
        _gauges_written_at = now
    if outcome.status == 429 or outcome.body.get("decision", {}).get("gave_up") == "budget":
        state_metrics.add_metric(name=m.BUDGET_EXHAUSTED, unit=MetricUnit.Count, value=1)
    events = tracker.drain_events() if tracker is not None else None
    if events is not None and events.store_errors:
        state_metrics.add_metric(name=m.STATE_STORE_ERRORS, unit=MetricUnit.Count, value=events.store_errors)
    if state_metrics.metric_set:
        state_metrics.flush_metrics()
    for model_id, region in events.circuits_opened if events is not None else ():
        _count_one(m.CIRCUITS_OPENED, {m.MODEL_DIMENSION: model_id, m.REGION_DIMENSION: region})


def _error_body(
    path: str, status: int, error: str, message: str, *, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An error in the shape of the API asked: OpenAI's under ``/v1/`` (``code`` replacing the status's
    usual one), the router's own elsewhere."""
    if path.startswith("/v1/"):
        return openai_api.error_body(status, message, code=code)
    return {"error": error, "message": message, **extra}


def _error(status: int, error: str, message: str, *, code: str | None = None, **extra: Any) -> Response[Any]:
    return _json_response(status, _error_body(app.current_event.path, status, error, message, code=code, **extra))


@app.not_found
def not_found(exc: Exception) -> Response[Any]:
    event = app.current_event
    return _error(404, "NotFound", f"no route for {event.http_method} {event.path}", code="unknown_url")


@app.exception_handler(PolicyUnavailable)  # type: ignore[untyped-decorator]
def policy_unavailable(exc: PolicyUnavailable) -> Response[Any]:
    logger.error("no routing policy available", extra={"error": str(exc)})
    return _error(503, "PolicyUnavailable", "the routing policy is not available yet")


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected(exc: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    request_id = app.current_event.request_context.request_id
    return _error(500, "InternalError", "internal error", request_id=request_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _forget_unflushed_metrics()
    problem = _event_problem(event)
    if problem is not None:
        path = event.get("path") if isinstance(event, dict) else None
        body = _error_body(path if isinstance(path, str) else "", 400, "BadRequest", problem)
        return {"statusCode": 400, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
    response = app.resolve(event, context)
    _freeze_warm_state()
    return response


def _forget_unflushed_metrics() -> None:
    """Start every request with empty metric sets: one request, one EMF line (or none).

    Powertools clears a metric set only when it prints it, so with ``POWERTOOLS_METRICS_DISABLED`` (local
    mode's default) the values, dimension sets and metadata of every request would pile up, to be printed
    as one line of up to 100 requests the moment metrics are enabled, and grow without end meanwhile.
    """
    for emf in (metrics.provider, state_metrics):
        if emf.metric_set or emf.dimension_sets or emf.metadata_set:
            emf.clear_metrics()


_warm_state_frozen = False


def _freeze_warm_state() -> None:
    """After the first request, move what it built (modules, clients, the compiled policy) out of the
    garbage collector's sight: later collections only scan per-request objects, which takes the GC pauses
    out of the tail latency."""
    global _warm_state_frozen
    if not _warm_state_frozen:
        _warm_state_frozen = True
        gc.freeze()
