"""``routed-bedrock publish`` against botocore's Stubber (moto has no AppConfig deployments): the diff, a
followed deployment to completion and to rollback, and bad input that never reaches AppConfig."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from lambdas.router.policy import DEFAULT_POLICY_PATH
from routed_bedrock import cli
from routed_bedrock.publish import EXIT_ROLLED_BACK, EXIT_STOPPED_FOLLOWING, Target, follow

APP, ENV, PROFILE, STRATEGY = "app1234", "env5678", "prof901", "strat23"
IDS = ["--application", APP, "--environment", ENV, "--profile", PROFILE, "--strategy", STRATEGY]
ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:Llm-FallbackRateAlarm"
DOCUMENT: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
SESSION = botocore.session.get_session()  # one session: its service models load once


def rendered(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode("utf-8")


def changed_document() -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    document["policy_version"] = "2026-12-02.1"
    document["resilience"]["max_attempts"] = 6
    return document


class Clients:
    """Stubbed botocore clients, one per service, handed to the command instead of real ones."""

    def __init__(self) -> None:
        session = SESSION
        options = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "y"}
        self.clients = {
            name: session.create_client(name, **options) for name in ("appconfig", "cloudformation", "cloudwatch")
        }
        self.appconfig = self.clients["appconfig"]
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}
        for stub in self.stubs.values():
            stub.activate()
        self.made: list[str] = []

    def __call__(self, service: str) -> Any:
        self.made.append(service)
        return self.clients[service]

    def expect(self, service: str, operation: str, response: dict[str, Any], params: Any = None) -> None:
        self.stubs[service].add_response(operation, response, params)

    def refuse(self, service: str, operation: str, code: str, message: str) -> None:
        self.stubs[service].add_client_error(operation, service_error_code=code, service_message=message)

    def done(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


@pytest.fixture
def clients() -> Clients:
    return Clients()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(changed_document()), encoding="utf-8")
    return path


def expect_deployed(clients: Clients, document: dict[str, Any] | None, *, number: int = 3, version: int = 2) -> None:
    """The environment's deployments: an older rolled-back one, and the complete one serving ``document``."""
    clients.expect(
        "appconfig",
        "list_deployments",
        {
            "Items": [
                {"DeploymentNumber": number - 1, "State": "ROLLED_BACK", "ConfigurationVersion": "9"},
                {"DeploymentNumber": number, "State": "COMPLETE", "ConfigurationVersion": str(version)},
            ]
        },
        {"ApplicationId": APP, "EnvironmentId": ENV},
    )
    if document is None:
        return
    clients.expect(
        "appconfig",
        "get_deployment",
        {"ConfigurationProfileId": PROFILE, "ConfigurationVersion": str(version), "State": "COMPLETE"},
        {"ApplicationId": APP, "EnvironmentId": ENV, "DeploymentNumber": number},
    )
    content = rendered(document)
    clients.expect(
        "appconfig",
        "get_hosted_configuration_version",
        {"VersionNumber": version, "Content": StreamingBody(io.BytesIO(content), len(content))},
        {"ApplicationId": APP, "ConfigurationProfileId": PROFILE, "VersionNumber": version},
    )


def expect_lock(clients: Clients, latest: int = 2) -> None:
    """The profile's versions, read before the diff is shown (the optimistic lock of the version to create)."""
    clients.expect(
        "appconfig",
        "list_hosted_configuration_versions",
        {"Items": [{"VersionNumber": 1}, {"VersionNumber": latest}]},
        {"ApplicationId": APP, "ConfigurationProfileId": PROFILE},
    )


def expect_publish(
    clients: Clients,
    *,
    latest: int = 2,
    created: int = 3,
    deployment: int = 4,
    label: str | None = "2026-12-02.1",
    content: bytes | None = None,
) -> None:
    clients.expect(
        "appconfig",
        "create_hosted_configuration_version",
        {"VersionNumber": created},
        {
            "ApplicationId": APP,
            "ConfigurationProfileId": PROFILE,
            "Content": content if content is not None else rendered(changed_document()),
            "ContentType": "application/json",
            "Description": ANY,
            "LatestVersionNumber": latest,
            **({"VersionLabel": label} if label else {}),
        },
    )
    expect_start(clients, created=created, deployment=deployment)


