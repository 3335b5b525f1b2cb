"""What the router adds to a streamed answer: time to first token and total time, router vs direct ConverseStream.

Starts ``python -m local_endpoint.server`` on a free port: one port serves the router and the Bedrock
simulator it calls. A simulator fault (``stream_delay_ms``) paces the answer's text deltas, so the first
token and the end of the stream are apart. Then, alternating to spread noise over both:

- direct: botocore's ``bedrock-runtime`` client (one client, kept-alive connections, no retries) calls
  ``converse_stream`` on the simulator for ``us.amazon.nova-micro-v1:0`` in us-east-1; first token is the
  first ``contentBlockDelta`` with text, total the end of the event stream;
- router: ``POST /v1/chat/completions`` with ``"model": "fast"`` and ``"stream": true`` on one persistent
  HTTP connection (the ``fast`` route's first candidate is that model in that region, so both paths ask the
  simulator the same thing); first token is the first server-sent event with delta content, total the
  ``data: [DONE]`` event.

The router's streamed text must equal the direct stream's (the simulator is deterministic). Reported: p50,
p90 and p99 of both times per path, and what the router adds at p50 and p99, in ms and as a ratio.

Target: the router adds < 5 ms at p99 to the first token. A benchmark: it exits 0 whether or not the target
is met, 2 when the setup failed (the endpoint did not start, a request failed, the texts differ).

    python benchmarks/stream_overhead.py [--requests 300] [--warmup 20] [--delay-ms 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent

MODEL_ID = "us.amazon.nova-micro-v1:0"
REGION = "us-east-1"
ROUTE = "fast"
PROMPT = "Say hello to the team."
MAX_TOKENS = 256
HTTP_TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 30.0
TARGET_MS = 5.0


class SetupError(Exception):
    """The benchmark could not measure: the endpoint, a request or the answers were not what they must be."""


class Timing(NamedTuple):
    first_token_ms: float
    total_ms: float
    text: str


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_text(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-4000:]


def _request(base_port: int, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    """One admin or health request on its own connection."""
    connection = http.client.HTTPConnection("127.0.0.1", base_port, timeout=HTTP_TIMEOUT_S)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def start_endpoint(port: int, log: IO[bytes], deadline: float) -> subprocess.Popen[bytes]:
    """``make local``'s server with the shipped policy; the environment stripped of AWS and router settings.

    Its output goes to ``log`` (a file, not a pipe: nobody reads a pipe while the benchmark runs).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "ROUTER_", "BEDROCK_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "local_endpoint.server", "--port", str(port), "--seed", "7"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ready_by = min(deadline, time.monotonic() + STARTUP_TIMEOUT_S)
    while True:
        try:
            if _request(port, "GET", "/health")[0] == 200:
                return process
        except OSError:
            pass
        if process.poll() is not None:
            raise SetupError(f"the local endpoint exited with code {process.returncode}:\n{_log_text(log)}")
        if time.monotonic() > ready_by:
            stop_endpoint(process)
            raise SetupError(f"the local endpoint did not answer /health within {STARTUP_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


def stop_endpoint(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class DirectClient:
    """ConverseStream straight to the simulator through botocore, one client for the run (keep-alive)."""

    def __init__(self, base: str) -> None:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id="sim", aws_secret_access_key="sim", aws_session_token=None, region_name=REGION
        )
        self.client = session.client(
            "bedrock-runtime",
            endpoint_url=base,
            region_name=REGION,
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=HTTP_TIMEOUT_S,
                read_timeout=HTTP_TIMEOUT_S,
            ),
        )

    def stream(self) -> Timing:
        texts: list[str] = []
        first_ns: int | None = None
        started = time.perf_counter_ns()
        response = self.client.converse_stream(
            modelId=MODEL_ID,
            messages=[{"role": "user", "content": [{"text": PROMPT}]}],
            inferenceConfig={"maxTokens": MAX_TOKENS},
        )
        for event in response["stream"]:
            text = event.get("contentBlockDelta", {}).get("delta", {}).get("text")
            if text:
                if first_ns is None:
                    first_ns = time.perf_counter_ns()
                texts.append(text)
        ended = time.perf_counter_ns()
        if first_ns is None:
            raise SetupError("the direct ConverseStream answer had no text delta")
        return Timing((first_ns - started) / 1e6, (ended - started) / 1e6, "".join(texts))


