"""Budget scopes and how much of them is spent. Pure: the caller hands in the time.

Spend is kept per scope in the live-state store, under keys that name the period (UTC):

- ``d:2026-11-23`` and ``m:2026-11``: everything;
- ``d:2026-11-23:tier:economy``: one user tier (when ``budget.per_tier`` names it);
- ``d:2026-11-23:key:<apiKeyId>``: one API key (when ``budget.per_api_key`` is set).

A scope's *cap* is its limit times the lowest ``at_percent`` of a mode with an ``action``: the spend at which
routing stops. Near a cap a call reserves its estimated cost in the store before it is made (an atomic
conditional add that never takes the counter past the cap, see ``live_state.LiveStateTracker.reserve``);
far from it, spend is batched. The constants below set where "near" begins and how much an instance may spend
without the store's word.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .policy import Budget, BudgetLimits, ModelSpec

DAY_SECONDS = 86_400
OVERALL_DAILY = "daily"  # the label of the overall daily scope (tier and key scopes are labelled by name)
# Counters outlive their period by a margin, for the dashboard and late readers; then TTL removes them.
DAILY_RETENTION_SECONDS = 3 * DAY_SECONDS
MONTHLY_RETENTION_SECONDS = 40 * DAY_SECONDS
# A call reserves its estimate in the store once this instance's view of a capped scope, with the calls it
# has under way and this one, reaches this share of the cap.
RESERVE_AT_PERCENT = 80.0
# Below that, an instance's spend the store has not confirmed (in flight, unflushed, or made since it last
# heard the counter's value) stays within this share of the cap; a call that would exceed it reserves instead.
# It bounds the overshoot: at most this share of the cap per instance (see ``LiveStateTracker.reserve``).
UNCONFIRMED_SHARE_PERCENT = 2.0


class SpendScope(NamedTuple):
    key: str
    label: str
    limit_usd: float | None
    expires_at: float


def _period_scopes(label: str, limits: BudgetLimits, now: float, suffix: str) -> list[SpendScope]:
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    month = day[:7]
    scopes = []
    if limits.daily_usd is not None or not suffix:
        scopes.append(
            SpendScope(f"d:{day}{suffix}", f"{label}{OVERALL_DAILY}", limits.daily_usd, now + DAILY_RETENTION_SECONDS)
        )
    if limits.monthly_usd is not None:
        scopes.append(
            SpendScope(f"m:{month}{suffix}", f"{label}monthly", limits.monthly_usd, now + MONTHLY_RETENTION_SECONDS)
        )
    return scopes


def scopes_for(budget: Budget | None, now: float, *, tier: str | None, api_key: str | None) -> tuple[SpendScope, ...]:
    """The spend counters one request is charged to and judged by.

    The overall daily counter is always kept (it feeds the spend-today metric), with or without a limit.
    """
    overall = budget.overall if budget is not None else BudgetLimits()
    scopes = _period_scopes("", overall, now, "")
    if budget is None:
        return tuple(scopes)
    if tier is not None and tier in budget.per_tier:
        scopes += _period_scopes(f"tier {tier} ", budget.per_tier[tier], now, f":tier:{tier}")
    if api_key and budget.per_api_key is not None:
        scopes += _period_scopes("api key ", budget.per_api_key, now, f":key:{api_key}")
    return tuple(scopes)


def spent_today(spend: Mapping[str, float], scopes: Sequence[SpendScope]) -> float:
    """Today's overall spend: the overall daily counter, which ``scopes_for`` always includes."""
    return next((spend.get(scope.key, 0.0) for scope in scopes if scope.label == OVERALL_DAILY), 0.0)


def used_percent(spend: Mapping[str, float], scopes: Sequence[SpendScope]) -> tuple[float | None, str | None]:
    """The highest share of any limited scope that is spent, and that scope's label."""
    worst: float | None = None
    label: str | None = None
    for scope in scopes:
        if scope.limit_usd is None:
            continue
        percent = 100.0 * spend.get(scope.key, 0.0) / scope.limit_usd
        if worst is None or percent > worst:
            worst, label = percent, scope.label
    return worst, label


def hard_stop_percent(budget: Budget | None) -> float | None:
    """The lowest ``at_percent`` of a mode that ends routing (``action``), or None: spend is never stopped."""
    if budget is None:
        return None
    return min((mode.at_percent for mode in budget.modes if mode.action is not None), default=None)


def cap_usd(budget: Budget | None, scope: SpendScope) -> float | None:
    """The spend at which routing stops for this scope, or None (no limit, or no mode that stops)."""
    percent = hard_stop_percent(budget)
    if percent is None or scope.limit_usd is None:
        return None
    return scope.limit_usd * percent / 100.0


def estimate_usd(models: Sequence[ModelSpec], input_tokens: int, max_tokens: int) -> float:
    """What one answer can cost at most, given the models that may give it: the estimated input tokens at
    the input price plus the whole ``max_tokens`` (each model's own output limit applied) at the output price,
    for the dearest of them. Only the answering call is charged, so one answer's cost stays within this unless
    the input holds more tokens than estimated."""
    return max(
        (
            spec.cost_usd(
                input_tokens, min(max_tokens, spec.max_output_tokens) if spec.max_output_tokens else max_tokens
            )
            for spec in models
        ),
        default=0.0,
    )
