"""Read and check an evaluation dataset: every line of the JSONL file before any of it is used.

A dataset is JSONL, one object per line: ``prompt`` and ``reference`` (non-blank strings), optional ``id``
(string or integer; default the line number) and ``task`` (a use-case name of the policy schema, at most 59
characters so that ``eval-<task>`` is a valid route name). Blank lines are skipped, other fields ignored.
The whole file is checked before any model is called; each bad line is reported with its number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from routed_bedrock.evaluation.errors import DatasetError

ROUTE_PREFIX = "eval-"  # a task's proposed route is eval-<task>, so the prefix bounds a task name's length
MAX_TASK_CHARS = 64 - len(ROUTE_PREFIX)
_TASK = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_REPORTED_PROBLEMS = 20


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
