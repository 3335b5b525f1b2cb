"""Make the calls a run still needs, at most ``workers`` at once, recording each in the checkpoint as it ends.

A call that fails (after botocore's standard retries) is recorded as an error row: counted apart, never
scored, and called again by the next run. Ctrl-C stops the run without losing a finished call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import NamedTuple

from lambdas.router.policy import ModelSpec
from routed_bedrock.evaluation.checkpoint import CallRecord, Checkpoint, Settings, prompt_digest
from routed_bedrock.evaluation.dataset import Example
from routed_bedrock.evaluation.models import Answer, CallModel
from routed_bedrock.preflight import CallFailed


class Task(NamedTuple):
    example: Example
    model: ModelSpec  # recorded as the call's ``model``
    caller: ModelSpec | None = None  # the model called, when another (a judge reading ``model``'s answer)


def pending_tasks(
    examples: Sequence[Example], models: Sequence[ModelSpec], records: Iterable[CallRecord]
) -> list[Task]:
    """The (prompt, model) calls the checkpoint holds no answer for, prompt by prompt."""
    answered = {(r.id, r.model) for r in records if r.error is None}
    return [Task(e, spec) for e in examples for spec in models if (e.id, spec.key) not in answered]


class RunResult(NamedTuple):
    made: int  # calls finished and recorded by this run
    errors: int  # of which failed
    interrupted: bool
    abandoned: int  # calls in flight a second Ctrl-C stopped waiting for


Progress = Callable[[int, int], None]
"""Told (calls done, of which errors) as calls finish."""


def run_calls(
    tasks: Sequence[Task],
    call: CallModel,
    checkpoint: Checkpoint,
    settings: Settings,
    *,
    workers: int = 4,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
) -> RunResult:
    """Make the calls, at most ``workers`` at once, recording each in the checkpoint as it finishes.

    Ctrl-C (KeyboardInterrupt) stops submitting; the calls in flight finish and are recorded. A second
    Ctrl-C stops waiting for them: they are left unrecorded, and the next run makes them again.

    Args:
        tasks: the calls to make.
        call: makes one call.
        checkpoint: where each finished call is appended.
        settings: recorded with each call.
        workers: calls in flight at once.
        progress: told (done, errors) as calls finish.
        notice: told what happens on Ctrl-C.

    Raises:
        OSError: a record could not be written to the checkpoint.
    """
    queue = iter(tasks)
    in_flight: set[Future[CallRecord]] = set()
    written, failed = checkpoint.written, checkpoint.failed
    interrupted = False
    abandoned = 0
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="evaluate")

    def submit_next() -> None:
        task = next(queue, None)
        if task is not None:
            in_flight.add(pool.submit(_call_and_record, call, checkpoint, settings, task))

    # Counts come from the checkpoint, so a Ctrl-C landing anywhere here cannot make them wrong.
    def collect(finished: Iterable[Future[CallRecord]]) -> None:
        for future in finished:
            future.result()  # raises what recording the call raised
            in_flight.discard(future)
        if progress is not None:
            progress(checkpoint.written - written, checkpoint.failed - failed)

    try:
        try:
            for _ in range(max(1, workers)):
                submit_next()
            while in_flight:
                finished, _ = wait(in_flight, timeout=0.25, return_when=FIRST_COMPLETED)
                for _ in finished:
                    submit_next()
                collect(finished)
        except KeyboardInterrupt:
            interrupted = True
            if notice is not None and in_flight:
                notice(f"interrupted: finishing the {len(in_flight)} call(s) in flight (Ctrl-C again to abandon them)")
            try:
                collect(wait(in_flight).done)
            except KeyboardInterrupt:
                abandoned = sum(1 for future in in_flight if not future.done())
    finally:
        pool.shutdown(wait=not abandoned)
    return RunResult(checkpoint.written - written, checkpoint.failed - failed, interrupted, abandoned)


def _call_and_record(call: CallModel, checkpoint: Checkpoint, settings: Settings, task: Task) -> CallRecord:
    spec, example = task.caller or task.model, task.example
    started = time.perf_counter()
    answer = Answer("", 0, 0, "")
    error: str | None = None
    try:
        answer = call(spec, example.prompt)
    except CallFailed as exc:
        error = f"{exc.code}: {exc.message}"
    except Exception as exc:  # a broken call is an error row, never a crashed run
        error = f"{type(exc).__name__}: {exc}"
    record = CallRecord(
        id=example.id,
        model=task.model.key,
        model_id=spec.model_id,
        region=spec.regions[0],
        prompt_sha256=prompt_digest(example.prompt),
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        text=answer.text,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        stop_reason=answer.stop_reason,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        error=error,
    )
    checkpoint.append(record)
    return record
