"""The evaluator's logic: the metric, dataset checks, the checkpoint and resume, the proposal and its policy."""

from __future__ import annotations

import _thread
import io
import json
import threading
from datetime import date
from pathlib import Path

import pytest

from lambdas.router.policy import compile_policy, load_policy_file
from routed_bedrock.evaluation.checkpoint import (
    CHECKPOINT_FILE,
    CallRecord,
    Checkpoint,
    Settings,
    check_checkpoint,
    latest_records,
    prompt_digest,
    read_checkpoint,
)
from routed_bedrock.evaluation.dataset import Example, load_dataset
from routed_bedrock.evaluation.errors import DatasetError, EvaluationError
from routed_bedrock.evaluation.metric import CORRECT_AT, score_answer, token_f1
from routed_bedrock.evaluation.models import Answer, select_models
from routed_bedrock.evaluation.outputs import RESULT_COLUMNS, outcomes_jsonl, results_csv
from routed_bedrock.evaluation.progress import ProgressLine
from routed_bedrock.evaluation.proposal import TaskPick, propose, proposed_policy
from routed_bedrock.evaluation.runner import pending_tasks, run_calls
from routed_bedrock.evaluation.scoring import ModelStats, score_outcomes
from routed_bedrock.preflight import CallFailed

SETTINGS = Settings(max_tokens=512, temperature=0.0)


class FakeModels:
    """Answers every call from a table of (model key, prompt) -> text; counts calls per (model, prompt)."""

    def __init__(self, answers: dict[tuple[str, str], str] | None = None, *, fail: set[str] = frozenset()) -> None:
        self.answers = answers or {}
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, spec, prompt: str) -> Answer:
        with self._lock:
            self.calls.append((spec.key, prompt))
        if spec.key in self.fail:
            raise CallFailed("AccessDeniedException", "no access")
        return Answer(self.answers.get((spec.key, prompt), "no idea"), 100, 20, "end_turn")


def write_dataset(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def examples(n: int, task: str | None = "math") -> list[Example]:
    return [Example(f"q{i}", f"question {i}", "#### 7", task, i) for i in range(1, n + 1)]


# --- the metric -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "#### 72", 1.0),
        ("She has 5 apples, then buys 13. The answer is 18.", "18", 1.0),
        ("Answer: $1,080", "$1,080", 1.0),
        ("It costs 1080.00 dollars", "1,080", 1.0),
        ("I think 3, no wait, 4", "4", 1.0),
        ("The answer is 18, not 20", "18", 1.0),
        ("#### 17 (I computed 18 first)", "18", 0.0),
        ("The answer is -2.5", "-2.5", 1.0),
        ("no number here", "18", 0.0),
        ("Answer: 19", "#### 18", 0.0),
    ],
)
def test_scores_numeric_references_by_the_answers_final_number(answer, reference, expected):
    assert score_answer(answer, reference) == expected


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("Answer: B", "B", 1.0),
        ("The answer is (C).", "C", 1.0),
        ("**Answer:** D", "D", 1.0),
        ("B. Because the enzyme denatures.", "B", 1.0),
        ("(A) is right", "(A)", 1.0),
        ("B", "B.", 1.0),
        ("I would go with (E) here.", "E", 1.0),
        ("A cat is not a dog.", "A", 0.0),  # the article, not a choice
        ("Options (A) and (B) both look right.", "A", 0.0),  # no single choice
        ("Answer: C", "B", 0.0),
    ],
)
def test_scores_letter_references_by_the_chosen_letter(answer, reference, expected):
    assert score_answer(answer, reference) == expected


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("Paris", "Paris", 1.0),
        ("The Eiffel Tower!", "eiffel tower", 1.0),  # case, punctuation and articles do not count
        ("It is Paris.", "Paris", 0.5),  # precision 1/3, recall 1
        ("London", "Paris", 0.0),
        ("the", "a", 1.0),  # both normalise to nothing
        ("something", "the", 0.0),
    ],
)
def test_scores_free_text_references_by_squad_token_f1(answer, reference, expected):
    assert score_answer(answer, reference) == pytest.approx(expected)


def test_a_half_f1_answer_counts_as_correct():
    assert CORRECT_AT == 0.5
    assert token_f1("it is paris", "paris") >= CORRECT_AT


# --- the dataset ----------------------------------------------------------------------------------------


