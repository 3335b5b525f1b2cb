"""Shared set-up for the template tests: the project's Node for jsii, and the shipped policy document.

Synthesis (jsii) is the slow part of these tests: each module synthesizes its stacks once, in module-scoped
fixtures, and pins its tests to one xdist worker with an ``xdist_group`` of its own. The all-defaults stack
that several modules read is synthesized once per worker, here.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk_app import RoutedBedrockEndpoint
from lambdas.router.policy import DEFAULT_POLICY_PATH
from tests.infrastructure.template_helpers import Synthesized, synthesize

ROOT = Path(__file__).resolve().parents[2]
# jsii runs on the `node` first on PATH: use the project's pinned Node 22, not an end-of-life system one.
os.environ["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")

_DEFAULT_DOCUMENT: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shipped_policy() -> dict[str, Any]:
    """The shipped default policy document; copy it before changing it (``copy.deepcopy``)."""
    return copy.deepcopy(_DEFAULT_DOCUMENT)


@pytest.fixture(scope="session")
def default(tmp_path_factory: pytest.TempPathFactory, shipped_policy: dict[str, Any]) -> Synthesized:
    """Every prop at its default, with the shipped policy (daily budget 200 USD, modes at 70, 90 and 100 %), in
    a stack with an explicit account and region."""
    return synthesize(
        tmp_path_factory.mktemp("default"),
        "Test",
        lambda stack: RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy),
        env=cdk.Environment(account="123456789012", region="us-east-1"),
    )


@pytest.fixture(scope="session")
def template(default: Synthesized) -> Template:
    return default.template
