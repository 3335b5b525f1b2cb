"""What the router adds to a request: the handler against a zero-latency fake Bedrock vs calling the fake directly.

Both loops run in one process on the same fake. The handler path is everything a deployed request pays
in the function: API Gateway event parsing (Powertools resolver), body validation, the routing decision,
plan execution, the response, the structured log line and the EMF metrics (written to /dev/null here).

    python benchmarks/router_overhead.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "router-bench")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")

from lambdas.router import handler  # noqa: E402
from lambdas.router.engine import PlannedCall  # noqa: E402
from lambdas.router.executor import ModelReply  # noqa: E402
from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file  # noqa: E402
from lambdas.router.policy_store import PolicyStore, file_fetcher  # noqa: E402
from lambdas.router.service import RouterService  # noqa: E402
from local_endpoint.server import LocalLambdaContext, proxy_event  # noqa: E402

PROMPTS = [
    {"prompt": "Hello!"},
    {"prompt": "What is the capital of Australia?", "use_case": "faq"},
    {
        "prompt": "Analyze the trade-offs of event sourcing for a billing system. First list the risks, then "
        "compare the costs, and finally recommend a strategy."
    },
    {"prompt": "Summarize this memo in three bullet points: the launch moves to May.", "use_case": "summarization"},
    {"prompt": "def add(a, b):\n    return a - b\nWhy does this fail its unit test?", "use_case": "code"},
    {
        "prompt": "A shop sells pens at $3 each and notebooks at $5 each. Ana buys 4 pens and 2 notebooks. How much "
        "does she spend?",
        "use_case": "math",  # the cascade route: the fake's worked answer scores 0.84, over its 0.697 threshold
    },
]
# One reply for every call: a worked answer with a final number, so the cascade trusts it (a bare "ok" to a maths
# ask is doubted and escalates, which would measure two calls for that shape)
REPLY = ModelReply(
    text="Ana spends 4 * 3 + 2 * 5 = 22 dollars.\n#### 22", input_tokens=42, output_tokens=17, stop_reason="end_turn"
)


class ZeroLatencyBedrock:
    def converse(self, call: PlannedCall, timeout_s: float, **_: Any) -> ModelReply:
        return REPLY


def event(body: dict[str, Any], caller: int) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "X-Caller-Id": f"caller-{caller}"}
    return proxy_event(
        "POST", "/generate", headers, json.dumps(body).encode(), source_ip="203.0.113.1", request_id=f"r{caller}"
    )


@contextlib.contextmanager
def silenced_stdout(path: str | Path = os.devnull) -> Any:
    """Send the log lines and EMF blobs to ``path`` (default /dev/null) at the file-descriptor level (Powertools'
    logger holds its own reference to the stream), so the figures do not include a terminal's speed; a file
    keeps them to be counted (``routing_cost.py``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(target, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(target)
        os.close(saved)


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()

    fake = ZeroLatencyBedrock()
    handler.configure(
        RouterService(policies=PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=3600), gateway=fake)
    )
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    call = PlannedCall(model=policy.models["nova-micro"], region="us-east-1", fallback=False)
    events = [event(PROMPTS[i % len(PROMPTS)], i) for i in range(args.requests)]
    context = LocalLambdaContext("bench")

    direct: list[float] = []
    routed: list[float] = []
    routed_cpu: list[float] = []  # this thread's CPU time: what the router costs, whatever else the machine runs
    with silenced_stdout():
        for warm in events[:200]:  # warm caches, the policy and imports on the request path
            handler.lambda_handler(warm, context)
        for item in events:
            started = time.perf_counter_ns()
            fake.converse(call, 20.0, messages=[], system=[], inference_config={})
            direct.append((time.perf_counter_ns() - started) / 1000)
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            result = handler.lambda_handler(item, context)
            routed.append((time.perf_counter_ns() - started) / 1000)
            routed_cpu.append((time.thread_time_ns() - started_cpu) / 1000)
            if result["statusCode"] != 200:
                raise SystemExit(f"unexpected status {result['statusCode']}: {result['body']}")

    direct.sort()
    routed.sort()
    routed_cpu.sort()
    d50, d99 = percentile(direct, 50), percentile(direct, 99)
    r50, r99 = percentile(routed, 50), percentile(routed, 99)
    print(f"router_overhead: {args.requests} requests, {len(PROMPTS)} prompt shapes, zero-latency fake Bedrock")
    print(f"  direct fake call   p50 {d50:9.1f} us   p99 {d99:9.1f} us")
    print(f"  through handler    p50 {r50:9.1f} us   p99 {r99:9.1f} us   mean {statistics.fmean(routed):9.1f} us")
    print(f"  router added       p50 {r50 - d50:9.1f} us   p99 {r99 - d99:9.1f} us   (target: p99 < 1000 us)")
    c50, c99 = percentile(routed_cpu, 50), percentile(routed_cpu, 99)
    print(f"  handler CPU time   p50 {c50:9.1f} us   p99 {c99:9.1f} us   (thread CPU clock: immune to other load)")
    print(f"  ratio handler/direct p50 {r50 / d50:,.0f}x (the fake itself costs ~{d50:.1f} us)")
    print(f"  target met: {'yes' if r99 - d99 < 1000 else 'NO'}")
    worst_case_classifier()
    learned_inference()
    return 0


# The slowest inputs known for the complexity classifier: runs that made its line-start patterns backtrack
# (quadratic before they were made linear), at the scan limit's length.
ADVERSARIAL = {
    "list marker + 19,998 blank lines": "- " + "\n" * 19_998,
    "20,000 spaces": " " * 20_000,
    "20,000 backticks": "`" * 20_000,
    "two-item lists, repeated": ("- step\n" * 2 + "text\n") * 1_300,
}


def worst_case_classifier() -> None:
    from lambdas.router.classifier import classify

    rules = load_policy_file(DEFAULT_POLICY_PATH).complexity
    ordinary = "Analyze the trade-offs of migrating our monolith to microservices, step by step. " * 240
    started = time.perf_counter_ns()
    classify(ordinary, rules)
    baseline_us = (time.perf_counter_ns() - started) / 1000
    print(f"  classifier, 20,000 ordinary characters: {baseline_us:9.1f} us")
    for name, text in ADVERSARIAL.items():
        started = time.perf_counter_ns()
        classify(text, rules)
        elapsed_us = (time.perf_counter_ns() - started) / 1000
        print(f"  classifier, {name}: {elapsed_us:9.1f} us ({elapsed_us / baseline_us:.1f}x ordinary text)")


def learned_inference(repeats: int = 300) -> None:
    """The learned router's score and the cascade's answer check, per call, against the heuristic alone."""
    from lambdas.router.cascade import answer_signals
    from lambdas.router.classifier import classify

    rules = load_policy_file(DEFAULT_POLICY_PATH).complexity
    learned = rules.learned
    if learned is None:
        print("  learned router: not in the default policy")
        return
    heuristic = rules._replace(learned=None)
    sentence = "Natalia sold 48 clips in April and half as many in May; how many did she sell in all? "
    print("  learned router inference (p50 / p99 per prompt; the heuristic alone for comparison):")
    for chars in (40, 400, 4_000, 40_000, 400_000):
        text = (sentence * (chars // len(sentence) + 1))[:chars]
        timings: dict[str, list[float]] = {"learned": [], "heuristic": [], "classify": []}
        for _ in range(repeats if chars < 40_000 else repeats // 10):
            for name, run in (
                ("learned", lambda t=text: learned.score(t)),
                ("heuristic", lambda t=text: classify(t, heuristic)),
                ("classify", lambda t=text: classify(t, rules)),
            ):
                started = time.perf_counter_ns()
                run()
                timings[name].append((time.perf_counter_ns() - started) / 1000)
        row = "   ".join(
            f"{name} {percentile(sorted(v), 50):7.1f} / {percentile(sorted(v), 99):7.1f} us"
            for name, v in timings.items()
        )
        print(f"    {chars:>7,} chars: {row}")
    answer = "She spends 4 * 3 = 12 on pens and 2 * 5 = 10 on notebooks, so 12 + 10 = 22.\n#### 22" * 5
    cascade: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        answer_signals(sentence, answer, "end_turn", 0.2)
        cascade.append((time.perf_counter_ns() - started) / 1000)
    cascade.sort()
    print(
        f"  cascade answer check ({len(answer)} chars): p50 {percentile(cascade, 50):7.1f} us   "
        f"p99 {percentile(cascade, 99):7.1f} us"
    )


if __name__ == "__main__":
    raise SystemExit(main())