def test_reads_a_dataset_with_default_ids_blank_lines_and_optional_tasks(tmp_path):
    # Given lines with and without id and task, and a blank line
    path = write_dataset(
        tmp_path,
        [
            '{"id": "a", "prompt": "2+2?", "reference": "4", "task": "math"}',
            "",
            '{"prompt": "Capital of France?", "reference": "Paris", "source": "ignored"}',
            '{"id": 7, "prompt": "Pick", "reference": "B", "task": null}',
        ],
    )
    # When it is read
    loaded = load_dataset(path)
    # Then ids default to the line number and a missing task is None
    assert loaded == [
        Example("a", "2+2?", "4", "math", 1),
        Example("3", "Capital of France?", "Paris", None, 3),
        Example("7", "Pick", "B", None, 4),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prompt": "x", "reference": "y"', "not valid JSON"),
        ('["prompt", "x"]', "must be a JSON object, got array"),
        ('{"reference": "y"}', '"prompt" is missing'),
        ('{"prompt": "   ", "reference": "y"}', '"prompt" is blank'),
        ('{"prompt": 3, "reference": "y"}', '"prompt" must be a string, got number'),
        ('{"prompt": "x"}', '"reference" is missing'),
        ('{"prompt": "x", "reference": ["y"]}', '"reference" must be a string, got array'),
        ('{"prompt": "x", "reference": "y", "id": true}', '"id" must be a non-blank string or an integer'),
        ('{"prompt": "x", "reference": "y", "task": "Math"}', '"task" must be a use-case name'),
        ('{"prompt": "x", "reference": "y", "task": "' + "t" * 60 + '"}', "at most 59 characters"),
        ('{"prompt": "hi \\ud800", "reference": "y"}', '"prompt" holds an unpaired surrogate (U+D800)'),
    ],
)
def test_rejects_a_bad_line_naming_the_file_line_and_problem(tmp_path, line, expected):
    # Given a good first line and a bad second one
    path = write_dataset(tmp_path, ['{"prompt": "fine", "reference": "ok"}', line])
    # When it is read
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    # Then the message names the file, line 2 and the problem
    assert f"{path}:2: " in str(error.value)
    assert expected in str(error.value)


def test_rejects_every_bad_line_at_once_including_duplicate_ids(tmp_path):
    path = write_dataset(
        tmp_path,
        [
            '{"id": "a", "prompt": "x", "reference": "y"}',
            "{oops",
            '{"id": "a", "prompt": "z", "reference": "y"}',
            '{"prompt": "", "reference": "y"}',
        ],
    )
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    message = str(error.value)
    assert "has 3 bad line(s)" in message
    assert f"{path}:2: not valid JSON" in message
    assert f"{path}:3: duplicate id 'a' (first on line 1)" in message
    assert f'{path}:4: "prompt" is blank' in message


def test_rejects_invalid_utf8_an_empty_dataset_and_a_missing_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "ok", "reference": "y"}\n{"prompt": "\xff"}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: not valid UTF-8"):
        load_dataset(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DatasetError, match="holds no prompts"):
        load_dataset(empty)
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_dataset(tmp_path / "missing.jsonl")


def test_rejects_a_model_key_not_in_the_catalog(default_policy):
    with pytest.raises(EvaluationError, match="'gpt-9' not in the policy's catalog"):
        select_models(default_policy, ["nova-micro", "gpt-9"])
    assert [m.key for m in select_models(default_policy, ["claude-opus-4-5", "nova-micro"])] == [
        "nova-micro",
        "claude-opus-4-5",
    ]


# --- checkpoint and resume ------------------------------------------------------------------------------


def models_of(policy, *keys):
    return select_models(policy, list(keys))


def run(tmp_path, items, models, fake, *, workers=1):
    path = tmp_path / "out" / CHECKPOINT_FILE
    records, _ = read_checkpoint(path)
    check_checkpoint(records, items, models, SETTINGS, path=path)
    tasks = pending_tasks(items, models, records)
    checkpoint = Checkpoint(path)
    try:
        return run_calls(tasks, fake, checkpoint, SETTINGS, workers=workers)
    finally:
        checkpoint.close()


