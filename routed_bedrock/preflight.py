"""Preflight: one minimal Converse call per model and region of a routing policy, and what it means for each route.

A deployed router finds out about a model that is not enabled in the account, not served on demand in a
region, or retired only when callers' requests start falling over to fallbacks. The preflight asks first:
one Converse call of one output token per (model id, region) the policy uses, in parallel, each with a
short timeout and no retries, and then, per route (candidates and fallbacks), whether at least one
(model, region) answered.

The checking is independent of botocore (``run_preflight`` takes any ``call``); ``botocore_call`` is the
real one, against Bedrock with the default credential chain or against an ``endpoint_url`` (the local
simulator) with throwaway static credentials, so nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import NamedTuple

from lambdas.router.policy import Policy
from routed_bedrock.bedrock_runtime import ClientSetupError, runtime_clients

PROBE_PROMPT = "Hi"

OK = "ok"
ACCESS_DENIED = "access denied"
NOT_ON_DEMAND = "not served on demand there"
NOT_FOUND = "not found"
THROTTLED = "throttled"
VALIDATION_ERROR = "validation error"
UNREACHABLE = "unreachable"
OTHER = "other"
# A throttled call proves the model is enabled, served and reachable in that region: it is busy, which
# the router's backoff handles, not misconfigured.
WORKING_RESULTS = frozenset({OK, THROTTLED})

_ACCESS_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"}
)
_THROTTLE_CODES = frozenset({"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"})
# Bedrock answers a model id it does not know, or no longer serves, with a ValidationException.
_NOT_FOUND_HINTS = ("model identifier is invalid", "end of its life", "model is not supported")


class PreflightError(Exception):
    """The preflight cannot run at all (no credentials, no botocore); the message says what to do."""


class Probe(NamedTuple):
    model: str  # the policy's catalog key
    model_id: str
    region: str


class CallFailed(Exception):
    """A probe's call failed with a Bedrock error code, or without reaching Bedrock (``unreachable``)."""

    def __init__(self, code: str, message: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.unreachable = unreachable


ProbeCall = Callable[[Probe], None]


class ProbeResult(NamedTuple):
    probe: Probe
    result: str  # one of the result constants above
    code: str | None
    message: str
    latency_ms: float

    @property
    def working(self) -> bool:
        return self.result in WORKING_RESULTS


class RouteCheck(NamedTuple):
    route: str
    models: tuple[str, ...]  # candidates then fallbacks, each once
    working: tuple[tuple[str, str], ...]  # (model key, region) pairs that answered
    candidates: tuple[str, ...] = ()  # the route's candidates (the rest of ``models`` are fallbacks)

    @property
    def ok(self) -> bool:
        return bool(self.working)

    @property
    def fallbacks_only(self) -> bool:
        """Works, but only through fallbacks: every request of the route would pay the failed candidates."""
        return self.ok and not any(model in self.candidates for model, _ in self.working)


class PreflightReport(NamedTuple):
    results: tuple[ProbeResult, ...]
    routes: tuple[RouteCheck, ...]

    @property
    def ok(self) -> bool:
        return all(route.ok for route in self.routes)

    @property
    def failed_routes(self) -> list[str]:
        return [route.route for route in self.routes if not route.ok]

    @property
    def fallback_only_routes(self) -> list[str]:
        return [route.route for route in self.routes if route.fallbacks_only]


def probes_of(policy: Policy) -> list[Probe]:
    """Every (model, region) the policy may call, in catalog order and each model's region order."""
    return [Probe(key, spec.model_id, region) for key, spec in policy.models.items() for region in spec.regions]


def classify(code: str, message: str) -> str:
    """What a Bedrock error means for a (model, region): one of the result constants."""
    lowered = message.lower()
    if code in _ACCESS_CODES:
        return ACCESS_DENIED
    if code in _THROTTLE_CODES:
        return THROTTLED
    if code == "ResourceNotFoundException":
        return NOT_FOUND
    if code == "ValidationException":
        if "on-demand throughput" in lowered:
            return NOT_ON_DEMAND
        if any(hint in lowered for hint in _NOT_FOUND_HINTS):
            return NOT_FOUND
        return VALIDATION_ERROR
    return OTHER


def run_preflight(policy: Policy, call: ProbeCall, *, workers: int = 8) -> PreflightReport:
    """Probe every (model id, region) of the policy once, in parallel, and check each route.

    Args:
        policy: the compiled policy.
        call: makes one probe call; returns on success, raises ``CallFailed`` otherwise.
        workers: calls in flight at once.
    """
    probes = probes_of(policy)
    # Two catalog keys may name the same model id: one call answers for both.
    distinct = list(dict.fromkeys((probe.model_id, probe.region) for probe in probes))
    by_call = {probe_key: next(p for p in probes if (p.model_id, p.region) == probe_key) for probe_key in distinct}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(distinct) or 1))) as pool:
        outcomes = dict(zip(distinct, pool.map(lambda key: _probe(call, by_call[key]), distinct), strict=True))
    results = tuple(outcomes[(probe.model_id, probe.region)]._replace(probe=probe) for probe in probes)
    return PreflightReport(results, tuple(check_routes(policy, results)))


