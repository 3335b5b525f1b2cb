"""A wheel of this repository, installed in a fresh virtual environment outside the repo, serves a consumer app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from lambdas.router.policy import document_digest
from lambdas.router.policy_store import BOOTSTRAP_POLICY_ENV, BOOTSTRAP_POLICY_FILENAME

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]

# What a consumer writes: nothing from the repository but the installed package.
CONSUMER = """
import sys

import aws_cdk as cdk

import cdk_app
from cdk_app import DEFAULT_POLICY_PATH, EndpointAuthorization, RoutedBedrockEndpoint

app = cdk.App(outdir=sys.argv[1])
stack = cdk.Stack(app, "Consumer")
llm = RoutedBedrockEndpoint(stack, "Llm", policy=DEFAULT_POLICY_PATH, auth=EndpointAuthorization.iam())
cdk.CfnOutput(stack, "Url", value=llm.url)
app.synth()
print(cdk_app.__file__)
"""

# The files the router needs at run time, relative to the Lambda asset root (the installed `lambdas` package).
ASSET_FILES = (
    "router/handler.py",
    "router/engine.py",
    "router/policy.py",
    "router/metric_names.py",
    "router/_policy_validator.py",
    "router/_request_validator.py",
    "router/schemas/policy.schema.json",
    "router/schemas/generate_request.schema.json",
    "router/policies/default.json",
)


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def copy_sources(target: Path) -> Path:
    """The files a wheel is built from, copied so the build leaves no build/ or egg-info in the repository."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for package in ("cdk_app", "lambdas", "routed_bedrock"):
        shutil.copytree(ROOT / package, target / package, ignore=ignore)
    return target


def test_consumer_app_synthesizes_from_the_wheel(tmp_path):
    # Given a wheel built from the repository's sources
    sources = copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(dist),
        str(sources),
        cwd=tmp_path,
    )
    wheel = next(dist.glob("routed_bedrock_endpoint-*.whl"))
    # And a fresh virtual environment outside the repository holding the wheel and the pinned CDK libraries
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    pins = [
        line
        for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.startswith(("aws-cdk-lib==", "constructs==", "cdk-nag=="))
    ]
    assert len(pins) == 3
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), *pins, cwd=tmp_path)
    # When a few-line consumer app synthesizes from a directory that is not the repository
    app_dir = tmp_path / "consumer"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(CONSUMER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # jsii needs a supported Node: the project's pinned one.
    env["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{env.get('PATH', '')}"
    out = app_dir / "cdk.out"
    imported_from = run(python, "app.py", str(out), cwd=app_dir, env=env).strip().splitlines()[-1]
    # Then the construct came from the installed wheel, not the repository
    assert imported_from.startswith(str(env_dir))
    # And the function's code is the installed `lambdas` package, with the handler, schemas and default policy
    template = json.loads((out / "Consumer.template.json").read_text(encoding="utf-8"))
    function = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    assert function["Properties"]["Handler"] == "router.handler.lambda_handler"
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    manifest = json.loads((out / "Consumer.assets.json").read_text(encoding="utf-8"))
    asset = out / manifest["files"][asset_hash]["source"]["path"]
    assert asset.is_dir()
    missing = [relative for relative in ASSET_FILES if not (asset / relative).is_file()]
    assert missing == []
    assert not list(asset.rglob("__pycache__"))
    assert not list(asset.rglob("*.pyc"))
    # And, beside router/, the bootstrap policy: the text AppConfig hosts, with the digest the function trusts
    variables = function["Properties"]["Environment"]["Variables"]
    bootstrap = asset / variables[BOOTSTRAP_POLICY_ENV]
    assert bootstrap.name == BOOTSTRAP_POLICY_FILENAME
    assert document_digest(bootstrap.read_bytes()) == variables["ROUTER_POLICY_SHA256"]
    # And the wheel installs the routed-bedrock command: it checks a policy before any call (exit 2 on a bad one)
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text('{"schema_version": "1.0"}', encoding="utf-8")
    cli = subprocess.run(
        [str(env_dir / "bin" / "routed-bedrock"), "preflight", "--policy", str(bad_policy)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert cli.returncode == 2, cli.stderr
    assert "routed-bedrock preflight: error:" in cli.stderr and "Traceback" not in cli.stderr
