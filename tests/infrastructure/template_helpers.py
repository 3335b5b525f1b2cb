"""Helpers shared by the template tests: synthesize once, then read resources without pinning logical IDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import aws_cdk as cdk
from aws_cdk.assertions import Template

from cdk_app import RoutedBedrockEndpoint


class Synthesized(NamedTuple):
    template: Template
    endpoint: RoutedBedrockEndpoint
    outdir: Path
    stack_name: str


def synthesize(outdir: Path, stack_name: str, build: Any, env: cdk.Environment | None = None) -> Synthesized:
    """Synthesize once and read the template from the cloud assembly (no second synthesis)."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, stack_name, env=env)
    endpoint = build(stack)
    assembly = app.synth()
    template = Template.from_json(assembly.get_stack_by_name(stack_name).template)
    return Synthesized(template, endpoint, outdir, stack_name)


def resolve_arn(value: Any) -> str:
    """Render an ``Fn::Join`` of literal parts and refs as a readable ARN: ``arn:{AWS::Partition}:...``."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else "{" + part["Ref"] + "}" for part in parts)


def all_statements(template: Template) -> list[dict[str, Any]]:
    """Every statement of every IAM policy in the template."""
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def statements(template: Template, sid: str) -> list[dict[str, Any]]:
    return [statement for statement in all_statements(template) if statement.get("Sid") == sid]


def logical_id(template: Template, resource_type: str, path_fragment: str = "") -> str:
    matches = [key for key in template.find_resources(resource_type) if path_fragment in key]
    assert len(matches) == 1, f"{resource_type} {path_fragment}: {matches}"
    return matches[0]


def alarms_by_description(template: Template) -> dict[str, dict[str, Any]]:
    return {
        alarm["Properties"]["AlarmDescription"].split(" >= ")[0]: alarm
        for alarm in template.find_resources("AWS::CloudWatch::Alarm").values()
    }


def methods(template: Template) -> dict[tuple[str | None, str], dict[str, Any]]:
    """Every API method's properties by (its resource's path part, HTTP method)."""
    resources = template.to_json()["Resources"]
    paths = {k: r["Properties"]["PathPart"] for k, r in resources.items() if r["Type"] == "AWS::ApiGateway::Resource"}
    return {
        (paths.get(r["Properties"]["ResourceId"].get("Ref")), r["Properties"]["HttpMethod"]): r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGateway::Method"
    }


def function(template: Template, fragment: str) -> dict[str, Any]:
    """The one Lambda function whose logical ID contains ``fragment``."""
    return template.find_resources("AWS::Lambda::Function")[logical_id(template, "AWS::Lambda::Function", fragment)]
