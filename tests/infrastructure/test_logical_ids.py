"""Splitting RoutedBedrockEndpoint into parts replaces no deployed resource: logical IDs match the pre-split snapshot.

The snapshot (``data/logical_ids_before_split.json``) was taken from the code before the split with
``tests/infrastructure/logical_ids.py``. Every resource, parameter and output in it must still exist with the
same logical ID and type, except the changes listed below on purpose, each with its reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk_app import RoutedBedrockEndpoint
from cdk_app.constructs._legacy_ids import keep_legacy_logical_ids, make_unique_id
from lambdas.router.policy import DEFAULT_POLICY_PATH
from routed_bedrock.publish import STACK_OUTPUTS
from tests.infrastructure.logical_ids import ENV, SNAPSHOT_BEFORE_SPLIT, snapshot

pytestmark = pytest.mark.xdist_group("logical-ids")

# Finding 4: by default an endpoint no longer owns the account-wide API Gateway CloudWatch role setting, so
# these two resources leave every configuration (api_account_cloudwatch_role=True brings them back, same IDs).
REMOVED_ON_PURPOSE = {
    "endpoint-defaults": {"LlmApiAccount32BFAB36", "LlmApiCloudWatchRoleC2C62059"},
    "endpoint-auth-iam": {"LlmApiAccount32BFAB36", "LlmApiCloudWatchRoleC2C62059"},
    "endpoint-auth-cognito": {"LlmApiAccount32BFAB36", "LlmApiCloudWatchRoleC2C62059"},
    "reference-app": {"EndpointApiAccount9F5C5DCC", "EndpointApiCloudWatchRole706BB95A"},
    "reference-app-cognito": {"EndpointApiAccount9F5C5DCC", "EndpointApiCloudWatchRole706BB95A"},
}
ADDED_ON_PURPOSE: dict[str, set[str]] = {name: set() for name in REMOVED_ON_PURPOSE}
# The OpenAI-compatible API: the /v1 resources, their methods and their invoke permissions are new, and so is
# the streaming router (its function, role, policy, log group, and its errors and throttles alarms), and in
# API-key mode the authorizer that takes a key from x-api-key or a bearer token (its function and authorizers).
# And the per-variant alarms of the policy's canary, with the composite alarm AppConfig watches past 5 monitors.
_OPENAI_API = re.compile(
    r"Apiv1|StreamingRouterFunction|StreamingLambda(Errors|Throttles)Alarm|ApiKeyAuthorizer|Variant\w+Alarm|PolicyRollbackAlarm"
    r"|Api\w+Response[0-9A-F]{8}$"  # and API Gateway's own refusals with OpenAI's error object
)
# An API Gateway deployment is immutable: CDK suffixes its logical ID with a hash of the API's whole definition
# (methods, models: the request schema in lambdas/), so any API change gives a new deployment by design.
# Compared without that suffix.
_DEPLOYMENT_HASH = re.compile(r"[0-9a-f]{32}$")


def comparable(ids: dict[str, str]) -> dict[str, str]:
    return {
        (_DEPLOYMENT_HASH.sub("", key) if kind == "AWS::ApiGateway::Deployment" else key): kind
        for key, kind in ids.items()
    }


@pytest.fixture(scope="module")
def before() -> dict[str, dict[str, Any]]:
    snapshot_before: dict[str, dict[str, Any]] = json.loads(SNAPSHOT_BEFORE_SPLIT.read_text(encoding="utf-8"))
    return snapshot_before


@pytest.fixture(scope="module")
def after() -> dict[str, dict[str, Any]]:
    return snapshot()


def test_snapshot_covers_the_endpoint_in_each_auth_and_the_reference_app(before):
    assert set(before) == set(REMOVED_ON_PURPOSE)
    assert all(len(config["resources"]) > 30 for config in before.values())


@pytest.mark.parametrize("configuration", sorted(REMOVED_ON_PURPOSE))
def test_every_resource_keeps_its_logical_id_and_type_but_the_listed_ones(before, after, configuration):
    # Given the logical IDs before and after the split
    old, new = comparable(before[configuration]["resources"]), comparable(after[configuration]["resources"])
    # Then only the listed resources are gone, and each kept one has its old type
    removed = {key for key in old if key not in new}
    assert removed == REMOVED_ON_PURPOSE[configuration]
    assert {key: new[key] for key in old if key in new} == {key: old[key] for key in old if key in new}
    # And nothing new appears unlisted
    added = {key for key in new if key not in old and not _OPENAI_API.search(key)}
    assert added == ADDED_ON_PURPOSE[configuration]
    assert {key for key in new if _OPENAI_API.search(key)}, "the /v1 methods are missing"
    # And parameters and outputs keep their IDs
    assert after[configuration]["parameters"] == before[configuration]["parameters"]
    # (outputs: only the four `routed-bedrock publish --stack` reads are new, in the reference app)
    publish_outputs = set(STACK_OUTPUTS.values()) if configuration.startswith("reference-app") else set()
    assert set(after[configuration]["outputs"]) == set(before[configuration]["outputs"]) | publish_outputs


def test_opting_in_to_the_account_setting_keeps_its_pre_split_ids(before, tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Test", env=ENV)
    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH, api_account_cloudwatch_role=True)
    resources = app.synth().get_stack_by_name("Test").template["Resources"]
    for key in REMOVED_ON_PURPOSE["endpoint-defaults"]:
        assert resources[key]["Type"] == before["endpoint-defaults"]["resources"][key]


def test_a_resource_added_to_a_part_later_gets_its_pre_split_id(tmp_path):
    # Given an app that adds a function URL to the router after building the endpoint (as it could before)
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Test", env=ENV)
    endpoint = RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH)
    endpoint.router_function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
    # When synthesized, Then the URL's ID is the one its old path Llm/Router/FunctionUrl gave
    resources = app.synth().get_stack_by_name("Test").template["Resources"]
    assert resources[make_unique_id(["Llm", "Router", "FunctionUrl", "Resource"])]["Type"] == "AWS::Lambda::Url"


# --- the replica of CDK's makeUniqueId ------------------------------------------------------------------

PATHS = [
    ["Solo"],
    ["With-Dashes.and.dots"],
    ["Llm", "Router", "Resource"],
    ["Llm", "Default", "Thing"],
    ["Default", "Llm", "Resource"],
    ["Api", "ApiKey", "Resource"],
    ["Topic", "Topic", "Resource"],
    ["AlarmTopic", "Topic", "Policy", "Resource"],
    ["Llm", "Api", "Default", "generate", "POST", "ApiPermission.Test.POST..generate"],
    ["L" * 150, "M" * 150, "Resource"],
    ["X" * 300],
]


def cdk_logical_id(components: list[str]) -> str:
    """What the stack itself allocates for an element at ``components``."""
    stack = cdk.Stack(cdk.App(), "Scratch")
    scope: Any = stack
    for component in components[:-1]:
        scope = Construct(scope, component)
    element = cdk.CfnResource(scope, components[-1], type="Test::Scratch::Thing")
    return stack.get_logical_id(element)


@pytest.mark.parametrize("components", PATHS, ids=lambda c: "/".join(part[:12] for part in c))
def test_make_unique_id_matches_cdk(components):
    assert make_unique_id(components) == cdk_logical_id(components)


def test_make_unique_id_rejects_an_empty_path():
    with pytest.raises(ValueError, match="empty path"):
        make_unique_id(["Default"])


def test_rejects_a_part_whose_child_would_collide_with_a_sibling_of_the_part():
    stack = cdk.Stack(cdk.App(), "Collide")
    parent = Construct(stack, "Parent")
    Construct(parent, "Thing")
    part = Construct(parent, "Part")
    Construct(part, "Thing")
    with pytest.raises(ValueError, match="would share a logical id"):
        keep_legacy_logical_ids(part)


def test_leaves_an_element_someone_overrode_alone(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Override")
    part = Construct(Construct(stack, "Parent"), "Part")
    mine = cdk.CfnResource(part, "Mine", type="Test::Scratch::Thing")
    theirs = cdk.CfnResource(part, "Theirs", type="Test::Scratch::Thing")
    theirs.override_logical_id("ChosenByTheApp")
    keep_legacy_logical_ids(part)
    resources = app.synth().get_stack_by_name("Override").template["Resources"]
    assert set(resources) == {make_unique_id(["Parent", "Mine"]), "ChosenByTheApp"}
    assert stack.resolve(mine.logical_id) == make_unique_id(["Parent", "Mine"])


def test_a_stack_that_renames_an_element_keeps_its_name_with_a_warning(tmp_path):
    # Given a stack that renames an element's allocated ID (as a custom allocate_logical_id would change it)
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Renamed")
    part = Construct(Construct(stack, "Parent"), "Part")
    cdk.CfnResource(part, "Thing", type="Test::Scratch::Thing")
    stack.rename_logical_id(make_unique_id(["Parent", "Part", "Thing"]), "ChosenByTheStack")
    # When the part keeps legacy IDs, Then the stack's choice stands, with a warning
    keep_legacy_logical_ids(part)
    artifact = app.synth().get_stack_by_name("Renamed")
    assert set(artifact.template["Resources"]) == {"ChosenByTheStack"}
    assert any("allocates logical ids its own way" in str(message.entry.data) for message in artifact.messages)
