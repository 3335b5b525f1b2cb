"""The pure routing engine: policy + request + live-state snapshot -> decision.

No I/O, no clock, no randomness it was not handed: the same inputs always give the same decision.

Precedence, first match wins for choosing the route:

1. ``model`` named by the caller (if the policy allows overrides): that model goes first, the route
   chosen by the rules below supplies the fallbacks.
2. ``use_case`` mapped to a route in ``rules.use_cases`` (a static route).
3. ``use_case`` mapped to ``"auto"``: the tier table ``rules.tiers.levels[tier][complexity class]``.

An A/B experiment on the chosen route (``experiments``) then sends the caller, sticky by a bucket of its own,
to one arm's route (unless the caller named a model or the route: that request stays on it); the ``auto``
experiment instead picks, for requests the tier table routes, the complexity classifier (learned or heuristic).

Then candidates are filtered, in order, by modality (images need an ``image`` model) and context size
(estimated input + max output tokens must fit the window). If nothing is left the engine switches to
``rules.image_route`` or ``rules.long_context_route``; if still nothing fits, the request is the
caller's problem (``RoutingError``, HTTP 400). Weighted candidates split callers into sticky buckets
(hash of route and caller key): the picked one goes first and the others follow as fallbacks.
Each model expands into one planned call per region, home region first; a (model, region) whose
circuit is open in the live state is skipped.

Live state then shapes the plan:

- budget: the highest ``budget.modes`` entry whose ``at_percent`` the spend has reached applies. A
  ``max_model_tier`` mode drops models above that tier (when that leaves nothing, the cheapest catalog
  models within the tier that can take the request stand in); an ``action`` mode ends routing: the
  decision carries ``budget_action`` ("degrade" or "reject") and an empty plan.
- latency: with a latency budget (the caller's ``X-Latency-Budget-Ms``, else the route's
  ``latency_sla_ms``), planned calls whose recent latency exceeds it move to the end of the plan, order
  otherwise kept; unknown latency counts as fast.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from .classifier import Complexity, classify
from .policy import AUTO_ROUTE, MODEL_TIER_RANK, Arm, BudgetMode, CascadeSettings, Experiment, ModelSpec, Policy, Route


class RoutingError(ValueError):
    """The request cannot be routed because of what the caller sent (HTTP 400)."""


class RoutingRequest(NamedTuple):
    """What the engine needs to know about a request.

    Attributes:
        text: user and system text, for the complexity signals.
        input_chars: total characters of input text.
        images: number of image blocks.
        use_case: task label, or None for the policy's default.
        tier: user tier, or None for the policy's default.
        model: a model the caller asks for (catalog key or model id), or None.
        max_tokens: the caller's output limit, or None for the route's.
        sticky_key: caller identity that keeps one caller on one canary variant.
        latency_budget_ms: the caller's latency budget, or None for the route's SLA.
        ask: the newest user turn alone, for the learned router (trained on bare prompts: a system prompt or
            earlier turns would shift its size and wording signals); None reads ``text``.
        route: a route the caller names (the OpenAI API's ``model``), or None: the use case and tier decide.
    """

    text: str
    input_chars: int
    images: int = 0
    use_case: str | None = None
    tier: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    sticky_key: str = ""
    latency_budget_ms: int | None = None
    ask: str | None = None
    route: str | None = None


class LiveState(NamedTuple):
    """A snapshot of what the router knows about the world right now.

    Attributes:
        open_circuits: (model key, region) pairs that must not be called.
        latency_ms: recent latency (the policy's percentile) per (model key, region), where known.
        budget_used_percent: the highest share of any budget that applies to this request, or None.
        budget_scope: which budget that is ("daily", "monthly", "tier economy daily", ...).
    """

    open_circuits: frozenset[tuple[str, str]] = frozenset()
    latency_ms: Mapping[tuple[str, str], float] = {}
    budget_used_percent: float | None = None
    budget_scope: str | None = None


class PlannedCall(NamedTuple):
    model: ModelSpec
    region: str
    fallback: bool
    step: int = 0  # a cascade route's step (its candidate's index; fallbacks belong to the last step)


class Decision(NamedTuple):
    route: str
    primary_model: str
    plan: tuple[PlannedCall, ...]
    max_tokens: int
    temperature: float | None
    reasons: dict[str, Any]
    budget_action: str | None = None
    cascade: CascadeSettings | None = None  # set when the plan runs as a cascade (see service)


DEFAULT_MAX_TOKENS = 1024


def canary_bucket(route: str, sticky_key: str) -> float:
    """A stable bucket in [0, 100) for a caller on a route."""
    digest = hashlib.blake2b(f"{route}\x00{sticky_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100.0


def _order_candidates(route: Route, sticky_key: str, reasons: dict[str, Any]) -> list[str]:
    models = [c.model for c in route.candidates]
    if route.weighted and len(models) > 1:
        total = sum(c.weight or 0.0 for c in route.candidates)
        bucket = canary_bucket(route.name, sticky_key)
        point = bucket / 100.0 * total
        cumulative = 0.0
        picked = models[-1]
        for candidate in route.candidates:
            cumulative += candidate.weight or 0.0
            if point < cumulative:
                picked = candidate.model
                break
        reasons["canary"] = {"bucket": bucket, "variant": picked}
        models.remove(picked)
        models.insert(0, picked)
    for fallback in route.fallbacks:
        if fallback not in models:
            models.append(fallback)
    return models


def _pick_arm(experiment: Experiment, sticky_key: str, reasons: dict[str, Any]) -> Arm:
    """The arm this caller is on: a stable bucket per (experiment, caller), apart from the canary's."""
    bucket = canary_bucket(f"experiment\x00{experiment.route}", sticky_key)
    point = bucket / 100.0 * sum(arm.weight for arm in experiment.arms)
    cumulative, picked = 0.0, experiment.arms[-1]
    for arm in experiment.arms:
        cumulative += arm.weight
        if point < cumulative:
            picked = arm
            break
    reasons["experiment"] = {"route": experiment.route, "arm": picked.name, "bucket": bucket}
    return picked


def _routed_by_complexity(policy: Policy, request: RoutingRequest) -> bool:
    """Whether the tier-and-complexity table will choose this request's route (no route or model named)."""
    if request.route is not None or request.model is not None:
        return False
    use_case = request.use_case if request.use_case is not None else policy.default_use_case
    return policy.use_cases.get(use_case) == AUTO_ROUTE


def _select_route(policy: Policy, request: RoutingRequest, complexity: Complexity, reasons: dict[str, Any]) -> Route:
    use_case = request.use_case if request.use_case is not None else policy.default_use_case
    target = policy.use_cases.get(use_case)
    if target is None:
        known = ", ".join(sorted(policy.use_cases))
        raise RoutingError(f"unknown use_case '{use_case}' (expected one of: {known})")
    reasons["use_case"] = use_case
    tier = policy.tier_of(request.tier)
    if tier not in policy.tiers:
        known = ", ".join(sorted(policy.tiers))
        named = str(request.tier)
        shown = named if len(named) <= 40 else named[:37] + "..."
        raise RoutingError(f"unknown user tier '{shown}' in {policy.tier_header} (expected one of: {known})")
    reasons["tier"] = tier
    if request.route is not None:
        if request.route not in policy.routes:
            named = request.route if len(request.route) <= 80 else request.route[:77] + "..."
            raise RoutingError(f"route '{named}' is not in the policy (expected one of: {', '.join(policy.routes)})")
        reasons["rule"] = "explicit_route"
        return policy.routes[request.route]
    if target != AUTO_ROUTE:
        reasons["rule"] = "use_case"
        return policy.routes[target]
    reasons["rule"] = "tier_complexity"
    return policy.routes[policy.tiers[tier][complexity.klass]]


def _fits(spec: ModelSpec, request: RoutingRequest, needed_tokens: int) -> str | None:
    """None when the model can take the request, else why not."""
    if request.images and "image" not in spec.modalities:
        return "does not accept images"
    if needed_tokens > spec.context_window_tokens:
        return f"context window {spec.context_window_tokens} tokens < ~{needed_tokens} needed"
    return None


def decide(policy: Policy, request: RoutingRequest, state: LiveState | None = None) -> Decision:
    """Choose the route and the ordered execution plan for one request.

    Raises:
        RoutingError: the request names an unknown use case, tier or model, or no model in the policy
            can take it (too long for every context window, images with no vision model).
    """
    state = state or LiveState()
    reasons: dict[str, Any] = {}
    rules = policy.complexity
    by_classifier = policy.experiments.get(AUTO_ROUTE)
    arm = (
        _pick_arm(by_classifier, request.sticky_key, reasons)
        if by_classifier is not None and _routed_by_complexity(policy, request)
        else None
    )
    if arm is not None and arm.complexity == "heuristic":
        rules = rules._replace(learned=None)
    complexity = classify(request.text, rules, total_chars=request.input_chars, images=request.images, ask=request.ask)
    reasons["complexity"] = complexity.as_reason()
    route = _select_route(policy, request, complexity, reasons)

    pinned: ModelSpec | None = None
    if request.model is not None:
        if not policy.allow_model_override:
            raise RoutingError("the policy does not allow callers to choose a model ('model' must be omitted)")
        pinned = policy.model_by_id_or_key(request.model)
        if pinned is None:
            model = request.model if len(request.model) <= 80 else request.model[:77] + "..."
            raise RoutingError(f"model '{model}' is not in the policy's catalog")
        reasons["rule"] = "explicit_model"

    experiment = policy.experiments.get(route.name)
    if experiment is not None and "experiment" not in reasons:  # one experiment per request: auto's came first
        if pinned is not None:
            reasons["experiment"] = {"route": experiment.route, "skipped": "the caller named a model"}
        elif reasons.get("rule") == "explicit_route":
            reasons["experiment"] = {"route": experiment.route, "skipped": "the caller named the route"}
        else:
            route = policy.routes[_pick_arm(experiment, request.sticky_key, reasons).route or route.name]

    max_tokens = request.max_tokens or route.max_tokens or DEFAULT_MAX_TOKENS
    needed = complexity.estimated_tokens + max_tokens
    skipped: list[dict[str, str]] = []

    def viable_chain(candidate_route: Route) -> list[ModelSpec]:
        names = _order_candidates(candidate_route, request.sticky_key, reasons)
        if pinned is not None:
            names = [pinned.key] + [n for n in names if n != pinned.key]
            reasons.pop("canary", None)  # the caller's model goes first: it is no canary variant's request
        chain = []
        for name in names:
            spec = policy.models[name]
            why = _fits(spec, request, needed)
            if why is None:
                chain.append(spec)
            else:
                skipped.append({"model": name, "reason": why})
        return chain

    mode = _budget_mode(policy, state, reasons)
    if mode is not None and mode.action is not None:
        reasons["route"] = route.name
        return Decision(
            route=route.name,
            primary_model=route.candidates[0].model,
            plan=(),
            max_tokens=max_tokens,
            temperature=route.temperature,
            reasons=reasons,
            budget_action=mode.action,
        )
    cap_tier = mode.max_model_tier if mode is not None else None
    cap = MODEL_TIER_RANK[cap_tier] if cap_tier else None

    def capped(candidates: list[ModelSpec]) -> list[ModelSpec]:
        if cap is None:
            return candidates
        kept = [spec for spec in candidates if MODEL_TIER_RANK[spec.tier] <= cap]
        for spec in candidates:
            if spec not in kept:
                skipped.append({"model": spec.key, "reason": f"budget caps models at tier {cap_tier}"})
        if kept or not candidates:
            return kept
        stand_ins = sorted(
            (
                spec
                for spec in policy.models.values()
                if MODEL_TIER_RANK[spec.tier] <= cap and _fits(spec, request, needed) is None
            ),
            key=lambda spec: (spec.price_per_1k_input_usd + spec.price_per_1k_output_usd, spec.key),
        )
        if stand_ins:
            reasons["budget"]["stand_ins"] = [spec.key for spec in stand_ins[:3]]
        return stand_ins[:3]

    chain = capped(viable_chain(route))
    if not chain:
        alternative = policy.image_route if request.images else policy.long_context_route
        if alternative is not None and alternative != route.name:
            reasons["switched_route"] = {"from": route.name, "to": alternative}
            route = policy.routes[alternative]
            chain = capped(viable_chain(route))
    reasons["route"] = route.name
    if skipped:
        reasons["skipped"] = skipped
    if not chain:
        if request.images:
            raise RoutingError("no model in the policy accepts this request's images and size")
        raise RoutingError(
            f"input too long: about {complexity.estimated_tokens} input tokens plus max_tokens {max_tokens} "
            "exceed the context window of every candidate model"
        )

    primary = chain[0]
    cascade = route.cascade if pinned is None else None
    if route.cascade is not None and pinned is not None:
        reasons["cascade"] = {"skipped": "the caller named a model"}
    steps = _cascade_steps(route, chain) if cascade is not None else {}
    if cascade is not None and len(set(steps.values())) < 2:
        reasons["cascade"] = {"skipped": "fewer than two of its steps can take this request"}
        cascade = None
    plan: list[PlannedCall] = []
    circuit_skips: list[dict[str, str]] = []
    # A cascade's later candidates are steps, not fallbacks: only its fallbacks list counts as one.
    steps_not_fallbacks = frozenset(route_models(route)) if cascade is not None else frozenset()
    for spec in chain:
        step = steps.get(spec.key, 0)
        fallback = spec is not primary and spec.key not in steps_not_fallbacks
        for region in spec.regions:
            if (spec.key, region) in state.open_circuits:
                circuit_skips.append({"model": spec.key, "region": region, "reason": "circuit open"})
                continue
            plan.append(PlannedCall(model=spec, region=region, fallback=fallback, step=step))
    if circuit_skips:
        reasons.setdefault("skipped", []).extend(circuit_skips)
    plan = _latency_order(plan, route, request, state, reasons)
    if cascade is not None:
        plan.sort(key=lambda call: call.step)  # stable: latency moves a call within its step, never past one
        if len({call.step for call in plan}) < 2:
            reasons["cascade"] = {"skipped": "fewer than two of its steps can be called (open circuits)"}
            cascade = None
    judge = cascade.judge if cascade is not None else None
    if (
        cascade is not None
        and judge is not None
        and cap is not None
        and MODEL_TIER_RANK[policy.models[judge.model].tier] > cap
    ):
        reasons.setdefault("skipped", []).append(
            {"model": judge.model, "reason": f"budget caps models at tier {cap_tier} (the cascade's judge)"}
        )
        cascade = cascade._replace(judge=None)
    reasons["plan"] = [f"{call.model.key}@{call.region}" for call in plan]
    return Decision(
        route=route.name,
        primary_model=primary.key,
        plan=tuple(plan),
        max_tokens=max_tokens,
        temperature=route.temperature,
        reasons=reasons,
        cascade=cascade,
    )


def route_models(route: Route) -> tuple[str, ...]:
    return tuple(candidate.model for candidate in route.candidates)


def _cascade_steps(route: Route, chain: list[ModelSpec]) -> dict[str, int]:
    """Model key -> cascade step: the candidates that can take the request, in order; fallbacks join the last."""
    candidates = route_models(route)
    steps: dict[str, int] = {}
    for spec in chain:
        if spec.key in candidates:
            steps[spec.key] = len(steps)
    last = max(steps.values(), default=0)
    for spec in chain:
        steps.setdefault(spec.key, last)
    return steps


def _budget_mode(policy: Policy, state: LiveState, reasons: dict[str, Any]) -> BudgetMode | None:
    """The budget mode in force: the last one whose threshold the spend has reached."""
    if policy.budget is None or state.budget_used_percent is None:
        return None
    active = None
    for mode in policy.budget.modes:
        if state.budget_used_percent >= mode.at_percent:
            active = mode
    reason: dict[str, Any] = {"used_percent": round(state.budget_used_percent, 1), "scope": state.budget_scope}
    if active is not None:
        reason["mode"] = active.action or f"max tier {active.max_model_tier}"
        reason["at_percent"] = active.at_percent
    reasons["budget"] = reason
    return active


def _latency_order(
    plan: list[PlannedCall], route: Route, request: RoutingRequest, state: LiveState, reasons: dict[str, Any]
) -> list[PlannedCall]:
    """Move calls whose recent latency exceeds the latency budget to the end, keeping order otherwise."""
    budget_ms, source = request.latency_budget_ms, "header"
    if budget_ms is None:
        budget_ms, source = route.latency_sla_ms, "route_sla"
    if budget_ms is None:
        return plan
    fast: list[PlannedCall] = []
    slow: list[PlannedCall] = []
    demoted: list[dict[str, Any]] = []
    for call in plan:
        latency = state.latency_ms.get((call.model.key, call.region))
        if latency is not None and latency > budget_ms:
            slow.append(call)
            demoted.append({"model": call.model.key, "region": call.region, "recent_latency_ms": latency})
        else:
            fast.append(call)
    reason: dict[str, Any] = {"budget_ms": budget_ms, "source": source}
    if demoted:
        reason["deprioritised"] = demoted
    reasons["latency"] = reason
    return fast + slow
