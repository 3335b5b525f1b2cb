"""A/B experiments (``experiments``): a route's callers split between two routing strategies, sticky per caller."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest

from lambdas.router.engine import RoutingRequest, decide
from lambdas.router.policy import DEFAULT_POLICY_PATH, PolicyError, compile_policy

DOCUMENT: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
MATHS = "A farmer has 3 fields of 12 rows with 8 plants each. How many plants are there in all?"


def with_experiments(experiments: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    document["experiments"] = experiments
    return document


DIRECT_VS_CASCADE = {
    "math-cascade": {
        "description": "the cascade against the strong model alone",
        "arms": [
            {"name": "cascade", "route": "math-cascade", "weight": 50},
            {"name": "direct", "route": "deep", "weight": 50},
        ],
    }
}


@pytest.fixture(scope="module")
def policy():
    return compile_policy(with_experiments(DIRECT_VS_CASCADE))


def maths(sticky_key: str, **overrides: Any) -> RoutingRequest:
    return RoutingRequest(text=MATHS, input_chars=len(MATHS), use_case="math", sticky_key=sticky_key, **overrides)


def test_callers_split_by_the_weights(policy):
    routes = Counter(decide(policy, maths(f"user-{i}")).route for i in range(4000))
    assert set(routes) == {"math-cascade", "deep"}
    assert 0.47 < routes["deep"] / 4000 < 0.53


@pytest.mark.parametrize(("weights", "share"), [((90, 10), 0.10), ((1, 3), 0.75)])
def test_uneven_weights_are_honoured(weights, share):
    experiments = copy.deepcopy(DIRECT_VS_CASCADE)
    for arm, weight in zip(experiments["math-cascade"]["arms"], weights, strict=True):
        arm["weight"] = weight
    policy = compile_policy(with_experiments(experiments))
    direct = sum(decide(policy, maths(f"caller-{i}")).route == "deep" for i in range(4000))
    assert abs(direct / 4000 - share) < 0.03


def test_a_caller_stays_on_its_arm_and_the_decision_says_which(policy):
    first = decide(policy, maths("user-42"))
    for text in ("What is 2 + 2?", MATHS, "Solve for x: 3x = 12."):
        again = decide(policy, RoutingRequest(text=text, input_chars=len(text), use_case="math", sticky_key="user-42"))
        assert again.route == first.route
        assert again.reasons["experiment"] == first.reasons["experiment"]
    experiment = first.reasons["experiment"]
    assert experiment["route"] == "math-cascade"
    assert experiment["arm"] == ("direct" if first.route == "deep" else "cascade")
    assert 0 <= experiment["bucket"] < 100
    # And the cascade runs only on its own arm
    assert (first.cascade is not None) == (first.route == "math-cascade")


def test_the_arm_bucket_is_not_the_canary_bucket(policy):
    # Callers on one arm still spread over a weighted arm route's candidates: the two draws are independent
    experiments = {
        "balanced": {
            "arms": [{"name": "a", "route": "balanced", "weight": 50}, {"name": "b", "route": "deep", "weight": 50}]
        }
    }
    split = compile_policy(with_experiments(experiments))
    text = "Summarize this memo."
    on_a = [
        decide(split, RoutingRequest(text=text, input_chars=len(text), use_case="summarization", sticky_key=f"u{i}"))
        for i in range(4000)
    ]
    canary = Counter(d.primary_model for d in on_a if d.reasons["experiment"]["arm"] == "a")
    total = sum(canary.values())
    assert 0.07 < canary["nova-pro"] / total < 0.13  # the 10% canary within arm a


def test_a_caller_who_names_a_model_is_not_split(policy):
    document = with_experiments(DIRECT_VS_CASCADE)
    document["rules"]["allow_model_override"] = True
    pinned = compile_policy(document)
    decision = decide(pinned, maths("user-1", model="nova-micro"))
    assert decision.route == "math-cascade"
    assert decision.reasons["experiment"] == {"route": "math-cascade", "skipped": "the caller named a model"}


def test_other_routes_are_untouched(policy):
    decision = decide(policy, RoutingRequest(text="Hi!", input_chars=3, sticky_key="user-1"))
    assert "experiment" not in decision.reasons


@pytest.mark.parametrize(
    ("experiments", "message"),
    [
        ({"nope": DIRECT_VS_CASCADE["math-cascade"]}, "experiments.nope names no route"),
        (
            {
                "math-cascade": {
                    "arms": [{"name": "a", "route": "deep", "weight": 1}, {"name": "a", "route": "fast", "weight": 1}]
                }
            },
            "arms names must be distinct",
        ),
        (
            {
                "math-cascade": {
                    "arms": [{"name": "a", "route": "deep", "weight": 1}, {"name": "b", "route": "gone", "weight": 1}]
                }
            },
            "experiments.math-cascade.arms[1].route names unknown route 'gone'",
        ),
        (
            {
                "math-cascade": {
                    "arms": [{"name": "a", "route": "deep", "weight": 1}, {"name": "b", "route": "fast", "weight": 1}]
                },
                "deep": {
                    "arms": [{"name": "a", "route": "deep", "weight": 1}, {"name": "b", "route": "fast", "weight": 1}]
                },
            },
            "arms[0].route 'deep' is split by an experiment of its own",
        ),
        (
            {"math-cascade": {"arms": [{"name": "a", "route": "deep", "weight": 1}]}},
            "arms",  # the schema: at least two arms
        ),
        (
            {
                "math-cascade": {
                    "arms": [{"name": "a", "route": "deep", "weight": 0}, {"name": "b", "route": "fast", "weight": 1}]
                }
            },
            "weight",  # the schema: above 0
        ),
        (
            {
                "math-cascade": {
                    "arms": [{"name": "A!", "route": "deep", "weight": 1}, {"name": "b", "route": "fast", "weight": 1}]
                }
            },
            "name",  # the schema: a dimension-safe name
        ),
    ],
)
def test_a_bad_experiment_is_refused_naming_it(experiments, message):
    with pytest.raises(PolicyError, match="invalid policy") as raised:
        compile_policy(with_experiments(experiments))
    assert message in str(raised.value)


# --- the auto experiment: the learned router against the heuristic --------------------------------------

LEARNED_VS_HEURISTIC = {
    "auto": {
        "arms": [
            {"name": "learned", "complexity": "learned", "weight": 50},
            {"name": "heuristic", "complexity": "heuristic", "weight": 50},
        ]
    }
}


@pytest.fixture(scope="module")
def classifiers():
    return compile_policy(with_experiments(LEARNED_VS_HEURISTIC))


def auto(sticky_key: str, text: str = MATHS, **overrides: Any) -> RoutingRequest:
    return RoutingRequest(text=text, input_chars=len(text), sticky_key=sticky_key, **overrides)


def test_auto_callers_split_between_the_classifiers(classifiers):
    arms = Counter(decide(classifiers, auto(f"user-{i}")).reasons["experiment"]["arm"] for i in range(4000))
    assert 0.47 < arms["heuristic"] / 4000 < 0.53


def test_each_arm_classifies_with_its_own_classifier_and_stays_on_it(classifiers):
    by_arm: dict[str, Any] = {}
    for i in range(50):
        decision = decide(classifiers, auto(f"caller-{i}"))
        by_arm.setdefault(decision.reasons["experiment"]["arm"], decision)
    assert set(by_arm) == {"learned", "heuristic"}
    assert by_arm["learned"].reasons["complexity"]["router"] == "learned"  # its score and thresholds
    assert by_arm["heuristic"].reasons["complexity"]["router"] == "heuristic"  # the keyword signals alone
    assert "signals" in by_arm["heuristic"].reasons["complexity"]
    caller = "caller-7"
    first = decide(classifiers, auto(caller)).reasons["experiment"]
    assert all(decide(classifiers, auto(caller, text=t)).reasons["experiment"] == first for t in ("Hi", "Prove it."))


def test_requests_the_tier_table_does_not_route_are_not_in_the_auto_experiment(classifiers):
    for request in (
        auto("user-1", use_case="math"),  # a static use case
        auto("user-1", route="fast"),  # a route named by the caller
    ):
        assert "experiment" not in decide(classifiers, request).reasons


def test_one_experiment_per_request_the_auto_one_first():
    both = copy.deepcopy(LEARNED_VS_HEURISTIC) | {
        "deep": {"arms": [{"name": "a", "route": "deep", "weight": 1}, {"name": "b", "route": "premium", "weight": 1}]}
    }
    policy = compile_policy(with_experiments(both))
    hard = "Prove that the set of primes is infinite, then derive a bound on the n-th prime. " * 20
    decisions = [decide(policy, auto(f"u{i}", text=hard)) for i in range(20)]
    assert all(d.reasons["experiment"]["route"] == "auto" for d in decisions)


@pytest.mark.parametrize(
    ("experiments", "message"),
    [
        (
            {
                "auto": {
                    "arms": [{"name": "a", "route": "deep", "weight": 1}, {"name": "b", "route": "fast", "weight": 1}]
                }
            },
            "experiments.auto.arms[0] needs complexity",
        ),
        (
            {
                "deep": {
                    "arms": [
                        {"name": "a", "complexity": "learned", "weight": 1},
                        {"name": "b", "route": "fast", "weight": 1},
                    ]
                }
            },
            "experiments.deep.arms[0] needs a route",
        ),
        (
            {
                "auto": {
                    "arms": [
                        {"name": "a", "complexity": "learned", "route": "deep", "weight": 1},
                        {"name": "b", "complexity": "heuristic", "weight": 1},
                    ]
                }
            },
            "arms",  # the schema: a route or a complexity classifier, not both
        ),
        (
            {
                "auto": {
                    "arms": [
                        {"name": "a", "complexity": "clever", "weight": 1},
                        {"name": "b", "complexity": "heuristic", "weight": 1},
                    ]
                }
            },
            "complexity",
        ),
    ],
)
def test_a_bad_auto_experiment_is_refused(experiments, message):
    with pytest.raises(PolicyError) as raised:
        compile_policy(with_experiments(experiments))
    assert message in str(raised.value)


def test_the_learned_arm_needs_a_learned_router():
    document = with_experiments(LEARNED_VS_HEURISTIC)
    del document["rules"]["complexity"]["learned"]
    with pytest.raises(PolicyError, match=r"rules\.complexity\.learned is not set"):
        compile_policy(document)


def test_a_caller_who_names_the_route_is_not_split(policy):
    decision = decide(policy, maths("user-1", route="math-cascade"))
    assert decision.route == "math-cascade"
    assert decision.reasons["experiment"] == {"route": "math-cascade", "skipped": "the caller named the route"}


def test_a_pinned_model_is_no_canary_variant():
    document = copy.deepcopy(DOCUMENT)
    document["rules"]["allow_model_override"] = True
    policy = compile_policy(document)
    text = "Summarize this memo."
    for i in range(30):
        request = RoutingRequest(
            text=text, input_chars=len(text), use_case="summarization", sticky_key=f"u{i}", model="claude-haiku-4-5"
        )
        decision = decide(policy, request)
        assert decision.primary_model == "claude-haiku-4-5"
        assert "canary" not in decision.reasons  # its metrics must not count for either variant
