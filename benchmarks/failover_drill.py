"""Failover drill: two local endpoints as two regions behind an emulated Route 53 failover record.

By default it synthesizes the failover reference deployment in-process (``app.py``'s ``build_app`` with the
context of ``failover.example.json``) and reads, from the templates, the settings that decide how fast DNS
moves: each region's HTTPS health check (``RequestInterval``, ``FailureThreshold``, the checker regions) and
the PRIMARY and SECONDARY failover records. The records are aliases, which carry no TTL of their own: Route 53
answers with the alias target's, assumed here to be 60 s (an API Gateway custom domain's); ``--ttl`` overrides
it, as ``--interval`` and ``--threshold`` override the template's, and with ``--no-synth`` all three are given.

Then it starts ``python -m local_endpoint.server`` twice on free ports, "primary" and "secondary", each with
its own Bedrock simulator, and emulates:

- Route 53's health checkers: ``--checkers`` per endpoint (default: one per checker region of the health
  check, 8 when it names none), staggered evenly across one request interval, each calling ``GET /health``
  (connect within 4 s, answer within 2 s, 2xx or 3xx passes). A checker's view turns unhealthy after
  ``FailureThreshold`` consecutive failures and healthy again after as many successes; an endpoint is healthy
  while more than 18% of its checkers see it healthy. The failover record answers the primary while it is
  healthy, else the secondary if that is healthy, else the primary (Route 53 answers the primary when both are
  unhealthy).
- a client: a resolver caching the answer for the TTL, and ``--rate`` ``POST /generate`` requests a second to
  the endpoint the cached answer names.

Timeline: ``--warmup`` seconds of normal traffic; the primary's models go down (``PUT /_sim/faults``
``{"model": "*", "region": "*", "outage": true}`` on the primary's simulator); once the DNS answer is the
secondary and the client has been on it for ``--settle`` seconds, the models recover (``DELETE
/_sim/faults``) and the drill waits for the answer and the client to come back. For each direction it reports
the seconds from the fault (or the recovery) to the first checker seeing it, to the DNS answer moving and to
the client's first request to the new endpoint, and the requests sent in between that failed (not HTTP 200,
or no answer) or were degraded (HTTP 200 with ``"degraded": true``). Then the worst case the settings allow:

    detection <= health cache + probe timeout (1 s) + interval x threshold + one interval (checker stagger)
    unavailability <= detection + TTL (the client's cached answer)

It assumes traffic reaches the failing region (a request no model answers makes ``/health`` probe Bedrock at
once); an idle region is judged only after ``ROUTER_HEALTH_PROBE_INTERVAL_SECONDS``. The calculated and
CloudWatch-alarm health checks of the templates are listed, not emulated.

Every wait is bounded (``--max-wait`` for the whole fault-and-recovery); exit 0 when DNS and the client moved
both ways, 1 when a move did not happen in time, 2 when the drill could not be set up.

    python benchmarks/failover_drill.py [--out failover_drill.json]          # the template's settings: minutes
    python benchmarks/failover_drill.py --no-synth --interval 0.5 --threshold 2 --ttl 0.5 --health-cache 0.2 \\
        --probe-interval 1 --warmup 1 --rate 10 --checkers 3                  # quick: well under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambdas.router.health import DEFAULT_CACHE_S, DEFAULT_PROBE_INTERVAL_S, DEFAULT_PROBE_TIMEOUT_S  # noqa: E402

DEFAULT_CONTEXT_FILE = ROOT / "failover.example.json"
PRIMARY, SECONDARY = "primary", "secondary"
ROLES = {"PRIMARY": PRIMARY, "SECONDARY": SECONDARY}
ENDPOINT_CHECK_TYPES = ("HTTPS", "HTTPS_STR_MATCH", "HTTP", "HTTP_STR_MATCH")
# CloudFormation's defaults for an AWS::Route53::HealthCheck that leaves them out.
CFN_DEFAULT_INTERVAL_S = 30.0
CFN_DEFAULT_FAILURE_THRESHOLD = 3
ROUTE53_CHECKER_REGIONS = 8  # the checker regions a health check uses when it names none
ALIAS_TTL_ASSUMED_S = 60.0  # an alias record answers with its target's TTL: an API Gateway domain's, assumed
HEALTHY_FRACTION = 0.18  # Route 53: healthy while more than 18% of its checkers see it healthy
CONNECT_TIMEOUT_S = 4.0  # Route 53: a TCP connection within 4 s ...
ANSWER_TIMEOUT_S = 2.0  # ... and a 2xx or 3xx status within 2 s of connecting
CLIENT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
GENERATE_BODY = {"prompt": "What is 2 + 2?"}
OUTAGE = {"model": "*", "region": "*", "outage": True}
STRIPPED_ENV = ("AWS_", "POWERTOOLS_", "ROUTER_", "BEDROCK_")
POLL_S = 0.05


class DrillError(Exception):
    """The drill cannot run as asked (a missing file, a template without the expected resources, a bad flag)."""


# --- settings from the synthesized templates ------------------------------------------------------------------


@dataclass(frozen=True)
class RecordSettings:
    """What one failover record and its endpoint health check say, as read from a template.

    Attributes:
        role: ``primary`` or ``secondary`` (the record's ``Failover``).
        template: the template's file name.
        set_identifier: the record's ``SetIdentifier``.
        interval_s: the HTTPS health check's ``RequestInterval``.
        failure_threshold: its ``FailureThreshold``.
        checker_regions: how many checker regions it names (None: all of them).
        resource_path: its ``ResourcePath``, intrinsics shown as ``${...}``.
        health_check: the HTTPS health check's logical id.
        ttl_s: the record's ``TTL``; None for an alias record (Route 53 uses the target's).
        alias_target: what the alias points at, for the printout (None: not an alias).
        notes: how the health check was found, and the other health checks (calculated, CloudWatch alarm).
    """

    role: str
    template: str
    set_identifier: str | None
    interval_s: float
    failure_threshold: int
    checker_regions: int | None
    resource_path: str
    health_check: str
    ttl_s: float | None
    alias_target: str | None
    notes: tuple[str, ...] = ()


def _show(value: Any) -> str:
    """A template value as text: Fn::Join flattened, Ref and Fn::GetAtt as ``${...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Ref":
            return f"${{{arg}}}"
        if name == "Fn::GetAtt" and isinstance(arg, list):
            return "${" + ".".join(str(part) for part in arg) + "}"
        if name == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            return str(arg[0]).join(_show(part) for part in arg[1])
    return json.dumps(value)


def _referenced(value: Any) -> str | None:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` names, else None."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Ref" and isinstance(arg, str):
            return arg
        if name == "Fn::GetAtt" and isinstance(arg, list) and arg and isinstance(arg[0], str):
            return arg[0]
        if name == "Fn::GetAtt" and isinstance(arg, str):
            return arg.split(".", 1)[0]
    return None


def _health_config(resource: Mapping[str, Any]) -> dict[str, Any]:
    config = (resource.get("Properties") or {}).get("HealthCheckConfig")
    return config if isinstance(config, dict) else {}


def _number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DrillError(f"{where}: {what} is {_show(value)}, not a number the drill can read (pass it as a flag)")
    try:
        return float(value)
    except ValueError:
        raise DrillError(f"{where}: {what} is {value!r}, not a number (pass it as a flag)") from None


def _endpoint_checks_of(resources: Mapping[str, Any], logical_id: str, seen: set[str] | None = None) -> list[str]:
    """The endpoint (HTTP/HTTPS) health checks behind a health check: itself, or a calculated one's children."""
    seen = seen if seen is not None else set()
    if logical_id in seen:
        return []
    seen.add(logical_id)
    resource = resources.get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") != "AWS::Route53::HealthCheck":
        return []
    config = _health_config(resource)
    if config.get("Type") in ENDPOINT_CHECK_TYPES:
        return [logical_id]
    if config.get("Type") == "CALCULATED":
        found: list[str] = []
        for child in config.get("ChildHealthChecks") or []:
            child_id = _referenced(child)
            if child_id is not None:
                found.extend(_endpoint_checks_of(resources, child_id, seen))
        return found
    return []


def _describe_other_check(logical_id: str, config: Mapping[str, Any]) -> str:
    kind = config.get("Type")
    if kind == "CALCULATED":
        children = ", ".join(_referenced(c) or _show(c) for c in config.get("ChildHealthChecks") or [])
        return f"CALCULATED health check {logical_id} (needs {config.get('HealthThreshold', '?')} of: {children})"
    if kind == "CLOUDWATCH_METRIC":
        alarm = config.get("AlarmIdentifier") or {}
        return f"CLOUDWATCH_METRIC health check {logical_id} (alarm {_show(alarm.get('Name'))})"
    return f"{kind} health check {logical_id}"


def _alias_target(resources: Mapping[str, Any], alias: Mapping[str, Any]) -> str:
    dns_name = alias.get("DNSName")
    target = resources.get(_referenced(dns_name) or "")
    kind = target.get("Type") if isinstance(target, dict) else None
    if kind in ("AWS::ApiGateway::DomainName", "AWS::ApiGatewayV2::DomainName"):
        return f"an API Gateway custom domain ({_show(dns_name)})"
    if "execute-api" in _show(dns_name):
        return f"an API Gateway endpoint ({_show(dns_name)})"
    return f"{_show(dns_name)} (assumed to answer with API Gateway's TTL)"


def read_template(path: Path) -> list[RecordSettings]:
    """The failover records of one template, each with its endpoint health check's settings.

    Resources are found by type, not by logical id: ``AWS::Route53::RecordSet`` with ``Failover`` PRIMARY or
    SECONDARY, and the ``AWS::Route53::HealthCheck`` of type HTTPS the record's ``HealthCheckId`` names, directly
    or as a child of a calculated health check (failing that, the template's only HTTPS health check).
    """
    try:
        template = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DrillError(f"cannot read the template {path}: {exc}") from exc
    resources = template.get("Resources") if isinstance(template, dict) else None
    if not isinstance(resources, dict):
        raise DrillError(f"{path.name} has no Resources")
    checks = {
        lid: _health_config(r)
        for lid, r in resources.items()
        if isinstance(r, dict) and r.get("Type") == "AWS::Route53::HealthCheck"
    }
    endpoint_checks = [lid for lid, config in checks.items() if config.get("Type") in ENDPOINT_CHECK_TYPES]
    others = tuple(
        "not emulated: " + _describe_other_check(lid, config)
        for lid, config in checks.items()
        if config.get("Type") not in ENDPOINT_CHECK_TYPES
    )
    found: list[RecordSettings] = []
    for lid, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Route53::RecordSet":
            continue
        props = resource.get("Properties") or {}
        role = ROLES.get(str(props.get("Failover", "")).upper())
        if role is None:
            continue
        where = f"{path.name}: record {lid}"
        notes: list[str] = []
        linked = _referenced(props.get("HealthCheckId"))
        candidates = _endpoint_checks_of(resources, linked) if linked else []
        if linked and linked in checks and checks[linked].get("Type") == "CALCULATED":
            notes.append(f"the record's health check {linked} is CALCULATED; the drill emulates its HTTPS child")
        if not candidates:
            if len(endpoint_checks) != 1:
                raise DrillError(
                    f"{where} ({role}) names no HTTPS health check (HealthCheckId {_show(props.get('HealthCheckId'))})"
                    f" and the template has {len(endpoint_checks)} of them, not one: cannot tell which one to emulate"
                )
            candidates = endpoint_checks
            notes.append(f"the record names no HTTPS health check; using the template's only one, {candidates[0]}")
        if len(candidates) > 1:
            raise DrillError(f"{where} ({role}) depends on {len(candidates)} HTTPS health checks: {candidates}")
        check_id = candidates[0]
        config = checks[check_id]
        check_where = f"{path.name}: health check {check_id}"
        interval = _number(config.get("RequestInterval", CFN_DEFAULT_INTERVAL_S), "RequestInterval", check_where)
        threshold = _number(
            config.get("FailureThreshold", CFN_DEFAULT_FAILURE_THRESHOLD), "FailureThreshold", check_where
        )
        regions = config.get("Regions")
        alias = props.get("AliasTarget")
        ttl = props.get("TTL")
        found.append(
            RecordSettings(
                role=role,
                template=path.name,
                set_identifier=props.get("SetIdentifier"),
                interval_s=interval,
                failure_threshold=int(threshold),
                checker_regions=len(regions) if isinstance(regions, list) and regions else None,
                resource_path=_show(config.get("ResourcePath", "/")),
                health_check=check_id,
                ttl_s=_number(ttl, "TTL", where) if ttl is not None else None,
                alias_target=_alias_target(resources, alias) if isinstance(alias, dict) else None,
                notes=tuple(notes) + others,
            )
        )
    return found


def read_templates(paths: Sequence[Path]) -> dict[str, RecordSettings]:
    """The PRIMARY and SECONDARY failover records across the templates (``primary``/``secondary`` -> settings)."""
    if not paths:
        raise DrillError("no *.template.json in the cloud assembly: nothing to read the failover settings from")
    by_role: dict[str, RecordSettings] = {}
    for path in paths:
        for record in read_template(path):
            if record.role in by_role:
                raise DrillError(
                    f"two {record.role.upper()} failover records: in {by_role[record.role].template} and "
                    f"{record.template}; the drill emulates one failover pair"
                )
            by_role[record.role] = record
    missing = [role.upper() for role in (PRIMARY, SECONDARY) if role not in by_role]
    if missing:
        names = ", ".join(p.name for p in paths)
        raise DrillError(
            f"no AWS::Route53::RecordSet with Failover {' or '.join(missing)} in {names}: is this the failover "
            "deployment (failover routing, two regions)?"
        )
    return by_role


def load_context(context_file: Path) -> dict[str, Any]:
    """The CDK context of the failover deployment: a flat JSON object (``failover.example.json``)."""
    if not context_file.is_file():
        raise DrillError(
            f"{context_file} not found: it holds the context of the failover deployment to synthesize "
            "(or run with --no-synth --interval S --threshold N --ttl S)"
        )
    try:
        context = json.loads(context_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DrillError(f"{context_file} is not JSON: {exc}") from exc
    if not isinstance(context, dict) or not all(isinstance(key, str) for key in context):
        raise DrillError(f"{context_file} must be a JSON object of context keys to values")
    return context


def synthesize(context_file: Path, outdir: Path) -> list[Path]:
    """Synthesize the reference app (``app.py``'s ``build_app``) with the file's context into ``outdir``.

    Returns:
        The templates written, ``<stack>.template.json``.
    """
    context = load_context(context_file)
    app_path = ROOT / "app.py"
    spec = importlib.util.spec_from_file_location("reference_app", app_path)
    if spec is None or spec.loader is None:
        raise DrillError(f"cannot load {app_path}")
    module = importlib.util.module_from_spec(spec)
    import aws_cdk as cdk

    with contextlib.chdir(ROOT):  # as `cdk synth` runs it: from the repository root
        spec.loader.exec_module(module)
        build_app = getattr(module, "build_app", None)
        if not callable(build_app):
            raise DrillError(f"{app_path} has no build_app(app)")
        app = cdk.App(outdir=str(outdir), context=context)
        build_app(app)
        app.synth()
    return sorted(outdir.glob("*.template.json"))


# --- the drill's settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSettings:
    """How one endpoint's health is checked and how long its DNS answer is cached."""

    role: str
    label: str
    interval_s: float
    failure_threshold: int
    ttl_s: float
    checkers: int


@dataclass(frozen=True)
class Settings:
    primary: EndpointSettings
    secondary: EndpointSettings
    health_cache_s: float
    probe_interval_s: float
    probe_timeout_s: float
    rate: float
    warmup_s: float
    settle_s: float
    max_wait_s: float
    source: str
    sources: dict[str, str]
    ttl_assumed: bool
    templates: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def endpoint(self, role: str) -> EndpointSettings:
        return self.primary if role == PRIMARY else self.secondary

    def to_json(self) -> dict[str, Any]:
        return {
            "interval_s": self.primary.interval_s,
            "failure_threshold": self.primary.failure_threshold,
            "ttl_s": self.primary.ttl_s,
            "ttl_assumed": self.ttl_assumed,
            "health_cache_s": self.health_cache_s,
            "probe_interval_s": self.probe_interval_s,
            "probe_timeout_s": self.probe_timeout_s,
            "checkers": self.primary.checkers,
            "rate_per_s": self.rate,
            "warmup_s": self.warmup_s,
            "settle_s": self.settle_s,
            "max_wait_s": self.max_wait_s,
            "source": self.source,
            "sources": self.sources,
            "templates": list(self.templates),
            "notes": list(self.notes),
            "endpoints": {
                e.role: {
                    "label": e.label,
                    "interval_s": e.interval_s,
                    "failure_threshold": e.failure_threshold,
                    "ttl_s": e.ttl_s,
                    "checkers": e.checkers,
                }
                for e in (self.primary, self.secondary)
            },
        }


def resolve_settings(args: argparse.Namespace, records: Mapping[str, RecordSettings] | None) -> Settings:
    """The template's settings (when read), overridden by the flags given."""
    sources: dict[str, str] = {}
    notes: list[str] = []
    overridden: list[str] = []
    ttl_assumed = False

    def endpoint(role: str) -> EndpointSettings:
        nonlocal ttl_assumed
        record = records[role] if records is not None else None
        label = role
        if record is not None:
            label = f"{record.template.removesuffix('.template.json')}"
            if record.set_identifier:
                label += f" (set {record.set_identifier})"
        if args.interval is not None:
            interval, sources["interval_s"] = args.interval, "flag --interval"
        else:
            assert record is not None
            interval = record.interval_s
            sources["interval_s"] = f"template: {record.health_check} RequestInterval"
        if args.threshold is not None:
            threshold, sources["failure_threshold"] = args.threshold, "flag --threshold"
        else:
            assert record is not None
            threshold = record.failure_threshold
            sources["failure_threshold"] = f"template: {record.health_check} FailureThreshold"
        if args.ttl is not None:
            ttl, sources["ttl_s"] = args.ttl, "flag --ttl"
        else:
            assert record is not None
            if record.ttl_s is not None:
                ttl, sources["ttl_s"] = record.ttl_s, "template: the record's TTL"
            else:
                ttl, ttl_assumed = ALIAS_TTL_ASSUMED_S, True
                sources["ttl_s"] = (
                    f"ASSUMED: an alias record has no TTL, Route 53 answers with its target's; the target is "
                    f"{record.alias_target}, taken as {ALIAS_TTL_ASSUMED_S:g} s (override with --ttl)"
                )
        if args.checkers is not None:
            checkers, sources["checkers"] = args.checkers, "flag --checkers"
        elif record is not None and record.checker_regions is not None:
            checkers = record.checker_regions
            sources["checkers"] = f"template: one per checker region of {record.health_check} ({checkers})"
        else:
            checkers = ROUTE53_CHECKER_REGIONS
            sources["checkers"] = "one per Route 53 checker region: the health check names none"
        return EndpointSettings(role, label, float(interval), int(threshold), float(ttl), int(checkers))

    # The secondary's sources are written second; the primary's are the ones reported (they time both moves).
    secondary = endpoint(SECONDARY)
    secondary_sources = dict(sources)
    primary = endpoint(PRIMARY)
    for key, flag in (("interval_s", "interval"), ("failure_threshold", "threshold"), ("ttl_s", "ttl")):
        if getattr(args, flag) is not None:
            overridden.append(f"--{flag}")
        if getattr(primary, key) != getattr(secondary, key):
            notes.append(
                f"the secondary's {key} is {getattr(secondary, key):g} ({secondary_sources[key]}): "
                "each endpoint is emulated with its own"
            )
    templates: tuple[str, ...] = ()
    if records is not None:
        templates = tuple(sorted({r.template for r in records.values()}))
        for role in (PRIMARY, SECONDARY):
            record = records[role]
            notes.append(
                f"{role} health check {record.health_check} in {record.template} checks {record.resource_path}; "
                "the local endpoint serves it as /health"
            )
            notes.extend(f"{role}: {note}" for note in record.notes)
        source = "template" if not overridden else f"template, overridden by {' '.join(overridden)}"
    else:
        source = "flags (--no-synth)"
    for name, value in (("health_cache_s", args.health_cache), ("probe_interval_s", args.probe_interval)):
        default = DEFAULT_CACHE_S if name == "health_cache_s" else DEFAULT_PROBE_INTERVAL_S
        flag = "--health-cache" if name == "health_cache_s" else "--probe-interval"
        sources[name] = "the router's default" if value == default else f"flag {flag}"
    return Settings(
        primary=primary,
        secondary=secondary,
        health_cache_s=args.health_cache,
        probe_interval_s=args.probe_interval,
        probe_timeout_s=DEFAULT_PROBE_TIMEOUT_S,
        rate=args.rate,
        warmup_s=args.warmup,
        settle_s=args.settle,
        max_wait_s=args.max_wait,
        source=source,
        sources=sources,
        ttl_assumed=ttl_assumed,
        templates=templates,
        notes=tuple(notes),
    )


def worst_case(settings: Settings) -> dict[str, Any]:
    """What the settings allow at worst, each direction timed by the primary's health check."""
    p = settings.primary
    detection = settings.health_cache_s + settings.probe_timeout_s + p.interval_s * p.failure_threshold + p.interval_s
    return {
        "formula": "health cache + probe timeout + interval x threshold + one interval of stagger, then + TTL",
        "detection_s": round(detection, 3),
        "failover_client_s": round(detection + p.ttl_s, 3),  # the client holds the primary's answer
        "failback_client_s": round(detection + settings.secondary.ttl_s, 3),
        "unavailability_s": round(detection + p.ttl_s, 3),
    }


# --- the local endpoints -------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    role: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    method: str,
    url: str,
    body: Any = None,
    *,
    connect_timeout: float = CLIENT_TIMEOUT_S,
    answer_timeout: float = CLIENT_TIMEOUT_S,
) -> tuple[int, Any]:
    """One HTTP request on its own connection: status and JSON body. Raises OSError (timeouts included)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=connect_timeout)
    data = json.dumps(body).encode() if body is not None else None
    try:
        connection.connect()
        connected = time.monotonic()
        if connection.sock is not None:
            connection.sock.settimeout(answer_timeout)
        connection.request(method, parts.path or "/", body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if time.monotonic() - connected > answer_timeout:
            raise TimeoutError(f"answered after more than {answer_timeout:g} s")
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        connection.close()
    try:
        return response.status, json.loads(payload or b"null")
    except json.JSONDecodeError:
        return response.status, None


def server_env(settings: Settings) -> dict[str, str]:
    """The drill's environment without AWS, Powertools, router or Bedrock settings, plus the health timing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV)}
    env["ROUTER_HEALTH_CACHE_SECONDS"] = f"{settings.health_cache_s:g}"
    env["ROUTER_HEALTH_PROBE_INTERVAL_SECONDS"] = f"{settings.probe_interval_s:g}"
    return env


def start_endpoint(role: str, log_dir: Path, env: Mapping[str, str]) -> Endpoint:
    """``python -m local_endpoint.server`` on a free port, its output to a file (never a pipe: nobody reads it)."""
    port = free_port()
    log_path = log_dir / f"{role}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "local_endpoint.server", "--port", str(port), "--seed", "7"],
            cwd=ROOT,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Endpoint(role, f"http://127.0.0.1:{port}", process, log_path)


def wait_healthy(endpoint: Endpoint, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if endpoint.process.poll() is not None:
            raise DrillError(
                f"the {endpoint.role} endpoint exited ({endpoint.process.returncode}):\n{endpoint.log_tail()}"
            )
        try:
            if request("GET", f"{endpoint.url}/health", connect_timeout=2, answer_timeout=5)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DrillError(
                f"the {endpoint.role} endpoint was not healthy within {timeout_s:g} s:\n{endpoint.log_tail()}"
            )
        time.sleep(0.1)


def stop_endpoint(endpoint: Endpoint) -> None:
    """Terminate the server by its PID; kill it if it has not exited within 10 s."""
    if endpoint.process.poll() is not None:
        return
    endpoint.process.terminate()
    try:
        endpoint.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        endpoint.process.kill()
        endpoint.process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_endpoints(settings: Settings, log_dir: Path) -> Iterator[dict[str, Endpoint]]:
    env = server_env(settings)
    started: dict[str, Endpoint] = {}
    try:
        for role in (PRIMARY, SECONDARY):
            started[role] = start_endpoint(role, log_dir, env)
        for endpoint in started.values():
            wait_healthy(endpoint)
        yield started
    finally:
        for endpoint in started.values():
            stop_endpoint(endpoint)


# --- emulated Route 53 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    role: str
    checker: int
    started: float
    finished: float
    ok: bool


class Route53:
    """The failover record's answer, from every checker's view of both endpoints."""

    def __init__(
        self,
        checkers: Mapping[str, int],
        clock: Callable[[], float] = time.monotonic,
        on_answer: Callable[[str], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._on_answer = on_answer
        self._views = {role: [True] * count for role, count in checkers.items()}  # a new check starts healthy
        self._answer = PRIMARY
        self.answers: list[tuple[float, str]] = [(clock(), PRIMARY)]
        self.health: list[tuple[float, str, bool]] = []
        self.checks: list[Check] = []

    def healthy(self, role: str) -> bool:
        views = self._views[role]
        return sum(views) > HEALTHY_FRACTION * len(views)

    def answer(self) -> str:
        with self._lock:
            return self._answer

    def record(self, check: Check, view: bool) -> None:
        with self._lock:
            self.checks.append(check)
            if self._views[check.role][check.checker] == view:
                return
            was = self.healthy(check.role)
            self._views[check.role][check.checker] = view
            now = self._clock()
            if self.healthy(check.role) != was:
                self.health.append((now, check.role, not was))
            if self.healthy(PRIMARY):
                answer = PRIMARY
            elif self.healthy(SECONDARY):
                answer = SECONDARY
            else:
                answer = PRIMARY  # both unhealthy: Route 53 answers as if both were healthy
            if answer != self._answer:
                self._answer = answer
                self.answers.append((now, answer))
                if self._on_answer is not None:
                    self._on_answer(answer)

    def snapshot(self) -> tuple[list[tuple[float, str]], list[Check]]:
        with self._lock:
            return list(self.answers), list(self.checks)


class Checker(threading.Thread):
    """One Route 53 health checker of one endpoint: GET /health every interval from its offset in the stagger."""

    def __init__(
        self,
        route53: Route53,
        endpoint: Endpoint,
        index: int,
        *,
        start: float,
        offset: float,
        interval: float,
        threshold: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"checker-{endpoint.role}-{index}", daemon=True)
        self.route53, self.endpoint, self.index = route53, endpoint, index
        self.start_at, self.offset, self.interval, self.threshold = start, offset, interval, threshold
        self.stop = stop
        self.view = True
        self.streak = 0  # consecutive results against the current view

    def check_once(self) -> bool:
        try:
            status, _ = request(
                "GET", f"{self.endpoint.url}/health", connect_timeout=CONNECT_TIMEOUT_S, answer_timeout=ANSWER_TIMEOUT_S
            )
        except OSError:
            return False
        return 200 <= status < 400

    def run(self) -> None:
        slot = 0
        while True:
            due = self.start_at + self.offset + slot * self.interval
            if self.stop.wait(max(0.0, due - time.monotonic())):
                return
            started = time.monotonic()
            ok = self.check_once()
            finished = time.monotonic()
            self.streak = 0 if ok == self.view else self.streak + 1
            if self.streak >= self.threshold:
                self.view, self.streak = ok, 0
            self.route53.record(Check(self.endpoint.role, self.index, started, finished, ok), self.view)
            # A check longer than the interval skips the slots it overran, as a checker on a fixed schedule would.
            slot = max(slot + 1, math.ceil((finished - self.start_at - self.offset) / self.interval))


# --- emulated client -----------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One /generate request: filled in when its answer (or error) comes."""

    sent: float
    role: str
    status: int | None = None
    degraded: bool = False
    error: str | None = None
    done: float | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status != 200


class Resolver:
    """A stub resolver: the record's answer, cached for its TTL."""

    def __init__(self, route53: Route53, ttls: Mapping[str, float]) -> None:
        self._route53, self._ttls = route53, dict(ttls)
        self._lock = threading.Lock()
        self._answer: str | None = None
        self._expires = float("-inf")

    def resolve(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._answer is None or now >= self._expires:
                self._answer = self._route53.answer()
                self._expires = now + self._ttls[self._answer]
            return self._answer


class Client:
    """``rate`` requests a second from a scheduler thread, sent by a pool so a slow one does not stall the rate."""

    def __init__(self, resolver: Resolver, endpoints: Mapping[str, Endpoint], rate: float) -> None:
        self._resolver, self._endpoints, self._rate = resolver, endpoints, rate
        self._pool = ThreadPoolExecutor(max_workers=max(8, min(64, math.ceil(rate * 4))), thread_name_prefix="client")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._thread = threading.Thread(target=self._schedule, name="client-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _schedule(self) -> None:
        started, n = time.monotonic(), 0
        while not self._stop.wait(max(0.0, started + n / self._rate - time.monotonic())):
            self._pool.submit(self._one)
            n += 1

    def _one(self) -> None:
        role = self._resolver.resolve()
        record = Sent(time.monotonic(), role)
        with self._lock:
            self._sent.append(record)
        try:
            status, body = request("POST", f"{self._endpoints[role].url}/generate", GENERATE_BODY)
            record.status = status
            record.degraded = bool(isinstance(body, dict) and body.get("degraded") is True)
        except OSError as exc:
            record.error = repr(exc)
        record.done = time.monotonic()

    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    def first_to(self, role: str, since: float) -> float | None:
        times = [s.sent for s in self.sent() if s.role == role and s.sent >= since]
        return min(times) if times else None

    def stop(self) -> None:
        """Stop sending; wait for the requests in flight (each bounded by its 30 s timeout)."""
        self._stop.set()
        self._thread.join(timeout=STOP_TIMEOUT_S)
        self._pool.shutdown(wait=True, cancel_futures=True)


# --- the drill -------------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], deadline: float) -> bool:
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def _seconds(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def phase_figures(
    *,
    direction: str,
    target: str,
    began: float,
    ended: float,
    answers: Sequence[tuple[float, str]],
    checks: Sequence[Check],
    sent: Sequence[Sent],
) -> dict[str, Any]:
    """One direction's timings (seconds from ``began``) and the requests sent until the client moved."""
    want_ok = direction == "failback"  # failover: the first failed check of the primary; failback: the first good
    seen = [c.finished for c in checks if c.role == PRIMARY and c.started >= began and c.ok == want_ok]
    moved = [t for t, answer in answers if began <= t < ended and answer == target]
    flips = [t for t, _ in answers if began <= t < ended]
    to_target = [s.sent for s in sent if s.role == target and began <= s.sent < ended]
    client_moved = min(to_target) if to_target else None
    window_end = client_moved if client_moved is not None else ended
    # From the fault (or recovery) on: the requests answered since, including those already in flight then
    before = [s for s in sent if s.sent < window_end and (s.done if s.done is not None else s.sent) >= began]
    after = [s for s in sent if window_end <= s.sent < ended]
    return {
        "direction": direction,
        "to": target,
        "detect_s": _seconds(min(seen) - began) if seen else None,
        "dns_moved_s": _seconds(min(moved) - began) if moved else None,
        "client_moved_s": _seconds(client_moved - began) if client_moved is not None else None,
        "moved": bool(moved) and client_moved is not None,
        "requests": len(before),
        "failed": sum(1 for s in before if s.failed),
        "degraded": sum(1 for s in before if not s.failed and s.degraded),
        "requests_after_move": len(after),
        "failed_after_move": sum(1 for s in after if s.failed),
        "degraded_after_move": sum(1 for s in after if not s.failed and s.degraded),
        "dns_changes": len(flips),
        "observed_s": _seconds(ended - began),
    }


def log(message: str, origin: float | None = None) -> None:
    stamp = f"[+{time.monotonic() - origin:7.2f} s] " if origin is not None else ""
    print(f"{stamp}{message}", flush=True)


def run_drill(settings: Settings, endpoints: Mapping[str, Endpoint]) -> dict[str, Any]:
    """Warm up, fail the primary, wait for DNS and the client to move; recover, wait for them to come back."""
    origin = time.monotonic()
    route53 = Route53(
        {role: settings.endpoint(role).checkers for role in (PRIMARY, SECONDARY)},
        on_answer=lambda answer: log(f"emulated DNS answer -> {answer}", origin),
    )
    stop = threading.Event()
    checkers: list[Checker] = []
    for role in (PRIMARY, SECONDARY):
        s = settings.endpoint(role)
        checkers.extend(
            Checker(
                route53,
                endpoints[role],
                i,
                start=origin,
                offset=i * s.interval_s / s.checkers,
                interval=s.interval_s,
                threshold=s.failure_threshold,
                stop=stop,
            )
            for i in range(s.checkers)
        )
    client = Client(
        Resolver(route53, {r: settings.endpoint(r).ttl_s for r in (PRIMARY, SECONDARY)}), endpoints, settings.rate
    )
    primary_url = endpoints[PRIMARY].url
    faulted = False
    phases: dict[str, dict[str, Any]] = {}
    try:
        for checker in checkers:
            checker.start()
        client.start()
        log(f"warm-up: {settings.warmup_s:g} s of traffic, checkers running", origin)
        stop.wait(settings.warmup_s)
        if route53.answer() != PRIMARY:
            raise DrillError("after the warm-up the DNS answer is not the primary: it is not healthy")
        deadline = time.monotonic() + settings.max_wait_s

        announced: set[tuple[str, float]] = set()

        def settled(target: str, began: float) -> bool:
            first = client.first_to(target, began)
            if first is not None and (target, began) not in announced:
                announced.add((target, began))
                log(f"the client's first request to the {target} (its cached answer expired)", origin)
            return route53.answer() == target and first is not None and time.monotonic() - first >= settings.settle_s

        def timed_out(target: str, began: float) -> str:
            first = client.first_to(target, began)
            return (
                f"TIMED OUT (--max-wait {settings.max_wait_s:g} s for fault and recovery): the DNS answer is the "
                f"{route53.answer()}, the client "
                + (
                    f"reached the {target} {time.monotonic() - first:.1f} s ago"
                    if first
                    else f"never reached the {target}"
                )
            )

        fault_at = time.monotonic()
        status, body = request("PUT", f"{primary_url}/_sim/faults", OUTAGE, connect_timeout=5, answer_timeout=10)
        if status != 200:
            raise DrillError(f"PUT /_sim/faults on the primary answered {status}: {body}")
        faulted = True
        log(f"primary's models down (PUT /_sim/faults {json.dumps(OUTAGE)})", origin)
        failover_ok = wait_until(lambda: settled(SECONDARY, fault_at), deadline)
        recover_at = time.monotonic()
        log("DNS and the client are on the secondary" if failover_ok else timed_out(SECONDARY, fault_at), origin)
        status, body = request("DELETE", f"{primary_url}/_sim/faults", connect_timeout=5, answer_timeout=10)
        if status != 200:
            raise DrillError(f"DELETE /_sim/faults on the primary answered {status}: {body}")
        faulted = False
        log("primary's models recovered (DELETE /_sim/faults)", origin)
        failback_ok = False
        if failover_ok:
            failback_ok = wait_until(lambda: settled(PRIMARY, recover_at), deadline)
            log("DNS and the client are back on the primary" if failback_ok else timed_out(PRIMARY, recover_at), origin)
        ended = time.monotonic()
    finally:
        if faulted:
            with contextlib.suppress(OSError):
                request("DELETE", f"{primary_url}/_sim/faults", connect_timeout=5, answer_timeout=10)
        stop.set()
        client.stop()
        for checker in checkers:
            checker.join(timeout=CONNECT_TIMEOUT_S + ANSWER_TIMEOUT_S + 1)
    answers, checks = route53.snapshot()
    sent = client.sent()
    phases["failover"] = phase_figures(
        direction="failover",
        target=SECONDARY,
        began=fault_at,
        ended=recover_at,
        answers=answers,
        checks=checks,
        sent=sent,
    )
    if failover_ok:
        phases["failback"] = phase_figures(
            direction="failback",
            target=PRIMARY,
            began=recover_at,
            ended=ended,
            answers=answers,
            checks=checks,
            sent=sent,
        )
    else:
        phases["failback"] = {"direction": "failback", "to": PRIMARY, "moved": False, "skipped": "no failover"}
    phases["failover"]["moved"] = failover_ok and phases["failover"]["moved"]
    phases["failback"]["moved"] = failback_ok and phases["failback"]["moved"]
    warmup = [s for s in sent if (s.done if s.done is not None else s.sent) < fault_at]
    return {
        "warmup": {
            "requests": len(warmup),
            "failed": sum(1 for s in warmup if s.failed),
            "degraded": sum(1 for s in warmup if not s.failed and s.degraded),
        },
        **phases,
        "dns_answers": [{"t_s": round(t - origin, 3), "answer": a} for t, a in answers],
        "checks": len(checks),
    }


# --- report --------------------------------------------------------------------------------------------------


def print_settings(settings: Settings, out: Callable[[str], None] = print) -> None:
    p, s = settings.primary, settings.secondary
    src = settings.sources
    out(f"settings (source: {settings.source})")
    if settings.templates:
        out(f"  templates           {', '.join(settings.templates)}")
    out(f"  request interval    {p.interval_s:g} s   ({src['interval_s']})")
    out(f"  failure threshold   {p.failure_threshold}   ({src['failure_threshold']})")
    out(f"  TTL                 {p.ttl_s:g} s   ({src['ttl_s']})")
    out(f"  checkers            {p.checkers} per endpoint, staggered over one interval ({src['checkers']})")
    out(f"                      healthy while > {HEALTHY_FRACTION:.0%} of them see it healthy")
    out(f"  health cache        {settings.health_cache_s:g} s   (ROUTER_HEALTH_CACHE_SECONDS, {src['health_cache_s']})")
    out(
        f"  probe interval      {settings.probe_interval_s:g} s   "
        f"(ROUTER_HEALTH_PROBE_INTERVAL_SECONDS, {src['probe_interval_s']})"
    )
    out(f"  probe timeout       {settings.probe_timeout_s:g} s   (the router's)")
    out(
        f"  client              {settings.rate:g} requests/s, warm-up {settings.warmup_s:g} s, "
        f"settle {settings.settle_s:g} s, at most {settings.max_wait_s:g} s for fault and recovery"
    )
    if settings.templates:
        out(f"  primary             {p.label}")
        out(f"  secondary           {s.label}")
    for note in settings.notes:
        out(f"  note: {note}")


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def print_report(report: dict[str, Any], out: Callable[[str], None] = print) -> None:
    header = (
        f"{'direction':<10} {'first check':>12} {'DNS moved':>10} {'client moved':>13} "
        f"{'requests':>9} {'failed':>7} {'degraded':>9}  after the move (requests/failed/degraded)"
    )
    out(header)
    out("-" * len(header))
    for name in ("failover", "failback"):
        r = report[name]
        if "skipped" in r:
            out(f"{name:<10} not run: {r['skipped']}")
            continue
        after = f"{r['requests_after_move']}/{r['failed_after_move']}/{r['degraded_after_move']}"
        out(
            f"{name:<10} {_cell(r['detect_s'], ' s'):>12} {_cell(r['dns_moved_s'], ' s'):>10} "
            f"{_cell(r['client_moved_s'], ' s'):>13} {r['requests']:>9} {r['failed']:>7} {r['degraded']:>9}  {after}"
            + ("" if r["moved"] else "   DID NOT MOVE")
        )
    out(
        "(seconds from the fault, or the recovery; requests: sent from then until the client's first on the other side)"
    )
    w = report["worst_case"]
    settings = report["settings"]
    out(
        f"worst case: detection <= {settings['health_cache_s']:g} (health cache) + {settings['probe_timeout_s']:g} "
        f"(probe timeout) + {settings['interval_s']:g} x {settings['failure_threshold']} (interval x threshold) + "
        f"{settings['interval_s']:g} (stagger) = {w['detection_s']:g} s; + TTL {settings['ttl_s']:g} s"
        + (" (assumed)" if settings["ttl_assumed"] else "")
        + f" = {w['unavailability_s']:g} s worst-case unavailability"
    )
    failover = report["failover"]
    if failover.get("client_moved_s") is not None:
        measured = failover["client_moved_s"]
        verdict = "within" if measured <= w["unavailability_s"] else "ABOVE"
        out(f"measured: the client left the failed primary after {measured:g} s ({verdict} the worst case)")
    else:
        out("measured: the client never left the failed primary")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--interval", type=float, help="checker request interval, s (default: the template's)")
    parser.add_argument("--threshold", type=int, help="failure threshold (default: the template's)")
    parser.add_argument(
        "--ttl", type=float, help=f"DNS TTL, s (default: the record's; {ALIAS_TTL_ASSUMED_S:g} for an alias)"
    )
    parser.add_argument("--no-synth", action="store_true", help="do not synthesize: take all three from the flags")
    parser.add_argument(
        "--context-file", type=Path, default=DEFAULT_CONTEXT_FILE, help="CDK context of the failover deployment"
    )
    parser.add_argument(
        "--assembly", type=Path, help="read the templates of this cloud assembly instead of synthesizing"
    )
    parser.add_argument(
        "--checkers", type=int, help="checkers per endpoint (default: the health check's regions, or 8)"
    )
    parser.add_argument("--health-cache", type=float, default=DEFAULT_CACHE_S, help="ROUTER_HEALTH_CACHE_SECONDS")
    parser.add_argument(
        "--probe-interval", type=float, default=DEFAULT_PROBE_INTERVAL_S, help="ROUTER_HEALTH_PROBE_INTERVAL_SECONDS"
    )
    parser.add_argument("--rate", type=float, default=5.0, help="client requests a second")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of traffic before the fault")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds the client stays on the new side")
    parser.add_argument("--max-wait", type=float, default=600.0, help="cap, s, on the fault and recovery together")
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.no_synth:
        missing = [f"--{name}" for name in ("interval", "threshold", "ttl") if getattr(args, name) is None]
        if missing:
            parser.error(f"--no-synth needs {', '.join(missing)}")
        if args.assembly is not None:
            parser.error("--assembly reads templates; --no-synth reads none")
    positive = {"interval": args.interval, "ttl": args.ttl, "rate": args.rate, "max-wait": args.max_wait}
    for name, value in positive.items():
        if value is not None and not value > 0:
            parser.error(f"--{name} must be above 0, got {value:g}")
    for name, value in {"health-cache": args.health_cache, "probe-interval": args.probe_interval}.items():
        if value < 0:
            parser.error(f"--{name} must be 0 or more, got {value:g}")
    if args.threshold is not None and args.threshold < 1:
        parser.error(f"--threshold must be 1 or more, got {args.threshold}")
    if args.checkers is not None and args.checkers < 1:
        parser.error(f"--checkers must be 1 or more, got {args.checkers}")
    if args.warmup < 0 or args.settle < 0:
        parser.error("--warmup and --settle must be 0 or more")
    return args


def read_records(args: argparse.Namespace) -> dict[str, RecordSettings] | None:
    if args.no_synth:
        return None
    if args.assembly is not None:
        print(f"reading the templates of {args.assembly}", flush=True)
        return read_templates(sorted(args.assembly.glob("*.template.json")))
    print(f"synthesizing the failover reference deployment (app.py, context {args.context_file}) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="failover-drill-synth-") as outdir:
        return read_templates(synthesize(args.context_file, Path(outdir)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = resolve_settings(args, read_records(args))
        print_settings(settings)
        with (
            tempfile.TemporaryDirectory(prefix="failover-drill-") as log_dir,
            running_endpoints(settings, Path(log_dir)) as endpoints,
        ):
            log(f"primary {endpoints[PRIMARY].url}, secondary {endpoints[SECONDARY].url}, both healthy")
            results = run_drill(settings, endpoints)
    except DrillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "settings": settings.to_json(),
        **results,
        "worst_case": worst_case(settings),
    }
    report["worst_case_unavailability_s"] = report["worst_case"]["unavailability_s"]
    report["measured_unavailability_s"] = report["failover"].get("client_moved_s")
    report["moved_both_ways"] = bool(report["failover"]["moved"] and report["failback"]["moved"])
    print()
    print_report(report)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0 if report["moved_both_ways"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
