"""The streaming function's front end: the router as a web app behind AWS Lambda Web Adapter.

Python's managed runtimes hand an invocation's answer back only once it is complete, so a streamed answer
needs something else between the Runtime API and the router. The streaming function runs AWS's Lambda Web
Adapter (its public layer; the adapter is a Lambda extension): the adapter takes each invocation from the
Runtime API, sends it to this server on 127.0.0.1 as an HTTP request, and streams the HTTP answer back as it
is written, with the status-and-headers prelude API Gateway's ``STREAM`` transfer mode reads. The server is
the same HTTP layer ``make local`` serves (``http_server.py``), and the router code is the same.

What arrives besides callers' requests, and what it gets:

- the adapter's readiness checks, ``GET /_router/ready`` every 10 ms during init: 503 until the service is
  built, so the init phase (its CPU burst) does that work rather than the first caller (a service that cannot
  be built ends the process with the reason, rather than leaving the adapter polling to the init limit);
- a non-HTTP invocation (a warmer, a misrouted event source), which the adapter posts to ``/events``: a 400
  with a JSON message, never routed and never charged. An invocation shaped like API Gateway's event is an
  HTTP request to the adapter, with whatever identity it claims: only API Gateway may invoke the function
  (its resource policy), so keep ``lambda:InvokeFunction`` on it to API Gateway;
- SIGTERM when Lambda retires the environment: the server stops and the process exits.

The API Gateway request context (request id, the caller's identity and API key id, the authorizer's claims)
and the Lambda context (request id, deadline) come in the ``x-amzn-request-context`` and
``x-amzn-lambda-context`` headers, which the adapter always sets itself (a caller's own are replaced), so the
router sees the proxy event its buffered handler would.

    python -m router.web_adapter        # in the function; AWS_LWA_PORT (default 8080)
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .http_server import LocalHTTPServer
from .http_server import make_server as serve
from .openai_api import CHAT_PATH

READY_PATH = "/_router/ready"
"""Where the adapter checks readiness (``AWS_LWA_READINESS_CHECK_PATH``)."""
EVENTS_PATH = "/events"
"""Where the adapter posts a non-HTTP invocation (``AWS_LWA_PASS_THROUGH_PATH``'s default)."""
REQUEST_CONTEXT_HEADER = "x-amzn-request-context"
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"
DEFAULT_PORT = 8080
STREAM_FUNCTION_TIMEOUT_MS = 180_000
"""The streaming function's default timeout."""
FUNCTION_TIMEOUT_ENV = "ROUTER_FUNCTION_TIMEOUT_MS"
"""The function's own timeout (set by the construct): a request's deadline when its Lambda context has none."""
MAX_REQUEST_BYTES = 10 * 1024 * 1024
"""API Gateway REST's payload limit."""

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
StreamHandler = Callable[[dict[str, Any], Any], tuple[int, dict[str, str], "bytes | Iterator[bytes]"]]
Answer = tuple[int, list[tuple[str, str]], "bytes | Iterator[bytes]"]


class AdapterContext:
    """The Lambda context object the router and Powertools read, from the adapter's header and the environment.

    Args:
        fields: the ``x-amzn-lambda-context`` JSON (``request_id``, ``deadline`` in epoch milliseconds,
            ``invoked_function_arn``, ``env_config``); missing fields fall back to the environment.
        now_ms: epoch milliseconds.
    """

    def __init__(self, fields: Mapping[str, Any], *, now_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        config = fields.get("env_config")
        env: Mapping[str, Any] = config if isinstance(config, dict) else {}
        self._now_ms = now_ms
        self.aws_request_id = str(fields.get("request_id") or uuid.uuid4())
        self.function_name = str(env.get("function_name") or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "router"))
        self.function_version = str(env.get("version") or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"))
        self.invoked_function_arn = str(fields.get("invoked_function_arn") or "")
        memory = env.get("memory") or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0
        self.memory_limit_in_mb = int(memory) if str(memory).isdigit() else 0
        self.log_group_name = str(env.get("log_group") or os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""))
        self.log_stream_name = str(env.get("log_stream") or os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))
        deadline = fields.get("deadline")
        usable = isinstance(deadline, int | float) and not isinstance(deadline, bool) and deadline > 0
        self._deadline_ms = float(deadline) if usable else now_ms() + _function_timeout_ms()  # type: ignore[arg-type]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - self._now_ms()))


def _function_timeout_ms() -> float:
    raw = os.environ.get(FUNCTION_TIMEOUT_ENV, "")
    return float(raw) if raw.isdigit() and int(raw) > 0 else float(STREAM_FUNCTION_TIMEOUT_MS)


