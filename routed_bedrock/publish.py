"""``routed-bedrock publish``: a routing policy to AppConfig as safely as a code deploy.

    routed-bedrock publish --policy FILE (--stack NAME | --application ID --environment ID --profile ID
        --strategy ID) [--region R] [--dry-run] [--poll S] [--timeout S]

1. The policy is validated with the schema and the cross-checks the router runs (an invalid policy never
   reaches AppConfig) and rendered as the construct renders it (``json.dumps(document, indent=2)``, under
   AppConfig's 1 MB), so publishing the file a stack was deployed with is "no change".
2. The AppConfig names come from the stack's outputs (``--stack``: ``PolicyApplicationId``,
   ``PolicyEnvironmentId``, ``PolicyProfileId``, ``PolicyDeploymentStrategyId``) or from the flags.
3. The deployed version (the environment's newest complete deployment of this profile) is fetched and the
   difference printed as a unified diff of the JSON. ``--dry-run`` stops there.
4. A hosted configuration version is created (``LatestVersionNumber`` guards against a version someone else
   created meanwhile; its label is the policy's ``policy_version``) and deployed with the strategy; AppConfig
   runs the profile's JSON-schema validator then.
5. The deployment is followed to its end, one progress line per change. Rolled back (an alarm of the
   environment's monitors went off during the rollout or its bake time) is exit 1, naming the alarm.

Exit codes: 0 deployed (or no change, or a dry run); 1 rolled back; 2 bad usage, an invalid policy, a
deployment already in progress, or an AWS error (nothing further is done); 3 stopped following (``--timeout``
or Ctrl-C): the deployment goes on in AppConfig, and the message says how to watch it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lambdas.router.policy import PolicyError, compile_policy
from lambdas.router.variants import variant_groups
from routed_bedrock.cli_support import fail, float_in

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_STOPPED_FOLLOWING = 3
MAX_POLICY_BYTES = 1_048_576
"""AppConfig's hosted configuration store takes configurations of at most 1 MB (as the construct checks)."""
STACK_OUTPUTS = {
    "application": "PolicyApplicationId",
    "environment": "PolicyEnvironmentId",
    "profile": "PolicyProfileId",
    "strategy": "PolicyDeploymentStrategyId",
}
"""The reference stack's outputs that name the policy's AppConfig resources."""
IN_PROGRESS = frozenset({"BAKING", "VALIDATING", "DEPLOYING", "ROLLING_BACK"})
ROLLED_BACK = frozenset({"ROLLED_BACK", "REVERTED"})


class PublishError(Exception):
    """A reason to stop before anything (more) is changed; the message says what and why."""


@dataclass(frozen=True)
class Target:
    """The AppConfig resources a policy is published to."""

    application: str
    environment: str
    profile: str
    strategy: str


@dataclass(frozen=True)
class Deployed:
    """What an environment serves now: its version number and text (None: nothing deployed yet), and a
    deployment still running (``(number, state)``), if one is."""

    version: int | None
    text: str | None
    in_progress: tuple[int, str] | None = None


