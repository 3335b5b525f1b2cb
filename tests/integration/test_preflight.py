"""``routed-bedrock preflight`` against the Bedrock simulator over real HTTP, with real botocore clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lambdas.router.policy import DEFAULT_POLICY_PATH
from local_endpoint.bedrock_sim import Fault
from routed_bedrock.cli import main

ROOT = Path(__file__).resolve().parents[2]
MICRO = "amazon.nova-micro-v1:0"
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
LITE = "amazon.nova-lite-v1:0"


def _model(model_id: str, regions: list[str], **extra):
    return {
        "model_id": model_id,
        "regions": regions,
        "price_per_1k_input_usd": 0.001,
        "price_per_1k_output_usd": 0.002,
        "context_window_tokens": 100_000,
        "modalities": ["text"],
        "tier": "economy",
        **extra,
    }


def small_policy() -> dict:
    """Two routes: "fast" (micro in two regions, then the haiku profile) and "solo" (lite in one region)."""
    shipped = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    return {
        "schema_version": shipped["schema_version"],
        "policy_version": "preflight-test.1",
        "resilience": shipped["resilience"],
        "models": {
            "micro": _model(MICRO, ["us-east-1", "us-west-2"]),
            "haiku": _model(HAIKU, ["us-east-1"], inference_profile_destinations=["us-east-1", "us-west-2"]),
            "lite": _model(LITE, ["us-west-2"]),
        },
        "routes": {
            "fast": {"candidates": [{"model": "micro"}], "fallbacks": ["haiku"]},
            "solo": {"candidates": [{"model": "lite"}]},
        },
        "rules": {
            "default_use_case": "general",
            "use_cases": {"general": "fast", "solo": "solo"},
            "tiers": {
                "header": "X-User-Tier",
                "default": "standard",
                "levels": {"standard": {"simple": "fast", "moderate": "fast", "complex": "fast"}},
            },
            "complexity": {
                "moderate_at": 0.25,
                "complex_at": 0.5,
                "length": {"weight": 0.35, "saturation_tokens": 1500},
                "signals": {},
            },
        },
    }


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(small_policy()))
    return path


def preflight_json(capsys, policy_file, url, *extra):
    code = main(["preflight", "--policy", str(policy_file), "--endpoint-url", url, "--timeout", "5", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def rows(document):
    return {(p["model"], p["region"]): p for p in document["probes"]}


def routes(document):
    return {r["route"]: r for r in document["routes"]}


def test_every_model_answering_exits_0_with_one_minimal_call_per_model_and_region(capsys, sim, simulator, policy_file):
    # Given a simulator without faults
    _, url = sim
    # When the preflight runs
    code, document = preflight_json(capsys, policy_file, url)
    # Then every (model, region) is ok, every route works, and each pair got exactly one call
    assert code == 0 and document["ok"] is True
    assert {key: p["result"] for key, p in rows(document).items()} == {
        ("micro", "us-east-1"): "ok",
        ("micro", "us-west-2"): "ok",
        ("haiku", "us-east-1"): "ok",
        ("lite", "us-west-2"): "ok",
    }
    assert all(r["ok"] for r in document["routes"])
    assert simulator.calls.count() == 4
    assert simulator.calls.count(model=MICRO, region="us-west-2") == 1
    assert document["policy"]["version"] == "preflight-test.1"


def test_access_denied_model_is_reported_and_its_route_still_works_through_another_model(
    capsys, sim, simulator, policy_file
):
    # Given micro is not enabled in the account, in any region
    _, url = sim
    simulator.faults.put(Fault(model=MICRO, region="*", error="AccessDeniedException"))
    # When the preflight runs
    code, document = preflight_json(capsys, policy_file, url)
    # Then micro's rows say access denied, and "fast" works through its fallback
    by_pair = rows(document)
    assert by_pair[("micro", "us-east-1")]["result"] == "access denied"
    assert by_pair[("micro", "us-east-1")]["code"] == "AccessDeniedException"
    assert by_pair[("micro", "us-west-2")]["working"] is False
    assert routes(document)["fast"]["working"] == [{"model": "haiku", "region": "us-east-1"}]
    assert code == 0
    # And the route is flagged: it works only through fallbacks
    assert routes(document)["fast"]["fallbacks_only"] is True
    assert all(not r["fallbacks_only"] for name, r in routes(document).items() if name != "fast")


def test_warns_when_a_route_works_only_through_its_fallbacks(capsys, sim, simulator, policy_file):
    _, url = sim
    simulator.faults.put(Fault(model=MICRO, region="*", error="AccessDeniedException"))
    code = main(["preflight", "--policy", str(policy_file), "--endpoint-url", url, "--timeout", "5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "FALLBACKS ONLY" in out
    assert "Warning: fast: no candidate model works, only fallbacks" in out


def test_fails_with_exit_1_naming_the_route_whose_every_model_is_down(capsys, sim, simulator, policy_file):
    # Given lite, the only model of route "solo", is out in its only region
    _, url = sim
    simulator.faults.put(Fault(model=LITE, region="us-west-2", outage=True))
    # When the preflight runs (as text)
    code = main(["preflight", "--policy", str(policy_file), "--endpoint-url", url, "--timeout", "5"])
    out = capsys.readouterr().out
    # Then it exits 1 and names the route
    assert code == 1
    assert "1 route(s) without a working model: solo" in out
    solo_line = next(line for line in out.splitlines() if line.startswith("solo "))
    assert "NO WORKING MODEL" in solo_line and "lite" in solo_line
    lite_line = next(line for line in out.splitlines() if line.startswith("lite "))
    assert "ServiceUnavailableException" in lite_line and "other" in lite_line


def test_model_not_served_on_demand_in_a_region_is_reported_as_such(capsys, sim, simulator, policy_file):
    # Given micro is served on demand in us-east-1 only (as Amazon Nova is: us-west-2 needs the us. profile)
    _, url = sim
    simulator.faults.put(Fault(model="*", region="us-west-2", on_demand=False))
    # When the preflight runs
    code, document = preflight_json(capsys, policy_file, url)
    # Then micro in us-west-2 is "not served on demand there", with Bedrock's message; lite (us-west-2 only)
    # leaves "solo" without a working model
    micro_west = rows(document)[("micro", "us-west-2")]
    assert micro_west["result"] == "not served on demand there"
    assert micro_west["code"] == "ValidationException"
    assert "with on-demand throughput isn\u2019t supported" in micro_west["message"]
    assert rows(document)[("micro", "us-east-1")]["result"] == "ok"
    assert code == 1
    assert routes(document)["solo"]["ok"] is False
    assert routes(document)["fast"]["ok"] is True


def test_throttled_model_is_reported_as_throttled_and_still_counts_as_working(capsys, sim, simulator, policy_file):
    # Given lite throttles every call
    _, url = sim
    simulator.faults.put(Fault(model=LITE, region="*", throttle_rate=1.0))
    # When the preflight runs
    code, document = preflight_json(capsys, policy_file, url)
    # Then it is "throttled" (enabled, served, reachable: busy), and its route is not failed for it
    lite = rows(document)[("lite", "us-west-2")]
    assert (lite["result"], lite["code"], lite["working"]) == ("throttled", "ThrottlingException", True)
    assert code == 0


def test_unknown_model_is_reported_as_not_found(capsys, sim, simulator, policy_file):
    _, url = sim
    simulator.faults.put(Fault(model=LITE, region="*", error="ResourceNotFoundException"))
    code, document = preflight_json(capsys, policy_file, url)
    assert rows(document)[("lite", "us-west-2")]["result"] == "not found"
    assert code == 1


def test_fails_with_unreachable_rows_when_nothing_listens(capsys, policy_file):
    # Given an endpoint where nothing listens (a port just bound and released)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, document = preflight_json(capsys, policy_file, f"http://127.0.0.1:{port}", "--workers", "2")
    # Then every row is unreachable and no route works
    assert {p["result"] for p in document["probes"]} == {"unreachable"}
    assert code == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read policy file"),
        ("{not json", "not valid JSON"),
        ('{"schema_version": "1.0"}', "invalid policy"),
    ],
)
def test_rejects_a_bad_policy_file_with_exit_2_and_one_line(capsys, tmp_path, content, expected):
    # Given a missing, malformed or invalid policy file
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_text(content)
    # When the preflight runs
    code = main(["preflight", "--policy", str(path), "--endpoint-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    # Then it exits 2 with one clear line naming the file, and no stack trace
    assert code == 2
    assert expected in err and "policy.json" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_rejects_bad_usage_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["preflight"])
    assert exited.value.code == 2
    assert "--policy" in capsys.readouterr().err
    assert main([]) == 2


def test_runs_as_a_module_in_a_fresh_interpreter(sim, simulator, policy_file):
    # Given the simulator and no AWS settings in the environment
    _, url = sim
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # When `python -m routed_bedrock.cli preflight ... --json` runs
    command = [sys.executable, "-m", "routed_bedrock.cli", "preflight", "--policy", str(policy_file)]
    done = subprocess.run(
        [*command, "--endpoint-url", url, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it exits 0 and prints the JSON report
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert simulator.calls.count(outcome="ok") == 4
