"""Every bad input answers HTTP 400 with a JSON message naming the problem; never a 500."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "request body is not valid JSON"),
        ("", "request body is empty"),
        ("[1, 2]", "request body must be a JSON object, got list"),
        ('"just a string"', "request body must be a JSON object, got str"),
        ("{}", "'prompt' is required"),
        ('{"prompt": ""}', "prompt must be longer than or equal to 1 characters"),
        ('{"prompt": "   "}', "prompt must not be blank"),
        ('{"prompt": 42}', "prompt must be string (got 42)"),
        ('{"prompt": null}', "prompt must be string (got null)"),
        ('{"prompt": "hi", "use_case": "poetry"}', "unknown use_case 'poetry'"),
        ('{"prompt": "hi", "use_case": 7}', "use_case must be string"),
        ('{"prompt": "hi", "max_tokens": "many"}', "max_tokens must be integer"),
        ('{"prompt": "hi", "max_tokens": 0}', "max_tokens must be bigger than or equal to 1"),
        ('{"prompt": "hi", "max_tokens": 60000}', "max_tokens 60000 is over the limit of 8192"),
        ('{"prompt": "hi", "temperature": 3}', "temperature must be smaller than or equal to 1"),
        ('{"prompt": "hi", "promt": "typo"}', "unknown field(s): promt"),
        ('{"prompt": "hi", "model": "gpt-4o"}', "model 'gpt-4o' is not in the policy's catalog"),
        ('{"messages": []}', "messages must contain at least 1 items"),
        ('{"messages": [{"role": "system", "content": "x"}]}', "messages[0].role must be one of"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', "the first message must come from the user"),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
            "the last message must come from the user",
        ),
        ('{"prompt": "hi", "images": [{"format": "bmp", "data": "AAAA"}]}', "images[0].format must be one of"),
        (
            '{"prompt": "hi", "images": [{"format": "png", "data": "***not-base64***"}]}',
            "images[0].data is not valid base64",
        ),
        # Nesting deeper than json's decoder recurses: a 400, not a RecursionError and a 500
        ("[" * 1000 + "]" * 1000, "request body nests arrays or objects too deeply"),
        ("[" * 100_000 + "]" * 100_000, "request body nests arrays or objects too deeply"),
        ('{"prompt": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}", "request body nests arrays or objects too deeply"),
        ('{"prompt": ' + "[" * 900 + "]" * 900 + "}", "prompt must be string"),
        # What Bedrock cannot take is the caller's mistake, named before any call
        ('{"prompt": "hi \\ud800", "use_case": "faq"}', "prompt holds an unpaired UTF-16 surrogate (\\ud800)"),
        ('{"prompt": "hi", "system": "\\udfff"}', "system holds an unpaired UTF-16 surrogate"),
        (
            '{"messages": [{"role": "user", "content": "a \\ud83d b"}]}',
            "messages[0].content holds an unpaired UTF-16 surrogate",
        ),
        ('{"messages": [{"role": "user", "content": "   "}]}', "messages[0].content must not be blank"),
        # Numbers Python's decoder would take but JSON (or Python's int conversion) does not
        ('{"prompt": "hi", "max_tokens": ' + "9" * 5000 + "}", "request body is not valid JSON"),
        ('{"prompt": "hi", "temperature": NaN}', "NaN is not a JSON number"),
        ('{"prompt": "hi", "temperature": -Infinity}', "-Infinity is not a JSON number"),
    ],
)
def test_rejects_bad_input_with_a_named_400(invoke, bedrock, raw, expected):
    # When the body is bad
    status, _, body = invoke("POST", "/generate", raw=raw)
    # Then 400, a JSON message naming the problem, and no model was called
    assert status == 400, body
    assert body["error"] == "BadRequest"
    assert expected in body["message"]
    assert bedrock.calls == []


def test_rejects_unknown_tier_header(invoke):
    status, _, body = invoke("POST", "/generate", {"prompt": "hi"}, headers={"X-User-Tier": "platinum"})
    assert status == 400
    assert "unknown user tier 'platinum'" in body["message"]


def test_rejects_oversized_body(invoke, monkeypatch):
    from lambdas.router import handler

    monkeypatch.setattr(handler.service(), "_max_body_bytes", 1000)
    status, _, body = invoke("POST", "/generate", raw=json.dumps({"prompt": "x" * 2000}))
    assert status == 400
    assert "over the limit of 1000 bytes" in body["message"]


def test_rejects_input_longer_than_the_policy_allows(invoke):
    status, _, body = invoke("POST", "/generate", {"prompt": "x" * 400_001})
    assert status == 400
    assert "over the limit of 400000" in body["message"]


def test_a_surrogate_pair_is_valid_text(invoke, bedrock):
    # Given an emoji written as a JSON surrogate pair (valid UTF-16)
    status, _, body = invoke("POST", "/generate", raw='{"prompt": "smile \\ud83d\\ude00", "use_case": "faq"}')
    # Then it is routed, and the model receives the decoded character
    assert status == 200, body
    assert bedrock.calls[0]["messages"][-1]["content"][-1]["text"] == "smile \U0001f600"


def test_rejects_a_blank_system_prompt_but_an_empty_one_is_none(invoke, bedrock):
    status, _, body = invoke("POST", "/generate", {"prompt": "hi", "system": "  \n "})
    assert status == 400 and "system must not be blank" in body["message"]
    assert bedrock.calls == []
    status, _, body = invoke("POST", "/generate", {"prompt": "hi", "system": ""})
    assert status == 200, body
    assert bedrock.calls[0]["system"] == []


@pytest.mark.parametrize(
    "raw",
    [
        '{"prompt": "hi", "' + "k" * 200_000 + '": 1}',
        '{"prompt": "hi", "' + "\u00e9" * 700_000 + '": 1}',
        '{"prompt": "hi", ' + ", ".join(f'"field{i}": 1' for i in range(5000)) + "}",
        '{"prompt": "hi", "model": "' + "m" * 199 + '"}',
    ],
)
def test_a_400_quotes_at_most_a_little_of_the_callers_input(invoke, raw):
    # Given a body whose unknown field names or values are huge
    status, _, body = invoke("POST", "/generate", raw=raw)
    # Then the 400 names the problem in a bounded message (the log's reason is the same message)
    assert status == 400
    assert len(body["message"]) <= 500


def test_rejects_a_huge_tier_header_with_a_short_message(invoke):
    status, _, body = invoke("POST", "/generate", {"prompt": "hi"}, headers={"X-User-Tier": "p" * 8000})
    assert status == 400 and "unknown user tier" in body["message"]
    assert len(body["message"]) < 300


def test_fuzzed_bodies_never_answer_a_server_error(invoke):
    # Given seeded random and mutated bodies (deep nesting, odd types, truncation, byte flips)
    import random

    rng = random.Random(9)
    seeds = [
        '{"prompt": "hello", "use_case": "faq", "max_tokens": 20}',
        '{"messages": [{"role": "user", "content": "a"}], "system": "s", "temperature": 0.5}',
        '{"prompt": "x", "images": [{"format": "png", "data": "AAAA"}]}',
    ]
    bodies = []
    for _ in range(300):
        text = rng.choice(seeds)
        roll = rng.random()
        if roll < 0.3:
            cut = rng.randrange(len(text))
            text = (
                text[:cut]
                + rng.choice(["{", "[", "\\", '"', "\\u", "\\ud800", "0e99999", "null", "", "NaN", "9" * 4400])
                + text[cut:]
            )
        elif roll < 0.6:
            text = text[: rng.randrange(len(text))]
        elif roll < 0.8:
            depth = rng.choice([10, 500, 999, 1500, 5000])
            opener, closer = rng.choice([("[", "]"), ('{"k":', "}")])
            text = text.replace('"hello"', opener * depth + "1" + closer * depth).replace(
                '"a"', opener * depth + closer * depth
            )
        else:
            chars = list(text)
            for _ in range(rng.randint(1, 5)):
                chars[rng.randrange(len(chars))] = chr(rng.randrange(0, 0x3000))
            text = "".join(chars)
        bodies.append(text)
    # When each is posted; Then every answer is a routed 200 or a 400 with a message, never a 5xx
    for text in bodies:
        status, _, body = invoke("POST", "/generate", raw=text)
        assert status in (200, 400), (status, text[:200], body)
        if status == 400:
            assert body["error"] == "BadRequest" and body["message"], text[:200]


def _direct(event):
    """The handler's answer to a hand-made event (a direct invoke): status and JSON body."""
    from lambdas.router import handler
    from local_endpoint.server import LocalLambdaContext

    result = handler.lambda_handler(event, LocalLambdaContext("req-direct"))
    return result["statusCode"], json.loads(result["body"])