def policy_text(path: Path) -> tuple[str, str]:
    """The policy as the construct renders it, and its ``policy_version``.

    Raises:
        PublishError: unreadable, not JSON, invalid (the message names the field and value), or over 1 MB.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PublishError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise PublishError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PublishError(f"{path} must hold a JSON object, got {type(document).__name__}")
    try:
        policy = compile_policy(document)
    except PolicyError as exc:
        raise PublishError(f"{path}: {exc}") from None
    text = json.dumps(document, indent=2)
    size = len(text.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        raise PublishError(f"{path} is {size:,} bytes as JSON; AppConfig takes at most {MAX_POLICY_BYTES:,}")
    return text, policy.version


def target_from_stack(cloudformation: Any, stack: str) -> Target:
    """The AppConfig IDs from a stack's outputs."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:
        raise PublishError(f"cannot read stack {stack!r}: {_aws_message(exc)}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stacks[0].get("Outputs") or [])} if stacks else {}
    missing = [key for key in STACK_OUTPUTS.values() if key not in outputs]
    if missing:
        raise PublishError(
            f"stack {stack!r} has no output {', '.join(missing)}: pass --application, --environment, --profile "
            "and --strategy instead"
        )
    return Target(**{field: outputs[key] for field, key in STACK_OUTPUTS.items()})


def deployed_version(appconfig: Any, target: Target) -> Deployed:
    """What the environment serves now: its newest complete deployment of this profile (ListDeployments pages
    come newest first: the walk stops there), and any deployment still running before it.

    Raises:
        PublishError: AppConfig refused a call.
    """
    in_progress: tuple[int, str] | None = None
    try:
        pages = appconfig.get_paginator("list_deployments").paginate(
            ApplicationId=target.application, EnvironmentId=target.environment
        )
        for page in pages:
            for summary in sorted(page.get("Items", []), key=lambda item: item["DeploymentNumber"], reverse=True):
                state = summary.get("State")
                if state in IN_PROGRESS and in_progress is None:
                    in_progress = (int(summary["DeploymentNumber"]), str(state))
                if state != "COMPLETE":
                    continue
                deployment = appconfig.get_deployment(
                    ApplicationId=target.application,
                    EnvironmentId=target.environment,
                    DeploymentNumber=summary["DeploymentNumber"],
                )
                if deployment.get("ConfigurationProfileId") != target.profile:
                    continue  # another profile deployed to the same environment
                version = int(deployment["ConfigurationVersion"])
                return Deployed(version, hosted_text(appconfig, target, version), in_progress)
        return Deployed(None, None, in_progress)
    except Exception as exc:
        raise PublishError(f"cannot read the deployed policy: {_aws_message(exc)}") from None


def hosted_text(appconfig: Any, target: Target, version: int) -> str:
    hosted = appconfig.get_hosted_configuration_version(
        ApplicationId=target.application, ConfigurationProfileId=target.profile, VersionNumber=version
    )
    content = hosted["Content"]
    raw = content.read() if hasattr(content, "read") else content
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def stack_policy(cloudformation: Any, stack: str) -> str | None:
    """The policy the stack was deployed with (its hosted configuration version's content): what the routers'
    IAM and the per-variant alarms were made from. None when the template holds no such version."""
    try:
        body = cloudformation.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    except Exception as exc:
        raise PublishError(f"cannot read stack {stack!r}'s template: {_aws_message(exc)}") from None
    template = json.loads(body) if isinstance(body, str) else body
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") == "AWS::AppConfig::HostedConfigurationVersion":
            content = (resource.get("Properties") or {}).get("Content")
            if isinstance(content, str):
                return content
    return None


def latest_version_number(appconfig: Any, target: Target) -> int | None:
    """The profile's newest hosted version (the optimistic lock for the one about to be created): the highest
    number over every page (the listing's order is not documented)."""
    try:
        pages = appconfig.get_paginator("list_hosted_configuration_versions").paginate(
            ApplicationId=target.application, ConfigurationProfileId=target.profile
        )
        numbers = [int(item["VersionNumber"]) for page in pages for item in page.get("Items", [])]
    except Exception as exc:
        raise PublishError(f"cannot list the profile's versions: {_aws_message(exc)}") from None
    return max(numbers) if numbers else None


def unified_diff(old: str | None, new: str, *, old_name: str, new_name: str) -> list[str]:
    """The change as lines of a unified diff of the pretty-printed JSON (old None: every line is new)."""
    before = _pretty(old).splitlines(keepends=True) if old is not None else []
    after = _pretty(new).splitlines(keepends=True)
    return list(difflib.unified_diff(before, after, fromfile=old_name, tofile=new_name))


def rollout_warnings(baseline: str | None, new: str, *, baseline_name: str) -> list[str]:
    """What the new policy needs that the stack was not deployed with: (model, region) pairs its routers' IAM
    does not allow (their calls are refused and fall back), and canary or A/B variants no alarm watches."""
    if baseline is None:
        return []
    try:
        before = compile_policy(json.loads(baseline), schema_checked=True)
    except (ValueError, PolicyError):
        return [f"{baseline_name} could not be read to compare with"]
    after = compile_policy(json.loads(new), schema_checked=True)
    warnings = []
    allowed = {(spec.model_id, region) for spec in before.models.values() for region in spec.regions}
    for spec in after.models.values():
        for region in spec.regions:
            if (spec.model_id, region) not in allowed:
                warnings.append(
                    f"{spec.model_id} in {region} is not in {baseline_name}: the routers' IAM allows only that "
                    "policy's models and regions, so deploy the stack with this policy first (cdk deploy), or "
                    "those calls are refused and fall back"
                )
    watched = {(g.name, v) for g in variant_groups(before) for v in g.variants}
    for group in variant_groups(after):
        for variant in group.variants:
            if (group.name, variant) not in watched:
                warnings.append(
                    f"{group.kind} {group.name}, variant {variant} is not in {baseline_name}: no per-variant alarm "
                    "watches it (they are made at cdk deploy), so a bad variant rolls nothing back"
                )
    return warnings


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2) + "\n"
    except ValueError:
        return text if text.endswith("\n") else text + "\n"


