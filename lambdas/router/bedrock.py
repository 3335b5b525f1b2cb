"""Bedrock Runtime adapter: one Converse call, with a timeout, mapped to ``ModelReply`` or ``ModelCallError``.

Clients are created lazily, once per (region, timeout) and reused across invocations. botocore's own
retries are off: the executor owns retries, backoff and failover. The client comes from botocore, the
layer boto3's clients are made of: the same ``bedrock-runtime`` client and API, without importing boto3's
resource layer and s3transfer (about 0.15 s of cold start).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from .engine import PlannedCall
from .executor import FailureClass, ModelCallError, ModelReply


class BedrockGateway:
    """Calls Bedrock Converse through a botocore ``bedrock-runtime`` client.

    Args:
        endpoint_url: send requests here instead of AWS (the local simulator); None for real Bedrock.
        connect_timeout_s: TCP connect timeout for every call.
        credentials: explicit static credentials (local simulator only); None uses the default chain.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        connect_timeout_s: float = 2.0,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._connect_timeout_s = connect_timeout_s
        self._credentials = dict(credentials or {})
        self._clients: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._session: Any = None

    def client(self, region: str, timeout_s: float) -> Any:
        # Whole seconds keep the number of distinct clients small while honouring the deadline.
        read_timeout = max(1, math.ceil(timeout_s))
        key = (region, read_timeout)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._new_client(region, read_timeout)
                    self._clients[key] = client
        return client

    def _new_client(self, region: str, read_timeout: int) -> Any:
        import botocore.session
        from botocore.config import Config

        if self._session is None:
            self._session = botocore.session.get_session()
        config = Config(
            region_name=region,
            connect_timeout=self._connect_timeout_s,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            tcp_keepalive=True,
            max_pool_connections=50,
        )
        return self._session.create_client(
            "bedrock-runtime",
            region_name=region,
            endpoint_url=self._endpoint_url,
            config=config,
            **self._credentials,
        )

    def converse(
        self,
        call: PlannedCall,
        timeout_s: float,
        *,
        messages: Sequence[Mapping[str, Any]],
        system: Sequence[Mapping[str, Any]],
        inference_config: Mapping[str, Any],
    ) -> ModelReply:
        """One Converse call.

        Raises:
            ModelCallError: the call failed; ``failure_class`` says whether to back off, fail over or move on.
        """
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

        request: dict[str, Any] = {
            "modelId": call.model.model_id,
            "messages": list(messages),
            "inferenceConfig": dict(inference_config),
        }
        if system:
            request["system"] = list(system)
        try:
            response = self.client(call.region, timeout_s).converse(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ModelCallError(error.get("Code", "ClientError"), error.get("Message", str(exc))) from None
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise ModelCallError("Timeout", str(exc), FailureClass.REGIONAL) from None
        except BotoCoreError as exc:  # connection refused, DNS, protocol errors: the region is unreachable
            raise ModelCallError(type(exc).__name__, str(exc), FailureClass.REGIONAL) from None
        return _reply_from(response)


def _reply_from(response: Mapping[str, Any]) -> ModelReply:
    content = response.get("output", {}).get("message", {}).get("content", [])
    text = "".join(block.get("text", "") for block in content if isinstance(block, Mapping))
    usage = response.get("usage", {})
    return ModelReply(
        text=text,
        input_tokens=int(usage.get("inputTokens", 0)),
        output_tokens=int(usage.get("outputTokens", 0)),
        stop_reason=str(response.get("stopReason", "end_turn")),
    )