def expect_start(clients: Clients, *, created: int = 3, deployment: int = 4) -> None:
    clients.expect(
        "appconfig",
        "start_deployment",
        {"DeploymentNumber": deployment, "State": "DEPLOYING"},
        {
            "ApplicationId": APP,
            "EnvironmentId": ENV,
            "DeploymentStrategyId": STRATEGY,
            "ConfigurationProfileId": PROFILE,
            "ConfigurationVersion": str(created),
            "Description": ANY,
        },
    )


def expect_progress(clients: Clients, states: list[tuple[str, float]], *, deployment: int = 4, **last: Any) -> None:
    for index, (state, percent) in enumerate(states):
        response: dict[str, Any] = {"State": state, "ConfigurationVersion": "3"}
        if percent:  # AppConfig's shape: at least 1 when present
            response["PercentageComplete"] = percent
        if index == len(states) - 1:
            response.update(last)
        clients.expect(
            "appconfig",
            "get_deployment",
            response,
            {"ApplicationId": APP, "EnvironmentId": ENV, "DeploymentNumber": deployment},
        )


def run(clients: Clients, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = cli._parser()
    args = parser.parse_args(argv)
    out = io.StringIO()
    code = args.run(args, clients=clients, out=out)
    return code, out.getvalue(), capsys.readouterr().err


# --- dry run and diff ---------------------------------------------------------------------------------------


def test_a_dry_run_prints_the_diff_and_changes_nothing(clients, policy_file, capsys):
    expect_deployed(clients, DOCUMENT)
    code, out, err = run(clients, ["publish", "--policy", str(policy_file), *IDS, "--dry-run"], capsys)
    assert code == 0, err
    assert "--- deployed (version 2)" in out
    assert f"+++ {policy_file} (2026-12-02.1)" in out
    assert '-    "max_attempts": 8,' in out and '+    "max_attempts": 6,' in out
    assert f'-  "policy_version": "{DOCUMENT["policy_version"]}",' in out
    assert "dry run" in out and "nothing published" in out
    clients.done()  # no version created, no deployment started


def test_the_deployed_file_itself_is_no_change(clients, tmp_path, capsys):
    same = tmp_path / "same.json"
    same.write_text(json.dumps(DOCUMENT), encoding="utf-8")
    expect_deployed(clients, DOCUMENT)
    expect_lock(clients)
    code, out, _ = run(clients, ["publish", "--policy", str(same), *IDS], capsys)
    assert code == 0
    assert out.startswith("no change")
    clients.done()


# --- a publish followed to its end -------------------------------------------------------------------------


def test_a_publish_is_followed_to_completion(clients, policy_file, capsys, monkeypatch):
    monkeypatch.setattr("routed_bedrock.publish.time.sleep", lambda _s: None)
    expect_deployed(clients, DOCUMENT)
    expect_lock(clients)
    expect_publish(clients)
    expect_progress(clients, [("DEPLOYING", 0.0), ("DEPLOYING", 0.0), ("DEPLOYING", 50.0), ("BAKING", 100.0)])
    expect_progress(clients, [("COMPLETE", 100.0)])
    code, out, err = run(clients, ["publish", "--policy", str(policy_file), *IDS, "--poll", "1"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    progress = [line for line in lines if line.startswith("deployment 4: ")]
    # One line per change, not per poll
    assert [line.split(" (")[0] for line in progress] == [
        "deployment 4: DEPLOYING 0%",
        "deployment 4: DEPLOYING 50%",
        "deployment 4: BAKING 100%",
        "deployment 4: COMPLETE 100%",
        "deployment 4: complete, version 3",
    ]
    assert "deployment 4 started with strategy strat23" in out
    clients.done()


def test_a_rollback_is_exit_1_naming_the_alarm(clients, policy_file, capsys, monkeypatch):
    monkeypatch.setattr("routed_bedrock.publish.time.sleep", lambda _s: None)
    expect_deployed(clients, DOCUMENT)
    expect_lock(clients)
    expect_publish(clients)
    event_log = [
        {"EventType": "ROLLBACK_COMPLETED", "TriggeredBy": "APPCONFIG", "Description": "Rollback completed"},
        {"EventType": "ROLLBACK_STARTED", "TriggeredBy": "CLOUDWATCH_ALARM", "Description": f"Alarm: {ALARM}"},
        {"EventType": "DEPLOYMENT_STARTED", "TriggeredBy": "USER", "Description": "Deployment started"},
    ]
    expect_progress(clients, [("DEPLOYING", 10.0), ("ROLLING_BACK", 10.0), ("ROLLED_BACK", 0.0)], EventLog=event_log)
    clients.expect(
        "cloudwatch",
        "describe_alarms",
        {"MetricAlarms": [], "CompositeAlarms": []},
        {"ChildrenOfAlarmName": "Llm-FallbackRateAlarm", "StateValue": "ALARM"},
    )
    code, out, _ = run(clients, ["publish", "--policy", str(policy_file), *IDS], capsys)
    assert code == EXIT_ROLLED_BACK
    assert out.splitlines()[-1] == f"deployment 4: rolled back: the alarm went off: Alarm: {ALARM}"
    clients.done()


def test_a_rollback_by_the_composite_alarm_names_its_children_in_alarm(clients, policy_file, capsys, monkeypatch):
    monkeypatch.setattr("routed_bedrock.publish.time.sleep", lambda _s: None)
    composite = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:Llm-AlarmsPolicyRollbackAlarm-ABC"
    expect_deployed(clients, DOCUMENT)
    expect_lock(clients)
    expect_publish(clients)
    event = {"EventType": "ROLLBACK_STARTED", "TriggeredBy": "CLOUDWATCH_ALARM", "Description": f"Alarm: {composite}"}
    expect_progress(clients, [("ROLLED_BACK", 0.0)], EventLog=[event])
    child = {"AlarmName": "Llm-AlarmsVariantBalancedNovaProFailureRate-XYZ", "StateValue": "ALARM"}
    clients.expect(
        "cloudwatch",
        "describe_alarms",
        {"MetricAlarms": [child], "CompositeAlarms": []},
        {"ChildrenOfAlarmName": "Llm-AlarmsPolicyRollbackAlarm-ABC", "StateValue": "ALARM"},
    )
    code, out, _ = run(clients, ["publish", "--policy", str(policy_file), *IDS], capsys)
    assert code == EXIT_ROLLED_BACK
    assert out.splitlines()[-1].endswith(
        "(of its alarms, in ALARM now: Llm-AlarmsVariantBalancedNovaProFailureRate-XYZ)"
    )
    clients.done()


def test_a_refused_deployment_names_the_version_it_left(clients, policy_file, capsys):
    expect_deployed(clients, DOCUMENT)
    expect_lock(clients)
    clients.expect("appconfig", "create_hosted_configuration_version", {"VersionNumber": 3})
    clients.refuse("appconfig", "start_deployment", "BadRequestException", "validator: the content is invalid")
    code, _, err = run(clients, ["publish", "--policy", str(policy_file), *IDS], capsys)
    assert code == 2
    assert "version 3 was created but AppConfig refused to deploy it: BadRequestException" in err
    assert "delete-hosted-configuration-version" in err and "--version-number 3" in err
    clients.done()


def test_a_digits_only_policy_version_gets_no_label(clients, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("routed_bedrock.publish.time.sleep", lambda _s: None)
    document = changed_document()
    document["policy_version"] = "20261202"
    path = tmp_path / "digits.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    expect_deployed(clients, DOCUMENT)
    expect_lock(clients)
    expect_publish(clients, label=None, content=rendered(document))  # AppConfig refuses an all-digit label
    expect_progress(clients, [("COMPLETE", 100.0)])
    code, _, err = run(clients, ["publish", "--policy", str(path), *IDS], capsys)
    assert code == 0, err
    clients.done()


def test_the_deployed_version_is_found_past_other_profiles_and_pages(clients, policy_file, capsys):
    clients.expect(
        "appconfig",
        "list_deployments",
        {"Items": [{"DeploymentNumber": 9, "State": "COMPLETE"}], "NextToken": "page-2"},
        {"ApplicationId": APP, "EnvironmentId": ENV},
    )
    clients.expect(  # the newest complete deployment is another profile's
        "appconfig",
        "get_deployment",
        {"ConfigurationProfileId": "other12", "ConfigurationVersion": "5", "State": "COMPLETE"},
        {"ApplicationId": APP, "EnvironmentId": ENV, "DeploymentNumber": 9},
    )
    clients.expect(
        "appconfig",
        "list_deployments",
        {"Items": [{"DeploymentNumber": 8, "State": "COMPLETE"}]},
        {"ApplicationId": APP, "EnvironmentId": ENV, "NextToken": "page-2"},
    )
    clients.expect(
        "appconfig",
        "get_deployment",
        {"ConfigurationProfileId": PROFILE, "ConfigurationVersion": "2", "State": "COMPLETE"},
        {"ApplicationId": APP, "EnvironmentId": ENV, "DeploymentNumber": 8},
    )
    content = rendered(DOCUMENT)
    clients.expect(
        "appconfig",
        "get_hosted_configuration_version",
        {"VersionNumber": 2, "Content": StreamingBody(io.BytesIO(content), len(content))},
    )
    code, out, _ = run(clients, ["publish", "--policy", str(policy_file), *IDS, "--dry-run"], capsys)
    assert code == 0
    assert "--- deployed (version 2)" in out
    clients.done()


def test_the_lock_is_the_highest_version_over_every_page(clients, policy_file, capsys, monkeypatch):
    monkeypatch.setattr("routed_bedrock.publish.time.sleep", lambda _s: None)
    expect_deployed(clients, DOCUMENT)
    clients.expect(
        "appconfig",
        "list_hosted_configuration_versions",
        {"Items": [{"VersionNumber": 7}, {"VersionNumber": 2}], "NextToken": "more"},
    )
    clients.expect("appconfig", "list_hosted_configuration_versions", {"Items": [{"VersionNumber": 5}]})
    expect_publish(clients, latest=7, created=8)
    expect_progress(clients, [("COMPLETE", 100.0)])
    code, _, err = run(clients, ["publish", "--policy", str(policy_file), *IDS], capsys)
    assert code == 0, err
    clients.done()


def test_the_ids_can_come_from_the_stacks_outputs(clients, policy_file, capsys):
    outputs = [
        {"OutputKey": "PolicyApplicationId", "OutputValue": APP},
        {"OutputKey": "PolicyEnvironmentId", "OutputValue": ENV},
        {"OutputKey": "PolicyProfileId", "OutputValue": PROFILE},
        {"OutputKey": "PolicyDeploymentStrategyId", "OutputValue": STRATEGY},
        {"OutputKey": "Url", "OutputValue": "https://example.execute-api.us-east-1.amazonaws.com/prod/"},
    ]
    stack = {"StackName": "RoutedBedrock", "CreationTime": "2026-12-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE"}
    clients.expect(
        "cloudformation",
        "describe_stacks",
        {"Stacks": [{**stack, "Outputs": outputs}]},
        {"StackName": "RoutedBedrock"},
    )
    expect_deployed(clients, DOCUMENT)
    expect_template(clients, DOCUMENT)
    code, out, err = run(
        clients, ["publish", "--policy", str(policy_file), "--stack", "RoutedBedrock", "--dry-run"], capsys
    )
    assert code == 0, err
    assert '+    "max_attempts": 6,' in out
    assert "warning: " not in out
    clients.done()


def expect_template(clients: Clients, document: dict[str, Any]) -> None:
    """The stack's template, with the policy it was deployed with as its hosted configuration version."""
    version = {
        "Type": "AWS::AppConfig::HostedConfigurationVersion",
        "Properties": {"Content": rendered(document).decode()},
    }
    clients.expect(
        "cloudformation",
        "get_template",
        {"TemplateBody": json.dumps({"Resources": {"LlmPolicy": version}})},
        {"StackName": "RoutedBedrock", "TemplateStage": "Original"},
    )


def expect_stack(clients: Clients) -> None:
    outputs = [
        {"OutputKey": "PolicyApplicationId", "OutputValue": APP},
        {"OutputKey": "PolicyEnvironmentId", "OutputValue": ENV},
        {"OutputKey": "PolicyProfileId", "OutputValue": PROFILE},
        {"OutputKey": "PolicyDeploymentStrategyId", "OutputValue": STRATEGY},
    ]
    stack = {"StackName": "RoutedBedrock", "CreationTime": "2026-12-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE"}
    clients.expect("cloudformation", "describe_stacks", {"Stacks": [{**stack, "Outputs": outputs}]})


def test_a_variant_the_stack_was_not_deployed_with_is_warned_about(clients, tmp_path, capsys):
    # Given the stack deployed with the shipped policy, and a published version that already canaries deep
    deployed = changed_document()
    deployed["routes"]["deep"]["candidates"] = [
        {"model": "claude-sonnet-4-5", "weight": 95},
        {"model": "nova-pro", "weight": 5},
    ]
    new = copy.deepcopy(deployed)
    new["routes"]["deep"]["candidates"][1]["weight"] = 25  # the next promotion step
    path = tmp_path / "promote.json"
    path.write_text(json.dumps(new), encoding="utf-8")
    expect_stack(clients)
    expect_deployed(clients, deployed)
    expect_template(clients, DOCUMENT)
    code, out, _ = run(clients, ["publish", "--policy", str(path), "--stack", "RoutedBedrock", "--dry-run"], capsys)
    assert code == 0
    # Then the diff is the weight, and the warning says the canary's variants have no alarms: the stack's policy
    # (not the published version) is what the alarms were made from
    assert '-          "weight": 5' in out and '+          "weight": 25' in out
    for model in ("claude-sonnet-4-5", "nova-pro"):
        expected = f"warning: canary deep, variant {model} is not in the policy stack RoutedBedrock was deployed with"
        assert expected in out
    clients.done()


def test_a_first_publish_shows_every_line_as_new(clients, policy_file, capsys):
    clients.expect("appconfig", "list_deployments", {"Items": []}, {"ApplicationId": APP, "EnvironmentId": ENV})
    code, out, _ = run(clients, ["publish", "--policy", str(policy_file), *IDS, "--dry-run"], capsys)
    assert code == 0
    assert "--- deployed (none)" in out
    assert not [line for line in out.splitlines() if line.startswith("-") and not line.startswith("---")]
    clients.done()


def test_following_stops_at_the_timeout_and_says_how_to_watch(capsys):
    clients = Clients()
    expect_progress(clients, [("DEPLOYING", 10.0), ("DEPLOYING", 20.0)])
    clock = iter([0.0, 0.0, 10.0, 10.0, 61.0, 61.0])
    out = io.StringIO()
    target = Target(APP, ENV, PROFILE, STRATEGY)
    code = follow(
        clients.appconfig, target, 4, out, poll_s=1, timeout_s=60, clock=lambda: next(clock), sleep=lambda _s: None
    )
    assert code == EXIT_STOPPED_FOLLOWING
    assert "it goes on in AppConfig: aws appconfig get-deployment" in out.getvalue()


# --- what is refused before anything changes ---------------------------------------------------------------


def test_an_invalid_policy_never_reaches_appconfig(clients, tmp_path, capsys):
    bad = changed_document()
    bad["resilience"]["max_attempts"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    code, _, err = run(clients, ["publish", "--policy", str(path), *IDS], capsys)
    assert code == 2
    assert "resilience.max_attempts" in err
    assert clients.made == []  # no client was even made


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "is not JSON"), ("[1, 2]", "must hold a JSON object"), ("", "is not JSON")],
)
def test_an_unreadable_policy_is_a_usage_error(clients, tmp_path, capsys, text, message):
    path = tmp_path / "p.json"
    path.write_text(text, encoding="utf-8")
    code, _, err = run(clients, ["publish", "--policy", str(path), *IDS], capsys)
    assert (code, clients.made) == (2, [])
    assert message in err


def test_a_missing_file_is_a_usage_error(clients, tmp_path, capsys):
    code, _, err = run(clients, ["publish", "--policy", str(tmp_path / "absent.json"), *IDS], capsys)
    assert code == 2 and "cannot read" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--application", APP], "--environment, --profile, --strategy"),
        (["--stack", "S", "--application", APP], "not both"),
    ],
)
def test_the_target_must_be_named_one_way(clients, policy_file, capsys, argv, message):
    code, _, err = run(clients, ["publish", "--policy", str(policy_file), *argv], capsys)
    assert code == 2 and message in err
    assert clients.made == []


