"""Budget scopes and how much of them is spent. Pure: the caller hands in the time.

Spend is kept per scope in the live-state store, under keys that name the period (UTC):

- ``d:2026-11-23`` and ``m:2026-11``: everything;
- ``d:2026-11-23:tier:economy``: one user tier (when ``budget.per_tier`` names it);
- ``d:2026-11-23:key:<apiKeyId>``: one API key (when ``budget.per_api_key`` is set).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .policy import Budget, BudgetLimits

DAY_SECONDS = 86_400
OVERALL_DAILY = "daily"  # the label of the overall daily scope (tier and key scopes are labelled by name)
# Counters outlive their period by a margin, for the dashboard and late readers; then TTL removes them.
DAILY_RETENTION_SECONDS = 3 * DAY_SECONDS
MONTHLY_RETENTION_SECONDS = 40 * DAY_SECONDS


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
