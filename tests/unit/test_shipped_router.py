"""The default policy's learned router and math cascade are exactly what the documented training command produces.

A change to the features (``lambdas/router/learned.py``), the answer signals (``cascade.py``) or the trainer
that is not followed by retraining would leave the shipped weights scoring different features than they were
trained on: silently wrong routing. Retraining takes about 40 s, so it runs once, in its own xdist group.
"""

from __future__ import annotations

import json

import pytest

from lambdas.router.policy import DEFAULT_POLICY_PATH
from routed_bedrock.cli import main
from routed_bedrock.learning_cli import DEFAULT_DATA

pytestmark = pytest.mark.xdist_group("retrain")


def test_retraining_reproduces_the_shipped_router_and_cascade(tmp_path):
    # Given the RouteLLM data beside the repository and the shipped policy's recorded training date
    assert (DEFAULT_DATA / "gsm8k" / "gsm8k_responses.csv").is_file(), f"missing {DEFAULT_DATA}"
    shipped = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    learned = shipped["rules"]["complexity"]["learned"]
    out = tmp_path / "policy.json"
    # When the README's command retrains both from the shipped policy
    trained = learned["trained"]
    argv = ["train", "--policy", str(DEFAULT_POLICY_PATH), "--out", str(out), "--cascade-route", "math-cascade"]
    assert main([*argv, "--trained-at", trained["trained_at"], "--seed", str(trained["seed"])]) == 0
    retrained = json.loads(out.read_text(encoding="utf-8"))
    # Then the learned router and the cascade are identical, weight for weight
    assert retrained["rules"]["complexity"]["learned"] == learned, "retrain and ship the default policy"
    assert retrained["routes"]["math-cascade"] == shipped["routes"]["math-cascade"]
