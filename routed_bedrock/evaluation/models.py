"""The models under evaluation: chosen from the policy's catalog, and called through Bedrock's Converse."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from lambdas.router.policy import ModelSpec, Policy
from routed_bedrock.bedrock_runtime import ClientSetupError, runtime_clients
from routed_bedrock.evaluation.errors import EvaluationError
from routed_bedrock.preflight import CallFailed


def select_models(policy: Policy, keys: Sequence[str] | None) -> list[ModelSpec]:
    """The policy's models named by ``keys`` (catalog keys), or all of them, in catalog order.

    Raises:
        EvaluationError: a key is not in the policy's catalog.
    """
    if not keys:
        return list(policy.models.values())
    unknown = [key for key in keys if key not in policy.models]
    if unknown:
        raise EvaluationError(
            f"model(s) {', '.join(repr(k) for k in unknown)} not in the policy's catalog "
            f"(known: {', '.join(policy.models)})"
        )
    wanted = set(keys)
    return [spec for key, spec in policy.models.items() if key in wanted]


class Answer(NamedTuple):
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str


CallModel = Callable[[ModelSpec, str], Answer]
"""Ask one model (in its first region) one prompt; raises ``CallFailed`` when the call fails."""


def botocore_converse(
    models: Sequence[ModelSpec],
    *,
    endpoint_url: str | None = None,
    timeout_s: float = 60.0,
    retries: int = 2,
    max_tokens: int = 512,
    temperature: float = 0.0,
    system: str | None = None,
) -> CallModel:
    """A ``CallModel`` through botocore's ``bedrock-runtime`` client, one client per region made up front.

    Args:
        models: the models that will be called (each in its first region).
        endpoint_url: call this endpoint (the simulator) with throwaway static credentials instead of
            Bedrock with the default credential chain.
        timeout_s: read timeout of each attempt; connecting gets at most 3 s of it.
        retries: retries after the first attempt, with botocore's standard mode (throttling and transient
            errors, exponential backoff with jitter).
        max_tokens: ``maxTokens`` of each call, capped at the model's ``max_output_tokens``.
        temperature: ``temperature`` of each call.
        system: a system prompt for every call (none by default).

    Raises:
        EvaluationError: botocore is not installed, or (real Bedrock) no credentials are found.
    """
    try:
        clients = runtime_clients(
            (spec.regions[0] for spec in models),
            endpoint_url=endpoint_url,
            timeout_s=timeout_s,
            retries={"mode": "standard", "total_max_attempts": retries + 1},
            tool="evaluator",
            agent="evaluate",
            verb="evaluate",
        )
    except ClientSetupError as exc:
        raise EvaluationError(str(exc)) from None
    from botocore.exceptions import BotoCoreError, ClientError

    def call(spec: ModelSpec, prompt: str) -> Answer:
        limit = min(max_tokens, spec.max_output_tokens or max_tokens)
        try:
            reply = clients[spec.regions[0]].converse(
                modelId=spec.model_id,
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": limit, "temperature": temperature},
                **({"system": [{"text": system}]} if system else {}),
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CallFailed(str(error.get("Code", "Unknown")), str(error.get("Message", ""))) from None
        except BotoCoreError as exc:
            raise CallFailed(type(exc).__name__, str(exc)) from None
        blocks = reply.get("output", {}).get("message", {}).get("content", [])
        usage = reply.get("usage", {})
        return Answer(
            text="".join(block.get("text", "") for block in blocks),
            input_tokens=int(usage.get("inputTokens", 0)),
            output_tokens=int(usage.get("outputTokens", 0)),
            stop_reason=str(reply.get("stopReason", "")),
        )

    return call
