"""The reference app: synthesizes offline, passes cdk-nag AwsSolutions and cfn-lint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from app import build_app  # noqa: E402

pytestmark = pytest.mark.xdist_group("cdk")


def synth_reference(outdir: Path, **context: str) -> Path:
    app = cdk.App(
        outdir=str(outdir),
        context={"routed-bedrock:policy-file": str(ROOT / "lambdas/router/policies/default.json"), **context},
    )
    build_app(app)
    app.synth()
    return outdir


@pytest.fixture(scope="module", params=["api-key", "iam", "none"])
def assembly(request, tmp_path_factory) -> Path:
    return synth_reference(tmp_path_factory.mktemp(f"cdk-{request.param}"), **{"routed-bedrock:auth": request.param})


def test_cdk_nag_reports_no_unacknowledged_finding(assembly):
    report = json.loads((assembly / "validation-report.json").read_text())
    failures = [violation for plugin in report.get("pluginReports", []) for violation in plugin.get("violations", [])]
    assert failures == []


def test_cfn_lint_is_clean(assembly):
    templates = sorted(assembly.glob("*.template.json"))
    assert templates
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_acknowledgement_carries_a_reason(assembly):
    metadata = json.loads((assembly / "RoutedBedrock.metadata.json").read_text())
    acknowledged = {
        rule: reason
        for entries in metadata.values()
        for entry in entries
        if entry.get("type") == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    }
    # The set is reviewed: a new acknowledgement must be added here on purpose, with its reason.
    assert {rule.split("::", 1)[1].split("[")[0] for rule in acknowledged} <= {
        "AwsSolutions-APIG3",
        "AwsSolutions-APIG4",
        "AwsSolutions-COG4",
        "AwsSolutions-IAM4",
        "AwsSolutions-IAM5",
        "AwsSolutions-L1",
    }
    assert acknowledged
    for rule, reason in acknowledged.items():
        assert len(reason) > 50, f"{rule} needs a written reason"


def test_nag_blocks_synthesis_on_an_unacknowledged_finding(tmp_path):
    # Given the reference app plus a bucket that breaks AwsSolutions rules (no SSL enforcement, no logs)
    app = cdk.App(
        outdir=str(tmp_path), context={"routed-bedrock:policy-file": str(ROOT / "lambdas/router/policies/default.json")}
    )
    build_app(app)
    stack = next(c for c in app.node.children if isinstance(c, cdk.Stack))
    s3.Bucket(stack, "Leaky")
    # When synthesized, Then cdk-nag reports it and synthesis fails
    with pytest.raises(Exception, match=r"(?i)validation"):
        app.synth()


def test_env_agnostic_without_account_and_region(assembly):
    manifest = json.loads((assembly / "manifest.json").read_text())
    stack = manifest["artifacts"]["RoutedBedrock"]
    assert stack["environment"] == "aws://unknown-account/unknown-region"


def test_rejects_an_unknown_auth_mode(tmp_path):
    app = cdk.App(outdir=str(tmp_path), context={"routed-bedrock:auth": "open-sesame"})
    with pytest.raises(ValueError, match="routed-bedrock:auth 'open-sesame'"):
        build_app(app)
