"""``RoutingPolicyDocument``: a routing policy validated at synth, with the exact text AppConfig and the asset hold."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from lambdas.router.policy import Policy, PolicyError, compile_policy, document_digest

MAX_POLICY_BYTES = 1_048_576
"""AppConfig's hosted configuration store takes configurations of at most 1 MB."""
POLICY_PROFILE_NAME = "routing-policy"
"""The AppConfig configuration profile that holds the routing policy (``APPCONFIG_PROFILE`` of the router)."""


@dataclass(frozen=True, kw_only=True)
class RoutingPolicyDocument:
    """A routing policy checked with the schema the router and AppConfig use, and the text that carries it.

    ``text`` is the one serialization of the policy: the AppConfig hosted configuration's content and the
    function asset's bootstrap file hold exactly these characters, and ``digest`` (``ROUTER_POLICY_SHA256``)
    lets the router skip a second schema pass for them.

    Example::

        document = RoutingPolicyDocument.of("policies/routing.json")
        document.policy.version, document.digest
    """

    text: str
    policy: Policy

    @property
    def digest(self) -> str:
        """SHA-256 of ``text``'s UTF-8 bytes, as ``lambdas.router.policy.document_digest`` computes it."""
        return document_digest(self.text)

    @classmethod
    def of(cls, source: PolicySource) -> RoutingPolicyDocument:
        """Load and validate ``source``: a document (returned as is), a dict, or the path of a JSON file.

        Raises:
            ValueError: the file cannot be read or is not a JSON object, the policy is invalid (the message
                names the field and value), or its text is over AppConfig's 1 MB.
        """
        if isinstance(source, RoutingPolicyDocument):
            return source
        document = _load(source)
        try:
            policy = compile_policy(document)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        text = json.dumps(document, indent=2)
        size = len(text.encode("utf-8"))
        if size > MAX_POLICY_BYTES:
            raise ValueError(
                f"the policy is {size:,} bytes as JSON; AppConfig's hosted configuration store takes at most "
                f"{MAX_POLICY_BYTES:,}"
            )
        return cls(text=text, policy=policy)


PolicySource: TypeAlias = RoutingPolicyDocument | Mapping[str, Any] | str | Path
"""What every construct's ``policy`` prop accepts: a document, a dict, or the path of a JSON file."""


def _load(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(source, Mapping):
        copied: dict[str, Any] = json.loads(json.dumps(source))  # a plain, JSON-clean copy
        return copied
    path = Path(source)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read policy file '{path}': {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"policy file '{path}' is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise ValueError(f"policy file '{path}' must hold a JSON object")
    return document
