"""What routing itself costs per million requests (not the tokens), per orchestration and configuration.

The settings come from the synthesized reference stack (the routers' memory and architecture, execution
logging, API-key mode's authorizer, the policy's canary and models for the metric count); the per-request
figures are measured here, in-process, on the real handler against a zero-latency fake Bedrock with the live
state on a counting in-memory table:

- the router's CPU time per request (thread CPU clock), scaled to a function's CPU share (Lambda gives a
  function CPU in proportion to its memory, a full vCPU at 1,769 MB);
- the bytes it logs per request (the EMF lines and any log lines, as CloudWatch Logs ingests them);
- its live-state table calls per request (read units of BatchGetItem's keys, write units of UpdateItem).

A request's model call is waited for, not computed: a Lambda router is billed for ``--latency`` seconds of
wall time per request (default 1.5 s) on top of its CPU time. The Step Functions orchestration's tasks (decide,
then record the call's outcome: ``lambdas/router/steps.py``) are measured the same way, in-process, each request
running both; its Express workflow is billed for its duration at 64 MB, and the model call is waited for by
Step Functions, unbilled by Lambda. Prices: one dated table below (us-east-1 list prices); check them on the AWS
pricing pages for another region or date.

    python benchmarks/routing_cost.py [--latency 1.5] [--requests 2000] [--requests-per-month 10000000]
        [--cold-start-share 0.01] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "router-cost")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RoutedBedrock")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"  # the EMF lines are what is ingested: count them

PRICES_CHECKED = "2026-12-01"
PRICES: Mapping[str, float] = {
    # us-east-1 list prices in USD, as published on the AWS pricing pages on PRICES_CHECKED.
    "api_gateway_rest_per_million": 3.50,  # REST API requests, first 333 million a month
    "lambda_requests_per_million": 0.20,
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_gb_second_x86_64": 0.0000166667,
    "sfn_express_requests_per_million": 1.00,
    "sfn_express_gb_second": 0.00001667,  # first 1,000 GB-hours a month; billed in 64 MB and 100 ms steps
    "dynamodb_write_units_per_million": 0.625,  # on-demand
    "dynamodb_read_units_per_million": 0.125,
    "logs_ingestion_per_gb": 0.50,  # CloudWatch Logs standard class
    "custom_metric_per_month": 0.30,  # first 10,000 metrics
    "appconfig_calls_per_million": 0.20,  # $0.0000002 per configuration request (GetLatestConfiguration)
    "appconfig_per_configuration_received": 0.0008,
    "snapstart_cache_gb_second": 0.0000015046,  # Python and .NET: while a SnapStart version is active
    "snapstart_restore_per_gb": 0.0001397998,  # per GB restored, per cold start
}
FULL_VCPU_MB = 1769
"""Lambda's memory at which a function gets one full vCPU (its CPU share scales with memory below that)."""
API_ACCESS_LOG_BYTES = 520
"""One access-log line in the construct's format (``AccessLogFormat.json_with_standard_fields``, all fields)."""
API_EXECUTION_LOG_BYTES = 2400
"""API Gateway's INFO execution logs of one Lambda-proxy request: about a dozen lines (an estimate: the exact
lines vary; turn them off with ``api_execution_logging=False``)."""
SFN_EXECUTION_LOG_BYTES = 8250
"""An Express execution's log at level ALL without execution data, for a request answered by its first call: about
25 history events (execution, Decide and its Lambda events, the Choice twice, the model call, Record, Answer) of
about 330 bytes each (an estimate: the ARNs and ids make most of a line)."""
TASK_INVOKE_OVERHEAD_S = 0.005
"""The handler glue a task runs besides what is measured here (Powertools' logger and metrics decorators): billed."""
SFN_TRANSITIONS_S = 0.050
"""State transitions and Lambda invokes of one execution, as billed Express duration (an estimate)."""
LAMBDA_PLATFORM_LOG_BYTES = 550
"""Lambda's own records per invocation in the JSON log format (``platform.start``, ``platform.report``) with
CloudWatch Logs' 26 bytes per event."""
AUTHORIZER_MS, AUTHORIZER_MB = 5.0, 256
TYPICAL_TOKENS = (600, 300)
"""A typical request's input and output tokens, for the share of its token cost."""


