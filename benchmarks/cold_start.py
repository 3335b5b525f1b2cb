"""Cold start: a fresh interpreter importing the router and serving its first request, against the floor.

The floor is the least any Python function calling Bedrock pays: a fresh interpreter that imports boto3
and creates a ``bedrock-runtime`` client. The router run imports the handler (Powertools Logger, Metrics,
REST resolver), loads the policy (with the synth-time digest the construct sets, so the schema pass is
skipped for that exact document), creates its client and serves one ``POST /generate``
through the Bedrock simulator over loopback (so it also pays a real HTTP round trip the floor does not).

The streaming router (``lambdas/router/web_adapter.py``, what Lambda Web Adapter runs) is timed the way the
adapter starts it: from process start to its first ready answer (polled every 10 ms, as the adapter polls),
and to the end of its first streamed chat completion over loopback HTTP; the buffered router's first chat
completion (``stream: true`` answered at once) is its counterpart. The adapter's own start (a Rust extension)
is not in these figures: its binary is not available offline.

All are timed from process start, alternating, and the medians compared. Library bytecode is
cached as it is in Lambda's runtime and the Powertools layer; the router's own modules are compiled from
source on every run, as they are in a Lambda asset shipped without ``.pyc`` files.

    python benchmarks/cold_start.py [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambdas.router.policy import document_digest  # noqa: E402
from local_endpoint.bedrock_sim import BedrockSimulator, serve  # noqa: E402

FLOOR = """
import boto3
boto3.client("bedrock-runtime", region_name="us-east-1")
"""

# The floor plus what any function pays on its first Bedrock call (endpoint rules, signing, connection):
# the same first Converse call the router makes, through the same simulator.
FLOOR_WITH_CALL = """
import boto3
client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url={endpoint!r})
client.converse(modelId="amazon.nova-micro-v1:0", messages=[{{"role": "user", "content": [{{"text": "Hello!"}}]}}],
                inferenceConfig={{"maxTokens": 512}})
"""

ROUTER = """
import json, sys
sys.path.insert(0, {root!r})
from lambdas.router.handler import lambda_handler

class Context:
    function_name = "router"; memory_limit_in_mb = 1024; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:router"
    def get_remaining_time_in_millis(self): return 29000

event = {{"resource": "/generate", "path": "/generate", "httpMethod": "POST",
         "headers": {{"Content-Type": "application/json"}}, "multiValueHeaders": {{}},
         "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
         "stageVariables": None, "isBase64Encoded": False,
         "requestContext": {{"requestId": "cold-1", "stage": "prod", "httpMethod": "POST", "path": "/prod/generate",
                            "resourcePath": "/generate", "identity": {{"sourceIp": "203.0.113.1"}}}},
         "body": json.dumps({{"prompt": "Hello!"}})}}
result = lambda_handler(event, Context())
assert result["statusCode"] == 200, result
assert "nova-micro" in json.loads(result["body"])["model_used"], result["body"]
"""


ROUTER_CHAT = (
    ROUTER.replace('"/generate"', '"/v1/chat/completions"')
    .replace(
        'json.dumps({{"prompt": "Hello!"}})',
        'json.dumps({{"model": "fast", "stream": True, "messages": [{{"role": "user", "content": "Hello!"}}]}})',
    )
    .replace(
        'assert "nova-micro" in json.loads(result["body"])["model_used"], result["body"]',
        'assert "data: [DONE]" in result["body"], result["body"]',
    )
)
"""The buffered router's first chat completion, ``stream: true`` (the whole event stream in one answer)."""

CHAT_BODY = json.dumps({"model": "fast", "stream": True, "messages": [{"role": "user", "content": "Hello!"}]})