def expect_in_progress(clients: Clients) -> None:
    clients.expect(
        "appconfig",
        "list_deployments",
        {"Items": [{"DeploymentNumber": 7, "State": "BAKING"}, {"DeploymentNumber": 6, "State": "COMPLETE"}]},
    )
    clients.expect("appconfig", "get_deployment", {"ConfigurationProfileId": PROFILE, "ConfigurationVersion": "2"})
    content = rendered(DOCUMENT)
    clients.expect(
        "appconfig",
        "get_hosted_configuration_version",
        {"VersionNumber": 2, "Content": StreamingBody(io.BytesIO(content), len(content))},
    )


def test_a_deployment_in_progress_is_refused(clients, policy_file, capsys):
    expect_in_progress(clients)
    expect_lock(clients)
    code, _, err = run(clients, ["publish", "--policy", str(policy_file), *IDS], capsys)
    assert code == 2
    assert "deployment 7 is still BAKING" in err
    clients.done()  # no version created


def test_a_dry_run_during_a_deployment_still_shows_the_diff(clients, policy_file, capsys):
    expect_in_progress(clients)
    code, out, _ = run(clients, ["publish", "--policy", str(policy_file), *IDS, "--dry-run"], capsys)
    assert code == 0
    assert '+    "max_attempts": 6,' in out
    assert "note: deployment 7 is still BAKING" in out
    clients.done()


