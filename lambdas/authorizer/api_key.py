"""A Lambda TOKEN authorizer that hands the caller's API key to API Gateway's usage plans.

API Gateway reads a REST API's keys from one place: the ``x-api-key`` header, or, with the API's key source
set to ``AUTHORIZER``, the ``usageIdentifierKey`` a Lambda authorizer returns. OpenAI clients send their key
as ``Authorization: Bearer KEY``, so the endpoint's API-key mode uses this authorizer twice: on ``x-api-key``
for ``POST /generate`` (unchanged for its callers) and on ``Authorization`` for the ``/v1`` methods.

The authorizer does not decide whether a key is valid: it returns the key, and API Gateway checks it against
the usage plan's keys (403 for an unknown or disabled key) and throttles it by the plan. It allows the whole
stage, because API Gateway caches its answer per token for every method the authorizer guards. A missing or
malformed token is a 401. The principal it reports is a digest of the key, never the key itself.

Standard library only: it runs before every uncached request, so its cold start is kept to the interpreter's.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

BEARER = re.compile(r"^bearer +(?P<key>\S+)$", re.IGNORECASE)
KEY = re.compile(r"^[\x21-\x7e]{20,128}$")
"""What API Gateway accepts as a key value: 20 to 128 printable characters, no spaces."""


class Unauthorized(Exception):
    """Raised with the message ``Unauthorized``: API Gateway's signal for a 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def api_key(token: str) -> str:
    """The API key in a header's value: ``Bearer KEY`` (any letter case) or the bare key.

    Raises:
        Unauthorized: no key, or one API Gateway could never have issued.
    """
    token = token.strip()
    bearer = BEARER.match(token)
    key = bearer.group("key") if bearer else token
    if not KEY.match(key):
        raise Unauthorized()
    return key


def stage_arn(method_arn: str) -> str:
    """Every method of the stage a method ARN names: ``arn:...:api-id/stage/*``."""
    parts = method_arn.split("/")
    if len(parts) < 3 or not parts[0].startswith("arn:") or not parts[1]:
        raise Unauthorized()
    return f"{parts[0]}/{parts[1]}/*"


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    key = api_key(str(event.get("authorizationToken") or ""))
    resource = stage_arn(str(event.get("methodArn") or ""))
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return {
        "principalId": f"apikey-{digest}",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}],
        },
        "usageIdentifierKey": key,
    }
