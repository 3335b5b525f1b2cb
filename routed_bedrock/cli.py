"""``routed-bedrock``: the project's command line.

    routed-bedrock preflight --policy FILE [--endpoint-url URL] [--timeout S] [--workers N] [--json]
    routed-bedrock evaluate --dataset FILE --policy FILE [--models A,B] [--endpoint-url URL] [--out DIR]
        [--max-tokens N] [--temperature T] [--timeout S] [--workers N] [--retries N]
        [--tolerance X] [--min-samples N] [--progress | --quiet]
    routed-bedrock train --policy IN --out OUT [--data DIR | --outcomes FILE --weak M --strong M] [--cascade-route R]
    routed-bedrock score --policy FILE PROMPTS.jsonl [--tier T] [--use-case U] [--explain] [--out FILE]

``preflight`` exits 0 when every route of the policy has a working (model, region), 1 when some route has
none, 2 on bad usage, an invalid policy file, or when it cannot run (no credentials, no botocore).

``evaluate`` (see ``routed_bedrock.evaluate``) exits 0 when every (prompt, model) call answered and the
outputs and proposed policy are written, 1 when they are written but some calls failed (error rows; a
re-run makes those again), 2 on bad usage, an invalid policy or dataset file, an unknown model key, a
checkpoint from another run or no credentials (nothing is called), 130 when interrupted (Ctrl-C: the
finished calls are kept in the checkpoint and the same command resumes).

``train`` and ``score`` (see ``routed_bedrock.learning_cli``) exit 0 on success and 2 on bad usage, an invalid
policy or a bad data line (named by its line number; nothing is written).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from lambdas.router.policy import Policy, PolicyError, compile_policy, load_policy_file
from routed_bedrock import evaluate, learning_cli
from routed_bedrock.preflight import PreflightError, PreflightReport, botocore_call, probes_of, run_preflight

EXIT_OK = 0
EXIT_ROUTE_WITHOUT_MODEL = 1
EXIT_CALLS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_DETAIL_CHARS = 100


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the resume hint
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    result: int = args.run(args)
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
    preflight.add_argument("--timeout", type=_positive_float, default=10.0, metavar="S", help="seconds per call")
    preflight.add_argument("--workers", type=_positive_int, default=8, metavar="N", help="calls in parallel")
    preflight.add_argument("--json", action="store_true", help="print machine-readable JSON")
    preflight.set_defaults(run=_preflight)
    learning_cli.register(commands)
    _add_evaluate(commands)
    return parser


def _add_evaluate(commands: Any) -> None:
    evaluate_parser = commands.add_parser(
        "evaluate",
        help="call the policy's models on your prompts, score the answers and propose a policy",
        description='Every prompt of a JSONL dataset ({"prompt", "reference", "id"?, "task"?} per line) goes '
        "to every model of the policy (Converse, first region); answers are scored against the reference "
        "(numeric match, multiple-choice letter, or token F1). Writes model_evaluation_results.csv, "
        "outcomes.jsonl, summary.json and proposed_policy.json (per task, the cheapest model within "
        "--tolerance of the best) to --out. Resumable: re-run the same command. Exit 0: every call answered; "
        "1: some calls failed; 2: bad usage, dataset or policy; 130: interrupted.",
    )
    evaluate_parser.add_argument("--dataset", type=Path, required=True, metavar="FILE", help="JSONL dataset")
    evaluate_parser.add_argument("--policy", type=Path, required=True, metavar="FILE", help="routing policy JSON file")
    evaluate_parser.add_argument(
        "--models", type=_model_keys, metavar="A,B", help="only these catalog keys (default: every model)"
    )
    evaluate_parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="call this Bedrock Runtime endpoint (e.g. the local simulator) with throwaway credentials "
        "instead of real Bedrock with your default credentials",
    )
    evaluate_parser.add_argument(
        "--out", type=Path, default=Path("evaluation"), metavar="DIR", help="output and checkpoint directory"
    )
    evaluate_parser.add_argument(
        "--max-tokens", type=_int_from(1, 65536), default=512, metavar="N", help="output tokens per call"
    )
    evaluate_parser.add_argument("--temperature", type=_fraction, default=0.0, metavar="T", help="0 to 1")
    evaluate_parser.add_argument("--timeout", type=_positive_float, default=60.0, metavar="S", help="seconds per call")
    evaluate_parser.add_argument("--workers", type=_positive_int, default=4, metavar="N", help="calls in parallel")
    evaluate_parser.add_argument(
        "--retries", type=_int_from(0, 10), default=2, metavar="N", help="retries of a throttled or transient failure"
    )
    evaluate_parser.add_argument(
        "--tolerance", type=_fraction, default=0.02, metavar="X", help="score below the best a pick may be"
    )
    evaluate_parser.add_argument(
        "--min-samples", type=_int_from(1, 1_000_000), default=5, metavar="N", help="answers a model needs per task"
    )
    shown = evaluate_parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", help="show the progress line even when not on a terminal")
    shown.add_argument("--quiet", action="store_true", help="no progress line and no notes on stderr")
    evaluate_parser.set_defaults(run=_evaluate)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 600, got {text}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 64, got {text!r}")
    return int(text)


def _int_from(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {text!r}")
        return int(text)

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def _model_keys(text: str) -> list[str]:
    keys = [key.strip() for key in text.split(",") if key.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("name at least one catalog key, e.g. nova-micro,claude-haiku-4-5")
    return list(dict.fromkeys(keys))


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


def _evaluate(args: argparse.Namespace) -> int:
    def note(message: str) -> None:
        if not args.quiet:
            print(f"routed-bedrock evaluate: {message}", file=sys.stderr)

    settings = evaluate.Settings(args.max_tokens, args.temperature)
    checkpoint_path = args.out / evaluate.CHECKPOINT_FILE
    try:
        policy = load_policy_file(args.policy)
        # The whole dataset is checked before the checkpoint is read (and a torn line repaired) or any call made.
        examples = evaluate.load_dataset(args.dataset)
        models = evaluate.select_models(policy, args.models)
        records, warnings = evaluate.read_checkpoint(checkpoint_path)
        for warning in warnings:
            print(f"routed-bedrock evaluate: warning: {warning}", file=sys.stderr)
        evaluate.check_checkpoint(records, examples, models, settings, path=checkpoint_path)
        tasks = evaluate.pending_tasks(examples, models, records)
        # Nothing left to call (a finished run re-run): the outputs are rebuilt without a client or credentials.
        call = (
            evaluate.botocore_converse(
                [task.model for task in tasks],
                endpoint_url=args.endpoint_url,
                timeout_s=args.timeout,
                retries=args.retries,
                max_tokens=args.max_tokens,
                temperature=args.temperature,
            )
            if tasks
            else None
        )
    except (PolicyError, evaluate.DatasetError, evaluate.EvaluationError) as exc:
        return _fail("evaluate", str(exc))
    except OSError as exc:
        return _fail("evaluate", f"cannot use {checkpoint_path}: {exc.strerror or exc}")

    total = len(examples) * len(models)
    note(
        f"{len(examples)} prompts x {len(models)} models = {total} calls: {total - len(tasks)} answered in "
        f"{checkpoint_path}, {len(tasks)} to make"
    )
    if call is not None:
        try:
            result = _run_calls(args, tasks, call, settings, checkpoint_path)
        except OSError as exc:
            return _fail("evaluate", f"cannot write {checkpoint_path}: {exc.strerror or exc}")
        if result.interrupted:
            abandoned = f"; {result.abandoned} call(s) in flight were abandoned" if result.abandoned else ""
            print(
                f"routed-bedrock evaluate: interrupted: {result.made} finished call(s) of this run are kept in "
                f"{checkpoint_path}{abandoned}. Resume with the same command (answered calls are not made "
                f"again):\n  routed-bedrock {shlex.join(args.argv)}",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED

    records, _ = evaluate.read_checkpoint(checkpoint_path)
    outcomes = evaluate.score_outcomes(examples, models, records, default_task=policy.default_use_case)
    stats = evaluate.task_stats(outcomes)
    picks = evaluate.propose(stats, tolerance=args.tolerance, min_samples=args.min_samples)
    document = evaluate.proposed_policy(policy, picks, dataset=args.dataset.name, today=date.today())
    try:
        compile_policy(document)
    except PolicyError as exc:  # a bug here, not the user's: refuse to write a policy the router would reject
        return _fail("evaluate", f"the proposed policy does not validate: {exc}")
    context = {
        "dataset": str(args.dataset),
        "policy": {"file": str(args.policy), "version": policy.version},
        "proposed_policy_version": document["policy_version"],
        "endpoint_url": args.endpoint_url,
        "models": [spec.key for spec in models],
        "metric": "numeric match, multiple-choice letter match or SQuAD token F1; correct when score >= "
        f"{evaluate.CORRECT_AT}",
        "settings": {
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "tolerance": args.tolerance,
            "min_samples": args.min_samples,
        },
    }
    outputs = {
        evaluate.RESULTS_FILE: evaluate.results_csv(outcomes),
        evaluate.OUTCOMES_FILE: evaluate.outcomes_jsonl(outcomes),
        evaluate.SUMMARY_FILE: json.dumps(evaluate.summary_document(stats, picks, outcomes, context=context), indent=2)
        + "\n",
        evaluate.PROPOSED_POLICY_FILE: json.dumps(document, indent=2, ensure_ascii=False) + "\n",
    }
    try:
        for name, text in outputs.items():
            evaluate.write_atomically(args.out / name, text)
    except OSError as exc:
        return _fail("evaluate", f"cannot write to {args.out}: {exc.strerror or exc}")
    failed = sum(1 for outcome in outcomes if outcome.score is None)
    print_evaluation(policy, stats, picks, out=sys.stdout, target=args.endpoint_url, args=args, failed=failed)
    return EXIT_CALLS_FAILED if failed else EXIT_OK


def _run_calls(
    args: argparse.Namespace,
    tasks: Sequence[evaluate.Task],
    call: evaluate.CallModel,
    settings: evaluate.Settings,
    checkpoint_path: Path,
) -> evaluate.RunResult:
    """Make the calls, with the progress line on stderr when it is a terminal or ``--progress`` asks.

    Raises:
        OSError: the checkpoint cannot be written.
    """
    show = not args.quiet and (args.progress or sys.stderr.isatty())
    line = evaluate.ProgressLine(len(tasks), sys.stderr) if show else None

    def notice(message: str) -> None:
        if line is not None:
            line.close()
        print(f"routed-bedrock evaluate: {message}", file=sys.stderr)

    checkpoint = evaluate.Checkpoint(checkpoint_path)
    try:
        return evaluate.run_calls(tasks, call, checkpoint, settings, workers=args.workers, progress=line, notice=notice)
    finally:
        checkpoint.close()
        if line is not None:
            line.close()


def _fail(command: str, message: str) -> int:
    print(f"routed-bedrock {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def print_evaluation(
    policy: Policy,
    stats: Mapping[str, Mapping[str, evaluate.ModelStats]],
    picks: Sequence[evaluate.TaskPick],
    *,
    out: TextIO,
    target: str | None,
    args: argparse.Namespace,
    failed: int,
) -> None:
    """Per task and model: answers, scores, latency and cost; then the proposal and the files written."""
    where = target or "Amazon Bedrock (default credentials)"
    out.write(f"Evaluation of {args.dataset} with policy {args.policy} (version {policy.version}) against {where}\n\n")
    rows = [("TASK", "MODEL", "ANSWERED", "ERRORS", "MEAN SCORE", "CORRECT", "MEAN LATENCY", "COST (USD)")]
    for task, by_model in stats.items():
        for model, s in by_model.items():
            rows.append(
                (
                    task,
                    model,
                    str(s.answered),
                    str(s.errors),
                    _maybe(s.mean_score, "{:.3f}"),
                    _maybe(s.accuracy, "{:.0%}"),
                    _maybe(s.mean_latency_ms, "{:.0f} ms"),
                    f"{s.total_cost_usd:.6f}",
                )
            )
    _table(rows, out)
    out.write(
        f"\nProposal: per task, the cheapest model within {args.tolerance} of the best mean score "
        f"(among models with at least {args.min_samples} answer(s) for the task)\n\n"
    )
    pick_rows = [("TASK", "PICKED", "SCORE", "BEST", "BEST SCORE", "COST RATIO")]
    for pick in picks:
        if pick.model is None:
            pick_rows.append((pick.task, "-", "-", "-", "-", f"unchanged: {pick.note}"))
        else:
            pick_rows.append(
                (
                    pick.task,
                    pick.model,
                    _maybe(pick.score, "{:.3f}"),
                    pick.best_model or "-",
                    _maybe(pick.best_score, "{:.3f}"),
                    _maybe(pick.cost_ratio, "{:.2f}x"),
                )
            )
    _table(pick_rows, out)
    files = ", ".join(
        [evaluate.RESULTS_FILE, evaluate.OUTCOMES_FILE, evaluate.SUMMARY_FILE, evaluate.PROPOSED_POLICY_FILE]
    )
    out.write(f"\nWrote {files} to {args.out}\n")
    if failed:
        out.write(f"{failed} call(s) failed (error rows, not scored); re-run the same command to retry them.\n")


def _maybe(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)


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
    _table(rows, out)
    out.write("\n")
    route_rows = [("ROUTE", "STATUS", "WORKING (MODEL@REGION)")]
    for route in report.routes:
        if route.ok:
            status = "FALLBACKS ONLY" if route.fallbacks_only else "ok"
            route_rows.append((route.route, status, ", ".join(f"{m}@{region}" for m, region in route.working)))
        else:
            route_rows.append((route.route, "NO WORKING MODEL", f"none of: {', '.join(route.models)}"))
    _table(route_rows, out)
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


def _table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def _shorten(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= _DETAIL_CHARS else flat[: _DETAIL_CHARS - 3] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
