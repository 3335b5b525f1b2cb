"""The judge phase of an evaluation (``evaluate --judge MODEL``): how often a cascade's judge would be right.

A cascade's judge (``cascade.judge`` in the policy) reads a cheap answer and replies CORRECT or INCORRECT. The
one figure no public data gives is how often that verdict is right, which is what decides whether a judge pays
(``benchmarks/cascade_judge.py``). Here the judge reads every answered call of the run the router could show
it, exactly as the router would ask it (``cascade.judge_messages`` and ``JUDGE_SYSTEM``, temperature 0,
``JUDGE_SETTINGS.max_tokens`` output tokens), and each verdict (``cascade.judge_verdict``) is compared with
the reference metric's. An answer the router never shows a judge (a veto: cut at max_tokens, empty, a
refusal; ``cascade.VETO_SIGNALS``) is not judged but counted as "vetoed": such answers are easy to call
wrong and would flatter the accuracy.

With ``--judge-route ROUTE`` (a cascade route with a judge) the judge is that route's, and each answer is also
scored by the route's confidence model as the router would (``in_band``): the accuracy inside the route's
band, the only answers the router shows its judge, is reported apart. It is the figure that decides whether
that judge pays; the accuracy on all answers is likely higher, the band holding the hardest calls.

The verdicts are checkpointed like the answers, one file per judge (``judge_calls.<key>.jsonl``): a re-run
makes only the verdicts missing, and an answer that changed (a failed call answered by a later run) is judged
again, since its record holds the digest of the text the judge read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lambdas.router.cascade import JUDGE_MAX_TOKENS, VETO_SIGNALS, answer_signals, judge_text, judge_verdict
from lambdas.router.learned import LearnedRouter
from lambdas.router.policy import CascadeSettings, ModelSpec
from routed_bedrock.evaluation.checkpoint import CallRecord, Settings, latest_records, prompt_digest
from routed_bedrock.evaluation.dataset import Example
from routed_bedrock.evaluation.runner import Task
from routed_bedrock.evaluation.scoring import Outcome

JUDGE_SETTINGS = Settings(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)


def judge_checkpoint_path(out: Path, judge: ModelSpec) -> Path:
    return out / f"judge_calls.{judge.key}.jsonl"


def vetoed(example: Example, answer: CallRecord) -> bool:
    """Whether the router would escalate this answer without asking a judge (``cascade.VETO_SIGNALS``)."""
    signals = answer_signals(example.prompt, answer.text, answer.stop_reason)
    return any(signals[name] for name in VETO_SIGNALS)


def _judgeable(
    examples: Sequence[Example], models: Sequence[ModelSpec], records: Iterable[CallRecord]
) -> list[tuple[Example, ModelSpec, str | None]]:
    """Every answered (prompt, model) of the run with the judge's message about it (None: a vetoed answer)."""
    latest = latest_records(records)
    found = []
    for example in examples:
        for spec in models:
            answer = latest.get((example.id, spec.key))
            if answer is not None and answer.error is None:
                text = None if vetoed(example, answer) else judge_text(example.prompt, answer.text)
                found.append((example, spec, text))
    return found


def _usable(judge: ModelSpec, judged: Iterable[CallRecord]) -> dict[tuple[str, str, str], CallRecord]:
    """This judge's verdicts (its model id, the judge's settings) by (id, model, digest of what it read); the
    last answered one wins, else the last failure."""
    usable: dict[tuple[str, str, str], CallRecord] = {}
    for record in judged:
        if record.model_id != judge.model_id or (record.max_tokens, record.temperature) != JUDGE_SETTINGS:
            continue  # another judge model or other settings: kept in the file, not used
        key = (record.id, record.model, record.prompt_sha256)
        previous = usable.get(key)
        if previous is None or record.error is None or previous.error is not None:
            usable[key] = record
    return usable