def test_an_interrupted_run_resumes_with_only_the_calls_it_had_not_finished(tmp_path, default_policy):
    # Given 6 prompts x 2 models and a run that gets Ctrl-C during its 4th call
    items, models = examples(6), models_of(default_policy, "nova-micro", "claude-sonnet-4-5")
    first = FakeModels()

    def interrupting(spec, prompt):
        answer = first(spec, prompt)
        if len(first.calls) == 4:
            _thread.interrupt_main()
        return answer

    result = run(tmp_path, items, models, interrupting)
    # Then it stops early, and the calls it finished (the one in flight included) are in the checkpoint
    assert result.interrupted and result.abandoned == 0
    assert 4 <= result.made == len(first.calls) < 12
    records, _ = read_checkpoint(tmp_path / "out" / CHECKPOINT_FILE)
    assert len(records) == result.made
    # When the same run is made again
    second = FakeModels()
    again = run(tmp_path, items, models, second, workers=3)
    # Then it makes exactly the remaining calls, none twice
    assert not again.interrupted
    assert len(second.calls) == 12 - len(first.calls)
    assert set(first.calls) | set(second.calls) == {(m.key, e.prompt) for e in items for m in models}
    assert not set(first.calls) & set(second.calls)
    # And a third run has nothing left to call
    assert pending_tasks(items, models, read_checkpoint(records_path(tmp_path))[0]) == []


def records_path(tmp_path):
    return tmp_path / "out" / CHECKPOINT_FILE


def test_failed_calls_are_error_rows_that_the_next_run_makes_again(tmp_path, default_policy):
    # Given a model that fails every call
    items, models = examples(3), models_of(default_policy, "nova-micro", "claude-sonnet-4-5")
    result = run(tmp_path, items, models, FakeModels(fail={"claude-sonnet-4-5"}))
    assert (result.made, result.errors) == (6, 3)
    # When it works again and the run is repeated
    retry = FakeModels({("claude-sonnet-4-5", "question 1"): "#### 7"})
    run(tmp_path, items, models, retry)
    # Then only the failed calls are made again, and the answers replace the error rows
    assert sorted(retry.calls) == [("claude-sonnet-4-5", f"question {i}") for i in (1, 2, 3)]
    records, _ = read_checkpoint(records_path(tmp_path))
    outcomes = score_outcomes(items, models, records, default_task="general")
    assert [(o.model.key, o.score) for o in outcomes if o.example.id == "q1"] == [
        ("nova-micro", 0.0),
        ("claude-sonnet-4-5", 1.0),
    ]


def test_an_error_never_replaces_an_answer():
    answered = record("q1", "m", error=None)
    failed = record("q1", "m", error="ThrottlingException: slow down")
    assert latest_records([failed, answered, failed]) == {("q1", "m"): answered}


def record(example_id, model, *, error=None, prompt="question 1", model_id="us.amazon.nova-micro-v1:0"):
    return CallRecord(
        id=example_id,
        model=model,
        model_id=model_id,
        region="us-east-1",
        prompt_sha256=prompt_digest(prompt),
        max_tokens=512,
        temperature=0.0,
        text="" if error else "#### 7",
        input_tokens=0 if error else 10,
        output_tokens=0 if error else 5,
        stop_reason="" if error else "end_turn",
        latency_ms=12.5,
        error=error,
    )


