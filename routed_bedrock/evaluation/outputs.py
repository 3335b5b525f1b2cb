"""The files an evaluation writes to its output directory, each written whole or not at all.

``model_evaluation_results.csv`` (a row per prompt and model), ``outcomes.jsonl`` (a line per prompt with
each answered model's score, the labels the learned router trains on), ``summary.json`` (statistics and the
proposal) and ``proposed_policy.json``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from routed_bedrock.evaluation.dataset import ROUTE_PREFIX
from routed_bedrock.evaluation.proposal import TaskPick
from routed_bedrock.evaluation.scoring import ModelStats, Outcome

RESULTS_FILE = "model_evaluation_results.csv"
OUTCOMES_FILE = "outcomes.jsonl"
SUMMARY_FILE = "summary.json"
PROPOSED_POLICY_FILE = "proposed_policy.json"
RESULT_COLUMNS = (
    "id",
    "task",
    "model",
    "model_id",
    "region",
    "score",
    "correct",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "stop_reason",
    "error",
)


def results_csv(outcomes: Iterable[Outcome]) -> str:
    """``model_evaluation_results.csv``: a row per prompt and model, ``RESULT_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for o in outcomes:
        r = o.record
        writer.writerow(
            [
                o.example.id,
                o.task,
                o.model.key,
                r.model_id,
                r.region,
                "" if o.score is None else round(o.score, 4),
                "" if o.correct is None else str(o.correct).lower(),
                r.latency_ms,
                r.input_tokens,
                r.output_tokens,
                f"{o.cost_usd:.8f}",
                r.stop_reason,
                r.error or "",
            ]
        )
    return buffer.getvalue()


def outcomes_jsonl(outcomes: Sequence[Outcome], verdicts: Mapping[tuple[str, str], str] | None = None) -> str:
    """``outcomes.jsonl``: a line per prompt, ``{"id", "prompt", "task", "reference", "models"}``.

    ``models`` maps each model key answered for the prompt to ``{"score", "correct", "cost_usd",
    "latency_ms", "output_tokens", "stop_reason"}``, plus ``"judge"`` (the judge's verdict on that answer) in a
    run with ``--judge``; a model whose call failed is absent.
    """
    lines: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        line = lines.setdefault(
            o.example.id,
            {
                "id": o.example.id,
                "prompt": o.example.prompt,
                "task": o.task,
                "reference": o.example.reference,
                "models": {},
            },
        )
        if o.score is not None:
            line["models"][o.model.key] = {
                "score": round(o.score, 4),
                "correct": o.correct,
                "cost_usd": round(o.cost_usd, 8),
                "latency_ms": o.record.latency_ms,
                "output_tokens": o.record.output_tokens,
                "stop_reason": o.record.stop_reason,
            }
            verdict = (verdicts or {}).get((o.example.id, o.model.key))
            if verdict is not None:
                line["models"][o.model.key]["judge"] = verdict
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines.values())


def summary_document(
    stats: Mapping[str, Mapping[str, ModelStats]],
    picks: Sequence[TaskPick],
    outcomes: Sequence[Outcome],
    *,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """``summary.json``: the run's context, call counts, per task and model statistics, and the proposal."""
    prompts: dict[str, set[str]] = {}
    for o in outcomes:
        prompts.setdefault(o.task, set()).add(o.example.id)
    errors = sum(1 for o in outcomes if o.score is None)
    return {
        **context,
        "calls": {"total": len(outcomes), "answered": len(outcomes) - errors, "errors": errors},
        "tasks": {
            task: {
                "prompts": len(prompts.get(task, ())),
                "models": {
                    model: {
                        "n": s.answered,
                        "errors": s.errors,
                        "mean_score": _round(s.mean_score, 4),
                        "accuracy": _round(s.accuracy, 4),
                        "mean_latency_ms": _round(s.mean_latency_ms, 1),
                        "total_cost_usd": round(s.total_cost_usd, 8),
                        "mean_cost_usd": _round(s.mean_cost_usd, 8),
                    }
                    for model, s in by_model.items()
                },
            }
            for task, by_model in stats.items()
        },
        "proposal": {
            pick.task: {
                "model": pick.model,
                "route": ROUTE_PREFIX + pick.task if pick.model else None,
                "score": _round(pick.score, 4),
                "best_model": pick.best_model,
                "best_score": _round(pick.best_score, 4),
                "cost_ratio": _round(pick.cost_ratio, 4),
                "within_tolerance": list(pick.within_tolerance),
                "note": pick.note,
            }
            for pick in picks
        },
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def write_atomically(path: Path, text: str) -> None:
    """Write a whole file or nothing: a crash mid-write leaves the previous version in place."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
