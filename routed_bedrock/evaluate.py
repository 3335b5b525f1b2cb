"""Evaluate a policy's models on your own prompts, and propose a policy from the results.

A dataset is JSONL, one object per line: ``prompt`` and ``reference`` (non-blank strings), optional ``id``
(string or integer; default the line number) and ``task`` (a use-case name of the policy schema, at most 59
characters so that ``eval-<task>`` is a valid route name). Blank lines are skipped, other fields ignored.
The whole file is checked before any model is called; each bad line is reported with its number.

Every prompt goes to every selected model once (Converse, the model's first region). The answer is scored
with a dependency-light reference metric in [0, 1]:

- the reference is a number (``18``, ``#### 18``, ``$1,080``, ``-2.5``): 1 when the answer's number equals
  it (numeric compare). The answer's number is the first after its last ``####``, else the first after its
  last "answer is" / "answer:", else its last number;
- the reference is one letter A-E (``B``, ``(B)``, ``B.``): 1 when the answer chooses that letter:
  "answer is B" / "Answer: (B)", else a letter opening the answer ("B.", "(B)", "B)", "B:" or just "B"),
  else the one letter in parentheses "(B)" the answer holds;
- otherwise SQuAD's token F1: lowercase, punctuation and the articles a/an/the removed, F1 over tokens.

An answer is ``correct`` when its score is at least 0.5. A call that fails (after botocore's standard
retries) is an error row: counted apart, never scored, and called again by the next run.

Resume: each finished call is appended to ``calls.jsonl`` in the output directory and flushed to disk at
once. A run skips the (id, model) pairs that file already holds an answer for and rebuilds every output
from it, so an interrupted run loses no finished call. A torn last line (a crash mid-write) is dropped
with a warning. A file whose prompts, model ids or settings differ from this run's is refused.

Outputs: ``model_evaluation_results.csv`` (a row per prompt and model), ``outcomes.jsonl`` (a line per
prompt with each answered model's score, the labels the learned router trains on), ``summary.json`` and
``proposed_policy.json``: per task (prompts without one count under the policy's default use case), among
the models with at least ``min_samples`` answers, the cheapest by mean cost whose mean score is within
``tolerance`` of the best, served by a route ``eval-<task>``.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import re
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from lambdas.router.policy import AUTO_ROUTE, ModelSpec, Policy
from routed_bedrock.preflight import CallFailed

CHECKPOINT_FILE = "calls.jsonl"
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
CORRECT_AT = 0.5
ROUTE_PREFIX = "eval-"
MAX_TASK_CHARS = 64 - len(ROUTE_PREFIX)
_TASK = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_REPORTED_PROBLEMS = 20
_MAX_FALLBACKS = 8  # the schema's routes.*.fallbacks maxItems
_MAX_ROUTE_DESCRIPTION = 512
_MAX_POLICY_DESCRIPTION = 1024
_MAX_POLICY_VERSION = 64
_EVAL_VERSION_SUFFIX = re.compile(r"\.eval-\d{8}$")
_SCORE_EPSILON = 1e-9


class DatasetError(ValueError):
    """The dataset cannot be used; the message names the file and each bad line."""


class EvaluationError(Exception):
    """The evaluation cannot run (bad model key, checkpoint of another run, no credentials); says what to do."""


# --- dataset ------------------------------------------------------------------------------------------


class Example(NamedTuple):
    id: str
    prompt: str
    reference: str
    task: str | None
    line: int


def load_dataset(path: Path) -> list[Example]:
    """Read and check a JSONL dataset, every line before any is used.

    Raises:
        DatasetError: the file cannot be read, holds no prompt, or has bad lines (up to 20 named, with
            their line numbers and what is wrong).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read dataset '{path}': {exc.strerror}") from None
    examples: list[Example] = []
    problems: list[str] = []
    first_line_of: dict[str, int] = {}
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line_bytes.decode("utf-8").removeprefix("\ufeff" if number == 1 else "")
        except UnicodeDecodeError as exc:
            problems.append(f"{path}:{number}: not valid UTF-8 (byte {exc.start})")
            continue
        if not text.strip():
            continue
        try:
            example = _example(text, number)
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        if example.id in first_line_of:
            problems.append(f"{path}:{number}: duplicate id {example.id!r} (first on line {first_line_of[example.id]})")
            continue
        first_line_of[example.id] = number
        examples.append(example)
    if problems:
        shown = problems[:_MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more")
        raise DatasetError(f"dataset '{path}' has {len(problems)} bad line(s):\n  " + "\n  ".join(shown))
    if not examples:
        raise DatasetError(f"dataset '{path}' holds no prompts (expected one JSON object per line)")
    return examples


def _example(text: str, number: int) -> Example:
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    if not isinstance(item, dict):
        raise ValueError(f"must be a JSON object, got {_json_type(item)}")
    prompt, reference = _text_field(item, "prompt"), _text_field(item, "reference")
    raw_id = item.get("id")
    if raw_id is None:
        example_id = str(number)
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        example_id = str(raw_id)
    elif isinstance(raw_id, str) and raw_id.strip():
        example_id = raw_id
    else:
        raise ValueError(f'"id" must be a non-blank string or an integer, got {_json_type(raw_id)} {raw_id!r}')
    task = item.get("task")
    if task is not None and (not isinstance(task, str) or not _TASK.match(task) or len(task) > MAX_TASK_CHARS):
        raise ValueError(
            f'"task" must be a use-case name (lowercase letters, digits, "_" and "-", starting with a letter or '
            f"digit, at most {MAX_TASK_CHARS} characters), got {task!r}"
        )
    return Example(example_id, prompt, reference, task, number)


def _text_field(item: Mapping[str, Any], name: str) -> str:
    if name not in item:
        raise ValueError(f'"{name}" is missing')
    value = item[name]
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be a string, got {_json_type(value)}')
    if not value.strip():
        raise ValueError(f'"{name}" is blank')
    surrogate = _LONE_SURROGATE.search(value)
    if surrogate:
        raise ValueError(
            f'"{name}" holds an unpaired surrogate (U+{ord(surrogate.group()):04X}) at character {surrogate.start()}'
        )
    return value


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def prompt_digest(prompt: str) -> str:
    """SHA-256 of a prompt: the checkpoint's proof that a finished call answered this very prompt."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


# --- models -------------------------------------------------------------------------------------------


def select_models(policy: Policy, keys: Sequence[str] | None) -> list[ModelSpec]:
    """The policy's models named by ``keys`` (catalog keys), or all of them, in catalog order.

    Raises:
        EvaluationError: a key is not in the policy's catalog.
    """
    if not keys:
        return list(policy.models.values())
    unknown = [key for key in keys if key not in policy.models]
    if unknown:
        raise EvaluationError(
            f"model(s) {', '.join(repr(k) for k in unknown)} not in the policy's catalog "
            f"(known: {', '.join(policy.models)})"
        )
    wanted = set(keys)
    return [spec for key, spec in policy.models.items() if key in wanted]


class Answer(NamedTuple):
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str


CallModel = Callable[[ModelSpec, str], Answer]
"""Ask one model (in its first region) one prompt; raises ``CallFailed`` when the call fails."""


def botocore_converse(
    models: Sequence[ModelSpec],
    *,
    endpoint_url: str | None = None,
    timeout_s: float = 60.0,
    retries: int = 2,
    max_tokens: int = 512,
    temperature: float = 0.0,
) -> CallModel:
    """A ``CallModel`` through botocore's ``bedrock-runtime`` client, one client per region made up front.

    Args:
        models: the models that will be called (each in its first region).
        endpoint_url: call this endpoint (the simulator) with throwaway static credentials instead of
            Bedrock with the default credential chain.
        timeout_s: read timeout of each attempt; connecting gets at most 3 s of it.
        retries: retries after the first attempt, with botocore's standard mode (throttling and transient
            errors, exponential backoff with jitter).
        max_tokens: ``maxTokens`` of each call, capped at the model's ``max_output_tokens``.
        temperature: ``temperature`` of each call.

    Raises:
        EvaluationError: botocore is not installed, or (real Bedrock) no credentials are found.
    """
    try:
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise EvaluationError(
            "the evaluator needs botocore: pip install 'routed-bedrock-endpoint[runtime]' (or botocore)"
        ) from None

    session = botocore.session.get_session()
    credentials: dict[str, str] = {}
    if endpoint_url:
        credentials = {"aws_access_key_id": "evaluate", "aws_secret_access_key": "evaluate"}
    elif session.get_credentials() is None:
        raise EvaluationError(
            "no AWS credentials found: configure the default credential chain (AWS_PROFILE, aws configure, "
            "SSO, ...) or pass --endpoint-url to evaluate against the local simulator"
        )
    config = Config(
        connect_timeout=min(3.0, timeout_s),
        read_timeout=timeout_s,
        retries={"mode": "standard", "total_max_attempts": retries + 1},
        user_agent_extra="routed-bedrock-evaluate",
    )
    # Clients are made here, on one thread: creating them is not thread-safe; calling them is.
    clients: dict[str, Any] = {
        region: session.create_client(
            "bedrock-runtime", region_name=region, endpoint_url=endpoint_url, config=config, **credentials
        )
        for region in dict.fromkeys(spec.regions[0] for spec in models)
    }

    def call(spec: ModelSpec, prompt: str) -> Answer:
        limit = min(max_tokens, spec.max_output_tokens or max_tokens)
        try:
            reply = clients[spec.regions[0]].converse(
                modelId=spec.model_id,
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": limit, "temperature": temperature},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CallFailed(str(error.get("Code", "Unknown")), str(error.get("Message", ""))) from None
        except BotoCoreError as exc:
            raise CallFailed(type(exc).__name__, str(exc)) from None
        blocks = reply.get("output", {}).get("message", {}).get("content", [])
        usage = reply.get("usage", {})
        return Answer(
            text="".join(block.get("text", "") for block in blocks),
            input_tokens=int(usage.get("inputTokens", 0)),
            output_tokens=int(usage.get("outputTokens", 0)),
            stop_reason=str(reply.get("stopReason", "")),
        )

    return call


# --- the metric ---------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER_MARKER = re.compile(r"answer\s+is|answer\s*:", re.IGNORECASE)
_LETTER_REFERENCE = re.compile(r"\(?([A-E])\)?\.?")
_LETTER_AFTER_MARKER = re.compile(r"(?i:answer)(?:\s+is)?[\s:*\-]*(?:\(([A-Ea-e])\)|([A-E])(?![A-Za-z0-9]))")
_LETTER_OPENING = re.compile(r"\s*\**\s*(?:\(([A-E])\)|([A-E])(?:[.):]|\s*$))")
_LETTER_IN_PARENS = re.compile(r"\(([A-E])\)")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def score_answer(answer: str, reference: str) -> float:
    """The reference metric in [0, 1]: numeric match, multiple-choice letter match, or token F1."""
    number = reference_number(reference)
    if number is not None:
        found = answer_number(answer)
        return 1.0 if found is not None and math.isclose(found, number, rel_tol=1e-9, abs_tol=1e-9) else 0.0
    letter = _LETTER_REFERENCE.fullmatch(reference.strip())
    if letter:
        return 1.0 if answer_letter(answer) == letter.group(1) else 0.0
    return token_f1(answer, reference)


def reference_number(reference: str) -> float | None:
    """The number a reference is (``18``, ``#### 18``, ``$1,080.50``), or None when it is not one."""
    text = reference.rsplit("####", 1)[-1].strip().replace(",", "").replace("$", "").rstrip(".")
    return float(text) if _PLAIN_NUMBER.fullmatch(text) else None


def answer_number(answer: str) -> float | None:
    """The number an answer gives: first after its last ``####``, else after "answer is"/"answer:", else its last."""
    if "####" in answer:
        tail: str | None = answer.rsplit("####", 1)[1]
    else:
        markers = list(_ANSWER_MARKER.finditer(answer))
        tail = answer[markers[-1].end() :] if markers else None
    if tail is not None:
        first = _NUMBER.search(tail)
        if first:
            return _number(first.group())
    numbers = _NUMBER.findall(answer)
    return _number(numbers[-1]) if numbers else None


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("$", ""))


