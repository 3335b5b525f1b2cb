"""The router's Lambda asset: the installed ``lambdas`` package plus the bootstrap policy, bundled without Docker.

The router serves ``bootstrap_policy.json`` (beside ``router/`` at the asset root) until AppConfig has deployed a
version to it, so the asset must hold exactly the text validated at synth. aws-cdk-lib's local bundling does
it: ``try_bundle`` copies the package (bytecode excluded) into the staging directory and writes the file; the
Docker image is never used, because the local bundler always succeeds. The asset hash is that of the output,
so a new policy is a new asset. The policy digest also rides in the bundling environment: CDK caches staged
assets by their options in-process, and two endpoints with different policies in one app must not share one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

import lambdas
from lambdas.router.policy_store import BOOTSTRAP_POLICY_FILENAME

LAMBDAS_DIR = Path(lambdas.__file__).resolve().parent
"""The asset's source: the installed ``lambdas`` package (the handler uses relative imports inside it)."""
ASSET_EXCLUDE = ("__pycache__", "*.pyc", "*.pyo")
_NO_DOCKER_IMAGE = "routed-bedrock/local-bundling-only"


@jsii.implements(cdk.ILocalBundling)
class _RouterPackageWithBootstrapPolicy:
    def __init__(self, source: Path, bootstrap_text: str) -> None:
        self._source = source
        self._bootstrap = bootstrap_text.encode("utf-8")  # bytes: no newline translation on any platform

    def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
        shutil.copytree(self._source, output_dir, ignore=shutil.ignore_patterns(*ASSET_EXCLUDE), dirs_exist_ok=True)
        (Path(output_dir) / BOOTSTRAP_POLICY_FILENAME).write_bytes(self._bootstrap)
        for script in Path(output_dir).glob("*.sh"):  # the streaming router's start script is run, not imported
            script.chmod(0o755)
        return True


def router_code(*, bootstrap_text: str, digest: str) -> lambda_.Code:
    """The function's code: ``lambdas`` with ``bootstrap_policy.json`` holding ``bootstrap_text`` at its root."""
    return lambda_.Code.from_asset(
        str(LAMBDAS_DIR),
        exclude=list(ASSET_EXCLUDE),
        asset_hash_type=cdk.AssetHashType.OUTPUT,
        bundling=cdk.BundlingOptions(
            image=cdk.DockerImage.from_registry(_NO_DOCKER_IMAGE),
            local=_RouterPackageWithBootstrapPolicy(LAMBDAS_DIR, bootstrap_text),
            environment={"ROUTER_POLICY_SHA256": digest},
        ),
    )
