"""Bedrock Runtime clients for the command line's tools (preflight, evaluator): one per region, made up front.

Against an ``endpoint_url`` (the local simulator) they carry throwaway static credentials, so nothing leaves
the machine; otherwise botocore's default credential chain, which must find credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ClientSetupError(Exception):
    """The clients cannot be made (no botocore, no credentials); the message says what to do."""


def runtime_clients(
    regions: Iterable[str],
    *,
    endpoint_url: str | None,
    timeout_s: float,
    retries: dict[str, Any],
    tool: str,
    agent: str,
    verb: str,
) -> dict[str, Any]:
    """One ``bedrock-runtime`` client per distinct region.

    Args:
        regions: the regions calls will go to.
        endpoint_url: call this endpoint with throwaway credentials instead of Bedrock.
        timeout_s: read timeout of each attempt; connecting gets at most 3 s of it.
        retries: botocore's ``retries`` configuration.
        tool: who needs the clients ("preflight", "evaluator"), for messages.
        agent: the user agent's suffix (``routed-bedrock-<agent>``) and the throwaway credentials' name.
        verb: what ``--endpoint-url`` lets the tool do instead ("check", "evaluate"), for the no-credentials message.

    Raises:
        ClientSetupError: botocore is not installed, or (real Bedrock) no credentials are found.
    """
    try:
        import botocore.session
        from botocore.config import Config
    except ImportError:
        raise ClientSetupError(
            f"the {tool} needs botocore: pip install 'routed-bedrock-endpoint[runtime]' (or botocore)"
        ) from None

    session = botocore.session.get_session()
    credentials: dict[str, str] = {}
    if endpoint_url:
        credentials = {"aws_access_key_id": agent, "aws_secret_access_key": agent}
    elif session.get_credentials() is None:
        raise ClientSetupError(
            "no AWS credentials found: configure the default credential chain (AWS_PROFILE, aws configure, "
            f"SSO, ...) or pass --endpoint-url to {verb} against the local simulator"
        )
    config = Config(
        connect_timeout=min(3.0, timeout_s),
        read_timeout=timeout_s,
        retries=retries,
        user_agent_extra=f"routed-bedrock-{agent}",
    )
    # Clients are made here, on one thread: creating them is not thread-safe; calling them is.
    return {
        region: session.create_client(
            "bedrock-runtime", region_name=region, endpoint_url=endpoint_url, config=config, **credentials
        )
        for region in dict.fromkeys(regions)
    }
