"""The observability contract shared by the router (EMF) and the construct (alarms, dashboard).

Dependency-free on purpose: the CDK side imports it at synth time, the runtime imports it on the
request path, and both must agree on every name below.
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "RoutedBedrock"
"""Default CloudWatch namespace (the construct sets ``POWERTOOLS_METRICS_NAMESPACE`` to it)."""

SERVICE_DIMENSION: Final = "service"
ROUTE_DIMENSION: Final = "Route"
MODEL_DIMENSION: Final = "Model"
REGION_DIMENSION: Final = "Region"
OUTCOME_DIMENSION: Final = "Outcome"
FAILURE_CLASS_DIMENSION: Final = "FailureClass"
VARIANT_DIMENSION: Final = "Variant"
"""With ``Route``: the weighted candidate (canary) a request landed on; with ``Experiment``: its A/B arm."""
EXPERIMENT_DIMENSION: Final = "Experiment"
"""An A/B experiment's key (the route it splits)."""

# One value per request under OUTCOME_DIMENSION.
OUTCOME_OK: Final = "ok"
OUTCOME_FALLBACK: Final = "fallback"
OUTCOME_DEGRADED: Final = "degraded"
OUTCOME_ERROR: Final = "error"
OUTCOMES: Final = (OUTCOME_OK, OUTCOME_FALLBACK, OUTCOME_DEGRADED, OUTCOME_ERROR)

# Request-level metrics; emitted with the dimension sets [service], [service, Route], [service, Model] and
# [service, Outcome]; Requests and LatencyMs also, in a line of their own, under [service, Model, Region].
REQUESTS: Final = "Requests"
LATENCY_MS: Final = "LatencyMs"
INPUT_TOKENS: Final = "InputTokens"
OUTPUT_TOKENS: Final = "OutputTokens"
COST_USD: Final = "CostUsd"
FALLBACKS: Final = "Fallbacks"
DEGRADED: Final = "DegradedAnswers"
STREAM_FAILURES: Final = "StreamFailures"  # streamed answers that broke off after their first byte
FAILED_ATTEMPTS: Final = "FailedAttempts"

# A request on a weighted route also gets [service, Route, Variant] on the metrics above (Variant: the picked
# candidate's model key). A request in an A/B experiment gets the same metrics once more, in a line of their own
# dimensioned [service, Experiment, Variant] only (Variant: the arm), so nothing else counts it twice.
# Cascade requests only: 1 when the cascade escalated past its first answer, else 0 (the quality signal).
ESCALATIONS: Final = "Escalations"

# Per failed model call, dimensioned [service, Model, Region, FailureClass].
MODEL_CALL_FAILURES: Final = "ModelCallFailures"

# Caller errors (HTTP 4xx answered by the router), dimensioned [service].
BAD_REQUESTS: Final = "BadRequests"

# Budget gauges, one value per answered request from the live-state snapshot, dimensioned [service]:
# the highest share of any budget that applies to the request (global, tier, API key; day or month), and
# today's global spend.
BUDGET_USED_PERCENT: Final = "BudgetUsedPercent"
SPEND_TODAY_USD: Final = "SpendTodayUsd"
# Requests refused (HTTP 429) or degraded because a budget is spent, dimensioned [service].
BUDGET_EXHAUSTED: Final = "BudgetExhausted"
# Circuit breakers opened by this instance, dimensioned [service, Model, Region].
CIRCUITS_OPENED: Final = "CircuitsOpened"
# Live-state store calls that failed or timed out (the router then routes on local knowledge), [service].
STATE_STORE_ERRORS: Final = "StateStoreErrors"
