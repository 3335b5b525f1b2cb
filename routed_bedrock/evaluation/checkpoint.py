"""The resumable checkpoint, ``calls.jsonl``: every finished call, appended and flushed to disk at once.

A run skips the (id, model) pairs that file already holds an answer for and rebuilds every output from it,
so an interrupted run loses no finished call. A torn last line (a crash mid-write) is dropped with a
warning. A file whose prompts, model ids or settings differ from this run's is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from lambdas.router.policy import ModelSpec
from routed_bedrock.evaluation.dataset import Example
from routed_bedrock.evaluation.errors import EvaluationError

CHECKPOINT_FILE = "calls.jsonl"


def prompt_digest(prompt: str) -> str:
    """SHA-256 of a prompt: the checkpoint's proof that a finished call answered this very prompt."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


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
