"""The Bedrock ARNs a policy's models need, for a least-privilege ``bedrock:InvokeModel`` statement."""

from __future__ import annotations

from aws_cdk import Aws

from lambdas.router.policy import ModelSpec, Policy

# A global cross-region inference profile may route to any commercial region: Bedrock authorises its
# foundation model through a region-less ARN (arn:aws:bedrock:::foundation-model/...), besides the profile
# and the model in the source region.
GLOBAL_PROFILE_PREFIX = "global"


def _foundation_model(region: str, model_id: str) -> str:
    return f"arn:{Aws.PARTITION}:bedrock:{region}::foundation-model/{model_id}"


def _model_arns(spec: ModelSpec, calling: tuple[str, ...]) -> list[str]:
    if not spec.is_inference_profile:
        return [_foundation_model(region, spec.model_id) for region in calling]
    if not calling:
        return []
    arns = [
        f"arn:{Aws.PARTITION}:bedrock:{region}:{Aws.ACCOUNT_ID}:inference-profile/{spec.model_id}" for region in calling
    ]
    if spec.model_id.split(".", 1)[0] == GLOBAL_PROFILE_PREFIX:
        source_and_destinations = dict.fromkeys((*calling, *spec.profile_destinations))
        arns.extend(_foundation_model(region, spec.foundation_model_id) for region in source_and_destinations)
        arns.append(_foundation_model("", spec.foundation_model_id))
    else:
        arns.extend(_foundation_model(region, spec.foundation_model_id) for region in spec.profile_destinations)
    return arns


def model_invoke_arns(policy: Policy, calling_from: str | None = None) -> list[str]:
    """Every ARN the router may invoke, deduplicated, in the policy's order; no wildcard.

    - a foundation model: ``arn:{partition}:bedrock:{region}::foundation-model/{id}`` in each region the router
      calls it from;
    - a geographic inference profile (``us.``, ``eu.``, ...): the profile ARN in each region the router calls it
      from, and the underlying foundation model in every destination region the profile may send the request
      to (Bedrock checks both);
    - a global inference profile: the profile ARN in each calling region, the foundation model in the calling
      and listed destination regions, and the region-less foundation model ARN.

    ``calling_from``: only what calls from that one region need (the state machine's SDK integration calls its
    own region only). Default: - every region of each model.
    """
    arns = [
        arn
        for spec in policy.models.values()
        for arn in _model_arns(
            spec, spec.regions if calling_from is None else tuple(r for r in spec.regions if r == calling_from)
        )
    ]
    return list(dict.fromkeys(arns))
