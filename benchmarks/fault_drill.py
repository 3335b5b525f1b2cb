"""Fault drill: the local endpoint under injected Bedrock faults, over real HTTP.

Starts ``python -m local_endpoint.server`` on a free port (or uses ``--url`` of a running ``make local``),
then for each scenario clears the simulator's faults and the router's live state, injects the scenario's
faults through ``PUT /_sim/faults`` and sends ``--requests`` ``/generate`` requests from ``--concurrency``
threads. Per scenario it reports: requests, % answered by a model, % degraded, 5xx count, p50/p99 latency,
and mean failed model calls per request before and after the first circuit breaker opened (a request
counts as "after" when it started once a response had shown an open circuit).

Requests come from up to 8 loopback source addresses (127.0.0.1 to 127.0.0.8, where the system lets
a socket bind them, as Linux does): in local mode the caller a circuit breaker counts is the source IP,
and one caller alone cannot open a circuit (``min_failing_callers``).

Targets: no 5xx anywhere; >= 99.9% answered by a model when a single model or region is down; once a
breaker is open, <= 0.05 failed attempts per request.

    python benchmarks/fault_drill.py --out fault_drill.json [--requests 400] [--concurrency 8] [--url URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file  # noqa: E402

CALLERS = 8


def _primary_model() -> tuple[str, str]:
    """The model id use_case "faq" is answered by in the shipped policy (what the server runs), and its home."""
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    spec = policy.models[policy.routes[policy.use_cases["faq"]].candidates[0].model]
    return spec.model_id, spec.regions[0]


PRIMARY, HOME_REGION = _primary_model()
SLA_MS = 250  # the latency budget the slow-model scenario's callers send


class Scenario(NamedTuple):
    name: str
    description: str
    faults: tuple[dict[str, Any], ...]
    headers: dict[str, str]
    single_failure: bool  # a single model or region is down: the 99.9% answered target applies
    breakers_expected: bool


SCENARIOS = (
    Scenario(
        "home_region_down",
        f"{PRIMARY} out in its home region {HOME_REGION}",
        ({"model": PRIMARY, "region": HOME_REGION, "outage": True},),
        {},
        single_failure=True,
        breakers_expected=True,
    ),
    Scenario(
        "primary_down_everywhere",
        f"{PRIMARY} out in every region",
        ({"model": PRIMARY, "region": "*", "outage": True},),
        {},
        single_failure=True,
        breakers_expected=True,
    ),
    Scenario(
        "throttling_storm",
        "every model in every region answers 50% of calls with ThrottlingException",
        ({"model": "*", "region": "*", "throttle_rate": 0.5},),
        {},
        single_failure=False,
        breakers_expected=False,
    ),
    Scenario(
        "slow_model",
        f"{PRIMARY} takes {10 * SLA_MS} ms everywhere, 10x the callers' X-Latency-Budget-Ms of {SLA_MS}",
        ({"model": PRIMARY, "region": "*", "latency_ms": 10 * SLA_MS},),
        {"X-Latency-Budget-Ms": str(SLA_MS)},
        single_failure=False,
        breakers_expected=False,
    ),
    Scenario(
        "everything_down",
        "every model out in every region",
        ({"model": "*", "region": "*", "outage": True},),
        {},
        single_failure=False,
        breakers_expected=True,
    ),
)


class Result(NamedTuple):
    status: int
    degraded: bool
    failed_attempts: int
    saw_open_circuit: bool
    latency_ms: float


def _call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, source: str | None = None
) -> tuple[int, Any]:
    """One request on its own connection, from the ``source`` address when given."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=60, source_address=(source, 0) if source else None
    )
    data = json.dumps(body).encode() if body is not None else None
    try:
        connection.request(
            method, parts.path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(payload or b"null")
    except json.JSONDecodeError:
        return response.status, {"raw": payload.decode(errors="replace")}


def caller_addresses(base: str, count: int = CALLERS) -> list[str | None]:
    """Loopback source addresses the drill's callers can use against ``base`` ([None]: the default one)."""
    if urlsplit(base).hostname not in ("127.0.0.1", "localhost"):
        return [None]
    usable: list[str | None] = []
    for n in range(1, count + 1):
        try:
            with socket.socket() as sock:
                sock.bind((f"127.0.0.{n}", 0))
        except OSError:
            break
        usable.append(f"127.0.0.{n}")
    return usable or [None]


def _one_request(
    base: str, index: int, headers: dict[str, str], open_seen: threading.Event, sources: list[str | None]
) -> Result:
    started = time.monotonic()
    after_open = open_seen.is_set()
    status, body = _call(
        "POST",
        f"{base}/generate",
        {"prompt": f"Hello! What are your opening hours? (drill request {index})", "use_case": "faq"},
        {"X-Caller-Id": f"drill-{index % 50}", **headers},
        source=sources[index % len(sources)],
    )
    latency_ms = (time.monotonic() - started) * 1000.0
    decision = body.get("decision", {}) if isinstance(body, dict) else {}
    attempts = decision.get("attempts", [])
    skipped = decision.get("skipped", [])
    saw_open = any(entry.get("reason") == "circuit open" for entry in skipped)
    if saw_open:
        open_seen.set()
    return Result(
        status=status,
        degraded=bool(isinstance(body, dict) and body.get("degraded")),
        failed_attempts=sum(1 for attempt in attempts if attempt.get("outcome") != "ok"),
        saw_open_circuit=after_open,
        latency_ms=latency_ms,
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_scenario(base: str, scenario: Scenario, *, requests: int, concurrency: int) -> dict[str, Any]:
    for path in ("/_sim/faults", "/_sim/calls", "/_local/state"):
        status, body = _call("DELETE", f"{base}{path}")
        if status != 200:
            raise RuntimeError(f"DELETE {path} answered {status}: {body}")
    for fault in scenario.faults:
        status, body = _call("PUT", f"{base}/_sim/faults", fault)
        if status != 200:
            raise RuntimeError(f"PUT /_sim/faults {fault} answered {status}: {body}")
    open_seen = threading.Event()
    sources = caller_addresses(base)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda i: _one_request(base, i, scenario.headers, open_seen, sources), range(requests)))
    _call("DELETE", f"{base}/_sim/faults")

    answered = [r for r in results if r.status == 200 and not r.degraded]
    before = [r.failed_attempts for r in results if not r.saw_open_circuit]
    after = [r.failed_attempts for r in results if r.saw_open_circuit]
    latencies = [r.latency_ms for r in results]
    figures: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "faults": list(scenario.faults),
        "requests": len(results),
        "callers": len(sources),
        "answered_by_model_pct": round(100.0 * len(answered) / len(results), 2),
        "degraded_pct": round(100.0 * sum(r.degraded for r in results) / len(results), 2),
        "http_5xx": sum(1 for r in results if r.status >= 500),
        "http_other_errors": sum(1 for r in results if 400 <= r.status < 500),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "failed_attempts_per_request_before_open": round(statistics.fmean(before), 3) if before else None,
        "failed_attempts_per_request_after_open": round(statistics.fmean(after), 3) if after else None,
        "requests_after_open": len(after),
    }
    targets = {"no_5xx": figures["http_5xx"] == 0}
    if scenario.single_failure:
        targets["answered_at_least_99_9_pct"] = figures["answered_by_model_pct"] >= 99.9
    if scenario.breakers_expected:
        after_rate = figures["failed_attempts_per_request_after_open"]
        targets["breaker_opened"] = bool(after)
        targets["after_open_at_most_0_05_failed"] = after_rate is not None and after_rate <= 0.05
    figures["targets"] = targets
    return figures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_local(port: int, policy: Path | None = None) -> subprocess.Popen[bytes]:
    # The server's output goes to an unlinked temporary file, not a pipe: nobody reads a pipe while the drill
    # runs, and a full pipe would block the server on its next log line.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server process it captures
    process = subprocess.Popen(
        [sys.executable, "-m", "local_endpoint.server", "--port", str(port)]
        + (["--policy", str(policy)] if policy is not None else []),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"local endpoint exited: {log.read().decode(errors='replace')}")
        try:
            if _call("GET", f"http://127.0.0.1:{port}/health")[0] == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("local endpoint did not become healthy within 30 s")


