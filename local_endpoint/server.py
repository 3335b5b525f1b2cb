"""Local mode: the real router handler on 127.0.0.1 behind a thin HTTP -> API Gateway proxy event adapter.

By default the same port also serves the Bedrock simulator (``/model/{id}/converse``, what the router's
botocore client calls) and its admin API (``/_sim/faults``), so no AWS account is needed. With
``--bedrock aws`` the router calls real Bedrock with your own credentials instead.

    python -m local_endpoint.server --port 8080 [--policy FILE] [--faults FILE] [--bedrock sim|aws]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lambdas.router.http_server import LocalHTTPServer
from lambdas.router.http_server import make_server as serve
from lambdas.router.openai_api import CHAT_PATH
from lambdas.router.web_adapter import STREAM_FUNCTION_TIMEOUT_MS, http_response, json_answer
from lambdas.router.web_adapter import proxy_event as adapter_event
from local_endpoint.state_admin import ClearRefused, LiveStateAdmin, admin_for

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "lambdas" / "router" / "policies" / "default.json"
# API Gateway REST: 10 MB payload limit, 29 s default integration timeout.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_MS = 29_000

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
StreamHandler = Callable[[dict[str, Any], Any], tuple[int, dict[str, str], "bytes | Iterator[bytes]"]]


def _asks_stream(body: bytes) -> bool:
    """Whether a chat completion body asks for a stream (anything unreadable is the handler's to refuse)."""
    if b'"stream"' not in body:
        return False
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and document.get("stream") is True


class LocalLambdaContext:
    """The parts of the Lambda context object the router and Powertools read."""

    def __init__(self, request_id: str, timeout_ms: int = INTEGRATION_TIMEOUT_MS) -> None:
        self.function_name = "routed-bedrock-router-local"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        self.aws_request_id = request_id
        self.log_group_name = "/aws/lambda/local"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def proxy_event(
    method: str, raw_path: str, headers: Mapping[str, str], body: bytes, *, source_ip: str, request_id: str
) -> dict[str, Any]:
    """An API Gateway REST proxy integration event for one HTTP request, with a local request context."""
    path = urlsplit(raw_path).path
    request_context = {
        "accountId": "000000000000",
        "apiId": "local",
        "stage": "local",
        "requestId": request_id,
        "httpMethod": method,
        "path": f"/local{path}",
        "resourcePath": path,
        "requestTimeEpoch": int(time.time() * 1000),
        "identity": {"sourceIp": source_ip, "apiKeyId": None, "userAgent": headers.get("User-Agent")},
    }
    return adapter_event(method, raw_path, headers, body, request_context)


STATE_PATH = "/_local/state"


class LocalEndpoint:
    """Dispatches one HTTP request to the simulator, the live-state admin API or the router handler.

    Args:
        handler: the Lambda handler.
        simulator: the Bedrock simulator served on the same port, or None.
        state_admin: what answers ``GET``/``DELETE /_local/state``, or None.
        stream_handler: answers ``POST /v1/chat/completions`` with ``"stream": true`` as the events are made
            (``handler.stream_chat_completions``); None leaves them to ``handler`` (sent at once).
    """

    def __init__(
        self,
        handler: LambdaHandler,
        simulator: Any | None = None,
        state_admin: LiveStateAdmin | None = None,
        stream_handler: StreamHandler | None = None,
    ) -> None:
        self.handler = handler
        self.simulator = simulator
        self.state_admin = state_admin
        self.stream_handler = stream_handler

    def _state_admin(self, admin: LiveStateAdmin, method: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if method not in ("GET", "DELETE"):
            return json_answer(
                405, {"error": "MethodNotAllowed", "message": f"{method} {STATE_PATH}: use GET or DELETE"}
            )
        try:
            if method == "GET":
                return json_answer(200, admin.describe())
            admin.clear()
        except ClearRefused as exc:
            return json_answer(403, {"error": "Forbidden", "message": str(exc)})
        except Exception as exc:  # the store's own failure (a DynamoDB endpoint down), not the caller's
            print(f"live-state store failed: {exc!r}", file=sys.stderr)
            return json_answer(503, {"error": "StoreUnavailable", "message": f"the live-state store failed: {exc}"})
        return json_answer(200, {"cleared": True})

    def dispatch(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes | Iterator[bytes]]:
        """Status, headers and body; the simulator's paced ConverseStream body comes as pieces (sent chunked)."""
        route = urlsplit(path).path
        if self.simulator is not None and self.simulator.handles(method, route):
            status, sim_headers, sim_body = self.simulator.handle(method, route, headers, body)
            return status, list(sim_headers.items()), sim_body
        if self.state_admin is not None and route == STATE_PATH:
            return self._state_admin(self.state_admin, method)
        request_id = str(uuid.uuid4())
        event = proxy_event(method, path, headers, body, source_ip=source_ip, request_id=request_id)
        if self.stream_handler is not None and method == "POST" and route == CHAT_PATH and _asks_stream(body):
            try:
                # as long as the deployed streaming function may run
                context = LocalLambdaContext(request_id, timeout_ms=STREAM_FUNCTION_TIMEOUT_MS)
                status, answer_headers, answer = self.stream_handler(event, context)
            except Exception as exc:
                print(f"router failed: {exc!r}", file=sys.stderr)
                return json_answer(502, {"message": "Internal server error"})
            return status, list(answer_headers.items()), answer
        try:
            result = self.handler(event, LocalLambdaContext(request_id))
        except Exception as exc:  # what API Gateway answers when the function itself fails
            print(f"router failed: {exc!r}", file=sys.stderr)
            return json_answer(502, {"message": "Internal server error"})
        return http_response(result)


def make_server(endpoint: LocalEndpoint, host: str, port: int) -> LocalHTTPServer:
    return serve(endpoint.dispatch, host, port, max_body_bytes=MAX_REQUEST_BYTES)


def configure_environment(*, port: int, policy: Path, bedrock: str, log_level: str, show_metrics: bool) -> None:
    """Environment the router reads at import time; must run before the handler is imported."""
    os.environ["ROUTER_POLICY_FILE"] = str(policy)
    os.environ.setdefault("ROUTER_POLICY_MAX_AGE_SECONDS", "5")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "router-local")
    os.environ["POWERTOOLS_LOG_LEVEL"] = log_level
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "false" if show_metrics else "true"
    if bedrock == "sim":
        os.environ["BEDROCK_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        # The simulator reads only the region from the SigV4 signature; these never leave the machine.
        os.environ["AWS_ACCESS_KEY_ID"] = "local-simulator"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "local-simulator"
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
    else:
        os.environ.pop("BEDROCK_ENDPOINT_URL", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the routed Bedrock endpoint locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--policy", type=Path, default=Path(os.environ.get("POLICY_FILE", DEFAULT_POLICY)))
    parser.add_argument("--faults", type=Path, default=None, help="simulator faults JSON file")
    parser.add_argument("--seed", type=int, default=0, help="simulator random seed (throttle sampling)")
    parser.add_argument(
        "--bedrock",
        choices=("sim", "aws"),
        default=os.environ.get("BEDROCK", "sim"),
        help="sim: the built-in Bedrock simulator (default); aws: real Bedrock with your credentials",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "WARNING"))
    parser.add_argument("--show-metrics", action="store_true", help="print the EMF metrics lines")
    args = parser.parse_args(argv)

    from lambdas.router.policy import PolicyError, load_policy_file

    try:
        policy = load_policy_file(args.policy)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    configure_environment(
        port=args.port,
        policy=args.policy,
        bedrock=args.bedrock,
        log_level=args.log_level,
        show_metrics=args.show_metrics,
    )
    from lambdas.router.handler import lambda_handler, service, stream_chat_completions

    simulator = None
    if args.bedrock == "sim":
        from local_endpoint.bedrock_sim import BedrockSimulator, FaultStore

        try:
            faults = FaultStore.from_file(args.faults, seed=args.seed) if args.faults else FaultStore(seed=args.seed)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        simulator = BedrockSimulator(faults)

    try:
        tracker = service().live_state
        state_admin = admin_for(tracker) if tracker is not None else None
        endpoint = LocalEndpoint(
            lambda_handler, simulator, state_admin=state_admin, stream_handler=stream_chat_completions
        )
        server = make_server(endpoint, args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    base = f"http://{args.host}:{args.port}"
    print(f"Routed Bedrock endpoint (local) with policy {args.policy} (version {policy.version})")
    print(f"  POST {base}/generate")
    print(f"  GET  {base}/health")
    if simulator is not None:
        print(f"  Bedrock simulator: {base}/model/{{modelId}}/converse")
        print(f"  Fault injection:   PUT/GET/DELETE {base}/_sim/faults")
    else:
        print("  Bedrock: real AWS, with your default credentials")
    if endpoint.state_admin is not None:
        store = endpoint.state_admin.store_name
        print(f"  Live state:        GET/DELETE {base}{STATE_PATH} (circuits, spend; store {store})")
    print("Press Ctrl+C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