class Settings(NamedTuple):
    memory_mb: int
    architecture: str
    execution_logging: bool
    api_key_authorizer: bool
    custom_metrics: int
    cheap_usd: float
    strong_usd: float
    cheap_model: str
    strong_model: str


class Measured(NamedTuple):
    cpu_ms: float
    log_bytes: float
    read_units: float
    write_units: float
    cold_start_cpu_ms: float


class MeasuredTasks(NamedTuple):
    """The Step Functions orchestration's two tasks per request (decide, record), measured like the router."""

    decide_cpu_ms: float
    record_cpu_ms: float
    tasks_per_request: float
    log_bytes: float
    read_units: float
    write_units: float


# --- what the template says ---------------------------------------------------------------------------------


def stack_settings() -> Settings:
    """The reference stack's settings, from its synthesized template."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build_app
    from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
    with tempfile.TemporaryDirectory() as outdir:
        app = build_app(cdk.App(outdir=outdir))
        [stack] = [child for child in app.node.children if isinstance(child, cdk.Stack)]
        template = Template.from_stack(stack).to_json()
    resources = template["Resources"].values()
    router = next(
        r["Properties"]
        for r in resources
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == "router.handler.lambda_handler"
    )
    stage = next(r["Properties"] for r in resources if r["Type"] == "AWS::ApiGateway::Stage")
    logging = any(s.get("LoggingLevel") not in (None, "OFF") for s in stage.get("MethodSettings", []))
    authorizer = any(
        r["Type"] == "AWS::ApiGateway::Authorizer" and r["Properties"]["Type"] == "TOKEN" for r in resources
    )
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    cheap, strong = policy.models["nova-micro"], policy.models["claude-sonnet-4-5"]
    return Settings(
        memory_mb=int(router["MemorySize"]),
        architecture=router["Architectures"][0],
        execution_logging=logging,
        api_key_authorizer=authorizer,
        custom_metrics=custom_metric_count(
            policy, api_methods=sum(1 for r in resources if r["Type"] == "AWS::ApiGateway::Method")
        ),
        cheap_usd=cheap.cost_usd(*TYPICAL_TOKENS),
        strong_usd=strong.cost_usd(*TYPICAL_TOKENS),
        cheap_model=cheap.key,
        strong_model=strong.key,
    )


def custom_metric_count(policy: Any, api_methods: int = 4) -> int:
    """Distinct metrics (name x dimension values) the router and the stage's detailed metrics can emit for a
    policy: an upper bound of what is billed (CloudWatch bills a metric for the hours it receives data, and
    failure and breaker metrics are written only when they happen)."""
    from lambdas.router import metric_names as m
    from lambdas.router.variants import variant_groups

    request_metrics = 9  # Requests, LatencyMs, In/OutputTokens, CostUsd, Fallbacks, Degraded, FailedAttempts, +1
    routes, models = len(policy.routes), len(policy.models)
    pairs = sum(len(spec.regions) for spec in policy.models.values())
    variants = sum(len(group.variants) for group in variant_groups(policy) if group.kind == "canary")
    experiments = sum(len(e.arms) for e in policy.experiments.values())
    per_request = request_metrics * (1 + routes + models + len(m.OUTCOMES) + variants) + 2 * pairs  # region line
    per_request += 6 * experiments  # the A/B line
    failures = pairs * 4  # ModelCallFailures per (model, region, failure class): only while calls fail
    state = 5 + pairs  # budget gauges and counts, CircuitsOpened per pair: only when they happen
    api = 5 * (1 + api_methods)  # the stage's detailed metrics: Count, 4XX, 5XX, Latency, IntegrationLatency
    return per_request + failures + state + api


# --- what the router does per request -------------------------------------------------------------------------


class CountingBackend:
    """The in-memory live-state store, counting the DynamoDB units its calls would take (items <= 1 KB)."""

    def __init__(self) -> None:
        from lambdas.router.state_store import InMemoryBackend

        self.inner = InMemoryBackend()
        self.read_units = 0.0
        self.write_units = 0.0

    def read(self, pairs: Sequence[Any], windows: Sequence[int], spend_keys: Sequence[str]) -> Any:
        keys = len(pairs) * (1 + len(windows)) + len(spend_keys)
        self.read_units += 0.5 * keys  # BatchGetItem, eventually consistent: half a unit per key (found or not)
        return self.inner.read(pairs, windows, spend_keys)

    def add_spend(self, amounts: Mapping[str, Any]) -> None:
        self.write_units += len(amounts)  # one UpdateItem per counter
        self.inner.add_spend(amounts)

    def __getattr__(self, name: str) -> Any:  # the other writes: one UpdateItem each
        method = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.write_units += 1
            return method(*args, **kwargs)

        return counted


def measure(requests: int) -> Measured:
    from benchmarks.router_overhead import PROMPTS, ZeroLatencyBedrock, event
    from benchmarks.router_overhead import silenced_stdout as stdout_to
    from lambdas.router import handler
    from lambdas.router.live_state import LiveStateTracker
    from lambdas.router.policy import DEFAULT_POLICY_PATH
    from lambdas.router.policy_store import PolicyStore, file_fetcher
    from lambdas.router.service import RouterService
    from local_endpoint.server import LocalLambdaContext

    backend = CountingBackend()
    # As deployed: the tracker caches a snapshot for ROUTER_STATE_CACHE_SECONDS (2 s); requests arrive far
    # faster here, so the cache would hide the reads a lightly loaded instance makes: none, one read a request
    handler.configure(
        RouterService(
            policies=PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=3600),
            gateway=ZeroLatencyBedrock(),
            live_state=LiveStateTracker(backend, cache_ttl_s=0.0),  # type: ignore[arg-type]
        )
    )
    context = LocalLambdaContext("cost")
    events = [event(PROMPTS[i % len(PROMPTS)], i) for i in range(requests)]
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "stdout"
        with stdout_to(log):
            for warm in events[:100]:
                handler.lambda_handler(warm, context)
        backend.read_units = backend.write_units = 0.0
        with stdout_to(log):
            started = time.thread_time_ns()
            for item in events:
                handler.lambda_handler(item, context)
            cpu_ns = time.thread_time_ns() - started
        log_bytes = log.stat().st_size
    handler.configure(None)
    return Measured(
        cpu_ms=cpu_ns / requests / 1e6,
        log_bytes=log_bytes / requests,
        read_units=backend.read_units / requests,
        write_units=backend.write_units / requests,
        cold_start_cpu_ms=cold_start_cpu_ms(),
    )


def measure_tasks(requests: int) -> MeasuredTasks:
    """The decide and record tasks of each request, the record task handed a Converse answer as the SDK gives it."""
    from benchmarks.router_overhead import PROMPTS, REPLY, ZeroLatencyBedrock
    from benchmarks.router_overhead import silenced_stdout as stdout_to
    from lambdas.router import steps
    from lambdas.router.live_state import LiveStateTracker
    from lambdas.router.policy import DEFAULT_POLICY_PATH
    from lambdas.router.policy_store import PolicyStore, file_fetcher
    from local_endpoint.server import LocalLambdaContext

    backend = CountingBackend()
    context = LocalLambdaContext("cost")
    steps.configure(
        (
            PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=3600),
            LiveStateTracker(backend, cache_ttl_s=0.0),  # type: ignore[arg-type]
            ZeroLatencyBedrock(),
        )
    )
    answer = {  # the Lambda measurement's reply, as the SDK integration gives it
        "Output": {"Message": {"Role": "assistant", "Content": [{"Text": REPLY.text}]}},
        "Usage": {"InputTokens": REPLY.input_tokens, "OutputTokens": REPLY.output_tokens},
        "StopReason": REPLY.stop_reason,
    }
    requests_in = [
        {
            "body": json.dumps(PROMPTS[i % len(PROMPTS)]),
            "headers": {"Content-Type": "application/json", "X-Caller-Id": f"caller-{i}"},
            "requestContext": {"requestId": f"r{i}", "identity": {"sourceIp": "203.0.113.1"}},
        }
        for i in range(requests)
    ]
    decide_ns = record_ns = 0
    invocations = 0

    def one(request: dict[str, Any]) -> tuple[int, int]:
        nonlocal invocations
        started = time.thread_time_ns()
        step = steps.lambda_handler({"phase": "decide", "request": request}, context)
        decided = time.thread_time_ns()
        invocations += 1
        while step["action"] == "call":  # every call answers: a cascade's escalation is a second call and task
            record = {"phase": "record", "request": request, "run": step["run"], "outcome": answer}
            step = steps.lambda_handler(record, context)
            invocations += 1
        return decided - started, time.thread_time_ns() - decided

    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "stdout"
        with stdout_to(log):
            for warm in requests_in[:100]:
                one(warm)
        backend.read_units = backend.write_units = 0.0
        invocations = 0
        with stdout_to(log):
            for request in requests_in:
                decide, record = one(request)
                decide_ns += decide
                record_ns += record
        log_bytes = log.stat().st_size  # the file holds this run's lines only (``silenced_stdout`` truncates it)
    steps.configure(None)
    return MeasuredTasks(
        decide_cpu_ms=decide_ns / requests / 1e6,
        record_cpu_ms=record_ns / requests / 1e6,
        tasks_per_request=invocations / requests,
        log_bytes=log_bytes / requests,
        read_units=backend.read_units / requests,
        write_units=backend.write_units / requests,
    )


def cold_start_cpu_ms(runs: int = 3) -> float:
    """CPU time (user + system) of a fresh interpreter importing the handler and serving one /generate."""
    from benchmarks.cold_start import ROUTER
    from lambdas.router.policy import DEFAULT_POLICY_PATH, document_digest
    from local_endpoint.bedrock_sim import BedrockSimulator, serve

    server, _ = serve(BedrockSimulator())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "ROUTER_", "BEDROCK_"))}
    env.update(
        AWS_ACCESS_KEY_ID="cost",
        AWS_SECRET_ACCESS_KEY="cost",
        AWS_DEFAULT_REGION="us-east-1",
        ROUTER_POLICY_FILE=str(DEFAULT_POLICY_PATH),
        ROUTER_POLICY_SHA256=document_digest(DEFAULT_POLICY_PATH.read_bytes()),
        BEDROCK_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}",
        POWERTOOLS_SERVICE_NAME="router",
        POWERTOOLS_METRICS_NAMESPACE="RoutedBedrock",
    )
    samples = []
    try:
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(
                [sys.executable, "-c", ROUTER.format(root=str(ROOT))], env=env, capture_output=True, check=False
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise SystemExit(f"cold start child failed:\n{done.stderr.decode()[-2000:]}")
            samples.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    finally:
        server.shutdown()
    return sorted(samples)[len(samples) // 2]


# --- the costs ------------------------------------------------------------------------------------------------


def cpu_scale(memory_mb: int) -> float:
    """How much slower CPU-bound work runs at ``memory_mb`` than on one full vCPU (the router is single-threaded)."""
    return max(1.0, FULL_VCPU_MB / memory_mb)


def lambda_breakdown(
    settings: Settings, measured: Measured, *, memory_mb: int, latency_s: float, requests_per_month: float
) -> dict[str, float]:
    """USD per million requests of routing through the Lambda orchestration."""
    gb = memory_mb / 1024
    gb_s = PRICES[f"lambda_gb_second_{settings.architecture.replace('-', '_')}"]
    duration_s = latency_s + measured.cpu_ms * cpu_scale(memory_mb) / 1000
    million = 1e6
    costs = {
        "API Gateway": PRICES["api_gateway_rest_per_million"],
        "Lambda requests": PRICES["lambda_requests_per_million"],
        "Lambda duration (waiting on the model)": gb * latency_s * gb_s * million,
        "Lambda duration (routing CPU)": gb * (duration_s - latency_s) * gb_s * million,
    }
    _shared_costs(costs, settings, measured, duration_s=duration_s, requests_per_month=requests_per_month)
    return costs


def task_seconds(tasks: MeasuredTasks, memory_mb: int) -> float:
    """Billed Lambda seconds of a request's two tasks at ``memory_mb``."""
    cpu_s = (tasks.decide_cpu_ms + tasks.record_cpu_ms) * cpu_scale(memory_mb) / 1000
    return cpu_s + tasks.tasks_per_request * TASK_INVOKE_OVERHEAD_S


