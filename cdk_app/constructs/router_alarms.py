"""``RouterAlarms``: the router's CloudWatch alarms, and which of them roll a policy deployment back."""

from __future__ import annotations

from aws_cdk import Duration, Names
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.router import metric_names as m
from lambdas.router.policy import Policy
from lambdas.router.variants import variant_groups

from ._validation import check_at_least_one, check_percent, check_positive_duration
from ._variants import id_part
from .router_metrics import PERIOD, RouterMetrics, explicit_stack_name

ROLLBACK_ALARMS = (
    "DegradedAnswers",
    "FallbackRate",
    "LambdaErrors",
    "StreamingLambdaErrors",
    "StepsLambdaErrors",
    "StateMachineFailures",
    "Api5xxRate",
)
"""A bad policy version shows up in these alarms (and the per-variant ones): any of them in ALARM rolls the AppConfig
deployment back."""
MAX_APPCONFIG_MONITORS = 5
"""AppConfig's limit of monitors per environment (CreateEnvironment: at most 5)."""
COMPOSITE_CHUNK = 40
"""Alarms per composite rule: well inside CloudWatch's 100 alarms and 10,240 characters per rule."""
_DEFAULT_P99_LATENCY = Duration.seconds(20)
_MAX_BUDGET_USED_PERCENT = 1000  # spend can overshoot a budget: the gauge is not capped at 100


def _composite_name(scope: Construct, id: str) -> str | None:
    """A composite alarm's name, unique in the account and region (PutCompositeAlarm's names are). CDK's own
    is built from the construct path alone, which two stacks given two names share: under such a stack
    (``explicit_stack_name``) the name starts from the stack's name; otherwise CDK's stays, unchanged."""
    if explicit_stack_name(scope) is None:
        return None
    return f"{Names.unique_resource_name(scope, separator='-', max_length=200)}-{id}"