def _event(**changes):
    from .conftest import api_event

    event = api_event("POST", "/generate", {"prompt": "hi"})
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ([], "must be an API Gateway proxy event (a JSON object), got list"),
        ("hello", "got str"),
        (_event(httpMethod=None), "httpMethod must be a string"),
        (_event(path=7), "path must be a string"),
        (_event(requestContext="x"), "requestContext must be an object with a requestId"),
        (_event(requestContext={}), "requestContext must be an object with a requestId"),
        (_event(body={"prompt": "hi"}), "body must be a string or null"),
        (_event(headers={"X-User-Tier": 3}), "headers must be an object of strings"),
        (_event(multiValueHeaders={"X-User-Tier": "premium"}), "multiValueHeaders must be an object of string arrays"),
    ],
    ids=["list", "string", "method", "path", "context-type", "no-request-id", "body", "headers", "multi-headers"],
)
def test_an_event_api_gateway_would_never_send_is_a_400_naming_the_problem(invoke, bedrock, event, expected):
    status, body = _direct(event)
    assert status == 400
    assert body["error"] == "BadRequest" and expected in body["message"]
    assert bedrock.calls == []


def test_a_malformed_event_on_the_openai_api_is_answered_in_openai_s_shape(invoke, bedrock):
    status, body = _direct(_event(path="/v1/chat/completions", requestContext={}))
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and "requestContext" in body["error"]["message"]


