"""The streaming function's front end (``web_adapter.py``): what Lambda Web Adapter sends it, and what it answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.router.web_adapter import (
    EVENTS_PATH,
    LAMBDA_CONTEXT_HEADER,
    READY_PATH,
    REQUEST_CONTEXT_HEADER,
    STREAM_FUNCTION_TIMEOUT_MS,
    AdapterContext,
    AdapterEndpoint,
)

NOW_MS = 1_800_000_000_000.0
REQUEST_CONTEXT = {
    "accountId": "123456789012",
    "apiId": "abc123",
    "stage": "prod",
    "requestId": "api-request-1",
    "httpMethod": "POST",
    "path": "/llm/v1/chat/completions",
    "resourcePath": "/v1/chat/completions",
    "identity": {"sourceIp": "203.0.113.9", "apiKeyId": "key-42", "userAgent": "OpenAI/Python"},
    "authorizer": {"principalId": "team-a"},
}
LAMBDA_CONTEXT = {
    "request_id": "lambda-request-1",
    "deadline": NOW_MS + 90_000,
    "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:stream",
    "xray_trace_id": None,
    "env_config": {
        "function_name": "stream",
        "memory": 1024,
        "version": "$LATEST",
        "log_stream": "2026/12/01/[$LATEST]abc",
        "log_group": "/aws/lambda/stream",
    },
}


class Recorder:
    """Stands in for the router: records what it was given, answers what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], Any]] = []
        self.fail = False

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.calls.append(("buffered", event, context))
        if self.fail:
            raise RuntimeError("boom")
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"object": "list"}'}

    def stream(self, event: dict[str, Any], context: Any) -> tuple[int, dict[str, str], Any]:
        self.calls.append(("stream", event, context))
        if self.fail:
            raise RuntimeError("boom")
        return 200, {"Content-Type": "text/event-stream"}, iter([b"data: 1\n\n", b"data: [DONE]\n\n"])


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def endpoint(recorder: Recorder, *, ready: bool = True) -> AdapterEndpoint:
    return AdapterEndpoint(recorder.handler, recorder.stream, lambda: ready)


def adapter_headers(**extra: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "authorization": "Bearer sk-test",
        REQUEST_CONTEXT_HEADER: json.dumps(REQUEST_CONTEXT),
        LAMBDA_CONTEXT_HEADER: json.dumps(LAMBDA_CONTEXT),
        **extra,
    }


def body_of(answer: Any) -> dict[str, Any]:
    status, headers, body = answer
    assert ("Content-Type", "application/json") in headers
    return {"status": status, **json.loads(body)}


# --- readiness and what is not a request ----------------------------------------------------------------


def test_readiness_waits_for_the_service(recorder):
    assert body_of(endpoint(recorder, ready=False).dispatch("GET", READY_PATH, {}, b"")) == {
        "status": 503,
        "ready": False,
    }
    assert body_of(endpoint(recorder).dispatch("GET", READY_PATH, {}, b"")) == {"status": 200, "ready": True}
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (EVENTS_PATH, {REQUEST_CONTEXT_HEADER: "null", LAMBDA_CONTEXT_HEADER: json.dumps(LAMBDA_CONTEXT)}),
        (EVENTS_PATH, {REQUEST_CONTEXT_HEADER: json.dumps(REQUEST_CONTEXT)}),  # the path alone decides
        ("/v1/chat/completions", {}),  # no request context: not from API Gateway
        ("/v1/chat/completions", {REQUEST_CONTEXT_HEADER: "{not json"}),
        ("/v1/chat/completions", {REQUEST_CONTEXT_HEADER: "[1, 2]"}),
    ],
)
def test_a_non_http_invocation_is_refused_and_never_routed(recorder, path, headers):
    answer = body_of(endpoint(recorder).dispatch("POST", path, headers, b'{"Records": []}'))
    assert answer["status"] == 400
    assert "non-HTTP invocation is not routed" in answer["message"]
    assert recorder.calls == []


# --- requests: the proxy event and the context the router gets -------------------------------------------