def answer_letter(answer: str) -> str | None:
    """The multiple-choice letter (A-E) an answer chooses, or None."""
    markers = list(_LETTER_AFTER_MARKER.finditer(answer))
    if markers:
        last = markers[-1]
        return (last.group(1) or last.group(2)).upper()
    opening = _LETTER_OPENING.match(answer)
    if opening:
        return opening.group(1) or opening.group(2)
    in_parens = set(_LETTER_IN_PARENS.findall(answer))
    return in_parens.pop() if len(in_parens) == 1 else None


def normalize_tokens(text: str) -> list[str]:
    """SQuAD's normalisation: lowercase, punctuation and articles removed, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token F1 of an answer against a reference; 1.0 when both normalise to nothing."""
    answer_tokens, reference_tokens = normalize_tokens(answer), normalize_tokens(reference)
    if not answer_tokens or not reference_tokens:
        return 1.0 if answer_tokens == reference_tokens else 0.0
    common = sum((Counter(answer_tokens) & Counter(reference_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(answer_tokens), common / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


# --- the checkpoint -----------------------------------------------------------------------------------


class CallRecord(NamedTuple):
    """One finished call as ``calls.jsonl`` holds it: answered (``error`` None) or failed."""

    id: str
    model: str
    model_id: str
    region: str
    prompt_sha256: str
    max_tokens: int
    temperature: float
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str
    latency_ms: float
    error: str | None

    @classmethod
    def from_json(cls, data: object) -> CallRecord:
        """Raises ValueError when ``data`` is not a record this module wrote."""
        if not isinstance(data, dict) or set(data) != set(cls._fields):
            raise ValueError("not a call record")
        types: dict[str, tuple[type, ...]] = {
            "max_tokens": (int,),
            "input_tokens": (int,),
            "output_tokens": (int,),
            "temperature": (int, float),
            "latency_ms": (int, float),
            "error": (str, type(None)),
        }
        for name in cls._fields:
            if not isinstance(data[name], types.get(name, (str,))) or isinstance(data[name], bool):
                raise ValueError(f"field {name!r} has the wrong type")
        return cls(**data)


def read_checkpoint(path: Path) -> tuple[list[CallRecord], list[str]]:
    """The records of a checkpoint file (none when it does not exist) and warnings about lines skipped.

    An unterminated last line is what a crash mid-write leaves: it is dropped from the file (so the next
    append starts a line of its own) unless it is a whole record, which is kept.
    """
    if not path.exists():
        return [], []
    raw = path.read_bytes()
    warnings: list[str] = []
    if raw and not raw.endswith(b"\n"):
        head, _, tail = raw.rpartition(b"\n")
        try:
            CallRecord.from_json(json.loads(tail))
            repaired = raw + b"\n"
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            warnings.append(f"{path}: ignored a torn last line (a write cut short); that call will be made again")
            repaired = head + b"\n" if head else b""
        with path.open("wb") as handle:
            handle.write(repaired)
            handle.flush()
            os.fsync(handle.fileno())
        raw = repaired
    records = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(CallRecord.from_json(json.loads(line)))
        except ValueError:
            warnings.append(f"{path}:{number}: not a call record; ignored (that call will be made again)")
    return records, warnings


class Checkpoint:
    """``calls.jsonl``: one JSON line per finished call, appended and flushed to disk as each call ends.

    Safe to append from many threads; ``written`` and ``failed`` count this instance's records. After
    ``close`` appends are dropped: they come from calls a second Ctrl-C abandoned, which the next run makes
    again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO | None = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self.written = 0
        self.failed = 0

    def append(self, record: CallRecord) -> None:
        line = json.dumps(record._asdict(), ensure_ascii=False) + "\n"
        with self._lock:
            if self._handle is None:
                return
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.written += 1
            self.failed += record.error is not None

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


class Settings(NamedTuple):
    """What every call of a run is made with; a checkpoint's records must have been made with the same."""

    max_tokens: int = 512
    temperature: float = 0.0


def check_checkpoint(
    records: Iterable[CallRecord],
    examples: Sequence[Example],
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    path: Path,
) -> None:
    """Refuse a checkpoint whose records for this run's prompts and models were made differently.

    Raises:
        EvaluationError: a record answered another prompt under the same id, another model id under the
            same key, or used other settings.
    """
    by_id = {example.id: example for example in examples}
    by_key = {spec.key: spec for spec in models}
    advice = f"use another --out directory, or delete {path} to start over"
    for record in records:
        example, spec = by_id.get(record.id), by_key.get(record.model)
        if example is None or spec is None:
            continue  # another run's prompt or model: kept in the file, not used
        if record.prompt_sha256 != prompt_digest(example.prompt):
            raise EvaluationError(
                f"{path} holds a call for id {record.id!r} made with another prompt than dataset line "
                f"{example.line} holds now: the dataset changed since that run; {advice}"
            )
        if record.model_id != spec.model_id:
            raise EvaluationError(
                f"{path} holds calls of model {record.model!r} as {record.model_id}, the policy now says "
                f"{spec.model_id}; {advice}"
            )
        if (record.max_tokens, record.temperature) != settings:
            raise EvaluationError(
                f"{path} holds calls made with --max-tokens {record.max_tokens} --temperature "
                f"{record.temperature}; run with those, or {advice}"
            )


def latest_records(records: Iterable[CallRecord]) -> dict[tuple[str, str], CallRecord]:
    """Per (id, model): the last answered record, or the last failed one when none answered."""
    latest: dict[tuple[str, str], CallRecord] = {}
    for record in records:
        pair = (record.id, record.model)
        previous = latest.get(pair)
        if previous is None or record.error is None or previous.error is not None:
            latest[pair] = record
    return latest


# --- running the calls --------------------------------------------------------------------------------


class Task(NamedTuple):
    example: Example
    model: ModelSpec


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
    spec, example = task.model, task.example
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
        model=spec.key,
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


class ProgressLine:
    """A one-line progress display (done/total, errors, elapsed, ETA), redrawn at most 5 times a second."""

    def __init__(self, total: int, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._total = total
        self._stream = stream
        self._clock = clock
        self._started = clock()
        self._drawn_at = -math.inf
        self._width = 0

    def __call__(self, done: int, errors: int) -> None:
        now = self._clock()
        if now - self._drawn_at < 0.2 and done < self._total:
            return
        self._drawn_at = now
        elapsed = now - self._started
        eta = _clock_time(elapsed / done * (self._total - done)) if done else "?"
        line = (
            f"evaluate: {done}/{self._total} calls ({done * 100 // max(1, self._total)}%), {errors} error(s), "
            f"{_clock_time(elapsed)} elapsed, ETA {eta}"
        )
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """End the line, so what is printed next starts on a line of its own."""
        if self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# --- results ------------------------------------------------------------------------------------------


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


def outcomes_jsonl(outcomes: Sequence[Outcome]) -> str:
    """``outcomes.jsonl``: a line per prompt, ``{"id", "prompt", "task", "reference", "models"}``.

    ``models`` maps each model key answered for the prompt to ``{"score", "correct", "cost_usd",
    "latency_ms", "output_tokens", "stop_reason"}``; a model whose call failed is absent.
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
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines.values())


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


# --- the proposal -------------------------------------------------------------------------------------


class TaskPick(NamedTuple):
    """The proposal for one task: ``model`` None (with ``note``) when no model has enough answers."""

    task: str
    model: str | None
    score: float | None
    best_model: str | None
    best_score: float | None
    cost_ratio: float | None  # the pick's mean cost over the best model's
    within_tolerance: tuple[str, ...]  # eligible models within tolerance of the best, cheapest first
    note: str = ""


def propose(
    stats: Mapping[str, Mapping[str, ModelStats]], *, tolerance: float = 0.02, min_samples: int = 5
) -> list[TaskPick]:
    """Per task: among models with at least ``min_samples`` answers, the cheapest (mean cost per answer)
    whose mean score is at least the best mean score minus ``tolerance``.

    Ties: the best is the cheaper of equal scores, the pick the better of equal costs, then catalog order.
    """
    picks = []
    for task, by_model in stats.items():
        eligible = [s for s in by_model.values() if s.answered >= min_samples]
        if not eligible:
            picks.append(TaskPick(task, None, None, None, None, None, (), f"no model has {min_samples} answers"))
            continue
        best = max(eligible, key=lambda s: (s.mean_score or 0.0, -(s.mean_cost_usd or 0.0)))
        best_score, best_cost = best.mean_score or 0.0, best.mean_cost_usd or 0.0
        close = [s for s in eligible if (s.mean_score or 0.0) >= best_score - tolerance - _SCORE_EPSILON]
        close.sort(key=lambda s: (s.mean_cost_usd or 0.0, -(s.mean_score or 0.0)))
        pick = close[0]
        ratio = (pick.mean_cost_usd or 0.0) / best_cost if best_cost else None
        picks.append(
            TaskPick(task, pick.model, pick.mean_score, best.model, best_score, ratio, tuple(s.model for s in close))
        )
    return picks


def proposed_policy(policy: Policy, picks: Sequence[TaskPick], *, dataset: str, today: date) -> dict[str, Any]:
    """The input policy with, per picked task, a route ``eval-<task>`` and ``rules.use_cases[task]`` on it.

    The route's candidate is the pick; its fallbacks the other models within tolerance (cheapest first),
    then the fallbacks of the route the task used (for a task on ``auto`` or new to the policy: the default
    tier's ``moderate`` route, or the default use case's route), at most 8. ``max_tokens`` and
    ``temperature`` come from that route too. The caller validates the document (``compile_policy``).
    """
    document = copy.deepcopy(dict(policy.document))
    routes, use_cases = document["routes"], document["rules"]["use_cases"]
    for pick in picks:
        if pick.model is None:
            continue
        previous = policy.use_cases.get(pick.task, policy.use_cases[policy.default_use_case])
        base = policy.routes[previous if previous != AUTO_ROUTE else policy.tiers[policy.default_tier]["moderate"]]
        fallbacks = [m for m in dict.fromkeys([*pick.within_tolerance, *base.fallbacks]) if m != pick.model]
        was = f"was route '{previous}'" if pick.task in policy.use_cases else "a use case new to the policy"
        description = (
            f"Proposed by routed-bedrock evaluate from {dataset}: {pick.model} scored {pick.score or 0.0:.3f} on "
            f"'{pick.task}' prompts (best: {pick.best_model}, {pick.best_score or 0.0:.3f}); {was}."
        )
        route: dict[str, Any] = {
            "description": description[:_MAX_ROUTE_DESCRIPTION],
            "candidates": [{"model": pick.model}],
            "fallbacks": fallbacks[:_MAX_FALLBACKS],
        }
        if base.max_tokens is not None:
            route["max_tokens"] = base.max_tokens
        if base.temperature is not None:
            route["temperature"] = base.temperature
        routes[ROUTE_PREFIX + pick.task] = route
        use_cases[pick.task] = ROUTE_PREFIX + pick.task
    suffix = f".eval-{today:%Y%m%d}"
    base_version = _EVAL_VERSION_SUFFIX.sub("", policy.version)
    document["policy_version"] = base_version[: _MAX_POLICY_VERSION - len(suffix)] + suffix
    description = (
        f"Proposed by routed-bedrock evaluate from dataset {dataset} on {today.isoformat()}: per task, the "
        f"cheapest model within tolerance of the best score. Based on policy {policy.version}: "
        + str(document.get("description", ""))
    )
    document["description"] = description[:_MAX_POLICY_DESCRIPTION]
    return document


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
