"""The reference app (app.py): synthesizes offline in every auth mode, passes cdk-nag AwsSolutions and cfn-lint."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from routed_bedrock.publish import STACK_OUTPUTS

pytestmark = pytest.mark.xdist_group("reference-app")

STACK = "RoutedBedrock"
# Reviewed acknowledgements: adding one means adding it here on purpose, with its reason in the construct.
REVIEWED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-APIG3",
    "AwsSolutions-APIG4",
    "AwsSolutions-COG4",
    "AwsSolutions-IAM4",
    "AwsSolutions-IAM5",
    "AwsSolutions-L1",
    "AwsSolutions-SF2",
}


@pytest.fixture(scope="module")
def app_module(repo_root) -> ModuleType:
    """app.py, loaded by path (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("reference_app", repo_root / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synth_reference(app_module: ModuleType, outdir: Path, **context: str) -> Path:
    app = cdk.App(outdir=str(outdir), context=context)
    app_module.build_app(app)
    app.synth()
    return outdir


# One assembly per auth mode; the IAM one also pins an account and region through context.
MODES: dict[str, dict[str, str]] = {
    "api-key": {},
    "iam": {"account": "123456789012", "region": "eu-west-1"},
    "cognito": {},
    "none": {},
}


@pytest.fixture(scope="module", params=[*MODES, "step-functions"])
def assembly(request, app_module, tmp_path_factory) -> Path:
    """The reference app in each auth mode, and with the Step Functions orchestration (in API-key mode)."""
    if request.param == "step-functions":
        context = {"routed-bedrock:orchestration": "step-functions"}
    else:
        context = {"routed-bedrock:auth": request.param, **MODES[request.param]}
    return synth_reference(app_module, tmp_path_factory.mktemp(f"reference-{request.param}"), **context)


def acknowledgements(assembly: Path) -> dict[str, str]:
    metadata: dict[str, list[dict[str, Any]]] = json.loads((assembly / f"{STACK}.metadata.json").read_text())
    return {
        f"{path} {rule}": reason
        for path, entries in metadata.items()
        for entry in entries
        if entry.get("type") == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    }


def test_cdk_nag_reports_no_unacknowledged_finding(assembly):
    report = json.loads((assembly / "validation-report.json").read_text())
    violations = [violation for plugin in report["pluginReports"] for violation in plugin.get("violations", [])]
    assert violations == []


def test_cfn_lint_is_clean(assembly):
    templates = sorted(assembly.glob("*.template.json"))
    assert [t.name for t in templates] == [f"{STACK}.template.json"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_acknowledgement_is_reviewed_and_carries_a_reason(assembly):
    acknowledged = acknowledgements(assembly)
    assert acknowledged
    for key, reason in acknowledged.items():
        rule = key.split("::", 1)[1].split("[")[0]
        assert rule in REVIEWED_ACKNOWLEDGEMENTS, key
        assert len(reason) > 60, f"{key} needs a written reason"


def test_generate_is_acknowledged_as_unauthorized_only_when_it_is(assembly):
    # APIG4 (no authorizer) on POST /generate: the API key mode and the explicit opt-out only.
    acknowledged = acknowledgements(assembly)
    generate_apig4 = [key for key in acknowledged if "/generate/POST " in key and key.endswith("AwsSolutions-APIG4")]
    template = json.loads((assembly / f"{STACK}.template.json").read_text())
    post = next(
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::Method" and r["Properties"]["HttpMethod"] == "POST"
    )
    assert bool(generate_apig4) == (post["AuthorizationType"] == "NONE")


def test_environment_comes_from_context_or_is_agnostic(assembly):
    manifest = json.loads((assembly / "manifest.json").read_text())
    environment = manifest["artifacts"][STACK]["environment"]
    assert environment in ("aws://unknown-account/unknown-region", "aws://123456789012/eu-west-1")
    template = json.loads((assembly / f"{STACK}.template.json").read_text())
    is_iam = any(
        r["Type"] == "AWS::ApiGateway::Method" and r["Properties"].get("AuthorizationType") == "AWS_IAM"
        for r in template["Resources"].values()
    )
    assert (environment == "aws://123456789012/eu-west-1") == is_iam


def test_outputs_give_the_url_and_the_way_in(assembly):
    outputs = json.loads((assembly / f"{STACK}.template.json").read_text())["Outputs"]
    assert {"Url", "AlarmTopicArn", "DashboardName"} <= set(outputs)
    assert len({"ApiKeyId", "UserPoolId"} & set(outputs)) <= 1
    # And what `routed-bedrock publish --stack` reads, each naming the policy's AppConfig resource
    resources = json.loads((assembly / f"{STACK}.template.json").read_text())["Resources"]
    kinds = {
        "PolicyApplicationId": "AWS::AppConfig::Application",
        "PolicyEnvironmentId": "AWS::AppConfig::Environment",
        "PolicyProfileId": "AWS::AppConfig::ConfigurationProfile",
        "PolicyDeploymentStrategyId": "AWS::AppConfig::DeploymentStrategy",
    }
    assert set(kinds) == set(STACK_OUTPUTS.values())
    for key, kind in kinds.items():
        value = outputs[key]["Value"]
        if isinstance(value, str):  # a predefined deployment strategy's id
            assert key == "PolicyDeploymentStrategyId" and value.startswith("AppConfig."), value
            continue
        ref = value.get("Ref") or value.get("Fn::GetAtt", [None])[0]
        assert resources[ref]["Type"] == kind, key


def test_alarm_topic_is_encrypted_and_wired(assembly):
    template = json.loads((assembly / f"{STACK}.template.json").read_text())
    resources = template["Resources"]
    [topic_id] = [key for key, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
    assert "KmsMasterKeyId" in resources[topic_id]["Properties"]
    alarms = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    # The construct's defaults: six rollback-or-health alarms, the budget alarm and the state-store alarm, with the
    # balanced canary's four variant alarms; the Step Functions orchestration adds the tasks function's errors and
    # throttles and the failed executions
    sfn = any(r["Type"] == "AWS::StepFunctions::StateMachine" for r in resources.values())
    assert len(alarms) == (17 if sfn else 14)
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for a in alarms)


def test_alarm_topic_policy_lets_cloudwatch_of_this_account_publish(assembly):
    # enforce_ssl's topic policy replaces SNS's default one: without an Allow, CloudWatch cannot publish.
    template = json.loads((assembly / f"{STACK}.template.json").read_text())
    [topic_id] = [key for key, r in template["Resources"].items() if r["Type"] == "AWS::SNS::Topic"]
    [topic_policy] = [r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    assert topic_policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    statements = topic_policy["Properties"]["PolicyDocument"]["Statement"]
    [allow] = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Resource"] == {"Ref": topic_id}
    # The stack's account: a token in an environment-agnostic stack, the literal when the environment is pinned
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] in ({"Ref": "AWS::AccountId"}, "123456789012")
    source_arn = json.dumps(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert ":cloudwatch:" in source_arn and ":alarm:*" in source_arn
    # And the transport rule still denies plain HTTP
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_reference_app_leaves_the_account_cloudwatch_role_alone(assembly):
    template = json.loads((assembly / f"{STACK}.template.json").read_text())
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGateway::Account"]


def deployment_strategy(app_module: ModuleType, outdir: Path, **context: str) -> str:
    template = json.loads((synth_reference(app_module, outdir, **context) / f"{STACK}.template.json").read_text())
    [deployment] = [r for r in template["Resources"].values() if r["Type"] == "AWS::AppConfig::Deployment"]
    strategy: str = deployment["Properties"]["DeploymentStrategyId"]
    return strategy


def test_policy_deployment_is_a_canary_unless_context_asks_all_at_once(app_module, tmp_path):
    assert deployment_strategy(app_module, tmp_path / "default") == "AppConfig.Canary10Percent20Minutes"
    # all-at-once is a strategy of the stack's own with no bake (AppConfig's AllAtOnce bakes 10 minutes)
    context = {"routed-bedrock:policy-deployment": "all-at-once"}
    outdir = tmp_path / "dev"
    template = json.loads((synth_reference(app_module, outdir, **context) / f"{STACK}.template.json").read_text())
    [(strategy_id, strategy)] = [
        (key, r) for key, r in template["Resources"].items() if r["Type"] == "AWS::AppConfig::DeploymentStrategy"
    ]
    assert strategy["Properties"]["GrowthFactor"] == 100
    assert strategy["Properties"]["DeploymentDurationInMinutes"] == 0
    assert strategy["Properties"]["FinalBakeTimeInMinutes"] == 0
    [deployment] = [r for r in template["Resources"].values() if r["Type"] == "AWS::AppConfig::Deployment"]
    assert deployment["Properties"]["DeploymentStrategyId"] == {"Ref": strategy_id}


def test_rejects_an_unknown_policy_deployment(app_module, tmp_path):
    app = cdk.App(outdir=str(tmp_path), context={"routed-bedrock:policy-deployment": "big-bang"})
    with pytest.raises(ValueError, match="policy-deployment 'big-bang' must be one of canary, all-at-once"):
        app_module.build_app(app)


def test_nag_blocks_synthesis_on_an_unacknowledged_finding(app_module, tmp_path):
    # Given the reference app plus a bucket that breaks AwsSolutions rules (no SSL enforcement, no access logs)
    app = cdk.App(outdir=str(tmp_path))
    app_module.build_app(app)
    stack = next(child for child in app.node.children if isinstance(child, cdk.Stack))
    s3.Bucket(stack, "Leaky")
    # When synthesized, Then cdk-nag reports it and synthesis fails
    with pytest.raises(Exception, match=r"(?i)validation"):
        app.synth()


def test_rejects_an_unknown_auth_mode(app_module, tmp_path):
    app = cdk.App(outdir=str(tmp_path), context={"routed-bedrock:auth": "open-sesame"})
    with pytest.raises(
        ValueError, match="routed-bedrock:auth 'open-sesame' must be one of api-key, iam, cognito, none"
    ):
        app_module.build_app(app)


def test_rejects_an_account_without_a_region(app_module, tmp_path):
    app = cdk.App(outdir=str(tmp_path), context={"account": "123456789012"})
    with pytest.raises(ValueError, match="context account '123456789012' and region 'None' must be given together"):
        app_module.build_app(app)


def test_cdk_json_runs_the_app_with_the_shipped_policy_and_the_safe_default(repo_root):
    cdk_json = json.loads((repo_root / "cdk.json").read_text())
    assert cdk_json["app"] == ".venv/bin/python app.py"  # the venv `make setup` creates
    context = cdk_json["context"]
    assert (repo_root / context["routed-bedrock:policy-file"]).is_file()
    assert context["routed-bedrock:auth"] == "api-key"
    assert context["routed-bedrock:policy-deployment"] == "canary"
    assert context["@aws-cdk/aws-lambda:recognizeLayerVersion"] is True  # the recommended feature flags are set
    assert sum(key.startswith("@aws-cdk") for key in context) > 50


def test_orchestration_comes_from_context(app_module, tmp_path):
    # Given the context asking for the Step Functions orchestration
    outdir = synth_reference(app_module, tmp_path, **{"routed-bedrock:orchestration": "step-functions"})
    template = json.loads((outdir / f"{STACK}.template.json").read_text())
    # Then the stack has the Express state machine, which the default stack does not
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert [m["Properties"]["StateMachineType"] for m in machines] == ["EXPRESS"]


def test_rejects_an_unknown_orchestration(app_module, tmp_path):
    app = cdk.App(outdir=str(tmp_path), context={"routed-bedrock:orchestration": "airflow"})
    with pytest.raises(
        ValueError, match="routed-bedrock:orchestration 'airflow' must be one of lambda, step-functions"
    ):
        app_module.build_app(app)
