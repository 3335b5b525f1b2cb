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
