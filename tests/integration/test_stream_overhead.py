"""``benchmarks/stream_overhead.py`` runs end to end against its own local endpoint and writes sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("stream-overhead")


def test_the_benchmark_measures_both_paths_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    finished = subprocess.run(
        [
            sys.executable,
            "benchmarks/stream_overhead.py",
            "--requests",
            "20",
            "--warmup",
            "3",
            "--delay-ms",
            "5",
            "--out",
            str(out),
        ],
        check=False,
        cwd=ROOT,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "target router adds < 5 ms p99 to the first token:" in finished.stdout

    figures = json.loads(out.read_text())
    for key in (
        "requests",
        "delay_ms",
        "direct",
        "router",
        "added_first_token_ms",
        "added_total_ms",
        "target_ms",
        "target_met",
    ):
        assert key in figures, key
    assert figures["requests"] == 20 and figures["delay_ms"] == 5 and figures["target_ms"] == 5
    assert isinstance(figures["target_met"], bool)
    for path in ("direct", "router"):
        first, total = figures[path]["first_token_ms"], figures[path]["total_ms"]
        for percentile in ("p50", "p90", "p99"):
            assert first[percentile] > 0 and total[percentile] > 0, (path, percentile)
            # Then the stream ends after its first token, at every percentile
            assert total[percentile] >= first[percentile], (path, percentile)
        assert first["p50"] <= first["p90"] <= first["p99"]
    for key in ("added_first_token_ms", "added_total_ms"):
        assert set(figures[key]) >= {"p50", "p99"}
        assert all(isinstance(value, int | float) for value in figures[key].values())
