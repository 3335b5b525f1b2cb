"""Concurrency drill: 32 callers at once against deadlines and a budget's cap.

1. Deadlines, over real HTTP: starts ``python -m local_endpoint.server`` with the shipped policy shortened to a
   ``--deadline-ms`` total deadline (default 1,500 ms; 600 ms per attempt), makes every model slower than the
   deadline through the simulator (``latency_ms``), and sends ``--requests`` requests from ``--callers``
   threads. Reports 5xx, degraded answers, and the slowest answers against the deadline, as the router
   measured them (the answer's ``latency_ms``, what a Lambda instance serving one request at a time would
   show) and as the client saw them (HTTP, queueing and 32 threads sharing one local process's interpreter
   included). Target: no 5xx, and no router latency past the deadline plus 50 ms.
2. The budget's bound: two router instances on one live-state store (in memory), ``--callers`` threads
   spending one daily budget until it refuses (``benchmarks/budget_drill.py``, also used by the tests).
   Reports what was spent against the cap and the README's stated bound. Target: spend within the bound.

    python benchmarks/concurrency_drill.py [--callers 32] [--requests 256] [--deadline-ms 1500] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.budget_drill import bound_usd, two_instances_spend, write_policy  # noqa: E402
from benchmarks.fault_drill import _call, _free_port, _percentile, _start_local  # noqa: E402
from lambdas.router.policy import DEFAULT_POLICY_PATH  # noqa: E402
from lambdas.router.state_store import InMemoryBackend  # noqa: E402

OVERRUN_TARGET_MS = 50.0
SLOW_MODEL_MS = 2_500


def deadline_policy(folder: Path, deadline_ms: int) -> Path:
    document: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["resilience"]["total_deadline_ms"] = deadline_ms
    document["resilience"]["attempt_timeout_ms"] = min(600, deadline_ms)
    path = folder / "deadline-policy.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def deadlines(*, callers: int, requests: int, deadline_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        server = _start_local(port, policy=deadline_policy(Path(folder), deadline_ms))
        base = f"http://127.0.0.1:{port}"
        try:
            fault = {"model": "*", "region": "*", "latency_ms": SLOW_MODEL_MS}
            _call("PUT", f"{base}/_sim/faults", fault)
            elapsed_ms: list[float] = []
            router_ms: list[float] = []
            statuses: list[int] = []
            degraded = [0]
            lock = threading.Lock()
            per_caller = max(1, requests // callers)
            barrier = threading.Barrier(callers)

            def caller(index: int) -> None:
                barrier.wait()
                for turn in range(per_caller):
                    body = {"prompt": f"caller {index} turn {turn}: hello", "use_case": "faq"}
                    started = time.perf_counter()
                    status, answer = _call("POST", f"{base}/generate", body)
                    took = (time.perf_counter() - started) * 1000.0
                    with lock:
                        elapsed_ms.append(took)
                        router_ms.append(float(answer.get("latency_ms", took)))
                        statuses.append(status)
                        degraded[0] += int(bool(answer.get("degraded")))

            threads = [threading.Thread(target=caller, args=(index,)) for index in range(callers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
        finally:
            server.terminate()
            server.wait(10)
    elapsed_ms.sort()
    router_ms.sort()
    slowest = router_ms[-1]
    return {
        "requests": len(elapsed_ms),
        "callers": callers,
        "deadline_ms": deadline_ms,
        "model_latency_ms": SLOW_MODEL_MS,
        "server_errors": sum(1 for status in statuses if status >= 500),
        "degraded": degraded[0],
        "router_p50_ms": round(statistics.median(router_ms), 1),
        "router_p99_ms": round(_percentile(router_ms, 0.99), 1),
        "router_max_ms": round(slowest, 1),
        "overrun_ms": round(slowest - deadline_ms, 1),
        "client_p50_ms": round(statistics.median(elapsed_ms), 1),
        "client_p99_ms": round(_percentile(elapsed_ms, 0.99), 1),
        "client_max_ms": round(elapsed_ms[-1], 1),
        "target_met": all(status < 500 for status in statuses) and slowest <= deadline_ms + OVERRUN_TARGET_MS,
    }


def budget(*, callers: int, daily_usd: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        store = InMemoryBackend()
        run = two_instances_spend((store, store), write_policy(Path(folder), daily_usd), callers=callers)
    bound = bound_usd(daily_usd, instances=2)
    return {
        "instances": 2,
        "callers": callers,
        "daily_usd": daily_usd,
        "spent_usd": round(run.answered_usd, 4),
        "spent_percent": round(100.0 * run.answered_usd / daily_usd, 1),
        "bound_usd": round(bound, 4),
        "counter_usd": round(run.counter_usd, 4),
        "answers": run.answers,
        "refusals": run.refusals,
        "target_met": run.answered_usd <= bound,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=256, help="deadline part: requests in all")
    parser.add_argument("--deadline-ms", type=int, default=1_500)
    parser.add_argument("--daily-usd", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    timing = deadlines(callers=args.callers, requests=args.requests, deadline_ms=args.deadline_ms)
    print(
        f"deadlines: {timing['requests']} requests from {timing['callers']} callers, every model "
        f"{timing['model_latency_ms']} ms slow, deadline {timing['deadline_ms']} ms"
    )
    print(
        f"  router: p50 {timing['router_p50_ms']} ms   p99 {timing['router_p99_ms']} ms   max "
        f"{timing['router_max_ms']} ms   overrun {timing['overrun_ms']:+} ms"
    )
    print(
        f"  client: p50 {timing['client_p50_ms']} ms   p99 {timing['client_p99_ms']} ms   max "
        f"{timing['client_max_ms']} ms (HTTP and one shared local process included)"
    )
    print(
        f"  5xx {timing['server_errors']}   degraded {timing['degraded']}   (target: no 5xx, router overrun <= "
        f"{OVERRUN_TARGET_MS:g} ms) -> {'met' if timing['target_met'] else 'NOT met'}"
    )
    spend = budget(callers=args.callers, daily_usd=args.daily_usd)
    print(
        f"budget: {spend['instances']} instances on one store, {spend['callers']} callers, daily cap "
        f"${spend['daily_usd']:g}"
    )
    print(
        f"  spent ${spend['spent_usd']} ({spend['spent_percent']}% of the cap; counter ${spend['counter_usd']}), "
        f"bound ${spend['bound_usd']}, {spend['answers']} answers, {spend['refusals']} refusals "
        f"-> {'met' if spend['target_met'] else 'NOT met'}"
    )
    if args.out is not None:
        args.out.write_text(json.dumps({"deadlines": timing, "budget": spend}, indent=2), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0 if timing["target_met"] and spend["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