class RouterAlarms(Construct):
    """Alarms on the router's metrics, its function and its API, each at 5 minutes, missing data not breaching.

    Example::

        alarms = RouterAlarms(self, "Alarms", metrics=metrics, policy=document.policy,
                              router_function=router.function, api=api, alarm_topic=ops_topic)
        RoutingPolicy(self, "RoutingPolicy", policy=document, monitors=alarms.rollback_monitors)

    Args:
        scope: parent construct.
        id: construct id.
        metrics: the router's metrics (its service and namespace).
        policy: the compiled routing policy; a policy without a ``budget`` section gets no budget alarm.
        router_function: the router function, for the errors and throttles alarms. Default: - no function alarms.
        streaming_function: the streaming router function, for its own errors and throttles alarms
            (``StreamingLambdaErrors`` rolls a policy back like ``LambdaErrors``). Default: - none.
        steps_function: the Step Functions orchestration's tasks function, for ``StepsLambdaErrors`` and
            ``StepsLambdaThrottles``. Default: - none.
        state_machine: the routing state machine, for ``StateMachineFailures`` (failed or timed-out executions,
            at the ``lambda_errors`` threshold; a rollback monitor). Default: - none.
        api: the REST API in front of the router, for the 5XX-rate and latency alarms. Default: - no API alarms.
        api_latency_metric: the p99 latency the latency alarm watches instead of the whole API's, e.g.
            ``POST /generate``'s method metric: streamed answers last as long as the model writes, so the API's
            own latency is no alarm signal once it streams. Default: - the API's ``Latency`` p99.
        api_latency_label: what the latency alarm's description calls it. Default: - ``API``.
        alarm_topic: SNS topic for every alarm's ALARM and OK actions. Default: - alarms without actions.
        api_5xx_rate_percent: alarm when 5XX answers reach this share of API requests in 5 minutes; None
            disables it. Default: - 1 (%).
        api_p99_latency: alarm when the API's p99 latency over 5 minutes reaches this; None disables it.
            Default: - 20 seconds.
        lambda_errors: alarm when the function's errors in 5 minutes reach this; None disables it. Default: - 1.
        lambda_throttles: alarm when the function's throttles in 5 minutes reach this; None disables it.
            Default: - 1.
        fallback_rate_percent: alarm when fallback answers reach this share of requests in 5 minutes; None
            disables it. Default: - 10 (%).
        degraded_answers: alarm when degraded answers in 5 minutes reach this; None disables it. Default: - 1.
        budget_used_percent: alarm when the highest share of a budget in use (5-minute maximum) reaches this
            percentage (above 0, at most 1000); None disables it. Notifies only. Default: - 90 (%).
        state_store_errors: alarm when live-state table calls that failed or timed out in 5 minutes reach this;
            None disables it. Notifies only. Default: - 5.
        variant_failure_rate_percent: per canary candidate (a weighted route's model) and A/B arm, alarm when
            its fallback and degraded answers reach this share of its requests in 5 minutes; None disables it.
            Rolls a policy back. Default: - 10 (%).
        variant_p99_latency: per variant, alarm when its p99 latency over 5 minutes reaches this; None disables
            it. Rolls a policy back. Default: - 20 seconds.
        variant_escalation_rate_percent: per A/B arm on a cascade route, alarm when its cascades escalate this
            share of the time in 5 minutes (the quality signal: the cheap model's answers doubted); None
            disables it. Rolls a policy back. Default: - 60 (%).
        variant_min_requests: a variant's alarms count only 5-minute periods with at least this many of its
            requests. Default: - 20.

    Attributes:
        alarms: the alarms by name (``Api5xxRate``, ``ApiLatencyP99``, ``LambdaErrors``, ``LambdaThrottles``,
            ``StreamingLambdaErrors``, ``StreamingLambdaThrottles``, ``FallbackRate``, ``DegradedAnswers``,
            ``BudgetUsedPercent``, ``StateStoreErrors``, and per variant ``Variant{Route}{Variant}FailureRate``,
            ``...LatencyP99``, ``...EscalationRate``), without the disabled ones.
        variant_alarm_names: the per-variant alarms' names.
        rollback_alarm: the composite alarm AppConfig watches when the rollback alarms are more than 5, else None.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        metrics: RouterMetrics,
        policy: Policy,
        router_function: lambda_.IFunction | None = None,
        streaming_function: lambda_.IFunction | None = None,
        steps_function: lambda_.IFunction | None = None,
        state_machine: sfn.IStateMachine | None = None,
        api: apigw.RestApiBase | None = None,
        api_latency_metric: cloudwatch.IMetric | None = None,
        api_latency_label: str = "API",
        alarm_topic: sns.ITopic | None = None,
        api_5xx_rate_percent: float | None = 1.0,
        api_p99_latency: Duration | None = _DEFAULT_P99_LATENCY,
        lambda_errors: int | None = 1,
        lambda_throttles: int | None = 1,
        fallback_rate_percent: float | None = 10.0,
        degraded_answers: int | None = 1,
        budget_used_percent: float | None = 90.0,
        state_store_errors: int | None = 5,
        variant_failure_rate_percent: float | None = 10.0,
        variant_p99_latency: Duration | None = _DEFAULT_P99_LATENCY,
        variant_escalation_rate_percent: float | None = 60.0,
        variant_min_requests: int = 20,
    ) -> None:
        super().__init__(scope, id)
        check_percent("variant_failure_rate_percent", variant_failure_rate_percent)
        check_percent("variant_escalation_rate_percent", variant_escalation_rate_percent)
        check_positive_duration("variant_p99_latency", variant_p99_latency)
        check_at_least_one("variant_min_requests", variant_min_requests)
        check_percent("api_5xx_rate_percent", api_5xx_rate_percent)
        check_percent("fallback_rate_percent", fallback_rate_percent)
        check_percent("budget_used_percent", budget_used_percent, maximum=_MAX_BUDGET_USED_PERCENT)
        check_positive_duration("api_p99_latency", api_p99_latency)
        for name, count in (
            ("lambda_errors", lambda_errors),
            ("lambda_throttles", lambda_throttles),
            ("degraded_answers", degraded_answers),
            ("state_store_errors", state_store_errors),
        ):
            check_at_least_one(name, count)
        self._topic = alarm_topic
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        if api is not None and api_5xx_rate_percent is not None:
            rate = cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * errors / requests, 0)",
                using_metrics={
                    "errors": api.metric_server_error(period=PERIOD, statistic="Sum"),
                    "requests": api.metric_count(period=PERIOD, statistic="SampleCount"),
                },
                period=PERIOD,
                label="API 5XX rate (%)",
            )
            self._add(
                "Api5xxRateAlarm",
                "Api5xxRate",
                rate,
                api_5xx_rate_percent,
                f"API 5XX answers >= {api_5xx_rate_percent}% of requests in 5 minutes",
            )
        if api is not None and api_p99_latency is not None:
            threshold_ms = api_p99_latency.to_milliseconds()
            latency = api_latency_metric or api.metric_latency(period=PERIOD, statistic="p99")
            where = api_latency_label
            self._add(
                "ApiLatencyP99Alarm",
                "ApiLatencyP99",
                latency,
                threshold_ms,
                f"{where} p99 latency >= {threshold_ms} ms over 5 minutes",
            )
        for prefix, label, function in (
            ("", "router function", router_function),
            ("Streaming", "streaming router function", streaming_function),
            ("Steps", "routing tasks function", steps_function),
        ):
            if function is None:
                continue
            if lambda_errors is not None:
                self._add(
                    f"{prefix}LambdaErrorsAlarm",
                    f"{prefix}LambdaErrors",
                    function.metric_errors(period=PERIOD, statistic="Sum"),
                    lambda_errors,
                    f"{label} errors >= {lambda_errors} in 5 minutes",
                )
            if lambda_throttles is not None:
                self._add(
                    f"{prefix}LambdaThrottlesAlarm",
                    f"{prefix}LambdaThrottles",
                    function.metric_throttles(period=PERIOD, statistic="Sum"),
                    lambda_throttles,
                    f"{label} throttles >= {lambda_throttles} in 5 minutes",
                )
        if state_machine is not None and lambda_errors is not None:
            failures = cloudwatch.MathExpression(
                expression="failed + timedout",
                using_metrics={
                    "failed": state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                    "timedout": state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
                },
                period=PERIOD,
                label="routing executions failed or timed out",
            )
            self._add(
                "StateMachineFailuresAlarm",
                "StateMachineFailures",
                failures,
                lambda_errors,
                f"routing state machine executions failed or timed out >= {lambda_errors} in 5 minutes",
            )
        if fallback_rate_percent is not None:
            rate = cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * fallbacks / requests, 0)",
                using_metrics={"fallbacks": metrics.metric_fallbacks(), "requests": metrics.metric_requests()},
                period=PERIOD,
                label="fallback rate (%)",
            )
            self._add(
                "FallbackRateAlarm",
                "FallbackRate",
                rate,
                fallback_rate_percent,
                f"fallback answers >= {fallback_rate_percent}% of requests in 5 minutes",
            )
        if degraded_answers is not None:
            self._add(
                "DegradedAnswersAlarm",
                "DegradedAnswers",
                metrics.metric_degraded_answers(),
                degraded_answers,
                f"degraded answers >= {degraded_answers} in 5 minutes",
            )
        # Budget and state-store alarms notify only: they are not in ROLLBACK_ALARMS.
        if budget_used_percent is not None and policy.budget is not None:
            self._add(
                "BudgetUsedPercentAlarm",
                "BudgetUsedPercent",
                metrics.metric_budget_used_percent(),
                budget_used_percent,
                f"budget used >= {budget_used_percent}% (the highest share of any budget) over 5 minutes",
            )
        if state_store_errors is not None:
            self._add(
                "StateStoreErrorsAlarm",
                "StateStoreErrors",
                metrics.metric_state_store_errors(),
                state_store_errors,
                f"live-state table errors >= {state_store_errors} in 5 minutes",
            )

        self._add_variant_alarms(
            metrics,
            policy,
            failure_rate_percent=variant_failure_rate_percent,
            p99_latency=variant_p99_latency,
            escalation_rate_percent=variant_escalation_rate_percent,
            min_requests=variant_min_requests,
        )
        rollback = [self.alarms[name] for name in (*ROLLBACK_ALARMS, *self.variant_alarm_names) if name in self.alarms]
        # AppConfig watches at most 5 alarms per environment: past that, one composite alarm of them all
        self.rollback_alarm: cloudwatch.CompositeAlarm | None = None
        if len(rollback) > MAX_APPCONFIG_MONITORS:
            # A composite rule takes at most 100 alarms and 10,240 characters (an alarm's ARN is ~140): past
            # COMPOSITE_CHUNK, composites of chunks under the one AppConfig watches
            parts: list[cloudwatch.IAlarm] = list(rollback)
            if len(rollback) > COMPOSITE_CHUNK:
                parts = [
                    cloudwatch.CompositeAlarm(
                        self,
                        f"PolicyRollbackAlarmPart{index + 1}",
                        composite_alarm_name=_composite_name(self, f"PolicyRollbackAlarmPart{index + 1}"),
                        alarm_rule=cloudwatch.AlarmRule.any_of(*rollback[start : start + COMPOSITE_CHUNK]),
                        alarm_description=f"rollback alarms, part {index + 1} (of PolicyRollbackAlarm)",
                    )
                    for index, start in enumerate(range(0, len(rollback), COMPOSITE_CHUNK))
                ]
            self.rollback_alarm = cloudwatch.CompositeAlarm(
                self,
                "PolicyRollbackAlarm",
                composite_alarm_name=_composite_name(self, "PolicyRollbackAlarm"),
                alarm_rule=cloudwatch.AlarmRule.any_of(*parts),
                alarm_description="any alarm that rolls a routing-policy deployment back (AppConfig's monitor)",
            )
        self._rollback = rollback

    @property
    def rollback_monitors(self) -> list[appconfig.Monitor]:
        """AppConfig monitors: the enabled alarms of ``ROLLBACK_ALARMS`` (degraded, fallback, errors, 5XX) and the
        per-variant alarms, one monitor each, or the composite ``PolicyRollbackAlarm`` of them all when they
        are more than AppConfig's 5."""
        if self.rollback_alarm is not None:
            return [appconfig.Monitor.from_cloud_watch_alarm(self.rollback_alarm)]
        return [appconfig.Monitor.from_cloud_watch_alarm(alarm) for alarm in self._rollback]

    def _add_variant_alarms(
        self,
        metrics: RouterMetrics,
        policy: Policy,
        *,
        failure_rate_percent: float | None,
        p99_latency: Duration | None,
        escalation_rate_percent: float | None,
        min_requests: int,
    ) -> None:
        """Per canary candidate and A/B arm: its failure rate, its p99 latency, and a cascade arm's escalation
        rate, each counted only with at least ``min_requests`` requests in 5 minutes (a 5% variant's one failure
        is no rate)."""
        self.variant_alarm_names: list[str] = []
        used: set[str] = set()
        for group in variant_groups(policy):
            for variant in group.variants:
                dims = group.dimensions(variant)
                requests = metrics.metric(m.REQUESTS, dimensions=dims)
                base = f"Variant{id_part(group.name)}{id_part(variant)}"
                while base in used:  # names that differ only in punctuation
                    base += "X"
                used.add(base)
                where = f"{group.kind} {group.name}, variant {variant}"
                enough = f"requests >= {min_requests}"
                if failure_rate_percent is not None:
                    rate = cloudwatch.MathExpression(
                        expression=f"IF({enough}, 100 * (fallbacks + degraded) / requests, 0)",
                        using_metrics={
                            "requests": requests,
                            "fallbacks": metrics.metric(m.FALLBACKS, dimensions=dims),
                            "degraded": metrics.metric(m.DEGRADED, dimensions=dims),
                        },
                        period=PERIOD,
                        label=f"{variant}: fallback or degraded (%)",
                    )
                    self._add_variant(
                        f"{base}FailureRateAlarm",
                        f"{where}: fallback or degraded",
                        rate,
                        failure_rate_percent,
                        "% of its requests in 5 minutes",
                    )
                if p99_latency is not None:
                    latency = cloudwatch.MathExpression(
                        expression=f"IF({enough}, p99, 0)",
                        using_metrics={
                            "requests": requests,
                            "p99": metrics.metric(m.LATENCY_MS, statistic="p99", dimensions=dims),
                        },
                        period=PERIOD,
                        label=f"{variant}: p99 latency (ms)",
                    )
                    self._add_variant(
                        f"{base}LatencyP99Alarm",
                        f"{where}: p99 latency",
                        latency,
                        p99_latency.to_milliseconds(),
                        " ms over 5 minutes",
                    )
                if escalation_rate_percent is not None and variant in group.cascades:
                    escalation = cloudwatch.MathExpression(
                        expression=f"IF(cascades >= {min_requests}, 100 * escalations / cascades, 0)",
                        using_metrics={
                            "escalations": metrics.metric(m.ESCALATIONS, dimensions=dims),
                            "cascades": metrics.metric(m.ESCALATIONS, statistic="SampleCount", dimensions=dims),
                        },
                        period=PERIOD,
                        label=f"{variant}: cascade escalations (%)",
                    )
                    self._add_variant(
                        f"{base}EscalationRateAlarm",
                        f"{where}: cascade escalations",
                        escalation,
                        escalation_rate_percent,
                        "% of its cascades in 5 minutes",
                    )

    def _add_variant(self, alarm_id: str, what: str, metric: cloudwatch.IMetric, threshold: float, unit: str) -> None:
        name = alarm_id.removesuffix("Alarm")
        self._add(alarm_id, name, metric, threshold, f"{what} >= {threshold:g}{unit}")
        self.variant_alarm_names.append(name)

    def _add(self, alarm_id: str, name: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        if self._topic is not None:
            alarm.add_alarm_action(cw_actions.SnsAction(self._topic))
            alarm.add_ok_action(cw_actions.SnsAction(self._topic))
        self.alarms[name] = alarm
