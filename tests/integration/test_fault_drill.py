"""Each fault-drill scenario at small scale against the real local endpoint over HTTP."""

from __future__ import annotations

import pytest

from benchmarks.fault_drill import SCENARIOS, run_scenario

SCENARIO_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


@pytest.mark.parametrize("name", list(SCENARIO_BY_NAME))
def test_drill_scenario_meets_its_targets(endpoint, name):
    # Given the scenario's faults (the drill clears faults and live state first), When 60 requests run
    figures = run_scenario(endpoint.base_url, SCENARIO_BY_NAME[name], requests=60, concurrency=4)
    # Then no 5xx, and every target that applies to the scenario is met
    assert figures["http_5xx"] == 0
    assert figures["http_other_errors"] == 0
    assert all(figures["targets"].values()), figures
    if name in ("home_region_down", "primary_down_everywhere"):
        assert figures["answered_by_model_pct"] == 100.0
    if name == "everything_down":
        assert figures["degraded_pct"] == 100.0
    if name == "slow_model":
        # Once the slow model's latency is known, later requests are answered without waiting for it
        assert figures["p50_ms"] < 1000
