"""API Gateway's own refusals carry OpenAI's error object besides ``message``, so both kinds of caller read them."""

from __future__ import annotations

import json

import httpx2 as httpx
import openai
import pytest

pytestmark = pytest.mark.xdist_group("gateway-responses")

EXPECTED = {
    "UNAUTHORIZED": ("401", "invalid_api_key"),
    "INVALID_API_KEY": ("403", "invalid_api_key"),
    "ACCESS_DENIED": ("403", "access_denied"),
    "MISSING_AUTHENTICATION_TOKEN": ("403", "unknown_url"),
    "THROTTLED": ("429", "rate_limit_exceeded"),
    "QUOTA_EXCEEDED": ("429", "quota_exceeded"),
    "INTEGRATION_TIMEOUT": ("504", "timeout"),
}


def rendered(template: str, message: str) -> dict:
    """The body API Gateway sends: ``$context.error.messageString`` is the message as a JSON string."""
    return json.loads(template.replace("$context.error.messageString", json.dumps(message)))


@pytest.fixture(scope="module")
def responses(template):
    found = template.find_resources("AWS::ApiGateway::GatewayResponse")
    return {r["Properties"]["ResponseType"]: r["Properties"] for r in found.values()}


def test_each_refusal_has_a_message_and_an_openai_error(responses):
    assert set(responses) == set(EXPECTED)
    for kind, (status, code) in EXPECTED.items():
        response = responses[kind]
        assert response["StatusCode"] == status, kind
        body = rendered(response["ResponseTemplates"]["application/json"], "Unauthorized")
        assert body["message"] == "Unauthorized"  # what /generate callers read, as before
        assert body["error"]["message"] == "Unauthorized" and body["error"]["code"] == code, kind
    assert responses["THROTTLED"]["ResponseParameters"] == {"gatewayresponse.header.Retry-After": "'1'"}


def test_the_openai_sdk_names_the_cause(responses):
    body = rendered(responses["UNAUTHORIZED"]["ResponseTemplates"]["application/json"], "Unauthorized")

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json=body)

    client = openai.OpenAI(
        base_url="https://api.example/prod/v1",
        api_key="k",
        http_client=httpx.Client(transport=httpx.MockTransport(handle)),
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.code == "invalid_api_key"
    assert "Unauthorized" in raised.value.message
