"""``LiveStateTable``: the DynamoDB table of the router's live state, and the grant the router needs on it."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from ._validation import check_removal_policy

STATE_TABLE_PARTITION_KEY = "pk"
"""The live-state table's only key (a string); the router's state store writes every item under it."""
STATE_TABLE_TTL_ATTRIBUTE = "expires_at"
"""Epoch seconds after which DynamoDB may delete a live-state item (old windows, yesterday's spend)."""
STATE_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:UpdateItem")
"""What the router's state store calls, nothing more: no Scan, Query, PutItem or DeleteItem."""
KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*")
"""The key actions aws-cdk-lib's own ``grant_read_write_data`` gives a reader-writer of a table on its key."""


class LiveStateTable(Construct):
    """The router's live state: circuit breakers, latency windows and spend counters shared by every instance.

    One item per ``pk``, read in batches and updated atomically, expiring through the TTL on ``expires_at``;
    billed per request, with point-in-time recovery. ``Table`` rather than ``TableV2``: the state is regional on
    purpose (breakers and latency per region, spend counters updated with atomic ``ADD``), so a global table's
    replication, where the last writer wins, would be wrong for it; and ``Table`` synthesizes
    ``AWS::DynamoDB::Table``, the resource cdk-nag's point-in-time-recovery rule (AwsSolutions-DDB3) inspects.

    Example::

        state = LiveStateTable(self, "LiveState", removal_policy=RemovalPolicy.RETAIN)
        state.grant_state_access(router_role)

    Args:
        scope: parent construct.
        id: construct id.
        encryption_key: a customer-managed KMS key for the table; ``grant_state_access`` also allows the key
            actions ``Table.grant_read_write_data`` allows on a table's key. Default: - the AWS-managed key for
            DynamoDB (``aws/dynamodb``).
        removal_policy: what happens to the table when it leaves the stack. It holds only short-lived state and
            counters (breaker windows, latency histograms, today's and this month's spend), every item expiring
            by TTL: deleting it resets the current spend counters and nothing else. Default: -
            ``RemovalPolicy.DESTROY``; ``RETAIN`` keeps the spend counters.

    Attributes:
        table: the DynamoDB table (``ROUTER_STATE_TABLE`` of the router).
        encryption_key: the customer-managed key, if one was given.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        encryption_key: kms.IKey | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, id)
        check_removal_policy("removal_policy", removal_policy)
        self.encryption_key = encryption_key
        self.table = dynamodb.Table(
            self,
            "StateTable",
            partition_key=dynamodb.Attribute(name=STATE_TABLE_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=STATE_TABLE_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=(
                dynamodb.TableEncryption.CUSTOMER_MANAGED
                if encryption_key is not None
                else dynamodb.TableEncryption.AWS_MANAGED
            ),
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )

    def grant_state_access(self, grantee: iam.IGrantable) -> iam.Grant:
        """Allow ``grantee`` what the router's state store calls: ``BatchGetItem`` and ``UpdateItem`` on this table.

        No index ARNs (the table has none); with a customer-managed key, also the key actions of
        ``KEY_ACTIONS`` on that key (the generic table grant adds none).
        """
        grant = self.table.grant(grantee, *STATE_ACTIONS)
        if self.encryption_key is not None:
            grant = grant.combine(self.encryption_key.grant(grantee, *KEY_ACTIONS))
        return grant
