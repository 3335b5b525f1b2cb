"""The function's asset carries the bootstrap policy: exactly the text AppConfig hosts, found by the env var."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk_app import RoutedBedrockEndpoint
from lambdas.router.policy import document_digest
from lambdas.router.policy_store import BOOTSTRAP_POLICY_ENV, BOOTSTRAP_POLICY_FILENAME
from tests.infrastructure.template_helpers import Synthesized

pytestmark = pytest.mark.xdist_group("bootstrap-asset")


def functions(template: Template) -> dict[str, dict[str, Any]]:
    """The buffered routers (the streaming routers share their asset; see the streaming test below)."""
    found = template.find_resources("AWS::Lambda::Function")
    return {key: f for key, f in found.items() if f["Properties"]["Handler"] == "router.handler.lambda_handler"}


def streaming_functions(template: Template) -> dict[str, dict[str, Any]]:
    found = template.find_resources("AWS::Lambda::Function")
    return {key: f for key, f in found.items() if f["Properties"]["Handler"] == "run-stream.sh"}


def asset_dir(outdir: Path, stack_name: str, function: dict[str, Any]) -> Path:
    """The staged directory of a function's Code asset, from the stack's asset manifest in the cloud assembly."""
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    manifest = json.loads((outdir / f"{stack_name}.assets.json").read_text(encoding="utf-8"))
    path = outdir / manifest["files"][asset_hash]["source"]["path"]
    assert path.is_dir()
    return path


def variables(function: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return env


def test_bootstrap_policy_in_the_asset_is_the_hosted_configuration_text(default: Synthesized):
    # Given the all-defaults endpoint's function and its staged asset
    [function] = functions(default.template).values()
    asset = asset_dir(default.outdir, default.stack_name, function)
    # When reading the bootstrap file the env var names, at the asset root beside router/
    assert variables(function)[BOOTSTRAP_POLICY_ENV] == BOOTSTRAP_POLICY_FILENAME
    bootstrap = (asset / BOOTSTRAP_POLICY_FILENAME).read_bytes()
    # Then its digest is the one the function trusts, and its text is AppConfig's content, byte for byte
    assert document_digest(bootstrap) == variables(function)["ROUTER_POLICY_SHA256"]
    [hosted] = default.template.find_resources("AWS::AppConfig::HostedConfigurationVersion").values()
    assert bootstrap.decode("utf-8") == hosted["Properties"]["Content"]
    # And the router package is there, without bytecode
    assert (asset / "router" / "handler.py").is_file()
    assert (asset / "router" / "schemas" / "policy.schema.json").is_file()
    assert not list(asset.rglob("__pycache__"))
    assert not list(asset.rglob("*.pyc"))


def test_the_streaming_router_runs_the_same_asset_and_its_start_script_is_executable(default: Synthesized):
    # Given the all-defaults endpoint's two functions
    [function] = functions(default.template).values()
    [streaming] = streaming_functions(default.template).values()
    # Then they carry one asset (the same code, the same bootstrap policy)
    assert streaming["Properties"]["Code"]["S3Key"] == function["Properties"]["Code"]["S3Key"]
    assert variables(streaming)["ROUTER_POLICY_SHA256"] == variables(function)["ROUTER_POLICY_SHA256"]
    # And the handler Lambda Web Adapter's wrapper runs is at the asset root, executable, starting the front end
    script = asset_dir(default.outdir, default.stack_name, streaming) / "run-stream.sh"
    assert script.stat().st_mode & 0o111 == 0o111
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh\n")
    assert "exec python3 -m router.web_adapter" in text
    assert (script.parent / "router" / "web_adapter.py").is_file()


@pytest.fixture(scope="module")
def two_policies(tmp_path_factory, shipped_policy) -> tuple[Path, Template]:
    """Two endpoints in one app: the shipped policy and a variant (another version), plus the shipped one again."""
    outdir = tmp_path_factory.mktemp("two-policies")
    changed = copy.deepcopy(shipped_policy)
    changed["policy_version"] = f"{shipped_policy['policy_version']}-changed"
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "TwoPolicies")
    RoutedBedrockEndpoint(stack, "Shipped", policy=shipped_policy)
    RoutedBedrockEndpoint(stack, "Changed", policy=changed)
    RoutedBedrockEndpoint(stack, "ShippedAgain", policy=copy.deepcopy(shipped_policy))
    return outdir, Template.from_json(app.synth().get_stack_by_name("TwoPolicies").template)


def test_a_changed_policy_is_a_new_asset_with_its_own_bootstrap(two_policies):
    outdir, template = two_policies
    # Given one function per endpoint (logical IDs ShippedRouter..., ChangedRouter..., ShippedAgainRouter...)
    keys = {key[: key.index("Router")]: f["Properties"]["Code"]["S3Key"] for key, f in functions(template).items()}
    assert set(keys) == {"Shipped", "Changed", "ShippedAgain"}
    # Then the changed policy's asset differs, and the same policy gives the same asset
    assert keys["Changed"] != keys["Shipped"]
    assert keys["ShippedAgain"] == keys["Shipped"]
    # And each asset's bootstrap file matches its own function's digest
    for function in functions(template).values():
        bootstrap = (asset_dir(outdir, "TwoPolicies", function) / BOOTSTRAP_POLICY_FILENAME).read_bytes()
        assert document_digest(bootstrap) == variables(function)["ROUTER_POLICY_SHA256"]


def test_the_asset_hash_is_reproducible_across_synths(default: Synthesized, shipped_policy, tmp_path):
    # A hash that changed on every synth would update the function on every deploy.
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Again", env=cdk.Environment(account="123456789012", region="us-east-1"))
    RoutedBedrockEndpoint(stack, "Llm", policy=shipped_policy)
    [again] = functions(Template.from_json(app.synth().get_stack_by_name("Again").template)).values()
    [first] = functions(default.template).values()
    assert again["Properties"]["Code"]["S3Key"] == first["Properties"]["Code"]["S3Key"]
