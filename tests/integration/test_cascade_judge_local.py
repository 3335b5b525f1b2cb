"""A cascade with a judge in the local endpoint: the judge's call goes to the simulator over the Converse wire
protocol (system prompt, temperature 0, a few output tokens), and its verdict decides."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas.router.policy import DEFAULT_POLICY_PATH

from .conftest import LocalEndpoint, running_local_endpoint

NOVA_MICRO = "us.amazon.nova-micro-v1:0"
NOVA_LITE = "us.amazon.nova-lite-v1:0"
PENS = {"prompt": "Ana buys 4 pens at $3 each. How much does she spend?", "use_case": "math"}
WORKED = "4 pens at $3 each cost 4 * 3 = 12 dollars.\n#### 12"


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    """`make local` with the shipped policy plus a Nova Lite judge on the maths cascade's every answer."""
    folder = tmp_path_factory.mktemp("judged")
    document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["routes"]["math-cascade"]["cascade"]["judge"] = {
        "model": "nova-lite",
        "consult_from": 0.0,
        "consult_below": 1.0,
    }
    policy = Path(folder) / "judged.json"
    policy.write_text(json.dumps(document), encoding="utf-8")
    with running_local_endpoint(folder, {"POLICY_FILE": str(policy)}) as endpoint:
        yield endpoint


@pytest.fixture
def endpoint(judged: LocalEndpoint) -> Iterator[LocalEndpoint]:
    assert judged.request("DELETE", "/_sim/calls").status == 200  # the start-up health probe's call
    yield judged
    assert judged.request("DELETE", "/_sim/answers").status == 200
    assert judged.request("DELETE", "/_sim/calls").status == 200


def script(endpoint: LocalEndpoint, model: str, contains: str, text: str) -> None:
    rule = {"model": model, "prompt_contains": contains, "text": text}
    response = endpoint.request("POST", "/_sim/answers", rule)
    assert response.status == 200, response.body


def test_the_judge_rejects_a_worked_answer_and_the_cascade_escalates(endpoint):
    # Given Nova Micro's worked answer, and a judge scripted to find it incorrect (its rule first: the judge's
    # message also holds the question)
    script(endpoint, NOVA_LITE, "Answer to check", "INCORRECT")
    script(endpoint, NOVA_MICRO, "pens", WORKED)
    # When the maths ask is sent
    response = endpoint.generate(PENS)
    # Then the simulator took the judge's request, and the verdict escalated the answer to Claude Sonnet
    assert response.status == 200, response.body
    first, last = response.body["decision"]["cascade"]["steps"]
    assert first["judge"] == {"model": "nova-lite", "verdict": "incorrect"}
    assert first["escalated"].startswith("the judge found it incorrect")
    assert last["model"] == "claude-sonnet-4-5" and "sonnet" in response.body["model_used"]
    calls = endpoint.request("GET", "/_sim/calls").body
    assert [call["model"] for call in calls["recent"]] == [NOVA_MICRO, NOVA_LITE, response.body["model_used"]]


def test_the_judge_accepts_a_worked_answer_and_one_answer_is_returned(endpoint):
    script(endpoint, NOVA_LITE, "Answer to check", "CORRECT")
    script(endpoint, NOVA_MICRO, "pens", WORKED)
    response = endpoint.generate(PENS)
    assert response.status == 200, response.body
    assert response.body["output"] == WORKED and response.body["model_used"] == NOVA_MICRO
    [step] = response.body["decision"]["cascade"]["steps"]
    assert step["judge"] == {"model": "nova-lite", "verdict": "correct"} and step["accepted"] is True
    assert response.body["usage"]["output_tokens"] == -(-len(WORKED) // 4) + 2  # "CORRECT": 7 characters


def test_an_unscripted_judge_is_unclear_and_the_threshold_decides(endpoint):
    # Given the simulator's canned answer for the judge (not one word: "[sim ...] ...")
    script(endpoint, NOVA_MICRO, "pens", WORKED)
    response = endpoint.generate(PENS)
    [step] = response.body["decision"]["cascade"]["steps"]
    assert step["judge"]["verdict"] == "unclear"
    assert step["accepted"] is True and step["confidence"] >= response.body["decision"]["cascade"]["threshold"]