def test_ignores_a_torn_last_line_with_a_warning_and_repairs_the_file(tmp_path):
    # Given a checkpoint whose last write was cut short
    path = tmp_path / CHECKPOINT_FILE
    whole = json.dumps(record("q1", "nova-micro")._asdict())
    path.write_text(whole + "\n" + whole[: len(whole) // 2], encoding="utf-8")
    # When it is read
    records, warnings = read_checkpoint(path)
    # Then the whole record is kept, the torn line dropped with a warning, and the next append is its own line
    assert records == [record("q1", "nova-micro")]
    assert len(warnings) == 1 and "torn last line" in warnings[0]
    checkpoint = Checkpoint(path)
    checkpoint.append(record("q2", "nova-micro"))
    checkpoint.close()
    assert [r.id for r in read_checkpoint(path)[0]] == ["q1", "q2"]


def test_keeps_a_whole_last_record_that_only_lacks_its_newline(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    path.write_text(json.dumps(record("q1", "nova-micro")._asdict()), encoding="utf-8")
    records, warnings = read_checkpoint(path)
    assert records == [record("q1", "nova-micro")] and warnings == []
    assert path.read_text().endswith("\n")


def test_skips_a_line_that_is_not_a_call_record_with_a_warning(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    path.write_text('{"id": "q1"}\n' + json.dumps(record("q2", "nova-micro")._asdict()) + "\n")
    records, warnings = read_checkpoint(path)
    assert [r.id for r in records] == ["q2"]
    assert warnings == [f"{path}:1: not a call record; ignored (that call will be made again)"]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"prompt": "another question"}, "holds a call for id 'q1' made with another prompt than dataset line 1"),
        ({"model_id": "amazon.nova-micro-v1:0"}, "holds calls of model 'nova-micro' as amazon.nova-micro-v1:0"),
        ({"max_tokens": 64}, "made with --max-tokens 64 --temperature 0.0"),
    ],
)
def test_rejects_a_checkpoint_of_another_run(default_policy, tmp_path, changed, expected):
    # Given a checkpoint record that differs from this run in its prompt, model id or settings
    base = record("q1", "nova-micro", prompt=changed.get("prompt", "question 1"))
    stale = base._replace(**{k: v for k, v in changed.items() if k != "prompt"})
    # When it is checked against this run
    with pytest.raises(EvaluationError) as error:
        check_checkpoint(
            [stale], examples(1), models_of(default_policy, "nova-micro"), SETTINGS, path=tmp_path / "calls.jsonl"
        )
    # Then the refusal says what differs and what to do
    assert expected in str(error.value)
    assert "use another --out directory" in str(error.value)


def test_a_checkpoint_may_hold_other_prompts_and_models(default_policy, tmp_path):
    others = [record("q99", "nova-micro", prompt="gone"), record("q1", "not-selected", model_id="x.y")]
    check_checkpoint(others, examples(1), models_of(default_policy, "nova-micro"), SETTINGS, path=tmp_path)


# --- results files --------------------------------------------------------------------------------------


def test_results_csv_and_outcomes_jsonl_carry_the_documented_fields(default_policy):
    # Given one prompt answered by one model and failed by another
    items, models = examples(1, task=None), models_of(default_policy, "nova-micro", "claude-sonnet-4-5")
    records = [record("q1", "nova-micro"), record("q1", "claude-sonnet-4-5", error="AccessDeniedException: no")]
    records[1] = records[1]._replace(model_id=models[1].model_id)
    outcomes = score_outcomes(items, models, records, default_task="general")
    # When the files are built
    rows = results_csv(outcomes).splitlines()
    lines = outcomes_jsonl(outcomes).splitlines()
    # Then the CSV has a row per (prompt, model), the failed one unscored
    assert rows[0] == ",".join(RESULT_COLUMNS)
    assert rows[1].startswith("q1,general,nova-micro,us.amazon.nova-micro-v1:0,us-east-1,1.0,true,12.5,10,5,")
    assert rows[2].endswith(",,,12.5,0,0,0.00000000,,AccessDeniedException: no")
    # And the label file has a line per prompt with exactly the documented keys, failed models absent
    (line,) = (json.loads(text) for text in lines)
    assert list(line) == ["id", "prompt", "task", "reference", "models"]
    assert line["task"] == "general"
    assert list(line["models"]) == ["nova-micro"]
    assert set(line["models"]["nova-micro"]) == {
        "score",
        "correct",
        "cost_usd",
        "latency_ms",
        "output_tokens",
        "stop_reason",
    }
    assert line["models"]["nova-micro"]["cost_usd"] == pytest.approx(models[0].cost_usd(10, 5))


def test_progress_line_shows_done_errors_elapsed_and_eta():
    stream = io.StringIO()
    now = [100.0]
    line = ProgressLine(10, stream, clock=lambda: now[0])
    now[0] = 104.0
    line(4, 1)
    line.close()
    assert stream.getvalue() == "\revaluate: 4/10 calls (40%), 1 error(s), 0:04 elapsed, ETA 0:06\n"


# --- the proposal ---------------------------------------------------------------------------------------


def stats(model, score, cost, n=10):
    return ModelStats(model, n, 0, score, score, 100.0, cost * n)