def sfn_breakdown(
    settings: Settings,
    measured: Measured,
    tasks: MeasuredTasks,
    *,
    memory_mb: int,
    latency_s: float,
    requests_per_month: float,
) -> dict[str, float]:
    """USD per million requests through the Express state machine: two Lambda tasks, the model call in Step
    Functions (a request answered by its first call)."""
    gb_s = PRICES[f"lambda_gb_second_{settings.architecture.replace('-', '_')}"]
    tasks_s = task_seconds(tasks, memory_mb)
    workflow_s = math.ceil((latency_s + tasks_s + SFN_TRANSITIONS_S) * 10) / 10  # billed in 100 ms steps
    million = 1e6
    costs = {
        "API Gateway": PRICES["api_gateway_rest_per_million"],
        "Step Functions Express requests": PRICES["sfn_express_requests_per_million"],
        "Step Functions Express duration (64 MB)": 64 / 1024 * workflow_s * PRICES["sfn_express_gb_second"] * million,
        "Lambda requests (decide and record tasks)": tasks.tasks_per_request * PRICES["lambda_requests_per_million"],
        "Lambda duration (decide and record tasks)": memory_mb / 1024 * tasks_s * gb_s * million,
    }
    as_router = measured._replace(
        log_bytes=tasks.log_bytes + (tasks.tasks_per_request - 1) * LAMBDA_PLATFORM_LOG_BYTES,  # the later tasks'
        read_units=tasks.read_units,
        write_units=tasks.write_units,
    )
    _shared_costs(costs, settings, as_router, duration_s=tasks_s, requests_per_month=requests_per_month)
    costs["CloudWatch Logs (execution log, level ALL)"] = (
        SFN_EXECUTION_LOG_BYTES / 1e9 * PRICES["logs_ingestion_per_gb"] * million
    )
    return costs


