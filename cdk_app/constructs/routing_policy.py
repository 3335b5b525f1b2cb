"""``RoutingPolicy``: the routing policy in AWS AppConfig, validated, rolled out gradually, rolled back by alarms."""

from __future__ import annotations

import json
from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_iam as iam
from constructs import Construct

from lambdas.router.policy import load_schema

from ._validation import check_appconfig_name, check_removal_policy
from .policy_document import POLICY_PROFILE_NAME, PolicySource, RoutingPolicyDocument

READ_ACTIONS = ("appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration")
"""What a client of AppConfig Data calls to read a configuration: all ``grant_read`` allows."""
_NAME_MAX_LENGTH = 64


class RoutingPolicy(Construct):
    """The routing policy as an AppConfig hosted configuration, deployed to one environment.

    Creates an AppConfig application, an environment (with the given rollback monitors), a hosted configuration
    profile with the policy's JSON schema as validator, its first version (the policy's exact ``text``) and a
    deployment of it with the given strategy. ``grant_read`` allows a reader this profile in this environment.

    Updates, rollbacks and deletion:

    - A changed policy is a new hosted configuration version (CloudFormation replaces the version resource) and a
      new deployment of it. The replaced version is deleted in the update's cleanup, after the new version and
      its deployment were created; a failed update rolls back before cleanup, so the old version stays. Only
      the current version is kept: the policy's history is its source file's (deploy an older file to revert).
    - AppConfig runs one deployment at a time per environment. A stack update that changes the policy while the
      previous rollout is still deploying or baking fails with a conflict (and rolls back): wait for the rollout
      (``aws appconfig list-deployments``), or, where updates come fast as in development stacks, a strategy
      with no bake (``RolloutStrategy.linear(growth_factor=100, ...)`` with zero duration and bake):
      ``DeploymentStrategyId.ALL_AT_ONCE`` still bakes 10 minutes with the monitors armed.
    - Deleting the stack deletes the deployment, the version, the profile, the environment and the application.
      AppConfig refuses to delete a profile that still holds versions, hence the version's removal policy; and
      with deletion protection on (an account setting, off by default) it refuses to delete a profile or an
      environment that was read in the last protection period (60 minutes by default): the router polls every
      ``policy_max_age``, so without ``BYPASS`` a ``cdk destroy`` right after traffic fails.

    Example::

        routing = RoutingPolicy(self, "RoutingPolicy", policy="policies/routing.json", environment_name="prod")
        routing.grant_read(reader_role)

    Args:
        scope: parent construct.
        id: construct id.
        policy: the routing policy (a ``RoutingPolicyDocument``, a dict or a JSON file path), validated at synth
            with the schema AppConfig's validator holds.
        application_name: the AppConfig application name (1-64 characters). Default: - a name unique in the app,
            from this construct's path.
        environment_name: the AppConfig environment name (1-64 characters). Default: - ``prod``.
        monitors: the environment's rollback monitors: any in ALARM during a rollout (or its bake time) rolls it
            back. Default: - none.
        deployment_strategy: how a new policy version rolls out. Default: - AppConfig's predefined
            ``Canary10Percent20Minutes`` (with a 10-minute bake).
        deletion_protection_check: the ``DeletionProtectionCheck`` of the profile and the environment, which
            AppConfig applies when CloudFormation deletes them. Default: - ``BYPASS``: they are deleted even if
            read recently, since their reader (the router) is deleted with them; ``ACCOUNT_DEFAULT`` follows the
            account's deletion protection; ``APPLY`` always checks.
        version_removal_policy: what happens to a hosted configuration version that leaves the stack (replaced
            by a new policy, or with the stack). Default: - ``RemovalPolicy.DESTROY``; ``RETAIN`` (aws-cdk-lib's
            own choice) keeps every version, and then deleting the stack fails on the profile until they are
            deleted (``aws appconfig delete-hosted-configuration-version``).

    Attributes:
        application: the AppConfig application.
        environment: the AppConfig environment, with the rollback monitors.
        configuration: the hosted configuration (profile with the JSON schema validator, version, deployment).
        deployment_strategy: the deployment strategy in use.
        document: the routing policy document AppConfig hosts.
        application_name, environment_name, profile_name: the names the router polls by.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        policy: PolicySource,
        application_name: str | None = None,
        environment_name: str = "prod",
        monitors: Sequence[appconfig.Monitor] = (),
        deployment_strategy: appconfig.IDeploymentStrategy | None = None,
        deletion_protection_check: appconfig.DeletionProtectionCheck = appconfig.DeletionProtectionCheck.BYPASS,
        version_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, id)
        self.document = RoutingPolicyDocument.of(policy)
        self.application_name = (
            application_name
            if application_name is not None
            else cdk.Names.unique_resource_name(self, separator="-", max_length=_NAME_MAX_LENGTH)
        )
        check_appconfig_name("application_name", self.application_name)
        check_appconfig_name("environment_name", environment_name)
        self.environment_name = environment_name
        self.profile_name = POLICY_PROFILE_NAME

        self.application = appconfig.Application(
            self,
            "PolicyApplication",
            application_name=self.application_name,
            description="Routed Bedrock routing policy",
        )
        self.environment = appconfig.Environment(
            self,
            "PolicyEnvironment",
            application=self.application,
            environment_name=environment_name,
            description="Where the router reads its routing policy",
            monitors=list(monitors),
            deletion_protection_check=deletion_protection_check,
        )
        self.deployment_strategy = deployment_strategy or appconfig.DeploymentStrategy.from_deployment_strategy_id(
            self, "PolicyDeploymentStrategy", appconfig.DeploymentStrategyId.CANARY_10_PERCENT_20_MINUTES
        )
        self.configuration = appconfig.HostedConfiguration(
            self,
            "Policy",
            application=self.application,
            name=self.profile_name,
            content=appconfig.ConfigurationContent.from_inline_json(self.document.text),
            validators=[appconfig.JsonSchemaValidator.from_inline(json.dumps(load_schema()))],
            deployment_strategy=self.deployment_strategy,
            deploy_to=[self.environment],
            description=f"routing policy {self.document.policy.version}",
            deletion_protection_check=deletion_protection_check,
        )
        check_removal_policy("version_removal_policy", version_removal_policy)
        _set_version_removal_policy(self.configuration, version_removal_policy)
        if monitors:
            cdk.Validations.of(self.environment).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="The role AppConfig assumes to watch the rollback alarms needs cloudwatch:DescribeAlarms, "
                    "an action that supports no resource-level permissions.",
                )
            )

    @property
    def configuration_read_arn(self) -> str:
        """The ARN AppConfig Data authorizes a read of this profile in this environment against."""
        return cdk.Stack.of(self).format_arn(
            service="appconfig",
            resource="application",
            resource_name=(
                f"{self.application.application_id}/environment/{self.environment.environment_id}"
                f"/configuration/{self.configuration.configuration_profile_id}"
            ),
        )

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Allow ``grantee`` to read this profile in this environment, and nothing else.

        ``appconfig:StartConfigurationSession`` and ``appconfig:GetLatestConfiguration`` on exactly this
        profile's ARN (``Environment.grant_read_config`` would allow every profile: ``configuration/*``). The
        statement goes to the grantee's principal policy: a grantee whose resources the environment's monitors
        watch (the router function, through its alarms) should pass a separate ``iam.Policy`` attached to its
        role, or its default policy would close a dependency cycle.
        """
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=list(READ_ACTIONS), resource_arns=[self.configuration_read_arn]
        )
        if grant.principal_statement is not None:
            grant.principal_statement.sid = "ReadRoutingPolicy"
        return grant


def _set_version_removal_policy(configuration: appconfig.HostedConfiguration, policy: cdk.RemovalPolicy) -> None:
    """aws-cdk-lib hard-codes RETAIN on the hosted version (``CfnHostedConfigurationVersion``) and offers no prop:
    the L1 is the only place to choose. DESTROY is both its DeletionPolicy and UpdateReplacePolicy."""
    version = configuration.node.find_child("Resource")
    assert isinstance(version, appconfig.CfnHostedConfigurationVersion)
    version.apply_removal_policy(policy)