def test_picks_the_cheapest_model_within_the_tolerance_of_the_best():
    # Given a cheap model 0.01 below the best and a mid one 0.05 below
    table = {
        "math": {
            "cheap": stats("cheap", 0.89, 0.001),
            "mid": stats("mid", 0.85, 0.0001),
            "strong": stats("strong", 0.90, 0.01),
        }
    }
    # When the proposal is made with a 0.02 tolerance
    (pick,) = propose(table, tolerance=0.02, min_samples=5)
    # Then the cheapest within tolerance wins, not the cheapest overall
    assert (pick.model, pick.best_model, pick.within_tolerance) == ("cheap", "strong", ("cheap", "strong"))
    assert pick.cost_ratio == pytest.approx(0.1)
    # And with no tolerance the best is picked
    assert propose(table, tolerance=0.0)[0].model == "strong"


def test_tolerance_is_inclusive_despite_float_rounding():
    table = {"t": {"cheap": stats("cheap", 0.98, 0.001), "strong": stats("strong", 1.0, 0.01)}}
    assert propose(table, tolerance=0.02)[0].model == "cheap"


def test_models_with_too_few_answers_are_not_considered():
    # Given a cheap model that aced only 3 prompts
    table = {
        "math": {"cheap": stats("cheap", 1.0, 0.001, n=3), "strong": stats("strong", 0.8, 0.01)},
        "rare": {"cheap": stats("cheap", 1.0, 0.001, n=2)},
    }
    picks = {p.task: p for p in propose(table, min_samples=5)}
    assert picks["math"].model == "strong"
    assert picks["rare"].model is None and picks["rare"].note == "no model has 5 answers"


def test_equal_scores_pick_the_cheaper_model_as_best_and_pick():
    table = {"t": {"strong": stats("strong", 1.0, 0.01), "cheap": stats("cheap", 1.0, 0.001)}}
    (pick,) = propose(table, tolerance=0.0)
    assert (pick.model, pick.best_model, pick.cost_ratio) == ("cheap", "cheap", 1.0)


def test_the_proposed_policy_validates_and_routes_each_task_to_its_pick(default_policy, tmp_path):
    # Given picks for a task on a static route (code -> deep), the default one on auto, and a new one
    picks = [
        TaskPick("code", "claude-haiku-4-5", 0.9, "claude-opus-4-5", 0.91, 0.2, ("claude-haiku-4-5", "nova-pro")),
        TaskPick("general", "nova-micro", 0.8, "nova-micro", 0.8, 1.0, ("nova-micro",)),
        TaskPick("math", "nova-lite", 0.7, "nova-lite", 0.7, 1.0, ("nova-lite",)),
        TaskPick("rare", None, None, None, None, None, (), "no model has 5 answers"),
    ]
    # When the policy is proposed
    document = proposed_policy(default_policy, picks, dataset="mine.jsonl", today=date(2026, 12, 24))
    # Then it passes the project's validation, as a dict and as a file
    compile_policy(document)
    path = tmp_path / "proposed.json"
    path.write_text(json.dumps(document))
    proposed = load_policy_file(path)
    # And each picked task has its eval- route: the pick, then models within tolerance, then the old fallbacks
    assert proposed.use_cases["code"] == "eval-code"
    code = proposed.routes["eval-code"]
    assert [c.model for c in code.candidates] == ["claude-haiku-4-5"]
    assert code.fallbacks == ("nova-pro",)  # within tolerance, then deep's (claude-haiku-4-5, nova-pro) deduplicated
    assert (code.max_tokens, code.temperature) == (2048, 0.4)  # from the deep route
    # The default use case was on auto: settings come from the default tier's moderate route (balanced)
    general = proposed.routes["eval-general"]
    assert (general.max_tokens, general.temperature) == (1024, 0.5)
    assert general.fallbacks == ("nova-pro", "nova-lite")
    # A new task is added; one without a pick is left alone
    assert proposed.use_cases["math"] == "eval-math"
    assert "rare" not in proposed.use_cases and "eval-rare" not in proposed.routes
    # The version and description say where it came from
    assert proposed.version == f"{default_policy.version}.eval-20261224"
    assert document["description"].startswith("Proposed by routed-bedrock evaluate from dataset mine.jsonl")


def test_reproposing_replaces_the_previous_eval_suffix(default_policy, policy_document):
    policy_document["policy_version"] = "v" * 50 + ".eval-20260101"
    document = proposed_policy(compile_policy(policy_document), [], dataset="d", today=date(2027, 1, 2))
    assert document["policy_version"] == "v" * 50 + ".eval-20270102"
    compile_policy(document)
