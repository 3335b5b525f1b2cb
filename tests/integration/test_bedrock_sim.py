"""The simulator over real HTTP with the real boto3 bedrock-runtime client: shapes, errors, faults, admin API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config

from local_endpoint.bedrock_sim import BedrockSimulator, Fault, serve

HAIKU_PROFILE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-micro-v1:0"


@pytest.fixture(scope="module")
def sim():
    simulator = BedrockSimulator()
    server, _ = serve(simulator)
    yield simulator, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def simulator(sim):
    simulator, _ = sim
    simulator.faults.clear()
    simulator.calls.reset()
    yield simulator
    simulator.faults.clear()


def client(url: str, region: str = "us-east-1"):
    return boto3.client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="sim",
        aws_secret_access_key="sim",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )


def converse(bedrock, model: str = NOVA, text: str = "Hello there", max_tokens: int = 500):
    return bedrock.converse(
        modelId=model,
        messages=[{"role": "user", "content": [{"text": text}]}],
        inferenceConfig={"maxTokens": max_tokens},
    )


def test_answers_in_the_converse_shape_naming_model_and_region(sim, simulator):
    _, url = sim
    response = converse(client(url, "us-west-2"), HAIKU_PROFILE)
    text = response["output"]["message"]["content"][0]["text"]
    assert text.startswith(f"[sim {HAIKU_PROFILE} @ us-west-2]")
    assert response["stopReason"] in ("end_turn", "max_tokens")
    usage = response["usage"]
    assert usage["inputTokens"] == 3  # "Hello there" is 11 characters
    assert 20 <= usage["outputTokens"] <= 400
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert simulator.calls.count(model=HAIKU_PROFILE, region="us-west-2", outcome="ok") == 1


def test_accepts_a_full_arn_as_model_id(sim, simulator):
    _, url = sim
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0"
    text = converse(client(url), arn)["output"]["message"]["content"][0]["text"]
    assert text.startswith(f"[sim {arn} @ us-east-1]")


def test_output_tokens_never_exceed_max_tokens_and_are_deterministic(sim, simulator):
    _, url = sim
    bedrock = client(url)
    first = converse(bedrock, max_tokens=5)
    assert first["usage"]["outputTokens"] <= 5
    assert first["stopReason"] == "max_tokens"
    a = converse(bedrock, text="same prompt")["output"]
    b = converse(bedrock, text="same prompt")["output"]
    assert a == b


@pytest.mark.parametrize(
    ("fault", "exception"),
    [
        ({"outage": True}, "ServiceUnavailableException"),
        ({"throttle_rate": 1.0}, "ThrottlingException"),
        ({"error": "AccessDeniedException"}, "AccessDeniedException"),
        ({"error": "ResourceNotFoundException"}, "ResourceNotFoundException"),
        ({"error": "ModelNotReadyException"}, "ModelNotReadyException"),
        ({"error": "InternalServerException"}, "InternalServerException"),
        ({"error": "ValidationException"}, "ValidationException"),
        ({"max_input_tokens": 1}, "ValidationException"),
    ],
)
def test_faults_raise_the_botocore_exception_for_the_matching_pair_only(sim, simulator, fault, exception):
    _, url = sim
    simulator.faults.put(Fault.from_json({"model": NOVA, "region": "us-east-1", **fault}))
    east, west = client(url, "us-east-1"), client(url, "us-west-2")
    with pytest.raises(getattr(east.exceptions, exception)):
        converse(east)
    converse(west)  # other region unaffected
    converse(east, HAIKU_PROFILE)  # other model unaffected


def test_latency_fault_delays_the_answer(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault(model=NOVA, region="*", latency_ms=300))
    started = time.perf_counter()
    converse(client(url))
    assert time.perf_counter() - started >= 0.3


def test_rejects_invalid_requests_with_validation_exception(sim, simulator):
    _, url = sim
    bedrock = client(url)
    with pytest.raises(bedrock.exceptions.ValidationException):
        bedrock.converse(modelId=NOVA, messages=[{"role": "assistant", "content": [{"text": "hi"}]}])


def admin(url: str, method: str, path: str, body: bytes | None = None):
    request = urllib.request.Request(url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_admin_api_puts_lists_and_clears_faults(sim, simulator):
    _, url = sim
    status, body = admin(
        url, "PUT", "/_sim/faults", json.dumps({"model": "*", "region": "us-west-2", "outage": True}).encode()
    )
    assert status == 200
    assert body["faults"][0]["region"] == "us-west-2"
    assert admin(url, "GET", "/_sim/faults")[1]["faults"][0]["outage"] is True
    assert admin(url, "DELETE", "/_sim/faults") == (200, {"faults": []})


def test_admin_api_rejects_bad_faults_with_a_message(sim, simulator):
    _, url = sim
    status, body = admin(url, "PUT", "/_sim/faults", b"{nope")
    assert status == 400
    assert "not valid JSON" in body["message"]
    status, body = admin(url, "PUT", "/_sim/faults", b'{"throttle_rate": 2}')
    assert status == 400
    assert "throttle_rate" in body["message"]


def test_admin_api_reports_and_resets_calls(sim, simulator):
    _, url = sim
    converse(client(url))
    status, body = admin(url, "GET", "/_sim/calls")
    assert status == 200
    assert body["counts"] == {"ok": 1}
    admin(url, "DELETE", "/_sim/calls")
    assert admin(url, "GET", "/_sim/calls")[1]["counts"] == {}
