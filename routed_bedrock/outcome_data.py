"""Labelled outcomes: prompts with how well a cheap ("weak") and a strong model answered them.

Two sources: RouteLLM's per-prompt files (``../shared/datasets/routellm``: gsm8k, and mmlu one file per
subject) and the evaluator's ``outcomes.jsonl``. ``split`` is the seeded 50/50 train/test split that both
the trainer (train half) and ``benchmarks/routing_quality.py`` (test half) use.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

WEAK_COLUMN = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_COLUMN = "gpt-4-1106-preview"
_T = TypeVar("_T")


class TrainingError(ValueError):
    """The training data or options are unusable; the message says which file, line or value."""


class Labelled(NamedTuple):
    """One prompt and how well the weak and the strong model answered it (1 right, 0 wrong).

    ``group`` is what the prompt is about when the data says so (an mmlu subject, an evaluator task label):
    training may pull each label towards its group's mean (``Hyper.group_smoothing``). Serving never sees it.
    """

    prompt: str
    weak: float
    strong: float
    group: str | None = None


def _bool(value: str, where: str) -> float:
    if value in ("True", "False"):
        return 1.0 if value == "True" else 0.0
    raise TrainingError(f"{where}: expected 'True' or 'False', got {value!r}")


def routellm_files(data: Path) -> dict[str, list[Path]]:
    """The CSV files of each RouteLLM set; fails clearly when the directory is absent or incomplete."""
    sets = {
        "gsm8k": [data / "gsm8k" / "gsm8k_responses.csv"],
        "mmlu": sorted((data / "mmlu").glob("*.csv")),
    }
    for name, paths in sets.items():
        if not paths or not all(p.is_file() for p in paths):
            raise FileNotFoundError(
                f"routellm data for {name!r} not found under {data} (expected ../shared/datasets/routellm beside "
                "the repository, or pass --data DIR)"
            )
    return sets


def read_routellm(paths: Sequence[Path]) -> list[dict[str, str]]:
    """The rows of RouteLLM outcome CSVs, checked for the columns this project reads."""
    rows: list[dict[str, str]] = []
    grouped = len(paths) > 1  # one file per subject (mmlu): the subject is the group
    for path in paths:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"prompt", WEAK_COLUMN, STRONG_COLUMN} - set(reader.fieldnames or ())
            if missing:
                raise TrainingError(f"{path}: missing columns {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                row["_where"] = f"{path.name}:{line}"
                if grouped:
                    row["_group"] = path.stem.removeprefix("mmlu_")
                rows.append(row)
    return rows


def routellm_labelled(rows: Iterable[Mapping[str, str]]) -> list[Labelled]:
    return [
        Labelled(
            row["prompt"],
            _bool(row[WEAK_COLUMN], row["_where"]),
            _bool(row[STRONG_COLUMN], row["_where"]),
            row.get("_group"),
        )
        for row in rows
    ]


def read_outcomes(path: Path, weak: str, strong: str) -> dict[str, list[Labelled]]:
    """The evaluator's ``outcomes.jsonl`` as labelled prompts per task label, for one (weak, strong) pair.

    Prompts where either model has no score (a failed call) are left out.
    """
    sets: dict[str, list[Labelled]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TrainingError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TrainingError(f"cannot read {path}: not UTF-8 text (byte {exc.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            prompt = record["prompt"]
            models = record["models"]
            scores = [models.get(name, {}).get("score") for name in (weak, strong)]
        except RecursionError:
            raise TrainingError(f"{path}:{number}: not an outcome line (nested too deeply)") from None
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise TrainingError(f"{path}:{number}: not an outcome line ({exc.__class__.__name__}: {exc})") from None
        if not isinstance(prompt, str) or not all(isinstance(s, int | float) for s in scores):
            continue
        task = str(record.get("task") or "default")
        sets.setdefault(task, []).append(Labelled(prompt, float(scores[0]), float(scores[1])))
    if not sets:
        raise TrainingError(f"{path}: no prompt has scores for both {weak!r} and {strong!r}")
    return sets


def split(items: Sequence[_T], seed: int, set_name: str) -> tuple[list[_T], list[_T]]:
    """A fixed 50/50 train/test split by a seeded shuffle (string seeds are stable across runs and platforms)."""
    order = list(range(len(items)))
    random.Random(f"{seed}:split:{set_name}").shuffle(order)
    half = len(order) // 2
    return [items[i] for i in order[:half]], [items[i] for i in order[half:]]


class Answered(NamedTuple):
    """A cheap model's answer to a prompt, whether it was right, and whether the strong model was."""

    prompt: str
    answer: str
    stop_reason: str
    prompt_score: float | None
    weak: float
    strong: float


def routellm_answers(rows: Sequence[Mapping[str, str]], prompt_scores: Sequence[float | None]) -> list[Answered]:
    """The weak model's responses from RouteLLM rows that carry them (gsm8k); its stop reason is unknown there."""
    return [
        Answered(
            row["prompt"],
            row[f"{WEAK_COLUMN}_response"],
            "end_turn",
            score,
            _bool(row[WEAK_COLUMN], row["_where"]),
            _bool(row[STRONG_COLUMN], row["_where"]),
        )
        for row, score in zip(rows, prompt_scores, strict=True)
    ]