def timed_streaming_router(env: dict[str, str]) -> tuple[float, float]:
    """Seconds from process start to the first ready answer, and to the end of the first streamed chat."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdas.router.web_adapter"],
        cwd=ROOT,
        env=dict(env, AWS_LWA_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(base + "/_router/ready", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if process.poll() is not None or time.perf_counter() - started > 60:
                raise SystemExit("the streaming router did not become ready")
            time.sleep(0.01)
        ready = time.perf_counter() - started
        context = {"resourcePath": "/v1/chat/completions", "requestId": "cold", "identity": {"sourceIp": "203.0.113.1"}}
        request = urllib.request.Request(
            base + "/v1/chat/completions",
            data=CHAT_BODY.encode(),
            method="POST",
            headers={"Content-Type": "application/json", "x-amzn-request-context": json.dumps(context)},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
        if b"data: [DONE]" not in text:
            raise SystemExit(f"unexpected streamed answer: {text[:500]!r}")
        return ready, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=10)


def timed_run(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    server, _ = serve(BedrockSimulator())
    port = server.server_address[1]
    cache = Path(tempfile.mkdtemp(prefix="coldstart-pyc-"))
    own_code_caches = [cache / str(ROOT / package).lstrip("/") for package in ("lambdas", "local_endpoint")]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "ROUTER_", "BEDROCK_"))}
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    base_env.update(
        PYTHONPYCACHEPREFIX=str(cache),
        AWS_ACCESS_KEY_ID="cold-start",
        AWS_SECRET_ACCESS_KEY="cold-start",
        AWS_DEFAULT_REGION="us-east-1",
    )
    policy_file = ROOT / "lambdas" / "router" / "policies" / "default.json"
    router_env = dict(
        base_env,
        ROUTER_POLICY_FILE=str(policy_file),
        # As the construct deploys it: the digest of the policy it validated at synth.
        ROUTER_POLICY_SHA256=document_digest(policy_file.read_bytes()),
        BEDROCK_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        POWERTOOLS_SERVICE_NAME="router",
        POWERTOOLS_METRICS_NAMESPACE="RoutedBedrock",
    )
    router_code = ROUTER.format(root=str(ROOT))
    try:
        timed_run(FLOOR, base_env)  # warm the library bytecode cache once, untimed
        timed_run(router_code, router_env)
        floor_call_code = FLOOR_WITH_CALL.format(endpoint=f"http://127.0.0.1:{port}")
        timed_run(floor_call_code, base_env)
        floor: list[float] = []
        floor_call: list[float] = []
        router: list[float] = []
        chat: list[float] = []
        stream_ready: list[float] = []
        stream_chat: list[float] = []
        router_chat_code = ROUTER_CHAT.format(root=str(ROOT))
        timed_streaming_router(router_env)  # its first start compiles nothing more than the router's
        for _ in range(args.runs):
            floor.append(timed_run(FLOOR, base_env))
            floor_call.append(timed_run(floor_call_code, base_env))
            for own_code_cache in own_code_caches:  # the router's own code: no .pyc, as in a Lambda asset
                shutil.rmtree(own_code_cache, ignore_errors=True)
            router.append(timed_run(router_code, router_env))
            for own_code_cache in own_code_caches:
                shutil.rmtree(own_code_cache, ignore_errors=True)
            chat.append(timed_run(router_chat_code, router_env))
            for own_code_cache in own_code_caches:
                shutil.rmtree(own_code_cache, ignore_errors=True)
            ready, first_chat = timed_streaming_router(router_env)
            stream_ready.append(ready)
            stream_chat.append(first_chat)
    finally:
        server.shutdown()
        shutil.rmtree(cache, ignore_errors=True)

    floor_median, router_median = statistics.median(floor), statistics.median(router)
    ratio = router_median / floor_median
    print(f"cold_start: {args.runs} runs each, wall time of a fresh interpreter, medians")
    print(
        f"  floor  (import boto3 + bedrock-runtime client)             {floor_median * 1000:7.0f} ms"
        f"  (min {min(floor) * 1000:.0f}, max {max(floor) * 1000:.0f})"
    )
    print(
        f"  router (import handler + policy + first /generate via sim) {router_median * 1000:7.0f} ms"
        f"  (min {min(router) * 1000:.0f}, max {max(router) * 1000:.0f})"
    )
    floor_call_median = statistics.median(floor_call)
    print(
        f"  floor + one Converse call via sim (for reference)           {floor_call_median * 1000:7.0f} ms"
        f"  (min {min(floor_call) * 1000:.0f}, max {max(floor_call) * 1000:.0f})"
    )
    print(f"  ratio router/floor {ratio:.2f}x (target: <= 1.30x) -> {'met' if ratio <= 1.3 else 'NOT met'}")
    print(f"  ratio router/(floor + one call) {router_median / floor_call_median:.2f}x (reference only)")
    chat_median, ready_median, stream_median = (statistics.median(v) for v in (chat, stream_ready, stream_chat))
    print(
        f"  buffered router, first chat completion (stream sent at once)   {chat_median * 1000:7.0f} ms"
        f"  (min {min(chat) * 1000:.0f}, max {max(chat) * 1000:.0f})"
    )
    print(
        f"  streaming router, ready (polled every 10 ms)                   {ready_median * 1000:7.0f} ms"
        f"  (min {min(stream_ready) * 1000:.0f}, max {max(stream_ready) * 1000:.0f})"
    )
    print(
        f"  streaming router, first streamed chat completion over HTTP     {stream_median * 1000:7.0f} ms"
        f"  (min {min(stream_chat) * 1000:.0f}, max {max(stream_chat) * 1000:.0f})"
    )
    print(
        f"  ratio streaming/buffered first chat {stream_median / chat_median:.2f}x"
        " (the adapter's own start not included)"
    )
    print(
        json.dumps(
            {
                "floor_ms": round(floor_median * 1000),
                "floor_with_call_ms": round(floor_call_median * 1000),
                "router_ms": round(router_median * 1000),
                "ratio": round(ratio, 3),
                "buffered_chat_ms": round(chat_median * 1000),
                "streaming_ready_ms": round(ready_median * 1000),
                "streaming_chat_ms": round(stream_median * 1000),
                "streaming_over_buffered_chat": round(stream_median / chat_median, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