def drill(base: str, *, requests: int, concurrency: int, only: set[str] | None = None) -> dict[str, Any]:
    """Run the scenarios against an endpoint; returns the report."""
    scenarios = [s for s in SCENARIOS if only is None or s.name in only]
    results = [run_scenario(base, s, requests=requests, concurrency=concurrency) for s in scenarios]
    return {
        "endpoint": base,
        "requests_per_scenario": requests,
        "concurrency": concurrency,
        "scenarios": results,
        "all_targets_met": all(all(r["targets"].values()) for r in results),
    }


def print_table(report: dict[str, Any], out: Callable[[str], None] = print) -> None:
    header = (
        f"{'scenario':<24} {'reqs':>5} {'answered%':>9} {'degraded%':>9} {'5xx':>4} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'fail/req before':>15} {'fail/req after':>14}  targets"
    )
    out(header)
    out("-" * len(header))
    for r in report["scenarios"]:
        before = r["failed_attempts_per_request_before_open"]
        after = r["failed_attempts_per_request_after_open"]
        met = ", ".join(f"{name}={'met' if ok else 'MISSED'}" for name, ok in r["targets"].items())
        out(
            f"{r['scenario']:<24} {r['requests']:>5} {r['answered_by_model_pct']:>9.2f} {r['degraded_pct']:>9.2f} "
            f"{r['http_5xx']:>4} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{'-' if before is None else f'{before:.3f}':>15} {'-' if after is None else f'{after:.3f}':>14}  {met}"
        )
    out(f"all targets met: {report['all_targets_met']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running local endpoint (make local); default: start one")
    parser.add_argument("--requests", type=int, default=400, help="requests per scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("fault_drill.json"))
    args = parser.parse_args(argv)
    process = None
    base = args.url.rstrip("/") if args.url else None
    if base is None:
        port = _free_port()
        process = _start_local(port)
        base = f"http://127.0.0.1:{port}"
    try:
        report = drill(
            base,
            requests=args.requests,
            concurrency=args.concurrency,
            only=set(args.scenario) if args.scenario else None,
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
    print_table(report)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if report["all_targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