def _current(
    examples: Sequence[Example],
    models: Sequence[ModelSpec],
    records: Iterable[CallRecord],
    judge: ModelSpec,
    judged: Iterable[CallRecord],
) -> list[tuple[Example, ModelSpec, str | None, CallRecord | None]]:
    """Every answered (prompt, model) with the judge's message about it (None: vetoed) and the judge's record
    on that very message (None: not asked yet)."""
    usable = _usable(judge, judged)
    return [
        (example, spec, text, usable.get((example.id, spec.key, prompt_digest(text))) if text is not None else None)
        for example, spec, text in _judgeable(examples, models, records)
    ]


def judge_tasks(
    examples: Sequence[Example],
    models: Sequence[ModelSpec],
    records: Iterable[CallRecord],
    judge: ModelSpec,
    judged: Iterable[CallRecord],
) -> list[Task]:
    """The verdicts still to get: one per answered call whose current answer the judge has not answered on."""
    return [
        Task(example._replace(prompt=text), spec, caller=judge)
        for example, spec, text, verdict in _current(examples, models, records, judge, judged)
        if text is not None and (verdict is None or verdict.error is not None)
    ]


def verdicts(
    examples: Sequence[Example],
    models: Sequence[ModelSpec],
    records: Iterable[CallRecord],
    judge: ModelSpec,
    judged: Iterable[CallRecord],
) -> dict[tuple[str, str], str]:
    """Per answered (id, model): the judge's verdict on the current answer, "correct", "incorrect", "unclear",
    "failed" (its call failed) or "vetoed" (not shown to a judge); absent where it has not been asked."""
    found: dict[tuple[str, str], str] = {}
    for example, spec, text, verdict in _current(examples, models, records, judge, judged):
        if text is None:
            found[(example.id, spec.key)] = "vetoed"
        elif verdict is not None:
            found[(example.id, spec.key)] = "failed" if verdict.error is not None else judge_verdict(verdict.text)
    return found


def in_band(
    outcomes: Sequence[Outcome], cascade: CascadeSettings, learned: LearnedRouter | None
) -> dict[tuple[str, str], bool]:
    """Per answered (id, model): whether the route's judge would be asked about it, by the route's confidence
    (with the learned router's prompt score, as the router computes it) and band."""
    assert cascade.judge is not None
    band: dict[tuple[str, str], bool] = {}
    for o in outcomes:
        if o.score is None:
            continue
        prompt_score = learned.score(o.example.prompt) if learned is not None else None
        confidence = cascade.confidence.score(o.example.prompt, o.record.text, o.record.stop_reason, prompt_score)
        band[(o.example.id, o.model.key)] = cascade.judge.consulted(confidence.value)
    return band


def _counts() -> dict[str, Any]:
    return {"judged": 0, "unclear": 0, "failed": 0, "agreed": 0, "accuracy": None}


def _count(row: dict[str, Any], verdict: str, correct: bool) -> None:
    row["judged"] += 1
    if verdict in ("unclear", "failed"):
        row[verdict] += 1
    elif (verdict == "correct") == correct:
        row["agreed"] += 1


def _accuracy(row: dict[str, Any]) -> None:
    clear = row["judged"] - row["unclear"] - row["failed"]
    row["accuracy"] = round(row["agreed"] / clear, 4) if clear else None


def judge_stats(
    outcomes: Sequence[Outcome],
    found: Mapping[tuple[str, str], str],
    band: Mapping[tuple[str, str], bool] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per task and model: answers vetoed (not judged), verdicts, how many were unclear or failed, and the
    accuracy of the clear ones (the verdict agrees with the reference metric's correct or not); with ``band``,
    the same counts again for the answers in the route's band (``in_band``)."""
    stats: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        verdict = found.get((o.example.id, o.model.key))
        if verdict is None or o.correct is None:
            continue
        row = stats.setdefault(o.task, {}).setdefault(
            o.model.key, {"vetoed": 0, **_counts(), **({"in_band": _counts()} if band is not None else {})}
        )
        if verdict == "vetoed":
            row["vetoed"] += 1
            continue
        _count(row, verdict, o.correct)
        if band is not None and band.get((o.example.id, o.model.key)):
            _count(row["in_band"], verdict, o.correct)
    for by_model in stats.values():
        for row in by_model.values():
            _accuracy(row)
            if "in_band" in row:
                _accuracy(row["in_band"])
    return stats