def _probe(call: ProbeCall, probe: Probe) -> ProbeResult:
    started = perf_counter()
    try:
        call(probe)
    except CallFailed as exc:
        result = UNREACHABLE if exc.unreachable else classify(exc.code, exc.message)
        return ProbeResult(probe, result, exc.code, exc.message, _ms_since(started))
    except Exception as exc:  # a broken probe is reported in its row, never a stack trace
        return ProbeResult(probe, OTHER, type(exc).__name__, str(exc), _ms_since(started))
    return ProbeResult(probe, OK, None, "", _ms_since(started))


def _ms_since(started: float) -> float:
    return round((perf_counter() - started) * 1000, 1)


def check_routes(policy: Policy, results: Iterable[ProbeResult]) -> list[RouteCheck]:
    """Per route: its models (candidates, then fallbacks) and which of their (model, region) pairs work."""
    working = [(r.probe.model, r.probe.region) for r in results if r.working]
    checks = []
    for name, route in policy.routes.items():
        models = tuple(dict.fromkeys([c.model for c in route.candidates] + list(route.fallbacks)))
        in_route_order = tuple(pair for model in models for pair in working if pair[0] == model)
        checks.append(RouteCheck(name, models, in_route_order, tuple(c.model for c in route.candidates)))
    return checks


def botocore_call(regions: Sequence[str], *, endpoint_url: str | None = None, timeout_s: float = 10.0) -> ProbeCall:
    """A probe call through botocore's ``bedrock-runtime`` client, one client per region made up front.

    Args:
        regions: the regions the probes will use.
        endpoint_url: call this endpoint (the simulator) with throwaway static credentials instead of
            Bedrock with the default credential chain.
        timeout_s: read timeout of each call; connecting gets at most 3 s of it.

    Raises:
        PreflightError: botocore is not installed, or (real Bedrock) no credentials are found.
    """
    try:
        clients = runtime_clients(
            regions,
            endpoint_url=endpoint_url,
            timeout_s=timeout_s,
            retries={"total_max_attempts": 1},
            tool="preflight",
            agent="preflight",
            verb="check",
        )
    except ClientSetupError as exc:
        raise PreflightError(str(exc)) from None
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as EndpointUnreachable

    def call(probe: Probe) -> None:
        try:
            clients[probe.region].converse(
                modelId=probe.model_id,
                messages=[{"role": "user", "content": [{"text": PROBE_PROMPT}]}],
                inferenceConfig={"maxTokens": 1},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CallFailed(str(error.get("Code", "Unknown")), str(error.get("Message", ""))) from None
        except (EndpointUnreachable, HTTPClientError) as exc:
            raise CallFailed(type(exc).__name__, str(exc), unreachable=True) from None
        except BotoCoreError as exc:
            raise CallFailed(type(exc).__name__, str(exc)) from None

    return call