def _shared_costs(
    costs: dict[str, float], settings: Settings, measured: Measured, *, duration_s: float, requests_per_month: float
) -> None:
    million = 1e6
    if settings.api_key_authorizer:  # cached per key for 5 minutes: one call per key per 5 minutes at most
        share = 0.02  # assumption: 50 requests per key per 5 minutes
        authorizer_gb_s = AUTHORIZER_MB / 1024 * AUTHORIZER_MS / 1000 * PRICES["lambda_gb_second_arm64"]
        costs["API-key authorizer (2% of requests)"] = share * (
            PRICES["lambda_requests_per_million"] + authorizer_gb_s * million
        )
    costs["DynamoDB live state"] = (
        measured.read_units * PRICES["dynamodb_read_units_per_million"]
        + measured.write_units * PRICES["dynamodb_write_units_per_million"]
    )
    logged = (
        measured.log_bytes
        + LAMBDA_PLATFORM_LOG_BYTES
        + API_ACCESS_LOG_BYTES
        + (API_EXECUTION_LOG_BYTES if settings.execution_logging else 0)
    )
    costs["CloudWatch Logs ingestion"] = logged / 1e9 * PRICES["logs_ingestion_per_gb"] * million
    costs["CloudWatch custom metrics"] = (
        settings.custom_metrics * PRICES["custom_metric_per_month"] / (requests_per_month / million)
    )
    rate = requests_per_month / (30 * 86_400)
    instances = max(1.0, math.ceil(rate * duration_s * 1.5))  # concurrency, plus the idle instances Lambda keeps
    polls = instances * 30 * 86_400 / 45  # each instance polls every policy_max_age (45 s)
    costs["AppConfig polls"] = polls * PRICES["appconfig_calls_per_million"] / 1e6 / (requests_per_month / million)


