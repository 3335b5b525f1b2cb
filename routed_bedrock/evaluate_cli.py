"""``routed-bedrock evaluate``: the evaluator's command line (the work is in ``routed_bedrock.evaluation``).

    routed-bedrock evaluate --dataset FILE --policy FILE [--models A,B] [--endpoint-url URL] [--out DIR]
        [--max-tokens N] [--temperature T] [--timeout S] [--workers N] [--retries N]
        [--tolerance X] [--min-samples N] [--judge KEY | --judge-route ROUTE] [--progress | --quiet]

``evaluate`` (see ``routed_bedrock.evaluation``) exits 0 when every (prompt, model) call answered and the
outputs and proposed policy are written, 1 when they are written but some calls failed (error rows; a
re-run makes those again), 2 on bad usage, an invalid policy or dataset file, an unknown model key, a
checkpoint from another run or no credentials (nothing is called), 130 when interrupted (Ctrl-C: the
finished calls are kept in the checkpoint and the same command resumes).
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

from lambdas.router.cascade import JUDGE_SYSTEM
from lambdas.router.policy import CascadeSettings, ModelSpec, Policy, PolicyError, compile_policy, load_policy_file
from routed_bedrock.cli_support import fail, fraction, int_from, model_keys, positive_float, positive_int, table
from routed_bedrock.evaluation.checkpoint import (
    CHECKPOINT_FILE,
    CallRecord,
    Checkpoint,
    Settings,
    check_checkpoint,
    read_checkpoint,
)
from routed_bedrock.evaluation.dataset import Example, load_dataset
from routed_bedrock.evaluation.errors import DatasetError, EvaluationError
from routed_bedrock.evaluation.judging import (
    JUDGE_SETTINGS,
    in_band,
    judge_checkpoint_path,
    judge_stats,
    judge_tasks,
    verdicts,
)
from routed_bedrock.evaluation.metric import CORRECT_AT
from routed_bedrock.evaluation.models import CallModel, botocore_converse, select_models
from routed_bedrock.evaluation.outputs import (
    OUTCOMES_FILE,
    PROPOSED_POLICY_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
    outcomes_jsonl,
    results_csv,
    summary_document,
    write_atomically,
)
from routed_bedrock.evaluation.progress import ProgressLine
from routed_bedrock.evaluation.proposal import TaskPick, propose, proposed_policy
from routed_bedrock.evaluation.runner import RunResult, Task, pending_tasks, run_calls
from routed_bedrock.evaluation.scoring import ModelStats, score_outcomes, task_stats

EXIT_OK = 0
EXIT_CALLS_FAILED = 1
EXIT_INTERRUPTED = 130


def register(commands: Any) -> None:
    """Add the ``evaluate`` subcommand to the CLI's subparsers."""
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
        "--models", type=model_keys, metavar="A,B", help="only these catalog keys (default: every model)"
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
        "--max-tokens", type=int_from(1, 65536), default=512, metavar="N", help="output tokens per call"
    )
    evaluate_parser.add_argument("--temperature", type=fraction, default=0.0, metavar="T", help="0 to 1")
    evaluate_parser.add_argument("--timeout", type=positive_float, default=60.0, metavar="S", help="seconds per call")
    evaluate_parser.add_argument("--workers", type=positive_int, default=4, metavar="N", help="calls in parallel")
    evaluate_parser.add_argument(
        "--retries", type=int_from(0, 10), default=2, metavar="N", help="retries of a throttled or transient failure"
    )
    evaluate_parser.add_argument(
        "--tolerance", type=fraction, default=0.02, metavar="X", help="score below the best a pick may be"
    )
    evaluate_parser.add_argument(
        "--min-samples", type=int_from(1, 1_000_000), default=5, metavar="N", help="answers a model needs per task"
    )
    judged = evaluate_parser.add_mutually_exclusive_group()
    judged.add_argument(
        "--judge",
        metavar="KEY",
        help="also ask this catalog model, as a cascade's judge would be asked, whether each answer is correct, "
        "and report how often its verdict agrees with the reference metric (its accuracy, per task and model)",
    )
    judged.add_argument(
        "--judge-route",
        metavar="ROUTE",
        help="as --judge, with the judge of this cascade route; also report the accuracy on the answers in the "
        "route's band (scored by its confidence model), the ones the router would show its judge",
    )
    shown = evaluate_parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", help="show the progress line even when not on a terminal")
    shown.add_argument("--quiet", action="store_true", help="no progress line and no notes on stderr")
    evaluate_parser.set_defaults(run=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    def note(message: str) -> None:
        if not args.quiet:
            print(f"routed-bedrock evaluate: {message}", file=sys.stderr)

    settings = Settings(args.max_tokens, args.temperature)
    checkpoint_path = args.out / CHECKPOINT_FILE
    try:
        policy = load_policy_file(args.policy)
        # The whole dataset is checked before the checkpoint is read (and a torn line repaired) or any call made.
        examples = load_dataset(args.dataset)
        models = select_models(policy, args.models)
        judged_route = _judged_route(policy, args.judge_route) if args.judge_route else None
        judge_key = judged_route.judge.model if judged_route is not None and judged_route.judge else args.judge
        judge = select_models(policy, [judge_key])[0] if judge_key else None
        records, warnings = read_checkpoint(checkpoint_path)
        for warning in warnings:
            print(f"routed-bedrock evaluate: warning: {warning}", file=sys.stderr)
        check_checkpoint(records, examples, models, settings, path=checkpoint_path)
        tasks = pending_tasks(examples, models, records)
        # Nothing left to call (a finished run re-run): the outputs are rebuilt without a client or credentials.
        call = (
            botocore_converse(
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
    except (PolicyError, DatasetError, EvaluationError) as exc:
        return fail("evaluate", str(exc))
    except OSError as exc:
        return fail("evaluate", f"cannot use {checkpoint_path}: {exc.strerror or exc}")

    total = len(examples) * len(models)
    note(
        f"{len(examples)} prompts x {len(models)} models = {total} calls: {total - len(tasks)} answered in "
        f"{checkpoint_path}, {len(tasks)} to make"
    )
    if call is not None:
        try:
            result = _run_calls(args, tasks, call, settings, checkpoint_path)
        except OSError as exc:
            return fail("evaluate", f"cannot write {checkpoint_path}: {exc.strerror or exc}")
        if result.interrupted:
            return _interrupted(args, result, checkpoint_path)

    records, _ = read_checkpoint(checkpoint_path)
    found: dict[tuple[str, str], str] | None = None
    if judge is not None:
        judged = _judge(args, judge, examples=examples, models=models, records=records, note=note)
        if isinstance(judged, int):
            return judged
        found = judged
    outcomes = score_outcomes(examples, models, records, default_task=policy.default_use_case)
    stats = task_stats(outcomes)
    picks = propose(stats, tolerance=args.tolerance, min_samples=args.min_samples)
    document = proposed_policy(policy, picks, dataset=args.dataset.name, today=date.today())
    try:
        compile_policy(document)
    except PolicyError as exc:  # a bug here, not the user's: refuse to write a policy the router would reject
        return fail("evaluate", f"the proposed policy does not validate: {exc}")
    context = {
        "dataset": str(args.dataset),
        "policy": {"file": str(args.policy), "version": policy.version},
        "proposed_policy_version": document["policy_version"],
        "endpoint_url": args.endpoint_url,
        "models": [spec.key for spec in models],
        "metric": f"numeric match, multiple-choice letter match or SQuAD token F1; correct when score >= {CORRECT_AT}",
        "settings": {
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "tolerance": args.tolerance,
            "min_samples": args.min_samples,
        },
    }
    summary = summary_document(stats, picks, outcomes, context=context)
    band = in_band(outcomes, judged_route, policy.complexity.learned) if judged_route is not None else None
    judge_rows = judge_stats(outcomes, found, band) if judge is not None and found is not None else None
    if judge is not None:
        summary["judge"] = {"model": judge.key, "model_id": judge.model_id, "tasks": judge_rows}
        if judged_route is not None and judged_route.judge is not None:
            summary["judge"]["route"] = args.judge_route
            summary["judge"]["band"] = [judged_route.judge.consult_from, judged_route.judge.consult_below]
    outputs = {
        RESULTS_FILE: results_csv(outcomes),
        OUTCOMES_FILE: outcomes_jsonl(outcomes, found),
        SUMMARY_FILE: json.dumps(summary, indent=2) + "\n",
        PROPOSED_POLICY_FILE: json.dumps(document, indent=2, ensure_ascii=False) + "\n",
    }
    try:
        for name, text in outputs.items():
            write_atomically(args.out / name, text)
    except OSError as exc:
        return fail("evaluate", f"cannot write to {args.out}: {exc.strerror or exc}")
    failed = sum(1 for outcome in outcomes if outcome.score is None)
    failed += sum(1 for verdict in (found or {}).values() if verdict == "failed")
    print_evaluation(policy, stats, picks, out=sys.stdout, target=args.endpoint_url, args=args, failed=failed)
    if judge is not None and judge_rows is not None:
        print_judge(judge, judge_rows, out=sys.stdout)
    return EXIT_CALLS_FAILED if failed else EXIT_OK


def _interrupted(args: argparse.Namespace, result: RunResult, path: Path) -> int:
    """Say what an interrupted phase kept and how to resume it."""
    abandoned = f"; {result.abandoned} call(s) in flight were abandoned" if result.abandoned else ""
    print(
        f"routed-bedrock evaluate: interrupted: {result.made} finished call(s) of this run are kept in "
        f"{path}{abandoned}. Resume with the same command (answered calls are not made "
        f"again):\n  routed-bedrock {shlex.join(args.argv)}",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED


def _judged_route(policy: Policy, name: str) -> CascadeSettings:
    """The cascade settings of ``--judge-route``; an ``EvaluationError`` when it is no cascade with a judge."""
    route = policy.routes.get(name)
    if route is None or route.cascade is None or route.cascade.judge is None:
        raise EvaluationError(
            f"--judge-route {name!r} is not a cascade route with a judge in the policy (cascade routes with one: "
            f"{', '.join(n for n, r in policy.routes.items() if r.cascade and r.cascade.judge) or 'none'})"
        )
    return route.cascade


def _judge(
    args: argparse.Namespace,
    judge: ModelSpec,
    *,
    examples: Sequence[Example],
    models: Sequence[ModelSpec],
    records: Sequence[CallRecord],
    note: Callable[[str], None],
) -> dict[tuple[str, str], str] | int:
    """The judge phase: the verdicts still missing are asked for and checkpointed; then every verdict, or an
    exit code when the phase cannot finish."""
    path = judge_checkpoint_path(args.out, judge)
    try:
        judged, warnings = read_checkpoint(path)
        for warning in warnings:
            print(f"routed-bedrock evaluate: warning: {warning}", file=sys.stderr)
        tasks = judge_tasks(examples, models, records, judge, judged)
        note(f"judge {judge.key}: {len(tasks)} verdict(s) to ask for, the rest in {path}")
        if tasks:
            call = botocore_converse(
                [judge],
                endpoint_url=args.endpoint_url,
                timeout_s=args.timeout,
                retries=args.retries,
                max_tokens=JUDGE_SETTINGS.max_tokens,
                temperature=JUDGE_SETTINGS.temperature,
                system=JUDGE_SYSTEM,
            )
            result = _run_calls(args, tasks, call, JUDGE_SETTINGS, path)
            if result.interrupted:
                return _interrupted(args, result, path)
            judged, _ = read_checkpoint(path)
    except EvaluationError as exc:
        return fail("evaluate", str(exc))
    except OSError as exc:
        return fail("evaluate", f"cannot use {path}: {exc.strerror or exc}")
    return verdicts(examples, models, records, judge, judged)


def print_judge(judge: ModelSpec, rows: Mapping[str, Mapping[str, Any]], *, out: TextIO) -> None:
    """Per task and model: how often the judge's clear verdicts agree with the reference metric."""
    out.write(
        f"\nJudge {judge.key}: is each answer correct? Accuracy is the share of its clear verdicts (CORRECT or "
        "INCORRECT) that agree with the reference metric; see benchmarks/cascade_judge.py for what it is worth\n\n"
    )
    header = ("TASK", "ANSWERS OF", "VETOED", "JUDGED", "UNCLEAR", "FAILED", "ACCURACY")
    banded = any("in_band" in row for by_model in rows.values() for row in by_model.values())
    lines: list[tuple[str, ...]] = [(*header, "IN BAND", "ACCURACY IN BAND") if banded else header]
    for task, by_model in rows.items():
        for model, row in by_model.items():
            counts = (row["vetoed"], row["judged"], row["unclear"], row["failed"])
            line = (task, model, *map(str, counts), _maybe(row["accuracy"], "{:.0%}"))
            if banded:
                line = (*line, str(row["in_band"]["judged"]), _maybe(row["in_band"]["accuracy"], "{:.0%}"))
            lines.append(line)
    table(lines, out)


def _run_calls(
    args: argparse.Namespace,
    tasks: Sequence[Task],
    call: CallModel,
    settings: Settings,
    checkpoint_path: Path,
) -> RunResult:
    """Make the calls, with the progress line on stderr when it is a terminal or ``--progress`` asks.

    Raises:
        OSError: the checkpoint cannot be written.
    """
    show = not args.quiet and (args.progress or sys.stderr.isatty())
    line = ProgressLine(len(tasks), sys.stderr) if show else None

    def notice(message: str) -> None:
        if line is not None:
            line.close()
        print(f"routed-bedrock evaluate: {message}", file=sys.stderr)

    checkpoint = Checkpoint(checkpoint_path)
    try:
        return run_calls(tasks, call, checkpoint, settings, workers=args.workers, progress=line, notice=notice)
    finally:
        checkpoint.close()
        if line is not None:
            line.close()


def print_evaluation(
    policy: Policy,
    stats: Mapping[str, Mapping[str, ModelStats]],
    picks: Sequence[TaskPick],
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
    table(rows, out)
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
    table(pick_rows, out)
    files = ", ".join([RESULTS_FILE, OUTCOMES_FILE, SUMMARY_FILE, PROPOSED_POLICY_FILE])
    out.write(f"\nWrote {files} to {args.out}\n")
    if failed:
        out.write(f"{failed} call(s) failed (error rows, not scored); re-run the same command to retry them.\n")


def _maybe(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)