@pytest.mark.parametrize(
    "context",
    [
        {"requestId": "r"},  # no identity at all
        {"requestId": "r", "identity": None},
        {"requestId": "r", "identity": {"userArn": 7, "sourceIp": ["x"]}, "authorizer": {"claims": "x"}},
    ],
    ids=["no-identity", "null-identity", "odd-identity"],
)
def test_a_request_context_without_a_usable_identity_is_still_answered(invoke, bedrock, context):
    status, body = _direct(_event(requestContext=context))
    assert status == 200, body
    assert body["output"]
    assert len(bedrock.calls) == 1


def test_a_base64_flagged_body_is_decoded_before_it_is_read(invoke, bedrock):
    import base64

    encoded = base64.b64encode(json.dumps({"prompt": "hi"}).encode()).decode()
    status, body = _direct(_event(body=encoded, isBase64Encoded=True))
    assert status == 200, body
    # A body that is not UTF-8 (front ends flag it base64) is refused for what it is
    status, body = _direct(_event(body=base64.b64encode(b'{"prompt": "caf\xe9"}').decode(), isBase64Encoded=True))
    assert status == 400 and "utf-8" in body["message"].lower(), body
    status, body = _direct(_event(body="not base64!", isBase64Encoded=True))
    assert status == 400 and "flagged base64-encoded" in body["message"]


def test_a_str_body_holding_a_lone_surrogate_is_a_400_naming_the_field(invoke, bedrock):
    status, body = _direct(_event(body='{"prompt": "hi \ud800"}'))
    assert status == 400
    assert "prompt holds an unpaired UTF-16 surrogate" in body["message"]
    assert bedrock.calls == []