class RouterClient:
    """Streamed chat completions through the router on one persistent HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
        self.body = json.dumps(
            {"model": ROUTE, "messages": [{"role": "user", "content": PROMPT}], "stream": True}
        ).encode()
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}

    def close(self) -> None:
        self.connection.close()

    def stream(self) -> Timing:
        texts: list[str] = []
        first_ns: int | None = None
        done_ns: int | None = None
        started = time.perf_counter_ns()
        self.connection.request("POST", "/v1/chat/completions", body=self.body, headers=self.headers)
        response = self.connection.getresponse()
        if response.status != 200 or "text/event-stream" not in (response.getheader("Content-Type") or ""):
            payload = response.read().decode(errors="replace")[:2000]
            raise SetupError(f"the router answered {response.status} instead of a stream: {payload}")
        buffer = b""
        first_event = True
        while done_ns is None:
            piece = response.read1(65536)
            if not piece:
                raise SetupError("the router's stream ended before data: [DONE]")
            buffer += piece
            while done_ns is None and b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                data = event.removeprefix(b"data: ")
                if data == event:  # not a data line: comments and blank keep-alives do not count
                    continue
                if data == b"[DONE]":
                    done_ns = time.perf_counter_ns()
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise SetupError(f"the router's stream carried an error: {chunk['error']}")
                if first_event:
                    first_event = False
                    routing = chunk.get("routing") or {}
                    if chunk.get("model") != MODEL_ID or routing.get("fallback_used"):
                        raise SetupError(
                            f"the router answered with {chunk.get('model')!r} (fallback "
                            f"{routing.get('fallback_used')}), not {MODEL_ID}: the paths would not compare"
                        )
                choices = chunk.get("choices") or []
                content = choices[0].get("delta", {}).get("content") if choices else None
                if content:
                    if first_ns is None:
                        first_ns = time.perf_counter_ns()
                    texts.append(content)
        # Read the rest of the chunked body (its last chunk) so the connection can carry the next request.
        while response.read1(65536):
            pass
        if first_ns is None:
            raise SetupError("the router's stream had no content delta")
        return Timing((first_ns - started) / 1e6, (done_ns - started) / 1e6, "".join(texts))


def summarize(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {f"p{p}": round(percentile(ordered, p), 3) for p in (50, 90, 99)}


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def report(
    direct: list[Timing], routed: list[Timing], *, requested: int, delay_ms: int, stopped_early: bool
) -> dict[str, Any]:
    paths = {
        name: {
            "first_token_ms": summarize([t.first_token_ms for t in timings]),
            "total_ms": summarize([t.total_ms for t in timings]),
        }
        for name, timings in (("direct", direct), ("router", routed))
    }
    added: dict[str, dict[str, float]] = {}
    ratios: dict[str, dict[str, float | None]] = {}
    for figure in ("first_token_ms", "total_ms"):
        name = figure.removesuffix("_ms")
        added[f"added_{figure}"] = {
            p: round(paths["router"][figure][p] - paths["direct"][figure][p], 3) for p in ("p50", "p99")
        }
        ratios[name] = {p: _ratio(paths["router"][figure][p], paths["direct"][figure][p]) for p in ("p50", "p99")}
    # The same figure over each alternating pair (router minus the direct call just before it): less
    # sensitive to a slow stretch of the run landing on one path's tail.
    pairs = [r.first_token_ms - d.first_token_ms for d, r in zip(direct, routed, strict=False)]
    added_p99 = added["added_first_token_ms"]["p99"]
    return {
        "requests": len(routed),
        "requests_asked": requested,
        "stopped_early": stopped_early,
        "delay_ms": delay_ms,
        "model_id": MODEL_ID,
        "region": REGION,
        "route": ROUTE,
        "prompt": PROMPT,
        **paths,
        **added,
        "ratio_router_to_direct": ratios,
        "paired_added_first_token_ms": summarize(pairs),
        "text_chars": len(routed[0].text) if routed else 0,
        "target_ms": TARGET_MS,
        "target": f"router adds < {TARGET_MS:g} ms p99 to the first token",
        "target_met": bool(added_p99 < TARGET_MS),
    }


def print_report(figures: dict[str, Any]) -> None:
    print(
        f"stream_overhead: {figures['requests']} streamed requests per path (alternating), simulator "
        f"stream_delay_ms {figures['delay_ms']}, {figures['model_id']} @ {figures['region']}, "
        f"{figures['text_chars']} characters of text"
        + (f" (stopped early at --max-seconds; {figures['requests_asked']} asked)" if figures["stopped_early"] else "")
    )
    print(f"  {'':<40} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}")
    for path, label in (("direct", "direct ConverseStream"), ("router", f"router ({figures['route']}, SSE)")):
        for figure, what in (("first_token_ms", "first token"), ("total_ms", "total")):
            row = figures[path][figure]
            print(f"  {label + ' ' + what:<40} {row['p50']:9.2f} {row['p90']:9.2f} {row['p99']:9.2f}")
    for figure, what in (("first_token_ms", "first token"), ("total_ms", "total")):
        added = figures[f"added_{figure}"]
        ratio = figures["ratio_router_to_direct"][figure.removesuffix("_ms")]
        print(
            f"  router added, {what:<12} p50 {added['p50']:+8.2f} ms ({ratio['p50']}x)   "
            f"p99 {added['p99']:+8.2f} ms ({ratio['p99']}x)"
        )
    paired = figures["paired_added_first_token_ms"]
    print(
        f"  router added to the first token, per alternating pair: p50 {paired['p50']:+.2f} ms   "
        f"p90 {paired['p90']:+.2f} ms   p99 {paired['p99']:+.2f} ms"
    )
    verdict = "met" if figures["target_met"] else "MISSED"
    print(f"  target {figures['target']}: {verdict} (added p99 {figures['added_first_token_ms']['p99']:+.2f} ms)")


def run(args: argparse.Namespace, port: int, deadline: float) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    status, payload = _request(port, "PUT", "/_sim/faults", {"model": "*", "stream_delay_ms": args.delay_ms})
    if status != 200:
        raise SetupError(f"PUT /_sim/faults answered {status}: {payload.decode(errors='replace')}")
    direct_client, router_client = DirectClient(base), RouterClient(port)
    try:
        # Correctness first: the router must stream exactly what the model streamed.
        reference = direct_client.stream()
        if not reference.text.startswith(f"[sim {MODEL_ID} @ {REGION}]"):
            raise SetupError(f"the direct stream is not the simulator's answer from {REGION}: {reference.text!r}")
        routed_once = router_client.stream()
        if routed_once.text != reference.text:
            raise SetupError(
                "the router's streamed text differs from the direct ConverseStream text for the same prompt:\n"
                f"  direct: {reference.text!r}\n  router: {routed_once.text!r}"
            )
        for _ in range(args.warmup):
            if time.monotonic() > deadline:
                break
            direct_client.stream()
            router_client.stream()
        direct: list[Timing] = []
        routed: list[Timing] = []
        stopped_early = False
        for index in range(args.requests):
            if time.monotonic() > deadline:
                stopped_early = True
                break
            # Alternate which path goes first, so neither always follows the other's tail.
            order = ((direct_client, direct), (router_client, routed))
            for client, into in order if index % 2 == 0 else reversed(order):
                into.append(client.stream())
            for timing in (direct[-1], routed[-1]):
                if timing.text != reference.text:
                    raise SetupError(f"request {index}: a streamed text changed: {timing.text!r}")
        if not routed:
            raise SetupError(f"no measured request finished within --max-seconds {args.max_seconds}")
    finally:
        router_client.close()
        with contextlib.suppress(OSError):
            _request(port, "DELETE", "/_sim/faults")
    return report(direct, routed, requested=args.requests, delay_ms=args.delay_ms, stopped_early=stopped_early)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path first")
    parser.add_argument(
        "--delay-ms", type=int, default=20, help="the simulator's wait before each delta after the first"
    )
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop measuring after this long")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0 or not 0 <= args.delay_ms <= 60_000:
        parser.error("--requests must be >= 1, --warmup >= 0 and --delay-ms from 0 to 60000")

    deadline = time.monotonic() + args.max_seconds
    with tempfile.TemporaryFile() as log:
        process = None
        try:
            port = _free_port()
            process = start_endpoint(port, log, deadline)
            figures = run(args, port, deadline)
        except (SetupError, OSError, ValueError) as exc:
            print(f"stream_overhead: setup failed: {exc}", file=sys.stderr)
            if process is not None and process.poll() is not None:
                print(f"server output:\n{_log_text(log)}", file=sys.stderr)
            return 2
        except Exception as exc:  # botocore's errors: the direct path itself failed
            print(f"stream_overhead: setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        finally:
            if process is not None:
                stop_endpoint(process)
    print_report(figures)
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
