"""API-key mode's template: keys from the authorizer (x-api-key on /generate, a bearer token on /v1)."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cognito as cognito
from aws_cdk.assertions import Template

from cdk_app import EndpointAuthorization, RoutedBedrockEndpoint
from cdk_app.constructs.api_key_authorizer import BEARER_TOKEN_REGEX, GENERATE_TOKEN_REGEX
from tests.infrastructure.template_helpers import logical_id, methods, synthesize

pytestmark = pytest.mark.xdist_group("api-key-authorizer")


def authorizers(template: Template) -> dict[str, dict[str, Any]]:
    return {key: a["Properties"] for key, a in template.find_resources("AWS::ApiGateway::Authorizer").items()}


def test_the_api_takes_its_keys_from_the_authorizer(template):
    [api] = template.find_resources("AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"


def test_two_token_authorizers_one_function(template):
    function = logical_id(template, "AWS::Lambda::Function", "ApiKeyAuthorizer")
    found = {a["IdentitySource"]: a for a in authorizers(template).values()}
    assert set(found) == {"method.request.header.x-api-key", "method.request.header.Authorization"}
    for source, regex in (
        ("method.request.header.x-api-key", GENERATE_TOKEN_REGEX),
        ("method.request.header.Authorization", BEARER_TOKEN_REGEX),
    ):
        authorizer = found[source]
        assert authorizer["Type"] == "TOKEN"
        assert authorizer["IdentityValidationExpression"] == regex
        assert authorizer["AuthorizerResultTtlInSeconds"] == 300
        assert function in json.dumps(authorizer["AuthorizerUri"])


def test_generate_reads_x_api_key_and_the_openai_methods_a_bearer_token(template):
    by_source = {a["IdentitySource"]: key for key, a in authorizers(template).items()}
    expected = {
        ("generate", "POST"): by_source["method.request.header.x-api-key"],
        ("completions", "POST"): by_source["method.request.header.Authorization"],
        ("models", "GET"): by_source["method.request.header.Authorization"],
    }
    found = methods(template)
    for key, authorizer in expected.items():
        method = found[key]
        assert method["AuthorizationType"] == "CUSTOM", key
        assert method["AuthorizerId"] == {"Ref": authorizer}, key
        assert method["ApiKeyRequired"] is True, key  # the usage plan still checks the key the authorizer hands on
    assert found[("health", "GET")]["AuthorizationType"] == "NONE"
    assert "ApiKeyRequired" not in found[("health", "GET")]


def test_the_authorizer_function_is_small_and_has_only_its_log_group(template):
    function = template.find_resources("AWS::Lambda::Function")[
        logical_id(template, "AWS::Lambda::Function", "ApiKeyAuthorizer")
    ]["Properties"]
    assert function["Handler"] == "api_key.handler"
    assert "Layers" not in function  # the standard library only: the interpreter's cold start
    assert function["MemorySize"] == 256 and function["Timeout"] == 3
    role = logical_id(template, "AWS::IAM::Role", "AuthorizerRole")
    [policy] = [
        p["Properties"]
        for p in template.find_resources("AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role}]
    ]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    # And API Gateway may invoke it, for this API's authorizers only
    permissions = [
        p["Properties"]
        for p in template.find_resources("AWS::Lambda::Permission").values()
        if "ApiKeyAuthorizer" in json.dumps(p["Properties"]["FunctionName"])
    ]
    assert len(permissions) == 2
    assert all("/authorizers/" in json.dumps(p["SourceArn"]) for p in permissions)


@pytest.mark.parametrize("auth", ["iam", "cognito", "none"])
def test_other_modes_have_no_key_authorizer(tmp_path, shipped_policy, auth):
    def build(stack: cdk.Stack) -> RoutedBedrockEndpoint:
        mode = {
            "iam": EndpointAuthorization.iam,
            "none": EndpointAuthorization.none,
            "cognito": lambda: EndpointAuthorization.cognito(cognito.UserPool(stack, "Pool")),
        }[auth]()
        return RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy, auth=mode)

    template = synthesize(tmp_path, "Other", build).template
    [api] = template.find_resources("AWS::ApiGateway::RestApi").values()
    assert "ApiKeySourceType" not in api["Properties"]
    assert not [key for key in template.find_resources("AWS::Lambda::Function") if "ApiKeyAuthorizer" in key]
    found = authorizers(template)
    assert len(found) == (1 if auth == "cognito" else 0)  # Cognito: one authorizer for every caller method
    if auth == "cognito":
        [cognito_authorizer] = found
        ids = {m.get("AuthorizerId", {}).get("Ref") for k, m in methods(template).items() if k[0] != "health"}
        assert ids == {cognito_authorizer}
