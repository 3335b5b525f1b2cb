"""The failover drill: two local endpoints behind an emulated Route 53 failover record, and its template reading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import failover_drill as drill

pytestmark = pytest.mark.xdist_group("failover-drill")

ROOT = Path(__file__).resolve().parents[2]
QUICK = [
    "--no-synth",
    "--interval",
    "0.5",
    "--threshold",
    "2",
    "--ttl",
    "0.5",
    "--health-cache",
    "0.2",
    "--probe-interval",
    "1",
    "--warmup",
    "1",
    "--rate",
    "10",
    "--checkers",
    "3",
]
MOVE_BOUND_S = 15.0


def test_quick_drill_moves_dns_and_the_client_to_the_secondary_and_back(tmp_path: Path) -> None:
    # Given the drill with sub-second checks, TTL and health cache
    out = tmp_path / "drill.json"
    # When it runs: primary's models down, then back
    done = subprocess.run(
        [sys.executable, "benchmarks/failover_drill.py", *QUICK, "--out", str(out)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then both moves happened, and the report says when
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert report["settings"]["interval_s"] == 0.5
    assert report["settings"]["failure_threshold"] == 2
    assert report["settings"]["ttl_s"] == 0.5
    assert report["settings"]["checkers"] == 3
    assert report["settings"]["source"].startswith("flags")
    for direction in ("failover", "failback"):
        figures = report[direction]
        assert figures["moved"] is True, figures
        assert 0 < figures["dns_moved_s"] < MOVE_BOUND_S, figures
        # The client follows after its cached answer expires, never before DNS moved
        assert figures["client_moved_s"] is not None
        assert figures["dns_moved_s"] <= figures["client_moved_s"] < MOVE_BOUND_S, figures
        assert figures["detect_s"] is not None and figures["detect_s"] <= figures["dns_moved_s"], figures
        # Once moved, the client is served
        assert figures["failed_after_move"] == 0, figures
        assert figures["degraded_after_move"] == 0, figures
    # Until it moved, the client's requests went to the failed primary: counted, and degraded (or failed)
    failover = report["failover"]
    assert failover["requests"] > 0
    assert failover["degraded"] + failover["failed"] > 0, failover
    # The secondary serves throughout the way back
    assert report["failback"]["failed"] == 0, report["failback"]
    assert report["failback"]["degraded"] == 0, report["failback"]
    # And the worst case is the settings' bound: 0.2 + 1 + 0.5 x 2 + 0.5, then + 0.5 of TTL
    assert report["worst_case"]["detection_s"] == pytest.approx(2.7)
    assert report["worst_case_unavailability_s"] == pytest.approx(3.2)
    assert "worst-case unavailability" in done.stdout
    assert "failover" in done.stdout and "failback" in done.stdout


def _https_check(template: dict[str, Any]) -> dict[str, Any]:
    checks: list[dict[str, Any]] = [
        r["Properties"]["HealthCheckConfig"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Route53::HealthCheck" and r["Properties"]["HealthCheckConfig"]["Type"] == "HTTPS"
    ]
    assert len(checks) == 1, checks
    return checks[0]


def _failover_role(template: dict[str, Any]) -> str:
    roles = [
        r["Properties"]["Failover"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Route53::RecordSet" and "Failover" in r["Properties"]
    ]
    assert len(roles) == 1, roles
    return str(roles[0])


def test_the_drill_reads_its_settings_from_the_synthesized_failover_deployment(tmp_path: Path) -> None:
    # Given the failover reference deployment, synthesized with failover.example.json's context
    context = json.loads((ROOT / "failover.example.json").read_text(encoding="utf-8"))
    first_region = context["routed-bedrock:regions"].split(",")[0].strip()
    paths = drill.synthesize(ROOT / "failover.example.json", tmp_path)
    templates = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in paths}
    # When the drill reads the templates
    records = drill.read_templates(paths)
    # Then the PRIMARY record is the first region's, and each role carries its own HTTPS check's settings
    assert records["primary"].template.endswith(f"-{first_region}.template.json")
    for role, record in records.items():
        template = templates[record.template]
        assert _failover_role(template) == role.upper()
        check = _https_check(template)
        assert record.interval_s == check.get("RequestInterval", 30)
        assert record.failure_threshold == check.get("FailureThreshold", 3)
        assert record.ttl_s is None  # an alias record: no TTL of its own
        assert "API Gateway" in (record.alias_target or "")
    # And with no flags those are the settings, with the alias TTL an assumption said out loud
    settings = drill.resolve_settings(drill.parse_args([]), records)
    primary_check = _https_check(templates[records["primary"].template])
    assert settings.primary.interval_s == primary_check.get("RequestInterval", 30)
    assert settings.primary.failure_threshold == primary_check.get("FailureThreshold", 3)
    assert settings.primary.ttl_s == drill.ALIAS_TTL_ASSUMED_S
    assert settings.ttl_assumed is True
    assert settings.source == "template"
    assert settings.sources["ttl_s"].startswith("ASSUMED")
    # And a flag overrides the template's value, and says so
    overridden = drill.resolve_settings(drill.parse_args(["--ttl", "5", "--threshold", "1"]), records)
    assert overridden.primary.ttl_s == 5.0 and overridden.primary.failure_threshold == 1
    assert overridden.primary.interval_s == settings.primary.interval_s
    assert overridden.ttl_assumed is False
    assert overridden.source == "template, overridden by --threshold --ttl"


def test_a_template_without_failover_records_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    # Given a template with an HTTPS health check but no failover record
    template = {
        "Resources": {
            "Check": {
                "Type": "AWS::Route53::HealthCheck",
                "Properties": {"HealthCheckConfig": {"Type": "HTTPS", "RequestInterval": 10, "FailureThreshold": 2}},
            }
        }
    }
    path = tmp_path / "Single.template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    # When the drill reads it, Then it says what is missing
    with pytest.raises(drill.DrillError, match="Failover PRIMARY or SECONDARY"):
        drill.read_templates([path])
