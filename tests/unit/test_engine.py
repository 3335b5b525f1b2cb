"""Routing decisions: precedence, tiers, canary stickiness, modality and context filters, circuits."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from lambdas.router.engine import LiveState, RoutingError, RoutingRequest, canary_bucket, decide
from lambdas.router.policy import compile_policy

GREETING = "Hello!"
HARD = (
    "Analyze the trade-offs of event sourcing for our billing system step by step: first the risks, "
    "then the costs, and finally recommend a strategy."
)


def request(text: str = GREETING, **overrides) -> RoutingRequest:
    return RoutingRequest(
        text=text, input_chars=len(text), sticky_key=overrides.pop("sticky_key", "caller-1"), **overrides
    )


def test_greeting_goes_to_the_cheap_route(default_policy):
    decision = decide(default_policy, request(GREETING))
    assert decision.route == "fast"
    assert decision.primary_model == "nova-micro"
    assert decision.reasons["rule"] == "tier_complexity"
    assert decision.reasons["complexity"]["class"] == "simple"


def test_hard_prompt_goes_to_the_strong_route(default_policy):
    decision = decide(default_policy, request(HARD))
    assert decision.route == "deep"
    assert decision.primary_model == "claude-sonnet-4-5"


def test_static_use_case_wins_over_complexity(default_policy):
    # Given a hard prompt labelled "faq"
    decision = decide(default_policy, request(HARD, use_case="faq"))
    # Then the static route applies
    assert decision.route == "fast"
    assert decision.reasons["rule"] == "use_case"


@pytest.mark.parametrize(
    ("tier", "text", "route"),
    [
        ("premium", HARD, "premium"),
        ("premium", GREETING, "balanced"),
        ("economy", HARD, "balanced"),
        ("economy", GREETING, "fast"),
        ("PREMIUM", HARD, "premium"),
    ],
)
def test_user_tier_selects_the_row_of_the_tier_table(default_policy, tier, text, route):
    decision = decide(default_policy, request(text, tier=tier))
    assert decision.route == route
    assert decision.reasons["tier"] == tier.lower()


def test_rejects_unknown_tier_naming_allowed_values(default_policy):
    with pytest.raises(RoutingError, match="unknown user tier 'gold' in X-User-Tier"):
        decide(default_policy, request(tier="gold"))


def test_rejects_unknown_use_case_listing_known_ones(default_policy):
    with pytest.raises(RoutingError) as error:
        decide(default_policy, request(use_case="poetry"))
    assert "unknown use_case 'poetry'" in str(error.value)
    assert "faq" in str(error.value)


def test_plan_is_each_model_in_each_region_home_first(default_policy):
    decision = decide(default_policy, request(GREETING))
    assert decision.reasons["plan"] == [
        "nova-micro@us-east-1",
        "nova-micro@us-west-2",
        "nova-lite@us-east-1",
        "nova-lite@us-west-2",
        "claude-haiku-4-5@us-east-1",
        "claude-haiku-4-5@us-west-2",
    ]
    assert [call.fallback for call in decision.plan] == [False, False, True, True, True, True]


def test_explicit_model_goes_first_and_route_supplies_fallbacks(default_policy):
    decision = decide(default_policy, request(GREETING, model="us.amazon.nova-pro-v1:0"))
    assert decision.primary_model == "nova-pro"
    assert decision.reasons["rule"] == "explicit_model"
    assert decision.plan[0].model.key == "nova-pro"
    assert [c.model.key for c in decision.plan[2::2]] == ["nova-micro", "nova-lite", "claude-haiku-4-5"]


def test_rejects_model_outside_the_catalog(default_policy):
    with pytest.raises(RoutingError, match="model 'gpt-4o' is not in the policy's catalog"):
        decide(default_policy, request(model="gpt-4o"))


def test_rejects_model_override_when_the_policy_forbids_it(policy_document):
    policy_document["rules"]["allow_model_override"] = False
    with pytest.raises(RoutingError, match="does not allow callers to choose a model"):
        decide(compile_policy(policy_document), request(model="nova-pro"))


def test_images_skip_text_only_models_and_switch_to_the_vision_route(default_policy):
    # Given an image on a simple prompt: the fast route's primary (nova-micro) is text-only
    decision = decide(default_policy, request("What is in this picture?", images=1, use_case="faq"))
    # Then nova-micro is skipped, and the rest of the fast chain serves (nova-lite, claude-haiku-4-5)
    assert decision.primary_model == "nova-lite"
    assert [c.model.key for c in decision.plan[::2]] == ["nova-lite", "claude-haiku-4-5"]
    assert {"model": "nova-micro", "reason": "does not accept images"} in decision.reasons["skipped"]


def test_images_switch_route_when_no_candidate_accepts_them(policy_document):
    # Given a fast route made only of a text-only model
    policy_document["routes"]["fast"] = {"candidates": [{"model": "nova-micro"}], "max_tokens": 256}
    decision = decide(compile_policy(policy_document), request("Describe this", images=1, use_case="faq"))
    # Then the engine switches to the image route
    assert decision.reasons["switched_route"] == {"from": "fast", "to": "vision"}
    assert decision.route == "vision"


def test_long_input_skips_models_whose_window_is_too_small(default_policy):
    # Given ~250K tokens on the deep route: Claude's 200K windows are too small, nova-pro's 300K fits
    text = "word " * 200_000
    decision = decide(default_policy, request(text, use_case="analysis"))
    assert decision.primary_model == "nova-pro"
    skipped = {s["model"] for s in decision.reasons["skipped"]}
    assert skipped == {"claude-sonnet-4-5", "claude-haiku-4-5"}


def test_long_input_switches_to_long_context_route_when_nothing_fits(policy_document):
    # Given a fast route of 128K/200K windows only and ~250K tokens of input
    policy_document["routes"]["fast"]["fallbacks"] = ["claude-haiku-4-5"]
    decision = decide(compile_policy(policy_document), request("word " * 200_000, use_case="faq"))
    # Then the engine switches to the long-context route
    assert decision.reasons["switched_route"] == {"from": "fast", "to": "long-context"}
    assert decision.primary_model == "nova-pro"


def test_rejects_input_too_long_for_every_model(default_policy):
    text = "word " * 300_000  # ~375K tokens: over every window in the catalog
    with pytest.raises(RoutingError, match="input too long"):
        decide(default_policy, request(text))


def test_canary_split_follows_weights_and_is_sticky(default_policy):
    # Given many callers on the balanced route (90% claude-haiku-4-5, 10% nova-pro)
    picks = Counter(
        decide(
            default_policy, request("Summarize this memo.", use_case="summarization", sticky_key=f"user-{i}")
        ).primary_model
        for i in range(2000)
    )
    # Then the split is close to the weights
    assert 0.06 < picks["nova-pro"] / 2000 < 0.14
    # And one caller always gets the same variant
    first = decide(default_policy, request("a", use_case="summarization", sticky_key="user-7")).primary_model
    again = decide(default_policy, request("b", use_case="summarization", sticky_key="user-7")).primary_model
    assert first == again


def test_canary_variant_is_followed_by_the_other_candidate(default_policy):
    decision = decide(default_policy, request("Summarize.", use_case="summarization"))
    keys = [c.model.key for c in decision.plan]
    assert set(keys[:4]) == {"claude-haiku-4-5", "nova-pro"}
    assert decision.reasons["canary"]["variant"] == keys[0]


def test_canary_bucket_is_stable_and_in_range():
    assert canary_bucket("balanced", "x") == canary_bucket("balanced", "x")
    assert 0 <= canary_bucket("balanced", "x") < 100


def test_open_circuit_removes_the_pair_from_the_plan(default_policy):
    state = LiveState(open_circuits=frozenset({("nova-micro", "us-east-1")}))
    decision = decide(default_policy, request(GREETING), state)
    assert decision.reasons["plan"][0] == "nova-micro@us-west-2"
    assert {"model": "nova-micro", "region": "us-east-1", "reason": "circuit open"} in decision.reasons["skipped"]


def test_max_tokens_comes_from_caller_then_route(default_policy):
    assert decide(default_policy, request(GREETING)).max_tokens == 512
    assert decide(default_policy, request(GREETING, max_tokens=64)).max_tokens == 64


def test_decision_is_deterministic(default_policy):
    assert decide(default_policy, request(HARD)) == decide(default_policy, request(HARD))


def test_a_decision_costs_well_under_a_millisecond(default_policy):
    # A guard against pathological regressions; the real figure is in benchmarks/router_overhead.py
    started = time.perf_counter()
    for i in range(200):
        decide(default_policy, request(HARD, sticky_key=str(i)))
    assert (time.perf_counter() - started) / 200 < 0.001


# -- budget modes ------------------------------------------------------------------------------------


def test_below_the_first_budget_mode_nothing_changes(default_policy):
    state = LiveState(budget_used_percent=50.0, budget_scope="daily")
    decision = decide(default_policy, request(HARD), state)
    assert decision.primary_model == "claude-sonnet-4-5"
    assert decision.reasons["budget"] == {"used_percent": 50.0, "scope": "daily"}


def test_at_70_percent_models_are_capped_at_standard(default_policy):
    # Given the deep route (Sonnet, then Haiku 4.5 and Nova Pro) and 72% of the budget spent
    decision = decide(default_policy, request(HARD), LiveState(budget_used_percent=72.0, budget_scope="daily"))
    # Then the premium-tier Sonnet is dropped and the standard models remain, in order
    assert decision.primary_model == "claude-haiku-4-5"
    assert [c.model.key for c in decision.plan][::2] == ["claude-haiku-4-5", "nova-pro"]
    assert {"model": "claude-sonnet-4-5", "reason": "budget caps models at tier standard"} in decision.reasons[
        "skipped"
    ]
    assert decision.reasons["budget"]["mode"] == "max tier standard"


def test_when_the_cap_leaves_nothing_the_cheapest_allowed_models_stand_in(default_policy):
    # Given the premium route (Opus, Sonnet, Haiku 4.5) and 95% spent: economy only
    state = LiveState(budget_used_percent=95.0, budget_scope="daily")
    decision = decide(default_policy, request(HARD, tier="premium"), state)
    assert decision.route == "premium"
    assert decision.primary_model == "nova-micro"
    assert decision.reasons["budget"]["stand_ins"] == ["nova-micro", "nova-lite"]
    assert all(call.model.tier == "economy" for call in decision.plan)


def test_at_100_percent_the_policy_action_ends_routing(default_policy, policy_document):
    decision = decide(default_policy, request(GREETING), LiveState(budget_used_percent=100.0))
    assert decision.budget_action == "degrade"
    assert decision.plan == ()
    policy_document["budget"]["modes"][-1] = {"at_percent": 100, "action": "reject"}
    rejecting = compile_policy(policy_document)
    assert decide(rejecting, request(GREETING), LiveState(budget_used_percent=130.0)).budget_action == "reject"


# -- latency -----------------------------------------------------------------------------------------


def test_pairs_slower_than_the_callers_budget_go_last(default_policy):
    slow = LiveState(latency_ms={("nova-micro", "us-east-1"): 3200.0, ("nova-micro", "us-west-2"): 3200.0})
    decision = decide(default_policy, request(GREETING, latency_budget_ms=500), slow)
    assert decision.reasons["plan"][:2] == ["nova-lite@us-east-1", "nova-lite@us-west-2"]
    assert decision.reasons["plan"][-2:] == ["nova-micro@us-east-1", "nova-micro@us-west-2"]
    assert decision.reasons["latency"]["source"] == "header"
    assert [d["model"] for d in decision.reasons["latency"]["deprioritised"]] == ["nova-micro", "nova-micro"]


def test_route_sla_applies_without_a_header_and_unknown_latency_counts_as_fast(default_policy):
    # The fast route's SLA is 3000 ms: a 3200 ms home region goes last, the unmeasured one stays
    state = LiveState(latency_ms={("nova-micro", "us-east-1"): 3200.0})
    decision = decide(default_policy, request(GREETING), state)
    assert decision.reasons["latency"] == {
        "budget_ms": 3000,
        "source": "route_sla",
        "deprioritised": [{"model": "nova-micro", "region": "us-east-1", "recent_latency_ms": 3200.0}],
    }
    assert decision.reasons["plan"][0] == "nova-micro@us-west-2"
    assert decision.reasons["plan"][-1] == "nova-micro@us-east-1"
