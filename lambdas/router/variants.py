"""The variants a policy splits traffic between: for the construct's per-variant alarms and dashboard row, and for
``routed-bedrock publish`` (which warns of variants no alarm watches yet).

A weighted route (a canary) has one variant per candidate model, under ``[service, Route, Variant]``; an A/B
experiment one per arm, under ``[service, Experiment, Variant]`` (``lambdas/router/handler.py`` emits both).
"""

from __future__ import annotations

from typing import NamedTuple

from . import metric_names as m
from .policy import Policy


class VariantGroup(NamedTuple):
    """One canary route or A/B experiment: how its metrics are dimensioned and which variants it has."""

    kind: str  # "canary" or "experiment"
    name: str  # the route (canary) or the experiment's key
    dimension: str  # Route or Experiment
    variants: tuple[str, ...]  # model keys (canary) or arm names (experiment)
    cascades: frozenset[str]  # the variants whose answers come from a cascade route (they count Escalations)

    def dimensions(self, variant: str) -> dict[str, str]:
        return {self.dimension: self.name, m.VARIANT_DIMENSION: variant}


def variant_groups(policy: Policy) -> list[VariantGroup]:
    groups = [
        VariantGroup(
            kind="canary",
            name=route.name,
            dimension=m.ROUTE_DIMENSION,
            variants=tuple(dict.fromkeys(c.model for c in route.candidates)),
            cascades=frozenset(),  # a cascade route cannot be weighted
        )
        for route in policy.routes.values()
        if route.weighted and len({c.model for c in route.candidates}) > 1
    ]
    for experiment in policy.experiments.values():
        groups.append(
            VariantGroup(
                kind="experiment",
                name=experiment.route,
                dimension=m.EXPERIMENT_DIMENSION,
                variants=tuple(arm.name for arm in experiment.arms),
                cascades=frozenset(  # the auto experiment's arms choose a classifier, not a route
                    arm.name
                    for arm in experiment.arms
                    if arm.route is not None and policy.routes[arm.route].cascade is not None
                ),
            )
        )
    return groups
