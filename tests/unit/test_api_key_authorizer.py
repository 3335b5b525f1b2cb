"""The API-key authorizer (``lambdas/authorizer/api_key.py``): the key API Gateway's usage plan checks."""

from __future__ import annotations

import json
import re

import pytest

from cdk_app.constructs.api_key_authorizer import BEARER_TOKEN_REGEX, GENERATE_TOKEN_REGEX
from lambdas.authorizer.api_key import Unauthorized, api_key, handler

KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"  # 40 characters, like the keys API Gateway generates
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/v1/chat/completions"


def authorize(token: str, method_arn: str = METHOD_ARN) -> dict:
    return handler({"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}, None)


@pytest.mark.parametrize("token", [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER   {KEY}", f"  Bearer {KEY} ", KEY])
def test_the_key_is_handed_to_the_usage_plan(token):
    answer = authorize(token)
    assert answer["usageIdentifierKey"] == KEY


def test_the_whole_stage_is_allowed_so_one_cached_answer_serves_every_method():
    [statement] = authorize(f"Bearer {KEY}")["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*",
    }


def test_the_principal_is_a_digest_never_the_key():
    answer = authorize(KEY)
    assert answer["principalId"].startswith("apikey-") and len(answer["principalId"]) == len("apikey-") + 16
    assert KEY not in json.dumps({k: v for k, v in answer.items() if k != "usageIdentifierKey"})
    assert authorize(f"Bearer {KEY}")["principalId"] == answer["principalId"]
    assert authorize(KEY[::-1])["principalId"] != answer["principalId"]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "   ",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",  # another scheme: its value is not a key
        f"Bearer {KEY} extra",
        "Bearer short-key",
        "x" * 129,
        f"Bearer {KEY[:19]}",
        f"Bearer {KEY[:-1]}é",
        f"Token {KEY}",
    ],
)
def test_a_missing_or_malformed_token_is_a_401(token):
    with pytest.raises(Unauthorized) as raised:
        authorize(token)
    assert str(raised.value) == "Unauthorized"  # the message API Gateway maps to 401


@pytest.mark.parametrize("method_arn", ["", "not-an-arn/prod/GET/x", "arn:aws:execute-api:us-east-1:1:abc"])
def test_an_odd_method_arn_is_refused(method_arn):
    with pytest.raises(Unauthorized):
        authorize(KEY, method_arn)


def test_a_missing_token_field_is_refused():
    with pytest.raises(Unauthorized):
        handler({"type": "TOKEN", "methodArn": METHOD_ARN}, None)


TOKENS = [
    f"Bearer {KEY}",
    f"bearer {KEY}",
    f"BEARER   {KEY}",
    KEY,
    "",
    "Bearer short-key",
    f"Basic {KEY}",
    f"Bearer {KEY} extra",
    f"Bearer {KEY}é",
    "x" * 129,
]


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize(
    ("header", "regex"), [("x-api-key", GENERATE_TOKEN_REGEX), ("Authorization", BEARER_TOKEN_REGEX)]
)
def test_api_gateways_check_never_lets_through_what_the_function_refuses(token, header, regex):
    # The authorizers' IdentityValidationExpression runs first (same syntax in Java and Python for these)
    if re.fullmatch(regex, token):
        assert api_key(token) == KEY or api_key(token) == token, (header, token)


def test_what_the_openai_sdk_and_generate_callers_send_passes_api_gateways_check():
    assert re.fullmatch(BEARER_TOKEN_REGEX, f"Bearer {KEY}")
    assert re.fullmatch(GENERATE_TOKEN_REGEX, KEY)
    assert not re.fullmatch(GENERATE_TOKEN_REGEX, f"Bearer {KEY}")  # a bearer token is no x-api-key


def test_random_tokens_and_arns_are_answered_or_refused_never_crash():
    import random
    import string

    rng = random.Random(20261201)
    alphabet = string.printable + "éü\u2028\x00\ufffd"
    for _ in range(2000):
        token = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160)))
        if rng.random() < 0.3:
            token = "Bearer " + token
        arn = rng.choice(
            [METHOD_ARN, "", "arn:", "arn:aws:execute-api:x:1:a/b/c", "/".join(["arn"] * rng.randint(0, 5))]
        )
        try:
            answer = handler({"authorizationToken": token, "methodArn": arn}, None)
        except Unauthorized:
            continue
        assert answer["usageIdentifierKey"] in token
        assert answer["policyDocument"]["Statement"][0]["Resource"].endswith("/*")
