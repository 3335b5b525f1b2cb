"""``routed-bedrock``: the project's command line.

    routed-bedrock preflight --policy FILE [--endpoint-url URL] [--timeout S] [--workers N] [--json]
    routed-bedrock evaluate --dataset FILE --policy FILE [--models A,B] [--endpoint-url URL] [--out DIR]
        [--max-tokens N] [--temperature T] [--timeout S] [--workers N] [--retries N]
        [--tolerance X] [--min-samples N] [--progress | --quiet]
    routed-bedrock train --policy IN --out OUT [--data DIR | --outcomes FILE --weak M --strong M] [--cascade-route R]
    routed-bedrock score --policy FILE PROMPTS.jsonl [--tier T] [--use-case U] [--explain] [--out FILE]
    routed-bedrock publish --policy FILE (--stack NAME | --application ID --environment ID --profile ID
        --strategy ID) [--region R] [--dry-run] [--poll S] [--timeout S]

``preflight`` exits 0 when every route of the policy has a working (model, region), 1 when some route has
none, 2 on bad usage, an invalid policy file, or when it cannot run (no credentials, no botocore).

``evaluate`` (see ``routed_bedrock.evaluate_cli``) exits 0 when every (prompt, model) call answered and the
outputs and proposed policy are written, 1 when they are written but some calls failed (error rows; a
re-run makes those again), 2 on bad usage, an invalid policy or dataset file, an unknown model key, a
checkpoint from another run or no credentials (nothing is called), 130 when interrupted (Ctrl-C: the
finished calls are kept in the checkpoint and the same command resumes).

``train`` and ``score`` (see ``routed_bedrock.learning_cli``) exit 0 on success and 2 on bad usage, an invalid
policy or a bad data line (named by its line number; nothing is written).

``publish`` (see ``routed_bedrock.publish``) exits 0 when deployed (or no change, or ``--dry-run``), 1 when an
alarm rolled the deployment back (named), 2 on bad usage, an invalid policy (nothing is called) or an AWS
error, 3 when it stopped following a deployment that goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from lambdas.router.policy import PolicyError, load_policy_file
from routed_bedrock import evaluate_cli, learning_cli, publish
from routed_bedrock.cli_support import EXIT_USAGE, positive_float, positive_int, table
from routed_bedrock.preflight import PreflightError, PreflightReport, botocore_call, probes_of, run_preflight

EXIT_OK = 0
EXIT_ROUTE_WITHOUT_MODEL = 1
_DETAIL_CHARS = 100


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the resume hint
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result: int = args.run(args)
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
        return 0
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routed-bedrock", description="Routed Bedrock endpoint tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    preflight = commands.add_parser(
        "preflight",
        help="call every model and region of a policy once and check that each route has a working model",
        description="One minimal Converse call (1 output token) per model and region of the policy, in "
        "parallel; then, per route (candidates and fallbacks), whether at least one (model, region) works. "
        "Exit 0: every route works; 1: some route has no working model; 2: bad usage or policy.",
    )
    preflight.add_argument("--policy", type=Path, required=True, metavar="FILE", help="routing policy JSON file")
    preflight.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="call this Bedrock Runtime endpoint (e.g. the local simulator) with throwaway credentials "
        "instead of real Bedrock with your default credentials",
    )
    preflight.add_argument("--timeout", type=positive_float, default=10.0, metavar="S", help="seconds per call")
    preflight.add_argument("--workers", type=positive_int, default=8, metavar="N", help="calls in parallel")
    preflight.add_argument("--json", action="store_true", help="print machine-readable JSON")
    preflight.set_defaults(run=_preflight)
    learning_cli.register(commands)
    evaluate_cli.register(commands)
    publish.register(commands)
    return parser


def _preflight(args: argparse.Namespace) -> int:
    try:
        policy = load_policy_file(args.policy)
        call = botocore_call(
            [probe.region for probe in probes_of(policy)], endpoint_url=args.endpoint_url, timeout_s=args.timeout
        )
    except (PolicyError, PreflightError) as exc:
        print(f"routed-bedrock preflight: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = run_preflight(policy, call, workers=args.workers)
    if args.json:
        document = {
            "ok": report.ok,
            "policy": {"file": str(args.policy), "version": policy.version},
            "endpoint_url": args.endpoint_url,
            **report_json(report),
        }
        print(json.dumps(document, indent=2))
    else:
        target = args.endpoint_url or "Amazon Bedrock (default credentials)"
        print(f"Preflight of policy {args.policy} (version {policy.version}) against {target}\n")
        print_report(report, sys.stdout)
    return EXIT_OK if report.ok else EXIT_ROUTE_WITHOUT_MODEL


def report_json(report: PreflightReport) -> dict[str, Any]:
    """The report's probes and routes as JSON-ready lists."""
    return {
        "probes": [
            {
                "model": r.probe.model,
                "model_id": r.probe.model_id,
                "region": r.probe.region,
                "result": r.result,
                "working": r.working,
                "code": r.code,
                "message": r.message,
                "latency_ms": r.latency_ms,
            }
            for r in report.results
        ],
        "routes": [
            {
                "route": route.route,
                "ok": route.ok,
                "fallbacks_only": route.fallbacks_only,
                "models": list(route.models),
                "working": [{"model": model, "region": region} for model, region in route.working],
            }
            for route in report.routes
        ],
    }


def print_report(report: PreflightReport, out: TextIO) -> None:
    """The probe table, the route table and a one-line verdict."""
    rows = [("MODEL", "MODEL ID", "REGION", "RESULT", "DETAIL")]
    for r in report.results:
        detail = f"{r.code}: {_shorten(r.message)}" if r.code else f"{r.latency_ms:.0f} ms"
        rows.append((r.probe.model, r.probe.model_id, r.probe.region, r.result, detail))
    table(rows, out)
    out.write("\n")
    route_rows = [("ROUTE", "STATUS", "WORKING (MODEL@REGION)")]
    for route in report.routes:
        if route.ok:
            status = "FALLBACKS ONLY" if route.fallbacks_only else "ok"
            route_rows.append((route.route, status, ", ".join(f"{m}@{region}" for m, region in route.working)))
        else:
            route_rows.append((route.route, "NO WORKING MODEL", f"none of: {', '.join(route.models)}"))
    table(route_rows, out)
    failed = report.failed_routes
    if failed:
        out.write(f"\n{len(failed)} route(s) without a working model: {', '.join(failed)}\n")
    else:
        out.write("\nEvery route has a working model.\n")
    fallback_only = report.fallback_only_routes
    if fallback_only:
        out.write(
            f"Warning: {', '.join(fallback_only)}: no candidate model works, only fallbacks; every request "
            "there pays the failed calls first.\n"
        )


def _shorten(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= _DETAIL_CHARS else flat[: _DETAIL_CHARS - 3] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
