"""Local mode's HTTP <-> API Gateway adapter and its environment switch between simulator and real Bedrock."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from lambdas.router.budget import scopes_for
from lambdas.router.dynamo_state import DynamoBackend
from lambdas.router.http_server import BadFraming, content_length
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.state_store import InMemoryBackend
from local_endpoint.server import LocalEndpoint, LocalLambdaContext, configure_environment, http_response, proxy_event
from local_endpoint.state_admin import DynamoStoreView, LiveStateAdmin, admin_for


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


# --- GET and DELETE /_local/state ----------------------------------------------------------------------

NOW = 1_800_000_000.0


def _tracker_with_spend(backend) -> LiveStateTracker:
    tracker = LiveStateTracker(backend, clock=lambda: NOW)
    tracker.record_spend(0.25, scopes_for(None, NOW, tier="standard", api_key=None))
    return tracker


def test_state_admin_shows_unflushed_spend_and_clears_store_and_tracker():
    # Given spend recorded but not yet flushed, and an open circuit in the in-memory store
    backend = InMemoryBackend()
    backend.open_circuit(("m", "us-east-1"), opened_at=NOW, expected=None, reason="5 failures")
    admin = admin_for(_tracker_with_spend(backend))
    assert admin is not None
    endpoint = LocalEndpoint(lambda event, context: {}, state_admin=admin)
    # When the state is read, Then it names the store and holds both
    status, _, body = endpoint.dispatch("GET", "/_local/state", {}, b"", "127.0.0.1")
    state = json.loads(body)
    assert status == 200 and state["store"] == "memory"
    assert [(c["model_id"], c["reason"]) for c in state["circuits"]] == [("m", "5 failures")]
    assert list(state["spend_usd"].values()) == [pytest.approx(0.25)]
    # When it is cleared, Then nothing is left
    assert endpoint.dispatch("DELETE", "/_local/state", {}, b"", "127.0.0.1")[0] == 200
    assert json.loads(endpoint.dispatch("GET", "/_local/state", {}, b"", "127.0.0.1")[2]) == {
        "store": "memory",
        "circuits": [],
        "spend_usd": {},
    }


def test_a_dynamodb_store_is_shown_through_a_view_of_its_table():
    tracker = LiveStateTracker(DynamoBackend("state", endpoint_url="http://127.0.0.1:1"))
    admin = admin_for(tracker, {"DYNAMODB_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_REGION": "eu-west-1"})
    assert admin is not None and admin.store_name == "dynamodb:state"
    assert isinstance(admin.store, DynamoStoreView)


def test_rejects_clearing_a_dynamodb_table_in_aws_with_a_403():
    # Given local mode on a table in AWS (no DYNAMODB_ENDPOINT_URL)
    tracker = LiveStateTracker(DynamoBackend("prod-state"))
    endpoint = LocalEndpoint(lambda event, context: {}, state_admin=admin_for(tracker, {}))
    # When DELETE /_local/state is called, Then it is refused before any call to the table
    status, _, body = endpoint.dispatch("DELETE", "/_local/state", {}, b"", "127.0.0.1")
    assert status == 403
    assert "clears only a local DynamoDB" in json.loads(body)["message"]


class _BrokenStore:
    def describe(self) -> dict:
        raise ConnectionError("store down")

    def clear(self) -> None:
        raise ConnectionError("store down")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_fails_with_a_json_503_when_the_store_fails(method):
    admin = LiveStateAdmin(LiveStateTracker(InMemoryBackend()), _BrokenStore(), "broken")
    status, _, body = LocalEndpoint(lambda event, context: {}, state_admin=admin).dispatch(
        method, "/_local/state", {}, b"", "127.0.0.1"
    )
    assert status == 503
    assert "store down" in json.loads(body)["message"]


@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH"])
def test_rejects_other_methods_on_the_state_path_with_a_405(method):
    admin = admin_for(LiveStateTracker(InMemoryBackend()))
    status, _, body = LocalEndpoint(lambda event, context: {}, state_admin=admin).dispatch(
        method, "/_local/state", {}, b"{}", "127.0.0.1"
    )
    assert status == 405
    assert "use GET or DELETE" in json.loads(body)["message"]
