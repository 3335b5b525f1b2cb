"""The Bedrock ARNs a policy's models need, for a least-privilege ``bedrock:InvokeModel`` statement."""

from __future__ import annotations

from aws_cdk import Aws

from lambdas.router.policy import Policy

# A global cross-region inference profile may route anywhere; its foundation model is authorised by a
# region-less ARN (arn:aws:bedrock:::foundation-model/...), as Bedrock documents for global profiles.
GLOBAL_PROFILE_PREFIX = "global"


def model_invoke_arns(policy: Policy) -> list[str]:
    """Every ARN the router may invoke, deduplicated and in a stable order.

    - a foundation model: ``arn:{partition}:bedrock:{region}::foundation-model/{id}`` in each region the
      router calls it from;
    - an inference profile: the profile ARN in each region the router calls it from, and the underlying
      foundation model ARN in every destination region the profile may send the request to (Bedrock
      checks both).
    """
    partition, account = Aws.PARTITION, Aws.ACCOUNT_ID
    arns: list[str] = []
    for spec in policy.models.values():
        if not spec.is_inference_profile:
            arns.extend(
                f"arn:{partition}:bedrock:{region}::foundation-model/{spec.model_id}" for region in spec.regions
            )
            continue
        arns.extend(
            f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{spec.model_id}" for region in spec.regions
        )
        arns.extend(
            f"arn:{partition}:bedrock:{region}::foundation-model/{spec.foundation_model_id}"
            for region in spec.profile_destinations
        )
        if spec.model_id.split(".", 1)[0] == GLOBAL_PROFILE_PREFIX:
            arns.append(f"arn:{partition}:bedrock:::foundation-model/{spec.foundation_model_id}")
    return list(dict.fromkeys(arns))
