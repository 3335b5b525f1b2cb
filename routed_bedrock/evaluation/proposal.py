"""The proposal: per task, the cheapest model within tolerance of the best, and the policy that routes to it.

Per task (prompts without one count under the policy's default use case), among the models with at least
``min_samples`` answers, the cheapest by mean cost whose mean score is within ``tolerance`` of the best,
served by a route ``eval-<task>``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, NamedTuple

from lambdas.router.policy import AUTO_ROUTE, Policy
from routed_bedrock.evaluation.dataset import ROUTE_PREFIX
from routed_bedrock.evaluation.scoring import ModelStats

_MAX_FALLBACKS = 8  # the schema's routes.*.fallbacks maxItems
_MAX_ROUTE_DESCRIPTION = 512
_MAX_POLICY_DESCRIPTION = 1024
_MAX_POLICY_VERSION = 64
_EVAL_VERSION_SUFFIX = re.compile(r"\.eval-\d{8}$")
_SCORE_EPSILON = 1e-9


class TaskPick(NamedTuple):
    """The proposal for one task: ``model`` None (with ``note``) when no model has enough answers."""

    task: str
    model: str | None
    score: float | None
    best_model: str | None
    best_score: float | None
    cost_ratio: float | None  # the pick's mean cost over the best model's
    within_tolerance: tuple[str, ...]  # eligible models within tolerance of the best, cheapest first
    note: str = ""


def propose(
    stats: Mapping[str, Mapping[str, ModelStats]], *, tolerance: float = 0.02, min_samples: int = 5
) -> list[TaskPick]:
    """Per task: among models with at least ``min_samples`` answers, the cheapest (mean cost per answer)
    whose mean score is at least the best mean score minus ``tolerance``.

    Ties: the best is the cheaper of equal scores, the pick the better of equal costs, then catalog order.
    """
    picks = []
    for task, by_model in stats.items():
        eligible = [s for s in by_model.values() if s.answered >= min_samples]
        if not eligible:
            picks.append(TaskPick(task, None, None, None, None, None, (), f"no model has {min_samples} answers"))
            continue
        best = max(eligible, key=lambda s: (s.mean_score or 0.0, -(s.mean_cost_usd or 0.0)))
        best_score, best_cost = best.mean_score or 0.0, best.mean_cost_usd or 0.0
        close = [s for s in eligible if (s.mean_score or 0.0) >= best_score - tolerance - _SCORE_EPSILON]
        close.sort(key=lambda s: (s.mean_cost_usd or 0.0, -(s.mean_score or 0.0)))
        pick = close[0]
        ratio = (pick.mean_cost_usd or 0.0) / best_cost if best_cost else None
        picks.append(
            TaskPick(task, pick.model, pick.mean_score, best.model, best_score, ratio, tuple(s.model for s in close))
        )
    return picks


def proposed_policy(policy: Policy, picks: Sequence[TaskPick], *, dataset: str, today: date) -> dict[str, Any]:
    """The input policy with, per picked task, a route ``eval-<task>`` and ``rules.use_cases[task]`` on it.

    The route's candidate is the pick; its fallbacks the other models within tolerance (cheapest first),
    then the fallbacks of the route the task used (for a task on ``auto`` or new to the policy: the default
    tier's ``moderate`` route, or the default use case's route), at most 8. ``max_tokens`` and
    ``temperature`` come from that route too. The caller validates the document (``compile_policy``).
    """
    document = copy.deepcopy(dict(policy.document))
    routes, use_cases = document["routes"], document["rules"]["use_cases"]
    for pick in picks:
        if pick.model is None:
            continue
        previous = policy.use_cases.get(pick.task, policy.use_cases[policy.default_use_case])
        base = policy.routes[previous if previous != AUTO_ROUTE else policy.tiers[policy.default_tier]["moderate"]]
        fallbacks = [m for m in dict.fromkeys([*pick.within_tolerance, *base.fallbacks]) if m != pick.model]
        was = f"was route '{previous}'" if pick.task in policy.use_cases else "a use case new to the policy"
        description = (
            f"Proposed by routed-bedrock evaluate from {dataset}: {pick.model} scored {pick.score or 0.0:.3f} on "
            f"'{pick.task}' prompts (best: {pick.best_model}, {pick.best_score or 0.0:.3f}); {was}."
        )
        route: dict[str, Any] = {
            "description": description[:_MAX_ROUTE_DESCRIPTION],
            "candidates": [{"model": pick.model}],
            "fallbacks": fallbacks[:_MAX_FALLBACKS],
        }
        if base.max_tokens is not None:
            route["max_tokens"] = base.max_tokens
        if base.temperature is not None:
            route["temperature"] = base.temperature
        routes[ROUTE_PREFIX + pick.task] = route
        use_cases[pick.task] = ROUTE_PREFIX + pick.task
    suffix = f".eval-{today:%Y%m%d}"
    base_version = _EVAL_VERSION_SUFFIX.sub("", policy.version)
    document["policy_version"] = base_version[: _MAX_POLICY_VERSION - len(suffix)] + suffix
    description = (
        f"Proposed by routed-bedrock evaluate from dataset {dataset} on {today.isoformat()}: per task, the "
        f"cheapest model within tolerance of the best score. Based on policy {policy.version}: "
        + str(document.get("description", ""))
    )
    document["description"] = description[:_MAX_POLICY_DESCRIPTION]
    return document
