"""``RouterAlarms``: the router's CloudWatch alarms, and which of them roll a policy deployment back."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from lambdas.router.policy import Policy

from ._validation import check_at_least_one, check_percent, check_positive_duration
from .router_metrics import PERIOD, RouterMetrics

ROLLBACK_ALARMS = ("DegradedAnswers", "FallbackRate", "LambdaErrors", "StreamingLambdaErrors", "Api5xxRate")
"""A bad policy version shows up in these alarms: any of them in ALARM rolls the AppConfig deployment back."""
_DEFAULT_P99_LATENCY = Duration.seconds(20)
_MAX_BUDGET_USED_PERCENT = 1000  # spend can overshoot a budget: the gauge is not capped at 100


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
        api: the REST API in front of the router, for the 5XX-rate and latency alarms. Default: - no API alarms.
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

    Attributes:
        alarms: the alarms by name (``Api5xxRate``, ``ApiLatencyP99``, ``LambdaErrors``, ``LambdaThrottles``,
            ``StreamingLambdaErrors``, ``StreamingLambdaThrottles``, ``FallbackRate``, ``DegradedAnswers``,
            ``BudgetUsedPercent``, ``StateStoreErrors``), without the disabled ones.
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
        api: apigw.RestApiBase | None = None,
        alarm_topic: sns.ITopic | None = None,
        api_5xx_rate_percent: float | None = 1.0,
        api_p99_latency: Duration | None = _DEFAULT_P99_LATENCY,
        lambda_errors: int | None = 1,
        lambda_throttles: int | None = 1,
        fallback_rate_percent: float | None = 10.0,
        degraded_answers: int | None = 1,
        budget_used_percent: float | None = 90.0,
        state_store_errors: int | None = 5,
    ) -> None:
        super().__init__(scope, id)
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
            self._add(
                "ApiLatencyP99Alarm",
                "ApiLatencyP99",
                api.metric_latency(period=PERIOD, statistic="p99"),
                threshold_ms,
                f"API p99 latency >= {threshold_ms} ms over 5 minutes",
            )
        if router_function is not None and lambda_errors is not None:
            self._add(
                "LambdaErrorsAlarm",
                "LambdaErrors",
                router_function.metric_errors(period=PERIOD, statistic="Sum"),
                lambda_errors,
                f"router function errors >= {lambda_errors} in 5 minutes",
            )
        if router_function is not None and lambda_throttles is not None:
            self._add(
                "LambdaThrottlesAlarm",
                "LambdaThrottles",
                router_function.metric_throttles(period=PERIOD, statistic="Sum"),
                lambda_throttles,
                f"router function throttles >= {lambda_throttles} in 5 minutes",
            )
        if streaming_function is not None and lambda_errors is not None:
            self._add(
                "StreamingLambdaErrorsAlarm",
                "StreamingLambdaErrors",
                streaming_function.metric_errors(period=PERIOD, statistic="Sum"),
                lambda_errors,
                f"streaming router function errors >= {lambda_errors} in 5 minutes",
            )
        if streaming_function is not None and lambda_throttles is not None:
            self._add(
                "StreamingLambdaThrottlesAlarm",
                "StreamingLambdaThrottles",
                streaming_function.metric_throttles(period=PERIOD, statistic="Sum"),
                lambda_throttles,
                f"streaming router function throttles >= {lambda_throttles} in 5 minutes",
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

    @property
    def rollback_monitors(self) -> list[appconfig.Monitor]:
        """AppConfig monitors for the enabled alarms of ``ROLLBACK_ALARMS`` (degraded, fallback, errors, 5XX)."""
        return [
            appconfig.Monitor.from_cloud_watch_alarm(self.alarms[name])
            for name in ROLLBACK_ALARMS
            if name in self.alarms
        ]

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
