"""The simulator over real HTTP with the real boto3 bedrock-runtime client: shapes, errors, faults, admin API."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EventStreamError

from local_endpoint.bedrock_sim import Fault

HAIKU_PROFILE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-micro-v1:0"


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


# --- what Bedrock rejects as invalid input: ValidationException (400), never a server error -------------


def lenient_client(url: str, region: str = "us-east-1"):
    """A client that sends what botocore's own parameter validation would stop, as other SDKs might."""
    return boto3.client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="sim",
        aws_secret_access_key="sim",
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False, read_timeout=5),
    )


def user(*blocks):
    return {"role": "user", "content": list(blocks)}


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        (
            {"messages": [user({"text": "hi \ud800"})]},
            "The text field in the ContentBlock object at messages.0.content.0 is not valid Unicode: it holds an "
            "unpaired surrogate (U+D800)",
        ),
        (
            {"messages": [user({"text": "fine"}, {"text": "\udfff tail"})]},
            "messages.0.content.1 is not valid Unicode",
        ),
        (
            {"messages": [user({"text": "hi"})], "system": [{"text": "be \udc00 brief"}]},
            "The text field in the SystemContentBlock object at system.0 is not valid Unicode",
        ),
        (
            {"messages": [user({"text": "  \n "})]},
            "The text field in the ContentBlock object at messages.0.content.0 is blank. Add text to the text "
            "field, and try again.",
        ),
        ({"messages": [user({"text": "hi"})], "system": [{"text": ""}]}, "at system.0 is blank"),
        (
            {"messages": [user()]},
            "The content field in the Message object at messages.0 is empty. Add a ContentBlock object to the "
            "content field and try again.",
        ),
        ({"messages": [user({"text": "a"}), user({"text": "b"})]}, "A conversation must alternate between user"),
        ({"messages": [user({"text": "a", "image": {}})]}, "must hold exactly one of text or image"),
        ({"messages": [user({"image": {"format": "bmp", "source": {"bytes": b"x"}}})]}, "image format"),
        ({"messages": [user({"text": "a"})], "inferenceConfig": {"maxTokens": 0}}, "maxTokens must be a positive"),
        ({"messages": [user({"text": "a"})], "inferenceConfig": {"topP": 1.5}}, "topP must be between 0 and 1"),
        ({"messages": [user({"text": "a"})], "inferenceConfig": {"stopSequences": [""]}}, "stopSequences"),
    ],
)
def test_rejects_what_the_converse_api_documents_as_invalid(sim, simulator, request_fields, expected):
    # Given a request Bedrock would refuse
    _, url = sim
    bedrock = lenient_client(url)
    # When it is sent, Then the answer is a ValidationException (HTTP 400) naming the field: never a 500
    with pytest.raises(bedrock.exceptions.ValidationException) as error:
        bedrock.converse(modelId=NOVA, **request_fields)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert expected in error.value.response["Error"]["Message"]
    assert simulator.calls.count(outcome="ValidationException") == 1
    assert simulator.calls.count(outcome="InternalServerException") == 0


def test_rejects_a_lone_surrogate_sent_by_the_strict_client_too(sim, simulator):
    # botocore's parameter validation lets it through: it JSON-escapes the lone surrogate as \ud800
    _, url = sim
    bedrock = client(url)
    with pytest.raises(bedrock.exceptions.ValidationException, match="not valid Unicode"):
        converse(bedrock, text="hi \ud800")


@pytest.mark.parametrize(
    "body",
    [b"[" * 1_000 + b"]" * 1_000, b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"\xff\xfe{}", b"{"],
    ids=["arrays-1000", "messages-arrays-100000", "not-utf-8", "truncated"],
)
def test_rejects_malformed_converse_bodies_with_validation_exception(sim, simulator, body):
    _, url = sim
    status, answer = admin(url, "POST", f"/model/{NOVA}/converse", body)
    assert status == 400
    assert answer == {"message": "Malformed input request, please reformat your input."}


# --- the on-demand fault ------------------------------------------------------------------------------


def test_on_demand_fault_answers_as_bedrock_does_for_a_model_served_only_through_profiles(sim, simulator):
    # Given Nova Micro is not served on demand in us-west-2
    _, url = sim
    simulator.faults.put(Fault.from_json({"model": NOVA, "region": "us-west-2", "on_demand": False}))
    west = client(url, "us-west-2")
    # When it is called there by its base model id, Then Bedrock's exact ValidationException comes back
    with pytest.raises(west.exceptions.ValidationException) as error:
        converse(west)
    assert error.value.response["Error"]["Message"] == (
        "Invocation of model ID amazon.nova-micro-v1:0 with on-demand throughput isn\u2019t supported. Retry your "
        "request with the ID or ARN of an inference profile that contains this model."
    )
    # and the other region, and the us. inference profile in the same region, still answer
    converse(client(url, "us-east-1"))
    assert converse(west, f"us.{NOVA}")["output"]["message"]["content"][0]["text"].startswith(f"[sim us.{NOVA} @")


def test_on_demand_fault_with_a_wildcard_model_spares_inference_profiles(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault(model="*", region="us-west-2", on_demand=False))
    west = client(url, "us-west-2")
    with pytest.raises(west.exceptions.ValidationException, match="on-demand throughput"):
        converse(west, "arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-micro-v1:0")
    converse(west, HAIKU_PROFILE)
    converse(west, "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.amazon.nova-micro-v1:0")


