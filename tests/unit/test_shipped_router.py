"""The default policy's learned router and math cascade are exactly what the documented training command produces.

A change to the features (``lambdas/router/learned.py``), the answer signals (``cascade.py``) or the trainer
that is not followed by retraining would leave the shipped weights scoring different features than they were
trained on: silently wrong routing. Retraining takes about a minute, so it runs once, in its own xdist group.

The comparison allows what another machine's floating point may move in a solver converged to 1e-6 (its
BLAS can round a dot product differently): every number within 2e-4, every quantised weight within 2e-4 of
the largest. Scores cluster near 1/2 and the two thresholds sit 0.01 apart, so 2e-4 could move a prompt's
class only within a sliver of that band; a stale router differs by far more.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lambdas.router.learned import WEIGHT_ENCODING, decode_weights
from lambdas.router.policy import DEFAULT_POLICY_PATH
from routed_bedrock.cli import main
from routed_bedrock.learning_cli import DEFAULT_DATA

pytestmark = pytest.mark.xdist_group("retrain")
TOLERANCE = 2e-4


def assert_close(got: Any, want: Any, where: str = "") -> None:
    """JSON values equal, numbers within ``TOLERANCE``, quantised weight blobs decoded and compared."""
    if isinstance(want, dict) and want.get("encoding") == WEIGHT_ENCODING:
        buckets = len(base64.b64decode(want["data"])) // 2  # 2-byte weights
        a, b = decode_weights(got, buckets), decode_weights(want, buckets)
        peak = max(abs(w) for w in b)
        worst = max(abs(x - y) for x, y in zip(a, b, strict=True))
        assert worst <= TOLERANCE * peak, f"{where}: a weight moved by {worst:.2e} (largest weight {peak:.3f})"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(got, want, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(want, float) or (isinstance(want, int) and isinstance(got, float)):
        assert got == pytest.approx(want, abs=TOLERANCE), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


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
    # Then the learned router and the cascade are the shipped ones, weight for weight (retrain and ship if not)
    assert_close(retrained["rules"]["complexity"]["learned"], learned, "learned")
    assert_close(retrained["routes"]["math-cascade"], shipped["routes"]["math-cascade"], "math-cascade")


def test_the_comparison_catches_a_moved_weight_and_a_moved_threshold():
    shipped = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    learned = shipped["rules"]["complexity"]["learned"]
    moved = json.loads(json.dumps(learned))
    moved["thresholds"]["complex"] += 0.01
    with pytest.raises(AssertionError, match=r"thresholds\.complex"):
        assert_close(moved, learned)
    moved = json.loads(json.dumps(learned))
    moved["weights"]["data"] = base64.b64encode(bytes(len(base64.b64decode(learned["weights"]["data"])))).decode()
    with pytest.raises(AssertionError, match="a weight moved"):
        assert_close(moved, learned)
