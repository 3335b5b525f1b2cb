"""Snapshot of the logical IDs (and types) a few configurations synthesize, to prove a refactor replaces nothing.

CloudFormation replaces a resource whose logical ID changes. ``snapshot()`` synthesizes each configuration in
``CONFIGURATIONS`` and records, per template, every resource's logical ID and type, and the parameters' and
outputs' IDs. ``data/logical_ids_before_split.json`` holds the snapshot taken before ``RoutedBedrockEndpoint``
was split into smaller constructs; ``test_logical_ids.py`` compares today's snapshot against it.

The reference app is read from beside the imported ``cdk_app`` package, so the snapshot of older code is taken
by importing that code first, e.g. from a ``git archive`` of the commit before the split::

    mkdir /tmp/legacy && git archive <commit> cdk_app app.py cdk.json | tar -x -C /tmp/legacy
    ln -s "$PWD/lambdas" /tmp/legacy/lambdas
    (cd /tmp/legacy && PYTHONPATH=/tmp/legacy:$OLDPWD python -m tests.infrastructure.logical_ids \
        "$OLDPWD/tests/infrastructure/data/logical_ids_before_split.json")
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cognito as cognito

import cdk_app
from cdk_app import EndpointAuthorization, RoutedBedrockEndpoint
from lambdas.router.policy import DEFAULT_POLICY_PATH

APP_ROOT = Path(cdk_app.__file__).resolve().parents[1]
"""Where ``app.py`` and ``cdk.json`` are: beside the ``cdk_app`` package in use."""
SNAPSHOT_BEFORE_SPLIT = Path(__file__).resolve().parent / "data" / "logical_ids_before_split.json"
ENV = cdk.Environment(account="123456789012", region="us-east-1")

Snapshot = dict[str, dict[str, Any]]


def _template_ids(template: dict[str, Any]) -> dict[str, Any]:
    return {
        "resources": {key: resource["Type"] for key, resource in sorted(template.get("Resources", {}).items())},
        "parameters": sorted(template.get("Parameters", {})),
        "outputs": sorted(template.get("Outputs", {})),
    }


def _endpoint_stack(stack_name: str, build: Callable[[cdk.Stack], object], env: cdk.Environment | None) -> Callable:
    def synth(outdir: str) -> dict[str, Any]:
        app = cdk.App(outdir=outdir)
        build(cdk.Stack(app, stack_name, env=env))
        return dict(app.synth().get_stack_by_name(stack_name).template)

    return synth


def _default(stack: cdk.Stack) -> None:
    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH)


def _iam(stack: cdk.Stack) -> None:
    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH, auth=EndpointAuthorization.iam())


def _cognito(stack: cdk.Stack) -> None:
    pool = cognito.UserPool(stack, "Users")
    RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH, auth=EndpointAuthorization.cognito(pool))


def _reference_app(**context: str) -> Callable[[str], dict[str, Any]]:
    """app.py's ``build_app`` with cdk.json's context (its feature flags), as ``cdk synth`` runs it."""

    def synth(outdir: str) -> dict[str, Any]:
        spec = importlib.util.spec_from_file_location("reference_app_for_ids", APP_ROOT / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cdk_json = json.loads((APP_ROOT / "cdk.json").read_text(encoding="utf-8"))
        app = cdk.App(outdir=outdir, context={**cdk_json["context"], **context})
        module.build_app(app)
        return dict(app.synth().get_stack_by_name("RoutedBedrock").template)

    return synth


CONFIGURATIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "endpoint-defaults": _endpoint_stack("Test", _default, ENV),
    "endpoint-auth-iam": _endpoint_stack("Iam", _iam, None),
    "endpoint-auth-cognito": _endpoint_stack("Cognito", _cognito, ENV),
    "reference-app": _reference_app(),
    "reference-app-cognito": _reference_app(**{"routed-bedrock:auth": "cognito"}),
}


def snapshot(configurations: dict[str, Callable[[str], dict[str, Any]]] | None = None) -> Snapshot:
    """Synthesize each configuration (in a temporary directory) and record its template's IDs."""
    result: Snapshot = {}
    for name, synth in (configurations or CONFIGURATIONS).items():
        with tempfile.TemporaryDirectory() as outdir:
            result[name] = _template_ids(synth(outdir))
    return result


def write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snapshot(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else SNAPSHOT_BEFORE_SPLIT)