def test_a_stack_without_the_outputs_is_refused(clients, policy_file, capsys):
    stack = {"StackName": "Mine", "CreationTime": "2026-12-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE"}
    clients.expect("cloudformation", "describe_stacks", {"Stacks": [{**stack, "Outputs": []}]})
    code, _, err = run(clients, ["publish", "--policy", str(policy_file), "--stack", "Mine"], capsys)
    assert code == 2
    assert "has no output PolicyApplicationId" in err


def test_appconfigs_refusal_is_reported_and_nothing_deployed(clients, policy_file, capsys):
    expect_deployed(clients, DOCUMENT)
    expect_lock(clients)
    clients.refuse(
        "appconfig", "create_hosted_configuration_version", "ConflictException", "LatestVersionNumber is stale"
    )
    code, _, err = run(clients, ["publish", "--policy", str(policy_file), *IDS], capsys)
    assert code == 2
    assert "ConflictException: LatestVersionNumber is stale" in err
    clients.done()  # start_deployment was never called


def test_an_unknown_environment_is_reported(clients, policy_file, capsys):
    clients.refuse("appconfig", "list_deployments", "ResourceNotFoundException", "Environment env5678 not found")
    code, _, err = run(clients, ["publish", "--policy", str(policy_file), *IDS, "--dry-run"], capsys)
    assert code == 2
    assert "ResourceNotFoundException: Environment env5678 not found" in err


def test_a_model_the_deployed_policy_lacks_is_warned_about(clients, tmp_path, capsys):
    document = changed_document()
    document["models"]["nova-premier"] = {**document["models"]["nova-pro"], "model_id": "us.amazon.nova-premier-v1:0"}
    path = tmp_path / "new-model.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    expect_deployed(clients, DOCUMENT)
    code, out, _ = run(clients, ["publish", "--policy", str(path), *IDS, "--dry-run"], capsys)
    assert code == 0
    regions = DOCUMENT["models"]["nova-pro"]["regions"]
    for region in regions:  # IAM is per model and region
        assert f"warning: us.amazon.nova-premier-v1:0 in {region} is not in the deployed policy" in out
    assert "cdk deploy" in out


def test_no_warning_when_the_models_are_the_deployed_ones(clients, policy_file, capsys):
    expect_deployed(clients, DOCUMENT)
    _, out, _ = run(clients, ["publish", "--policy", str(policy_file), *IDS, "--dry-run"], capsys)
    assert "warning: " not in out