def snapstart(settings: Settings, measured: Measured, *, memory_mb: int, cold_start_share: float) -> dict[str, float]:
    """What SnapStart would cost per million requests, and the cold-start CPU time it could save."""
    gb = memory_mb / 1024
    cache_per_month = gb * 30 * 86_400 * PRICES["snapstart_cache_gb_second"]  # one active version
    restores = cold_start_share * 1e6 * gb * PRICES["snapstart_restore_per_gb"]
    init_s = measured.cold_start_cpu_ms * cpu_scale(memory_mb) / 1000
    return {"cache_usd_per_month": cache_per_month, "restore_usd_per_million": restores, "init_s": init_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.5, help="seconds a model call takes (default 1.5)")
    parser.add_argument("--requests", type=int, default=2000, help="requests to measure (default 2000)")
    parser.add_argument("--requests-per-month", type=float, default=10_000_000)
    parser.add_argument("--cold-start-share", type=float, default=0.01, help="share of requests that start cold")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    settings = stack_settings()
    measured = measure(args.requests)
    tasks = measure_tasks(args.requests)
    common = {"latency_s": args.latency, "requests_per_month": args.requests_per_month}
    print(f"routing_cost: USD per million requests of routing (not tokens); model latency {args.latency:g} s,")
    print(f"  {args.requests_per_month:,.0f} requests a month; prices: us-east-1 list prices checked {PRICES_CHECKED}")
    print(
        f"  measured per request: router CPU {measured.cpu_ms:.2f} ms on one vCPU, {measured.log_bytes:,.0f} bytes "
        f"logged, {measured.read_units:.1f} read and {measured.write_units:.1f} write units; a cold start "
        f"{measured.cold_start_cpu_ms:,.0f} ms of CPU"
    )
    print(
        f"  Step Functions tasks per request: decide {tasks.decide_cpu_ms:.2f} ms and record {tasks.record_cpu_ms:.2f} "
        f"ms of CPU on one vCPU ({tasks.tasks_per_request:.2f} tasks), {tasks.log_bytes:,.0f} bytes logged, "
        f"{tasks.read_units:.1f} read and {tasks.write_units:.1f} write units"
    )
    print(
        "  (the table reads are an upper bound: a snapshot read per request; deployed, an instance reuses one for 2 s)"
    )
    print(
        f"  template: router {settings.memory_mb} MB {settings.architecture}, execution logging "
        f"{'on' if settings.execution_logging else 'off'}, API-key authorizer "
        f"{'yes' if settings.api_key_authorizer else 'no'}, at most {settings.custom_metrics} custom metrics"
    )
    report: dict[str, Any] = {
        "measured": measured._asdict(),
        "measured_tasks": tasks._asdict(),
        "settings": settings._asdict(),
        "orchestrations": {},
    }
    for name, breakdown in (
        (
            f"Lambda, {settings.memory_mb} MB (the default)",
            lambda_breakdown(settings, measured, memory_mb=settings.memory_mb, **common),
        ),
        (
            f"Step Functions Express, tasks at {settings.memory_mb} MB",
            sfn_breakdown(settings, measured, tasks, memory_mb=settings.memory_mb, **common),
        ),
    ):
        total = sum(breakdown.values())
        print(f"\n{name}: {total:8.2f} USD per million requests")
        for item, usd in sorted(breakdown.items(), key=lambda pair: -pair[1]):
            print(f"    {item:<45} {usd:8.3f}  ({usd / total:5.1%})")
        per_request = total / 1e6
        print(
            f"    share of a typical request's tokens ({TYPICAL_TOKENS[0]} in, {TYPICAL_TOKENS[1]} out): "
            f"{settings.cheap_model} {per_request / settings.cheap_usd:.1%} of {settings.cheap_usd * 1e6:,.0f} USD/M, "
            f"{settings.strong_model} {per_request / settings.strong_usd:.2%} of {settings.strong_usd * 1e6:,.0f} USD/M"
        )
        report["orchestrations"][name] = {"total_usd_per_million": total, "breakdown": breakdown}

    print("\nLambda memory (CPU share scales with memory; a full vCPU at 1,769 MB):")
    print("    memory   USD/M total   Lambda duration   routing CPU/request   cold start CPU (scaled)")
    report["memory"] = {}
    for memory in (256, 512, 1024, 1769):
        breakdown = lambda_breakdown(settings, measured, memory_mb=memory, **common)
        total = sum(breakdown.values())
        duration = breakdown["Lambda duration (waiting on the model)"] + breakdown["Lambda duration (routing CPU)"]
        cpu = measured.cpu_ms * cpu_scale(memory)
        cold = measured.cold_start_cpu_ms * cpu_scale(memory)
        print(f"    {memory:5d} MB  {total:10.2f}   {duration:14.2f}   {cpu:15.1f} ms   {cold:17,.0f} ms")
        report["memory"][memory] = {"total": total, "duration": duration, "cpu_ms": cpu, "cold_start_ms": cold}

    snap = snapstart(settings, measured, memory_mb=settings.memory_mb, cold_start_share=args.cold_start_share)
    print(
        f"\nSnapStart at {settings.memory_mb} MB: caching {snap['cache_usd_per_month']:.2f} USD a month per active "
        f"version, plus {snap['restore_usd_per_million']:.2f} USD per million requests in restores at "
        f"{args.cold_start_share:.0%} cold starts; it could save up to {snap['init_s'] * 1000:,.0f} ms of init per "
        "cold start"
    )
    report["snapstart"] = snap
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
