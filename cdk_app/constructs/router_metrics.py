"""``RouterMetrics``: the router's CloudWatch metrics for one service, named in ``lambdas/router/metric_names.py``.

A metric factory, not a construct (as cdk-monitoring-constructs keeps metric factories apart from the alarms and
dashboards that use them): ``RouterAlarms`` and ``RouterDashboard`` build on it, and ``RoutedBedrockEndpoint``
exposes the same ``metric_*`` methods through ``RouterMetricMethods``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import IConstruct

from lambdas.router import metric_names as m

from ._validation import check_metrics_namespace, check_service_name

PERIOD = Duration.minutes(5)
"""The period of every alarm and dashboard line."""
_NAME_MAX_LENGTH = 64


def _top_stack(construct: IConstruct) -> Stack:
    """The construct's stack, or a nested stack's top-level parent (a nested stack's name is CloudFormation's)."""
    stack = Stack.of(construct)
    while stack.nested_stack_parent is not None:
        stack = stack.nested_stack_parent
    return stack


def explicit_stack_name(construct: IConstruct) -> str | None:
    """The name of the construct's (top-level) stack when it was given (``stack_name="svc-prod"``); None when
    it is the name CDK derives from the construct path (the id, with its stage's, or the id-and-hash form of a
    stack inside another construct), or a token.

    Only a given name can differ between two deployments of one construct path: one app synthesized for dev
    and prod under two names, in one account and region. Names that must be unique there (a composite alarm's)
    and the metrics' dimension then take the stack's name; with a derived name they stay what they always
    were, so an existing stack keeps its alarms and its metrics' history.
    """
    stack = _top_stack(construct)
    name = stack.stack_name
    if Token.is_unresolved(name):
        return None
    ids = [scope.node.id for scope in stack.node.scopes if scope.node.id]
    if name in (stack.node.id, "-".join(ids)):
        return None
    # Inside another construct CDK names the stack by its path's letters and digits and a hash of 8 hex digits
    letters = re.sub(r"[^A-Za-z0-9]", "", "".join(ids))
    if re.search(r"[0-9A-F]{8}$", name) and letters.startswith(re.sub(r"[^A-Za-z0-9]", "", name)[:-8]):
        return None
    return name


def default_service_name(construct: IConstruct) -> str:
    """The construct's path as a metric dimension value: ``MyStack/Llm`` -> ``MyStack-Llm`` (at most 64 chars);
    under a stack given a name of its own (``explicit_stack_name``), that name and the path below the stack."""
    scopes = construct.node.scopes
    given = explicit_stack_name(construct)
    if given is None:
        parts = [scope.node.id for scope in scopes if scope.node.id]
    else:
        below = scopes[scopes.index(_top_stack(construct)) + 1 :]
        parts = [given, *(scope.node.id for scope in below if scope.node.id)]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts)).strip("-") or "routed-bedrock"
    if len(name) <= _NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _NAME_MAX_LENGTH - 9]}-{digest}"


class RouterMetricMethods:
    """The router's named metrics, each built with ``self.metric``."""

    def metric(
        self,
        metric_name: str,
        *,
        statistic: str = "Sum",
        period: Duration = PERIOD,
        dimensions: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> cloudwatch.Metric:
        raise NotImplementedError

    def metric_requests(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Requests the router handled, every route and model."""
        return self.metric(m.REQUESTS, statistic=statistic, period=period)

    def metric_latency(self, *, statistic: str = "p99", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Router latency in milliseconds (p99 by default)."""
        return self.metric(m.LATENCY_MS, statistic=statistic, period=period)

    def metric_fallbacks(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Requests answered by a fallback model."""
        return self.metric(m.FALLBACKS, statistic=statistic, period=period)

    def metric_degraded_answers(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Requests answered with the policy's degraded message."""
        return self.metric(m.DEGRADED, statistic=statistic, period=period)

    def metric_cost(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Model cost in USD (token usage times the policy's prices)."""
        return self.metric(m.COST_USD, statistic=statistic, period=period)

    def metric_input_tokens(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Input tokens sent to models."""
        return self.metric(m.INPUT_TOKENS, statistic=statistic, period=period)

    def metric_output_tokens(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Output tokens received from models."""
        return self.metric(m.OUTPUT_TOKENS, statistic=statistic, period=period)

    def metric_failed_attempts(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Model calls that failed before a request was answered (retries and fallbacks)."""
        return self.metric(m.FAILED_ATTEMPTS, statistic=statistic, period=period)

    def metric_bad_requests(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Requests the router rejected with HTTP 4xx."""
        return self.metric(m.BAD_REQUESTS, statistic=statistic, period=period)

    def metric_budget_used_percent(self, *, statistic: str = "Maximum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """The highest share (%) of any budget that applies to a request (global, tier, API key; day or month)."""
        return self.metric(m.BUDGET_USED_PERCENT, statistic=statistic, period=period)

    def metric_spend_today_usd(self, *, statistic: str = "Maximum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Today's global spend in USD, as the router last saw it in the live state (a gauge: use Maximum)."""
        return self.metric(m.SPEND_TODAY_USD, statistic=statistic, period=period)

    def metric_budget_exhausted(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Requests refused (HTTP 429) or degraded because a budget is spent."""
        return self.metric(m.BUDGET_EXHAUSTED, statistic=statistic, period=period)

    def metric_state_store_errors(self, *, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
        """Live-state table calls that failed or timed out (the router then routes on its instance's knowledge)."""
        return self.metric(m.STATE_STORE_ERRORS, statistic=statistic, period=period)


class RouterMetrics(RouterMetricMethods):
    """The router's metrics for one ``service`` (the Powertools service name) in one namespace.

    Example::

        metrics = RouterMetrics(service_name="faq-bot")
        metrics.metric_fallbacks(), metrics.metric(metric_names.REQUESTS, dimensions={"Route": "fast"})

    Args:
        service_name: the ``service`` dimension (``POWERTOOLS_SERVICE_NAME``), 1-64 letters, digits, ``-``, ``_``.
        namespace: the CloudWatch namespace (``POWERTOOLS_METRICS_NAMESPACE``). Default: - ``RoutedBedrock``.
    """

    def __init__(self, *, service_name: str, namespace: str = m.NAMESPACE) -> None:
        check_service_name("service_name", service_name)
        check_metrics_namespace("namespace", namespace)
        self.service_name = service_name
        self.namespace = namespace

    def metric(
        self,
        metric_name: str,
        *,
        statistic: str = "Sum",
        period: Duration = PERIOD,
        dimensions: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> cloudwatch.Metric:
        """One of the router's metrics (names in ``lambdas/router/metric_names.py``) for this service.

        Args:
            metric_name: the metric, e.g. ``metric_names.REQUESTS``.
            statistic: CloudWatch statistic. Default: - ``Sum``.
            period: aggregation period. Default: - 5 minutes.
            dimensions: dimensions besides ``service`` (``Route``, ``Model``, ``Region``, ``Outcome``), in a
                dimension set the router emits. Default: - ``service`` only.
            label: graph label. Default: - the metric name.
        """
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=metric_name,
            dimensions_map={m.SERVICE_DIMENSION: self.service_name, **(dimensions or {})},
            statistic=statistic,
            period=period,
            label=label,
        )

    def search(self, metric_name: str, dimensions: tuple[str, ...], statistic: str) -> cloudwatch.MathExpression:
        """One line per value of ``dimensions`` (e.g. per model), from the dimension set the router emits."""
        schema = ",".join((self.namespace, m.SERVICE_DIMENSION, *dimensions))
        query = (
            f'SEARCH(\'{{{schema}}} MetricName="{metric_name}" {m.SERVICE_DIMENSION}="{self.service_name}"\', '
            f"'{statistic}', {int(PERIOD.to_seconds())})"
        )
        return cloudwatch.MathExpression(expression=query, using_metrics={}, label="", period=PERIOD)
