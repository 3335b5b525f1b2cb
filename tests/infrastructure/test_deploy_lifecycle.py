"""First deploy, update and destroy in a fresh account: what the templates must hold for each to succeed.

- The account-wide API Gateway CloudWatch role is not owned by an endpoint unless asked, and then retained.
- The AppConfig policy deletes cleanly: no retained hosted version left in the profile, deletion protection bypassed.
"""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from cdk_app import RoutedBedrockEndpoint
from lambdas.router.policy import DEFAULT_POLICY_PATH

pytestmark = pytest.mark.xdist_group("lifecycle")

ENV = cdk.Environment(account="123456789012", region="us-east-1")


@pytest.fixture(scope="module")
def two_endpoints() -> Template:
    stack = cdk.Stack(cdk.App(), "Two", env=ENV)
    RoutedBedrockEndpoint(stack, "First", policy=DEFAULT_POLICY_PATH)
    RoutedBedrockEndpoint(stack, "Second", policy=DEFAULT_POLICY_PATH, api_execution_logging=False)
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def opted_in() -> Template:
    stack = cdk.Stack(cdk.App(), "OptIn", env=ENV)
    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH, api_account_cloudwatch_role=True)
    return Template.from_stack(stack)


# --- the account's API Gateway CloudWatch role (finding 4) ------------------------------------------------


def test_default_endpoint_does_not_own_the_account_setting(template):
    template.resource_count_is("AWS::ApiGateway::Account", 0)
    assert not [
        role
        for role in template.find_resources("AWS::IAM::Role").values()
        if "AmazonAPIGatewayPushToCloudWatchLogs" in str(role["Properties"].get("ManagedPolicyArns", ""))
    ]


def test_two_endpoints_in_one_stack_leave_the_account_setting_alone(two_endpoints):
    two_endpoints.resource_count_is("AWS::ApiGateway::RestApi", 2)
    two_endpoints.resource_count_is("AWS::ApiGateway::Account", 0)
    # Execution logging stays a stage setting of each endpoint
    two_endpoints.has_resource_properties(
        "AWS::ApiGateway::Stage", {"MethodSettings": [Match.object_like({"LoggingLevel": "INFO"})]}
    )
    two_endpoints.has_resource_properties(
        "AWS::ApiGateway::Stage", {"MethodSettings": [Match.object_like({"LoggingLevel": "OFF"})]}
    )


def test_opting_in_sets_the_account_role_once_and_retains_it(opted_in):
    opted_in.resource_count_is("AWS::ApiGateway::Account", 1)
    opted_in.has_resource("AWS::ApiGateway::Account", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"})
    opted_in.has_resource(
        "AWS::IAM::Role",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "AssumeRolePolicyDocument": Match.object_like(
                        {"Statement": [Match.object_like({"Principal": {"Service": "apigateway.amazonaws.com"}})]}
                    ),
                    "ManagedPolicyArns": [Match.object_like({"Fn::Join": Match.any_value()})],
                }
            ),
        },
    )


def test_rejects_opting_in_twice_in_one_stack():
    stack = cdk.Stack(cdk.App(), "Twice", env=ENV)
    RoutedBedrockEndpoint(stack, "First", policy=DEFAULT_POLICY_PATH, api_account_cloudwatch_role=True)
    with pytest.raises(ValueError, match="api_account_cloudwatch_role is set twice in stack 'Twice'"):
        RoutedBedrockEndpoint(stack, "Second", policy=DEFAULT_POLICY_PATH, api_account_cloudwatch_role=True)


# --- AppConfig deletes cleanly (finding 6) ----------------------------------------------------------------


def test_hosted_version_is_deleted_when_replaced_and_with_the_stack(template):
    # A retained version would stay in the profile, and AppConfig refuses to delete a profile holding versions.
    template.has_resource(
        "AWS::AppConfig::HostedConfigurationVersion", {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}
    )
    for kind in ("AWS::AppConfig::Application", "AWS::AppConfig::Environment", "AWS::AppConfig::ConfigurationProfile"):
        for resource in template.find_resources(kind).values():
            assert resource.get("DeletionPolicy", "Delete") == "Delete", kind


def test_deletion_protection_is_bypassed_for_the_profile_and_the_environment(template):
    # The router reads both every policy_max_age: with the account's deletion protection on they would be
    # "in use" for an hour after the last request, and cdk destroy would fail on them.
    template.has_resource_properties("AWS::AppConfig::ConfigurationProfile", {"DeletionProtectionCheck": "BYPASS"})
    template.has_resource_properties("AWS::AppConfig::Environment", {"DeletionProtectionCheck": "BYPASS"})


def test_a_new_policy_version_is_a_new_version_and_a_new_deployment_of_it(template):
    # The deployment names the version by Ref: a new version (a replacement) means a new deployment.
    [version_id] = template.find_resources("AWS::AppConfig::HostedConfigurationVersion")
    template.has_resource_properties("AWS::AppConfig::Deployment", {"ConfigurationVersion": {"Ref": version_id}})


# --- the Powertools layer's regions (finding 7d) ----------------------------------------------------------


def test_endpoint_fails_at_synth_in_a_region_without_the_powertools_parameter():
    stack = cdk.Stack(cdk.App(), "Gov", env=cdk.Environment(account="123456789012", region="us-gov-west-1"))
    with pytest.raises(ValueError, match=r"region 'us-gov-west-1' has no public Powertools .* router_powertools_layer"):
        RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH)
