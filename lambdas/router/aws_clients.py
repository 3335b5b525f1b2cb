"""botocore clients for the router's adapters (Bedrock, AppConfig, DynamoDB), made from one shared session.

A botocore session loads the endpoint, partition and retry data its clients need, once: a new session per
client (``botocore.session.get_session()`` at each call site) loaded it again for each, about 35 ms a client
of cold start. Clients come from botocore rather than boto3: the same clients without boto3's resource layer
and s3transfer. Creating clients from one session is not thread-safe, so it is done under a lock; calling
them is.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

_lock = threading.Lock()
_session: Any = None


def new_client(
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None = None,
    credentials: Mapping[str, str] | None = None,
    **config: Any,
) -> Any:
    """A client of ``service`` with a ``botocore.config.Config`` of ``config`` (timeouts, retries, ...).

    Args:
        service: the botocore service name (``bedrock-runtime``, ``appconfigdata``, ``dynamodb``).
        region: the client's region; None takes the environment's.
        endpoint_url: another endpoint (the local simulator, moto); None for AWS.
        credentials: explicit static credentials (``aws_access_key_id``, ...); None uses the default chain.
    """
    import botocore.session
    from botocore.config import Config

    global _session
    with _lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session.create_client(
            service, region_name=region, endpoint_url=endpoint_url, config=Config(**config), **(credentials or {})
        )