def publish(appconfig: Any, target: Target, text: str, policy_version: str, *, latest: int | None) -> int:
    """Create the hosted version and start its deployment; the deployment number."""
    label = {"VersionLabel": policy_version[:64]} if any(not c.isdigit() for c in policy_version) else {}
    try:
        created = appconfig.create_hosted_configuration_version(
            ApplicationId=target.application,
            ConfigurationProfileId=target.profile,
            Content=text.encode("utf-8"),
            ContentType="application/json",
            Description=f"routing policy {policy_version} (routed-bedrock publish)"[:1024],
            **({"LatestVersionNumber": latest} if latest is not None else {}),
            **label,
        )
    except Exception as exc:
        raise PublishError(f"AppConfig refused the new version: {_aws_message(exc)}") from None
    version = int(created["VersionNumber"])
    try:
        started = appconfig.start_deployment(
            ApplicationId=target.application,
            EnvironmentId=target.environment,
            DeploymentStrategyId=target.strategy,
            ConfigurationProfileId=target.profile,
            ConfigurationVersion=str(version),
            Description=f"routing policy {policy_version}"[:1024],
        )
    except Exception as exc:
        ids = f"--application-id {target.application} --configuration-profile-id {target.profile}"
        raise PublishError(
            f"version {version} was created but AppConfig refused to deploy it: {_aws_message(exc)}. Deploy it "
            f"later (aws appconfig start-deployment ... --configuration-version {version}) or delete it "
            f"(aws appconfig delete-hosted-configuration-version {ids} --version-number {version})"
        ) from None
    return int(started["DeploymentNumber"])


def follow(
    appconfig: Any,
    target: Target,
    number: int,
    out: TextIO,
    *,
    cloudwatch: Any = None,
    poll_s: float,
    timeout_s: float,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Watch a deployment until it ends; one line per change of state or percentage. The exit code."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    started = clock()
    shown: tuple[str, float] | None = None
    while True:
        try:
            deployment = appconfig.get_deployment(
                ApplicationId=target.application, EnvironmentId=target.environment, DeploymentNumber=number
            )
        except Exception as exc:
            raise PublishError(f"cannot read deployment {number}: {_aws_message(exc)}") from None
        state, percent = deployment.get("State", "?"), float(deployment.get("PercentageComplete") or 0.0)
        if (state, percent) != shown:
            minutes = (clock() - started) / 60
            print(f"deployment {number}: {state} {percent:.0f}% ({minutes:.1f} min)", file=out, flush=True)
            shown = (state, percent)
        if state == "COMPLETE":
            print(f"deployment {number}: complete, version {deployment.get('ConfigurationVersion')}", file=out)
            return EXIT_OK
        if state in ROLLED_BACK:
            print(f"deployment {number}: rolled back: {_rollback_reason(deployment, cloudwatch)}", file=out)
            return EXIT_ROLLED_BACK
        if clock() - started >= timeout_s:
            print(
                f"deployment {number}: still {state} after {timeout_s:g} s; it goes on in AppConfig: "
                f"aws appconfig get-deployment --application-id {target.application} --environment-id "
                f"{target.environment} --deployment-number {number}",
                file=out,
            )
            return EXIT_STOPPED_FOLLOWING
        sleep(poll_s)


ALARM_ARN = re.compile(r"arn:aws[a-z-]*:cloudwatch:[a-z0-9-]+:\d{12}:alarm:[^\s,;\]\)\"']+")


def _rollback_reason(deployment: Mapping[str, Any], cloudwatch: Any = None) -> str:
    """Which alarm (or who) rolled the deployment back, from its event log; for a composite alarm (the
    endpoint's ``PolicyRollbackAlarm``), also its children in ALARM."""
    events = [e for e in deployment.get("EventLog") or [] if e.get("EventType") == "ROLLBACK_STARTED"]
    if not events:
        return "no rollback event in the deployment's log"
    event = events[0]
    triggered_by, description = event.get("TriggeredBy", "?"), event.get("Description", "")
    if triggered_by != "CLOUDWATCH_ALARM":
        return f"triggered by {triggered_by}: {description}"
    reason = f"the alarm went off: {description}"
    arn = ALARM_ARN.search(description)
    if cloudwatch is not None and arn is not None:
        name = arn.group(0).split(":alarm:", 1)[1]
        try:
            found = cloudwatch.describe_alarms(ChildrenOfAlarmName=name, StateValue="ALARM")
        except Exception:  # the reason above still names the alarm
            return reason
        children = [a["AlarmName"] for a in found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])]
        if children:
            reason += f" (of its alarms, in ALARM now: {', '.join(sorted(children))})"
    return reason


