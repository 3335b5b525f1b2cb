"""``benchmarks/routing_cost.py`` end to end (a small run): the template's settings, measured figures, a breakdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("routing-cost")


def test_the_benchmark_prices_both_orchestrations_from_the_template_and_measurements(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    env = {**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    finished = subprocess.run(
        [sys.executable, "benchmarks/routing_cost.py", "--requests", "60", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    # The settings are the reference stack's
    settings = report["settings"]
    assert settings["memory_mb"] == 512 and settings["architecture"] == "arm64"
    assert settings["api_key_authorizer"] is True and settings["custom_metrics"] > 100
    # The per-request figures were measured, not assumed
    measured = report["measured"]
    assert 0 < measured["cpu_ms"] < 50
    assert measured["log_bytes"] > 200  # at least the EMF line
    assert measured["read_units"] > 0 and measured["write_units"] > 0
    assert measured["cold_start_cpu_ms"] > 50
    # Both orchestrations are priced, each item positive, and the totals add up
    [lambda_name] = [name for name in report["orchestrations"] if name.startswith("Lambda")]
    for name, figures in report["orchestrations"].items():
        assert figures["breakdown"]["API Gateway"] == 3.5, name
        assert all(usd >= 0 for usd in figures["breakdown"].values()), name
        assert abs(sum(figures["breakdown"].values()) - figures["total_usd_per_million"]) < 1e-9, name
    assert report["orchestrations"][lambda_name]["breakdown"][
        "Lambda duration (waiting on the model)"
    ] == pytest.approx(0.5 * 1.5 * 0.0000133334 * 1e6)
    # The Step Functions orchestration's tasks were measured too; no Lambda waits on the model there
    tasks = report["measured_tasks"]
    assert 0 < tasks["decide_cpu_ms"] < 50 and 0 < tasks["record_cpu_ms"] < 50
    assert tasks["tasks_per_request"] >= 2 and tasks["log_bytes"] > 200
    [sfn_name] = [name for name in report["orchestrations"] if name.startswith("Step Functions")]
    sfn = report["orchestrations"][sfn_name]["breakdown"]
    assert "Lambda duration (waiting on the model)" not in sfn
    assert sfn["Lambda requests (decide and record tasks)"] == pytest.approx(0.2 * tasks["tasks_per_request"])
    assert sfn["Step Functions Express duration (64 MB)"] >= 64 / 1024 * 1.5 * 0.00001667 * 1e6
    # More memory costs more while the router waits; CPU-bound time shrinks with it
    memory = {int(k): v for k, v in report["memory"].items()}
    assert memory[256]["total"] < memory[512]["total"] < memory[1024]["total"]
    assert memory[256]["cpu_ms"] > memory[1024]["cpu_ms"]
    assert "SnapStart at 512 MB" in finished.stdout
