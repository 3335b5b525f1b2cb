"""Fixtures shared by the runtime tests: the shipped policy, as a document and compiled."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from lambdas.router.policy import DEFAULT_POLICY_PATH, Policy, compile_policy

_DEFAULT_DOCUMENT: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def policy_document() -> dict[str, Any]:
    """A fresh, mutable copy of the shipped default policy."""
    return copy.deepcopy(_DEFAULT_DOCUMENT)


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    return compile_policy(copy.deepcopy(_DEFAULT_DOCUMENT))


@pytest.fixture(scope="session")
def contract_fields() -> frozenset[str]:
    """The fields every /generate answer carries (the seed's contract plus usage, cost and the decision)."""
    return frozenset(
        {
            "output",
            "model_used",
            "route",
            "region",
            "fallback_used",
            "degraded",
            "usage",
            "cost_usd",
            "latency_ms",
            "decision",
        }
    )