def _aws_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', str(exc))}"
    return str(exc)


# --- the command ------------------------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add the ``publish`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "publish",
        help="validate a policy, show its diff against the deployed one, and roll it out through AppConfig",
        description="Validate the policy (schema and cross-checks), show the diff against the version the "
        "AppConfig environment serves, create a hosted configuration version and deploy it with the "
        "deployment strategy, following the rollout to its end. Exit 0: deployed (or no change, or "
        "--dry-run); 1: rolled back by an alarm; 2: bad usage, invalid policy or AWS error; 3: stopped "
        "following (the deployment goes on).",
    )
    parser.add_argument("--policy", type=Path, required=True, metavar="FILE", help="routing policy JSON file")
    parser.add_argument("--stack", metavar="NAME", help="read the AppConfig IDs from this stack's outputs")
    for flag in ("application", "environment", "profile", "strategy"):
        parser.add_argument(f"--{flag}", metavar="ID", help=f"the AppConfig {flag} ID (instead of --stack)")
    parser.add_argument("--region", metavar="REGION", help="AWS region (default: your configuration's)")
    parser.add_argument("--dry-run", action="store_true", help="validate and show the diff; change nothing")
    parser.add_argument("--poll", type=float_in(0, 300, low_allowed=False), default=15.0, metavar="S")
    parser.add_argument(
        "--timeout",
        type=float_in(0, 86_400, low_allowed=False),
        default=7_200.0,
        metavar="S",
        help="stop following after this many seconds (default 7200; the deployment goes on)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, clients: Callable[[str], Any] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    flags = {name: getattr(args, name) for name in STACK_OUTPUTS}
    if args.stack and any(flags.values()):
        return fail("publish", "give --stack or the four ID flags, not both")
    if not args.stack and not all(flags.values()):
        missing = ", ".join(f"--{name}" for name, value in flags.items() if not value)
        return fail("publish", f"name the AppConfig resources: --stack NAME, or {missing}")
    try:
        text, policy_version = policy_text(args.policy)  # before any client: an invalid policy calls nothing
        make = clients or _botocore_clients(args.region)
        cloudformation = make("cloudformation") if args.stack else None
        target = target_from_stack(cloudformation, args.stack) if args.stack else Target(**flags)
        appconfig = make("appconfig")
        deployed = deployed_version(appconfig, target)
        latest = None if args.dry_run else latest_version_number(appconfig, target)  # the lock, before the diff
        old_name = f"deployed (version {deployed.version})" if deployed.version is not None else "deployed (none)"
        diff = unified_diff(deployed.text, text, old_name=old_name, new_name=f"{args.policy} ({policy_version})")
        if not diff:
            print(f"no change: the environment already serves this policy (version {deployed.version})", file=out)
            return EXIT_OK
        out.writelines(diff)
        if cloudformation is not None:
            baseline, baseline_name = (
                stack_policy(cloudformation, args.stack),
                f"the policy stack {args.stack} was deployed with",
            )
        else:
            baseline, baseline_name = deployed.text, "the deployed policy (pass --stack to compare with the stack's)"
        for warning in rollout_warnings(baseline, text, baseline_name=baseline_name):
            print(f"warning: {warning}", file=out)
        running = (
            f"deployment {deployed.in_progress[0]} is still {deployed.in_progress[1]}: AppConfig runs one "
            "deployment at a time per environment; wait for it (or stop it) and publish again"
            if deployed.in_progress is not None
            else None
        )
        if args.dry_run:
            print(f"dry run: {len(diff)} diff lines, nothing published", file=out)
            if running:
                print(f"note: {running}", file=out)
            return EXIT_OK
        if running:
            raise PublishError(running)
        number = publish(appconfig, target, text, policy_version, latest=latest)
        print(f"deployment {number} started with strategy {target.strategy}", file=out, flush=True)
        try:
            return follow(
                appconfig, target, number, out, cloudwatch=make("cloudwatch"), poll_s=args.poll, timeout_s=args.timeout
            )
        except KeyboardInterrupt:
            print(f"stopped following deployment {number}; it goes on in AppConfig", file=out)
            return EXIT_STOPPED_FOLLOWING
    except PublishError as exc:
        return fail("publish", str(exc))


def _botocore_clients(region: str | None) -> Callable[[str], Any]:
    import botocore.session
    from botocore.exceptions import NoCredentialsError, NoRegionError

    session = botocore.session.get_session()

    def make(service: str) -> Any:
        try:
            return session.create_client(service, region_name=region)
        except (NoRegionError, NoCredentialsError) as exc:
            raise PublishError(f"{exc} (pass --region, or configure the AWS CLI)") from None

    return make