def test_chat_completions_go_to_the_stream_handler_with_api_gateways_event(recorder):
    body = b'{"model": "auto", "stream": true}'
    status, headers, answer = endpoint(recorder).dispatch(
        "POST", "/llm/v1/chat/completions?x=1", adapter_headers(), body
    )
    assert (status, headers) == (200, [("Content-Type", "text/event-stream")])
    assert b"".join(answer) == b"data: 1\n\ndata: [DONE]\n\n"
    [(kind, event, context)] = recorder.calls
    assert kind == "stream"
    # The resource is API Gateway's, whatever base path a custom domain put before it
    assert event["resource"] == "/v1/chat/completions"
    assert event["path"] == "/llm/v1/chat/completions"
    assert event["httpMethod"] == "POST"
    assert event["queryStringParameters"] == {"x": "1"}
    assert event["body"] == body.decode() and event["isBase64Encoded"] is False
    # The caller's identity is API Gateway's, and the adapter's own headers are not the caller's
    assert event["requestContext"] == REQUEST_CONTEXT
    assert event["headers"] == {"content-type": "application/json", "authorization": "Bearer sk-test"}
    assert context.aws_request_id == "lambda-request-1"
    assert context.function_name == "stream" and context.memory_limit_in_mb == 1024
    assert context.log_group_name == "/aws/lambda/stream"


def test_header_names_are_matched_in_any_case(recorder):
    headers = {"X-Amzn-Request-Context": json.dumps(REQUEST_CONTEXT), "X-Amzn-Lambda-Context": "{}"}
    status, _, _ = endpoint(recorder).dispatch("POST", "/v1/chat/completions", headers, b"{}")
    assert status == 200
    [(_, event, _)] = recorder.calls
    assert event["headers"] == {}


def test_other_paths_go_to_the_buffered_handler(recorder):
    status, headers, body = endpoint(recorder).dispatch("GET", "/v1/models", adapter_headers(), b"")
    assert (status, body) == (200, b'{"object": "list"}')
    assert ("Content-Type", "application/json") in headers
    assert [kind for kind, _, _ in recorder.calls] == ["buffered"]


def test_a_binary_body_travels_base64_encoded(recorder):
    endpoint(recorder).dispatch("POST", "/v1/chat/completions", adapter_headers(), b"\xff\xfe")
    [(_, event, _)] = recorder.calls
    assert event["isBase64Encoded"] is True and event["body"] == "//4="


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/generate"])
def test_a_router_failure_is_a_502_without_a_trace(recorder, path):
    recorder.fail = True
    assert body_of(endpoint(recorder).dispatch("POST", path, adapter_headers(), b"{}")) == {
        "status": 502,
        "message": "Internal server error",
    }


# --- the Lambda context from the adapter's header ---------------------------------------------------------


def test_the_deadline_is_lambdas():
    clock = [NOW_MS]
    context = AdapterContext(LAMBDA_CONTEXT, now_ms=lambda: clock[0])
    assert context.get_remaining_time_in_millis() == 90_000
    clock[0] += 89_999.5
    assert context.get_remaining_time_in_millis() == 0
    clock[0] += 10_000
    assert context.get_remaining_time_in_millis() == 0  # never negative


@pytest.mark.parametrize("deadline", [None, "soon", True, -5, 0, [1]])
def test_a_missing_or_odd_deadline_falls_back_to_the_function_timeout(deadline):
    fields = {**LAMBDA_CONTEXT, "deadline": deadline}
    context = AdapterContext(fields, now_ms=lambda: NOW_MS)
    assert context.get_remaining_time_in_millis() == STREAM_FUNCTION_TIMEOUT_MS


def test_missing_fields_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "from-env")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
    context = AdapterContext({"env_config": "not an object"}, now_ms=lambda: NOW_MS)
    assert context.function_name == "from-env"
    assert context.memory_limit_in_mb == 512
    assert len(context.aws_request_id) == 36  # a fresh id rather than none


@pytest.mark.parametrize(
    ("context", "identity"),
    [
        ({"identity": "me"}, {"sourceIp": "unknown"}),
        (
            {"identity": {"sourceIp": ["x"], "apiKeyId": 5, "userArn": "arn:aws:iam::1:user/a"}},
            {"sourceIp": "unknown", "userArn": "arn:aws:iam::1:user/a"},
        ),
        ({"resourcePath": 12, "authorizer": "x"}, {"sourceIp": "unknown"}),
    ],
)
def test_an_odd_request_context_is_made_api_gateways_shape(recorder, context, identity):
    headers = {REQUEST_CONTEXT_HEADER: json.dumps(context), LAMBDA_CONTEXT_HEADER: json.dumps(LAMBDA_CONTEXT)}
    status, _, _ = endpoint(recorder).dispatch("POST", "/v1/chat/completions", headers, b"{}")
    assert status == 200
    [(_, event, _)] = recorder.calls
    assert event["requestContext"]["identity"] == identity
    assert event["requestContext"]["requestId"] == "lambda-request-1"  # the Lambda request's, when missing
    assert "authorizer" not in event["requestContext"] or isinstance(event["requestContext"]["authorizer"], dict)
    assert event["resource"] == "/v1/chat/completions"  # a non-text resourcePath falls back to the path
