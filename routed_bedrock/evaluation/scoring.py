"""Score every (prompt, model) call of a run, and gather the scores per task and model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from lambdas.router.policy import ModelSpec
from routed_bedrock.evaluation.checkpoint import CallRecord, latest_records
from routed_bedrock.evaluation.dataset import Example
from routed_bedrock.evaluation.metric import CORRECT_AT, score_answer


class Outcome(NamedTuple):
    """One prompt's call of one model, scored (``score`` None for a failed call)."""

    example: Example
    task: str
    model: ModelSpec
    record: CallRecord
    score: float | None
    cost_usd: float

    @property
    def correct(self) -> bool | None:
        return None if self.score is None else self.score >= CORRECT_AT


def score_outcomes(
    examples: Sequence[Example], models: Sequence[ModelSpec], records: Iterable[CallRecord], *, default_task: str
) -> list[Outcome]:
    """Score the latest record of every (prompt, model) pair; each pair must have one."""
    latest = latest_records(records)
    outcomes = []
    for example in examples:
        for spec in models:
            record = latest[(example.id, spec.key)]
            answered = record.error is None
            outcomes.append(
                Outcome(
                    example=example,
                    task=example.task or default_task,
                    model=spec,
                    record=record,
                    score=score_answer(record.text, example.reference) if answered else None,
                    cost_usd=spec.cost_usd(record.input_tokens, record.output_tokens) if answered else 0.0,
                )
            )
    return outcomes


class ModelStats(NamedTuple):
    model: str
    answered: int
    errors: int
    mean_score: float | None
    accuracy: float | None
    mean_latency_ms: float | None
    total_cost_usd: float

    @property
    def mean_cost_usd(self) -> float | None:
        return self.total_cost_usd / self.answered if self.answered else None


def task_stats(outcomes: Sequence[Outcome]) -> dict[str, dict[str, ModelStats]]:
    """Per task (in dataset order) and model (in catalog order): answers, errors, means and cost."""
    grouped: dict[str, dict[str, list[Outcome]]] = {}
    for o in outcomes:
        grouped.setdefault(o.task, {}).setdefault(o.model.key, []).append(o)
    return {
        task: {model: _stats(model, rows) for model, rows in by_model.items()} for task, by_model in grouped.items()
    }


def _stats(model: str, rows: Sequence[Outcome]) -> ModelStats:
    scored = [o for o in rows if o.score is not None]
    n = len(scored)
    return ModelStats(
        model=model,
        answered=n,
        errors=len(rows) - n,
        mean_score=sum(o.score or 0.0 for o in scored) / n if n else None,
        accuracy=sum(1 for o in scored if o.correct) / n if n else None,
        mean_latency_ms=sum(o.record.latency_ms for o in scored) / n if n else None,
        total_cost_usd=sum(o.cost_usd for o in scored),
    )