def proxy_event(
    method: str, target: str, headers: Mapping[str, str], body: bytes, request_context: Mapping[str, Any]
) -> dict[str, Any]:
    """The API Gateway REST proxy event for one HTTP request and its request context.

    The resource is the request context's ``resourcePath`` when it has one (a custom domain's base path is
    then no concern), else the request's path.
    """
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    try:
        text_body: str | None = body.decode("utf-8") if body else None
        is_base64 = False
    except UnicodeDecodeError:
        text_body, is_base64 = base64.b64encode(body).decode("ascii"), True
    resource = request_context.get("resourcePath")
    return {
        "resource": resource if isinstance(resource, str) and resource else parts.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": dict(request_context),
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def http_response(result: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy result as status, headers and body bytes."""
    headers: list[tuple[str, str]] = []
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(value)) for value in values)
    for name, value in (result.get("headers") or {}).items():
        headers.append((name, str(value)))
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
    return int(result.get("statusCode", 502)), headers, body


def json_answer(status: int, body: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps(body).encode()


class AdapterEndpoint:
    """Answers the adapter's requests: readiness, pass-through events, and callers' requests to the router.

    Args:
        handler: the router's Lambda handler (every path but the chat completions).
        stream_handler: answers ``POST /v1/chat/completions`` as it is made (``handler.stream_chat_completions``).
        ready: whether the service is built (readiness answers 503 until then).
    """

    def __init__(self, handler: LambdaHandler, stream_handler: StreamHandler, ready: Callable[[], bool]) -> None:
        self.handler = handler
        self.stream_handler = stream_handler
        self.ready = ready

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        path = urlsplit(target).path
        if path == READY_PATH:
            return json_answer(200, {"ready": True}) if self.ready() else json_answer(503, {"ready": False})
        request_context = _json_header(headers, REQUEST_CONTEXT_HEADER)
        if path == EVENTS_PATH or not request_context:
            print(f"refused a non-HTTP invocation ({method} {path})", file=sys.stderr)
            return json_answer(
                400,
                {
                    "message": "this function answers API Gateway's streamed requests only; "
                    "a direct or non-HTTP invocation is not routed"
                },
            )
        context = AdapterContext(_json_header(headers, LAMBDA_CONTEXT_HEADER))
        caller_headers = {
            name: value
            for name, value in headers.items()
            if name.lower() not in (REQUEST_CONTEXT_HEADER, LAMBDA_CONTEXT_HEADER)
        }
        event = proxy_event(method, target, caller_headers, body, _well_formed(request_context, context.aws_request_id))
        try:
            if method == "POST" and event["resource"] == CHAT_PATH:
                status, answer_headers, answer = self.stream_handler(event, context)
                return status, list(answer_headers.items()), answer
            return http_response(self.handler(event, context))
        except Exception as exc:  # what API Gateway answers when the function itself fails
            print(f"router failed: {exc!r}", file=sys.stderr)
            return json_answer(502, {"message": "Internal server error"})


_CONTEXT_TEXT_FIELDS = ("requestId", "resourcePath", "path", "stage", "httpMethod", "apiId", "accountId")


def _well_formed(context: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    """The request context in API Gateway's shape: text fields as text (a request id always, the Lambda
    request's when the context has none), ``identity`` an object of text values, ``authorizer`` (and its
    ``claims``) objects. API Gateway always sends that; anything else is dropped rather than failing the
    request later, where the router reads the caller's identity."""
    clean = {key: value for key, value in context.items() if key not in _CONTEXT_TEXT_FIELDS or isinstance(value, str)}
    clean.setdefault("requestId", request_id)
    identity = clean.get("identity")
    clean["identity"] = (
        {key: value for key, value in identity.items() if value is None or isinstance(value, str)}
        if isinstance(identity, dict)
        else {}
    )
    if not isinstance(clean["identity"].get("sourceIp"), str):
        clean["identity"]["sourceIp"] = "unknown"  # the router keys callers by it last
    authorizer = clean.get("authorizer")
    if not isinstance(authorizer, dict):
        clean.pop("authorizer", None)
    elif "claims" in authorizer and not isinstance(authorizer["claims"], dict):
        clean["authorizer"] = {key: value for key, value in authorizer.items() if key != "claims"}
    return clean


def _json_header(headers: Mapping[str, str], name: str) -> dict[str, Any]:
    """A JSON object header (any letter case), or {} when it is missing, not JSON or not an object."""
    raw = next((value for key, value in headers.items() if key.lower() == name), None)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def make_server(endpoint: AdapterEndpoint, host: str, port: int) -> LocalHTTPServer:
    def dispatch(method: str, path: str, headers: dict[str, str], body: bytes, _client_ip: str) -> Answer:
        return endpoint.dispatch(method, path, headers, body)

    return serve(dispatch, host, port, max_body_bytes=MAX_REQUEST_BYTES)


def main() -> int:
    port = int(os.environ.get("AWS_LWA_PORT") or os.environ.get("PORT") or DEFAULT_PORT)
    built = threading.Event()
    from .handler import lambda_handler, service, stream_chat_completions

    server = make_server(AdapterEndpoint(lambda_handler, stream_chat_completions, built.is_set), "127.0.0.1", port)
    serving = threading.Thread(target=server.serve_forever, name="web-adapter", daemon=True)
    serving.start()  # readiness answers 503 meanwhile
    stopped = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    try:
        service()  # the clients and the policy store, built during init rather than on the first request
    except Exception as exc:  # the adapter would poll until the init limit: say why and end init now
        print(f"the router could not start: {exc!r}", file=sys.stderr)
        server.shutdown()
        server.server_close()
        return 1
    built.set()
    stopped.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
