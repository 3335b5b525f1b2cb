"""Local mode's HTTP <-> API Gateway adapter and its environment switch between simulator and real Bedrock."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from local_endpoint.http_handler import BadFraming, content_length
from local_endpoint.server import LocalEndpoint, LocalLambdaContext, configure_environment, http_response, proxy_event


def test_proxy_event_carries_method_path_query_headers_and_body():
    event = proxy_event(
        "POST",
        "/generate?debug=1&debug=2",
        {"X-User-Tier": "premium"},
        b'{"prompt": "hi"}',
        source_ip="127.0.0.1",
        request_id="r-1",
    )
    assert event["httpMethod"] == "POST"
    assert event["path"] == "/generate"
    assert event["queryStringParameters"] == {"debug": "2"}
    assert event["multiValueQueryStringParameters"] == {"debug": ["1", "2"]}
    assert event["headers"]["X-User-Tier"] == "premium"
    assert event["body"] == '{"prompt": "hi"}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["requestId"] == "r-1"


def test_binary_body_is_base64_encoded():
    event = proxy_event("POST", "/generate", {}, b"\xff\xfe", source_ip="127.0.0.1", request_id="r")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe"


def test_http_response_flattens_headers_and_decodes_body():
    status, headers, body = http_response(
        {"statusCode": 201, "multiValueHeaders": {"X-A": ["1", "2"]}, "headers": {"X-B": "3"}, "body": "ok"}
    )
    assert status == 201
    assert headers == [("X-A", "1"), ("X-A", "2"), ("X-B", "3")]
    assert body == b"ok"


def test_context_counts_down_from_the_integration_timeout():
    context = LocalLambdaContext("r", timeout_ms=5000)
    assert 4000 < context.get_remaining_time_in_millis() <= 5000


def test_a_crashing_handler_answers_502_json_not_a_stack_trace():
    def broken(event, context):
        raise RuntimeError("boom")

    status, _, body = LocalEndpoint(broken).dispatch("GET", "/health", {}, b"", "127.0.0.1")
    assert status == 502
    assert body == b'{"message": "Internal server error"}'
    assert b"boom" not in body


@pytest.fixture
def clean_env(monkeypatch):
    """A private copy of the environment: configure_environment's writes vanish with the test."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BEDROCK_", "ROUTER_", "POWERTOOLS_"))
    }
    environment["AWS_PROFILE"] = "someone"
    monkeypatch.setattr(os, "environ", environment)
    return monkeypatch


def test_sim_mode_points_the_router_at_the_local_port_with_throwaway_credentials(clean_env):
    configure_environment(port=9000, policy=Path("p.json"), bedrock="sim", log_level="INFO", show_metrics=False)
    assert os.environ["BEDROCK_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "local-simulator"
    assert "AWS_PROFILE" not in os.environ
    assert os.environ["ROUTER_POLICY_FILE"] == "p.json"
    assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "true"


def test_aws_mode_uses_real_bedrock_and_the_users_credentials(clean_env):
    clean_env.setenv("BEDROCK_ENDPOINT_URL", "http://stale")
    configure_environment(port=9000, policy=Path("p.json"), bedrock="aws", log_level="INFO", show_metrics=True)
    assert "BEDROCK_ENDPOINT_URL" not in os.environ
    assert os.environ["AWS_PROFILE"] == "someone"
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "false"


@pytest.mark.parametrize(("values", "expected"), [(None, 0), ([], 0), (["0"], 0), (["42"], 42), ([" 7 ", "7"], 7)])
def test_content_length_is_read_from_plain_digits(values, expected):
    assert content_length(values, limit=100) == expected


@pytest.mark.parametrize(
    ("values", "status", "message"),
    [
        (["-1"], 400, "Content-Length must be a non-negative integer, got '-1'"),
        (["+5"], 400, "non-negative integer"),
        (["1_000"], 400, "non-negative integer"),
        (["0x10"], 400, "non-negative integer"),
        (["\u0661"], 400, "non-negative integer"),  # an Arabic-Indic digit: str.isdigit() alone accepts it
        (["9" * 5000], 400, "non-negative integer, got '999"),
        (["5", "6"], 400, "conflicting Content-Length headers: 5, 6"),
        (["101"], 413, "Request Too Long: 101 bytes, over the limit of 100"),
    ],
)
def test_rejects_content_lengths_that_cannot_be_trusted(values, status, message):
    with pytest.raises(BadFraming) as error:
        content_length(values, limit=100)
    assert error.value.status == status
    assert message in error.value.message
