"""Local mode on the DynamoDB store (moto's server): ``GET`` and ``DELETE /_local/state`` show and clear the
table's circuits and spend, as they do for the in-memory store."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from benchmarks.fault_drill import caller_addresses
from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file

from .conftest import LocalEndpoint, running_local_endpoint, running_moto_server

pytestmark = pytest.mark.xdist_group("local_endpoint")

POLICY = load_policy_file(DEFAULT_POLICY_PATH)
PRIMARY = POLICY.models[POLICY.routes["fast"].candidates[0].model]
HOME = PRIMARY.regions[0]
REGION = "us-east-1"
TABLE = "router-live-state"


@pytest.fixture(scope="module")
def table_client() -> Iterator[Any]:
    """A client on moto's server, with the state table shaped as the construct defines it."""
    with running_moto_server() as url:
        client = boto3.client("dynamodb", region_name=REGION, endpoint_url=url, **_boto_credentials())
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
        yield client


@pytest.fixture(scope="module")
def dynamo_endpoint(table_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    """The local endpoint with ``ROUTER_STATE_TABLE`` on moto's server."""
    extra_env = {
        "ROUTER_STATE_TABLE": TABLE,
        "DYNAMODB_ENDPOINT_URL": table_client.meta.endpoint_url,
        "AWS_REGION": REGION,
    }
    with running_local_endpoint(tmp_path_factory.mktemp("local_dynamo"), extra_env) as endpoint:
        yield endpoint


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": "moto", "aws_secret_access_key": "moto"}


def _generate_from(endpoint: LocalEndpoint, source: str) -> dict[str, Any]:
    """One /generate from a loopback source address (a caller, for the circuit breaker)."""
    parts = urlsplit(endpoint.base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    try:
        body = json.dumps({"prompt": "Hi", "use_case": "faq"})
        connection.request("POST", "/generate", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return dict(json.loads(response.read()))
    finally:
        connection.close()


def _state_when(endpoint: LocalEndpoint, ready: Any, within_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        response = endpoint.request("GET", "/_local/state")
        assert response.status == 200, response.body
        if ready(response.body) or time.monotonic() > deadline:
            return dict(response.body)
        time.sleep(0.2)


def test_state_admin_shows_and_clears_the_dynamodb_store(dynamo_endpoint, table_client):
    callers = [a for a in caller_addresses("http://127.0.0.1", POLICY.breaker.failure_threshold + 2) if a]
    if len(callers) < POLICY.breaker.min_failing_callers:
        pytest.skip("needs several loopback source addresses (Linux)")
    # Given an empty table
    assert dynamo_endpoint.request("DELETE", "/_local/state").status == 200
    empty = dynamo_endpoint.request("GET", "/_local/state")
    assert empty.body == {"store": f"dynamodb:{TABLE}", "circuits": [], "spend_usd": {}}
    # When the primary is down in its home region for several callers, who are answered from the next one
    dynamo_endpoint.fault(model=PRIMARY.model_id, region=HOME, outage=True)
    for index in range(POLICY.breaker.failure_threshold + 2):
        _generate_from(dynamo_endpoint, callers[index % len(callers)])
    dynamo_endpoint.clear_faults()
    # Then GET shows the table's open circuit and, once the tracker has flushed it, the spend
    state = _state_when(dynamo_endpoint, lambda body: body["circuits"] and body["spend_usd"])
    assert [(c["model_id"], c["region"]) for c in state["circuits"]] == [(PRIMARY.model_id, HOME)]
    assert state["circuits"][0]["opened_at"] > 0 and state["circuits"][0]["reason"]
    assert state["spend_usd"] and all(usd > 0 for usd in state["spend_usd"].values())
    # When the live state is cleared
    assert dynamo_endpoint.request("DELETE", "/_local/state").body == {"cleared": True}
    # Then the table holds none of the router's items, and the primary answers from home again at once
    assert table_client.scan(TableName=TABLE, ConsistentRead=True)["Items"] == []
    assert dynamo_endpoint.request("GET", "/_local/state").body["circuits"] == []
    answer = _generate_from(dynamo_endpoint, callers[0])
    assert (answer["model_used"], answer["region"]) == (PRIMARY.model_id, HOME)


def test_state_admin_answers_a_json_503_when_the_store_is_down(tmp_path):
    # Given the DynamoDB store on an endpoint nobody listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    extra_env = {"ROUTER_STATE_TABLE": TABLE, "DYNAMODB_ENDPOINT_URL": dead, "AWS_REGION": REGION}
    with running_local_endpoint(tmp_path, extra_env) as endpoint:
        # When the live state is asked for, Then the answer says the store failed, as JSON, and not the caller
        for method in ("GET", "DELETE"):
            response = endpoint.request(method, "/_local/state")
            assert response.status == 503
            assert "live-state store failed" in response.body["message"]
        assert "Traceback" not in endpoint.log_text()
