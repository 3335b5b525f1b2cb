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
