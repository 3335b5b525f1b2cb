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