# --- the simulator's own HTTP server: framing it cannot trust is a JSON 4xx ------------------------------


def raw_request(url: str, data: bytes) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


@pytest.mark.parametrize(
    ("head", "status", "expected"),
    [
        (b"PUT /_sim/faults HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "non-negative integer"),
        (b"PUT /_sim/faults HTTP/1.1\r\nContent-Length: x1\r\n\r\n", 400, "non-negative integer"),
        (b"PUT /_sim/faults HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413, "Request Too Long"),
        (b"PUT /_sim/faults HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, "Content-Length"),
        (b"PATCH /_sim/faults HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "not supported"),
        (b"HELLO\r\n\r\n", 400, "Bad request syntax"),
    ],
)
def test_simulator_rejects_untrustworthy_framing_with_a_json_4xx(sim, simulator, head, status, expected):
    _, url = sim
    answer_status, answer = raw_request(url, head)
    assert answer_status == status
    assert expected in answer["message"]


# --- ConverseStream ----------------------------------------------------------------------------------------


def converse_stream(bedrock, model: str = NOVA, text: str = "Hello there", max_tokens: int = 500):
    response = bedrock.converse_stream(
        modelId=model,
        messages=[{"role": "user", "content": [{"text": text}]}],
        inferenceConfig={"maxTokens": max_tokens},
    )
    return list(response["stream"])


def test_converse_stream_speaks_the_event_stream_botocore_parses(sim, simulator):
    _, url = sim
    bedrock = client(url, "us-west-2")
    # When the same ask is streamed and answered whole
    events = converse_stream(bedrock, HAIKU_PROFILE)
    whole = converse(bedrock, HAIKU_PROFILE)
    # Then botocore parses the events in Bedrock's order, and the deltas add up to the same answer
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert len(deltas) > 1
    assert "".join(deltas) == whole["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == whole["stopReason"]
    assert events[-1]["metadata"]["usage"] == whole["usage"]
    assert simulator.calls.count(model=HAIKU_PROFILE, region="us-west-2", outcome="ok") == 2


def test_converse_stream_faults_before_the_stream_raise_as_from_aws(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault(model=NOVA, error="ThrottlingException"))
    with pytest.raises(client(url).exceptions.ThrottlingException):
        converse_stream(client(url))


def events_until_the_stream_breaks(url: str) -> tuple[list[str], EventStreamError]:
    """The kinds of event a NOVA stream yields before botocore raises, and what it raises (the test fails if not)."""
    response = client(url).converse_stream(
        modelId=NOVA,
        messages=[{"role": "user", "content": [{"text": "Hello there"}]}],
        inferenceConfig={"maxTokens": 500},
    )
    seen: list[str] = []
    with pytest.raises(EventStreamError) as raised:
        for event in response["stream"]:
            seen.append(next(iter(event)))
    return seen, raised.value


def test_a_mid_stream_failure_is_a_model_stream_error_after_the_first_deltas(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault.from_json({"model": NOVA, "stream_fails_after": 2}))
    # botocore raises an EventStreamError carrying the exception event's type, as it does for Bedrock's own
    seen, error = events_until_the_stream_breaks(url)
    assert error.response["Error"]["Code"] == "modelStreamErrorException"
    assert seen == ["messageStart", "contentBlockDelta", "contentBlockDelta"]
    assert simulator.calls.count(model=NOVA, outcome="stream_error") == 1


def test_a_stream_fault_past_the_last_delta_still_fails_the_stream(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault.from_json({"model": NOVA, "stream_fails_after": 100_000}))
    seen, _ = events_until_the_stream_breaks(url)
    assert seen[0] == "messageStart" and set(seen[1:]) == {"contentBlockDelta"}


@pytest.mark.parametrize("value", [-1, True, "2", 100_001])
def test_rejects_a_bad_stream_fault(value):
    with pytest.raises(ValueError, match="stream_fails_after"):
        Fault.from_json({"stream_fails_after": value})


def test_a_paced_stream_arrives_in_pieces_over_time(sim, simulator):
    _, url = sim
    simulator.faults.put(Fault.from_json({"model": NOVA, "stream_delay_ms": 60}))
    bedrock = client(url)
    started = time.perf_counter()
    response = bedrock.converse_stream(
        modelId=NOVA,
        messages=[{"role": "user", "content": [{"text": "Hello there"}]}],
        inferenceConfig={"maxTokens": 500},
    )
    arrivals = []
    for event in response["stream"]:
        if "contentBlockDelta" in event:
            arrivals.append(time.perf_counter() - started)
    # Then the first delta comes before the stream is over, and the rest one pause apart
    assert len(arrivals) >= 3
    assert arrivals[0] < 0.05 * (len(arrivals) - 1)
    assert arrivals[-1] - arrivals[0] >= 0.06 * (len(arrivals) - 1) * 0.9


@pytest.mark.parametrize("value", [-1, True, 60_001, 1.5])
def test_rejects_a_bad_stream_delay(value):
    with pytest.raises(ValueError, match="stream_delay_ms"):
        Fault.from_json({"stream_delay_ms": value})


def test_make_local_s_server_streams_the_simulator_s_converse_stream_too(local_endpoint):
    local_endpoint.fault(model=NOVA, stream_delay_ms=20)
    try:
        events = converse_stream(client(local_endpoint.base_url))
    finally:
        local_endpoint.clear_faults()
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata" and kinds.count("contentBlockDelta") > 1
