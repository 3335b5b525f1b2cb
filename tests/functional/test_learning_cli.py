"""``routed-bedrock score`` and ``routed-bedrock train`` end to end on small files (no model call, no AWS)."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file
from routed_bedrock.cli import main
from routed_bedrock.outcome_data import STRONG_COLUMN, WEAK_COLUMN

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    {"id": "greeting", "prompt": "Hello!"},
    {
        "id": 2,
        "prompt": "Analyze the trade-offs between a microservice architecture and a modular monolith. First list "
        "the risks, then compare the costs, and finally recommend a migration strategy.",
    },
    {"prompt": "Solve 3x + 2 = 11 for x."},
]
FILLER = ["apple", "river", "blue", "quick", "table", "green", "stone", "light", "paper", "music", "cloud", "north"]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def synthetic_prompts(n: int, seed: int) -> list[tuple[str, bool]]:
    """(prompt, needs the strong model): every third prompt carries "hard", the others do not."""
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 9))]
        if i % 3 == 0:
            words.insert(rng.randint(0, len(words)), "hard")
        prompts.append((" ".join(words), i % 3 == 0))
    return prompts


def write_outcomes(path: Path, n: int = 160) -> Path:
    """The evaluator's outcomes.jsonl for nova-micro and claude-sonnet-4-5 over two tasks."""
    lines = []
    for i, (prompt, hard) in enumerate(synthetic_prompts(n, seed=3)):
        lines.append(
            {
                "id": f"p{i}",
                "prompt": prompt,
                "task": "math" if i % 2 else "general",
                "reference": "42",
                "models": {
                    "nova-micro": {"score": 0.0 if hard else 1.0, "correct": not hard},
                    "claude-sonnet-4-5": {"score": 1.0, "correct": True},
                },
            }
        )
    return write_jsonl(path, lines)


def write_routellm(root: Path, n: int = 100) -> Path:
    """A tiny copy of the RouteLLM layout: gsm8k/gsm8k_responses.csv and two mmlu subject files."""
    columns = ["prompt", WEAK_COLUMN, STRONG_COLUMN]

    def write(path: Path, rows: list[tuple[str, bool]], responses: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns + ([f"{WEAK_COLUMN}_response", f"{STRONG_COLUMN}_response"] if responses else []))
            for prompt, hard in rows:
                row = [prompt, "False" if hard else "True", "True"]
                writer.writerow(row + (["The answer is 7.", "The answer is 7."] if responses else []))

    write(root / "gsm8k" / "gsm8k_responses.csv", synthetic_prompts(n, seed=1), responses=True)
    write(root / "mmlu" / "mmlu_algebra.csv", synthetic_prompts(n // 2, seed=2), responses=False)
    write(root / "mmlu" / "mmlu_history.csv", synthetic_prompts(n // 2, seed=4), responses=False)
    return root


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)


def score(*args: str) -> list[str]:
    return ["score", "--policy", str(DEFAULT_POLICY_PATH), *args]


# score


def test_score_prints_a_line_per_prompt_with_id_score_class_route_and_model(prompts_file, capsys, default_policy):
    # When the prompts are scored with the shipped policy
    code = main(score(str(prompts_file)))
    # Then each prompt gets one JSON line, in order, ids kept (or the line number when absent)
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == ["greeting", 2, 3]
    for line in lines:
        assert set(line) == {"id", "score", "class", "route", "model"}
        assert 0.0 <= line["score"] <= 1.0
        # And the route is the default tier's for the class, the model one of that route's candidates
        assert line["route"] == default_policy.tiers[default_policy.default_tier][line["class"]]
        assert line["model"] in {c.model for c in default_policy.routes[line["route"]].candidates}
    # And the analysis ask is complex, the greeting is not
    assert lines[1]["class"] == "complex"
    assert lines[0]["class"] != "complex"


def test_score_explain_adds_the_signals_with_named_ngrams(prompts_file, capsys):
    # When scored with --explain
    assert main(score(str(prompts_file), "--explain")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    greeting, analysis, _ = lines
    # Then the learned router's thresholds and classes are shown
    assert analysis["router"] == "learned"
    assert set(analysis["thresholds"]) == {"moderate", "complex"}
    assert analysis["learned_class"] in ("simple", "moderate", "complex")
    # And the heuristic's class is shown whenever it was consulted (a learned "complex" cannot be raised)
    if analysis["learned_class"] == "complex":
        assert analysis["heuristic"] is None
    else:
        assert analysis["heuristic"]["class"] == "complex"
    # And the n-grams behind the score are named by the prompt's own words
    words = set(PROMPTS[1]["prompt"].lower().replace(",", " ").replace(".", " ").replace("-", " ").split())
    ngrams = analysis["signals"]["ngrams"]
    assert ngrams
    for entry in ngrams:
        assert set(entry["ngram"].split()) <= words | {"^"}
        assert isinstance(entry["contribution"], float)
    # And a one-word prompt has its unigram and its bigram with the start marker
    assert {entry["ngram"] for entry in greeting["signals"]["ngrams"]} == {"hello", "^ hello"}


def test_score_writes_to_out_instead_of_stdout(prompts_file, tmp_path, capsys):
    out = tmp_path / "scores.jsonl"
    assert main(score(str(prompts_file), "--out", str(out))) == 0
    assert capsys.readouterr().out == ""
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["greeting", 2, 3]


def test_score_routes_for_the_tier_asked(prompts_file, capsys, default_policy):
    assert main(score(str(prompts_file), "--tier", "premium")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["route"] for line in lines] == [default_policy.tiers["premium"][line["class"]] for line in lines]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('{"id": "x", "prompt": ', "not JSON"),
        ('{"id": "x"}', "'prompt'"),
        ('{"id": "x", "prompt": "   "}', "'prompt'"),
        ('{"id": ["x"], "prompt": "hi"}', "'id'"),
        ('{"id": true, "prompt": "hi"}', "'id'"),
        ('"just a string"', "expected an object"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=["invalid-json", "missing-prompt", "blank-prompt", "list-id", "bool-id", "not-an-object", "deep-nesting"],
)
def test_fails_on_a_bad_prompt_line_naming_file_and_line(tmp_path, capsys, bad, problem):
    # Given a prompts file whose third line is bad (the second is blank and skipped)
    path = write_jsonl(tmp_path / "prompts.jsonl", [PROMPTS[0], "", bad, PROMPTS[2]])
    out = tmp_path / "scores.jsonl"
    # When scored
    code = main(score(str(path), "--out", str(out)))
    # Then it exits 2 naming FILE:LINE and the problem, and writes nothing
    assert code == 2
    stderr = capsys.readouterr().err
    assert f"{path}:3" in stderr
    assert problem in stderr
    assert not out.exists()


def test_fails_on_an_unknown_tier(prompts_file, capsys):
    assert main(score(str(prompts_file), "--tier", "platinum")) == 2
    assert "platinum" in capsys.readouterr().err


def test_fails_cleanly_when_out_cannot_be_written(prompts_file, tmp_path, capsys):
    # Given an --out path in a directory that does not exist
    out = tmp_path / "missing" / "scores.jsonl"
    # When scored
    code = main(score(str(prompts_file), "--out", str(out)))
    # Then it exits 2 with a message naming the path (like evaluate), not a traceback
    assert code == 2
    assert str(out) in capsys.readouterr().err


def test_score_runs_as_python_dash_m(prompts_file):
    result = subprocess.run(
        [sys.executable, "-m", "routed_bedrock", *score(str(prompts_file))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["greeting", 2, 3]


def test_score_piped_into_a_reader_that_stops_early_exits_quietly(tmp_path):
    # Given enough prompts to outgrow the pipe's buffer, and a reader that takes one line and closes the pipe
    many = write_jsonl(
        tmp_path / "many.jsonl", [{"id": i, "prompt": f"Question {i}: " + "why? " * 40} for i in range(3000)]
    )
    with subprocess.Popen(
        [sys.executable, "-m", "routed_bedrock", *score(str(many))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=120)
    # Then the line was whole, and the command ended without a traceback (as `| head -1` would see it)
    assert json.loads(first)["id"] == 0
    assert "Traceback" not in stderr, stderr
    assert code == 0


# train


def train(tmp_path: Path, *args: str) -> list[str]:
    return ["train", "--policy", str(DEFAULT_POLICY_PATH), "--out", str(tmp_path / "policy.json"), *args]


def test_train_on_outcomes_writes_a_loadable_policy_recording_its_source(tmp_path, capsys, policy_document):
    # Given the evaluator's outcomes for nova-micro and claude-sonnet-4-5 over two tasks of 80 prompts
    outcomes = write_outcomes(tmp_path / "outcomes.jsonl")
    # When trained on them
    code = main(
        train(
            tmp_path,
            "--outcomes",
            str(outcomes),
            "--weak",
            "nova-micro",
            "--strong",
            "claude-sonnet-4-5",
            "--trained-at",
            "2026-02-03",
        )
    )
    # Then it exits 0 and writes a valid policy
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "policy.json"
    policy = load_policy_file(out)
    assert policy.complexity.learned is not None
    written = json.loads(out.read_text(encoding="utf-8"))
    learned = written["rules"]["complexity"]["learned"]
    # And the learned section records where it came from: the file, the models, the train halves per task
    source = learned["trained"]["source"]
    assert "outcomes.jsonl" in source
    assert "nova-micro" in source and "claude-sonnet-4-5" in source
    assert learned["trained"]["prompts"] == {"general": 40, "math": 40}
    assert learned["trained"]["trained_at"] == "2026-02-03"
    assert learned["trained"]["seed"] == 0
    assert learned["thresholds"]["moderate"] <= learned["thresholds"]["complex"]
    # And only the learned router changed
    del written["rules"]["complexity"]["learned"]
    del policy_document["rules"]["complexity"]["learned"]
    assert written == policy_document
    # And the new router scores a "hard" prompt above a plain one
    router = policy.complexity.learned
    assert router.score("music hard cloud north paper") > router.score("music cloud north paper")
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("missing", ["--weak", "--strong"])
def test_fails_to_train_on_outcomes_without_both_models(tmp_path, capsys, missing):
    outcomes = write_outcomes(tmp_path / "outcomes.jsonl", n=60)
    args = {"--weak": "nova-micro", "--strong": "claude-sonnet-4-5"}
    del args[missing]
    code = main(train(tmp_path, "--outcomes", str(outcomes), *[x for pair in args.items() for x in pair]))
    assert code == 2
    assert "--outcomes needs --weak and --strong" in capsys.readouterr().err
    assert not (tmp_path / "policy.json").exists()


def test_fails_to_train_cleanly_when_out_cannot_be_written(tmp_path, capsys):
    # Given good outcomes and an --out path in a directory that does not exist
    outcomes = write_outcomes(tmp_path / "outcomes.jsonl", n=100)  # 25 train prompts a task: enough to calibrate
    out = tmp_path / "missing" / "policy.json"
    args = ["--outcomes", str(outcomes), "--weak", "nova-micro", "--strong", "claude-sonnet-4-5"]
    # When trained
    code = main(["train", "--policy", str(DEFAULT_POLICY_PATH), "--out", str(out), *args])
    # Then it exits 2 with a message naming the path, not a traceback
    assert code == 2
    assert str(out) in capsys.readouterr().err


def test_fails_to_train_when_the_outcomes_lack_the_models(tmp_path, capsys):
    outcomes = write_outcomes(tmp_path / "outcomes.jsonl", n=60)
    code = main(train(tmp_path, "--outcomes", str(outcomes), "--weak", "nova-lite", "--strong", "claude-sonnet-4-5"))
    assert code == 2
    assert "no prompt has scores for both 'nova-lite' and 'claude-sonnet-4-5'" in capsys.readouterr().err
    assert not (tmp_path / "policy.json").exists()


def test_fails_to_train_on_a_missing_data_directory(tmp_path, capsys):
    missing = tmp_path / "no-such-routellm"
    code = main(train(tmp_path, "--data", str(missing)))
    assert code == 2
    stderr = capsys.readouterr().err
    assert "routellm data" in stderr
    assert str(missing) in stderr
    assert not (tmp_path / "policy.json").exists()


def test_train_on_a_tiny_routellm_copy_trains_on_the_train_halves(tmp_path, capsys):
    # Given the RouteLLM layout with 100 gsm8k prompts and 100 mmlu prompts over two subject files
    data = write_routellm(tmp_path / "routellm")
    # When trained on it
    code = main(train(tmp_path, "--data", str(data), "--hash-bits", "10", "--trained-at", "2026-02-03"))
    # Then the written policy loads, holds a 10-bit router and counts half of each set
    assert code == 0, capsys.readouterr().err
    policy = load_policy_file(tmp_path / "policy.json")
    assert policy.complexity.learned.hash_bits == 10
    trained = policy.complexity.learned.trained
    assert trained["prompts"] == {"gsm8k": 50, "mmlu": 50}
    assert "RouteLLM" in trained["source"]


def test_fails_to_train_with_both_data_and_outcomes(tmp_path, capsys):
    outcomes = write_outcomes(tmp_path / "outcomes.jsonl", n=60)
    with pytest.raises(SystemExit) as exited:
        main(train(tmp_path, "--data", str(tmp_path), "--outcomes", str(outcomes)))
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["0", "1.5", "most"])
def test_fails_to_train_with_a_target_outside_zero_to_one(tmp_path, capsys, target):
    with pytest.raises(SystemExit) as exited:
        main(train(tmp_path, "--target", target))
    assert exited.value.code == 2
    assert "--target" in capsys.readouterr().err


def test_the_cli_default_hash_bits_are_the_trainers():
    from routed_bedrock.learning import Hyper
    from routed_bedrock.learning_cli import DEFAULT_HASH_BITS

    assert Hyper().hash_bits == DEFAULT_HASH_BITS


def test_train_without_scikit_learn_fails_naming_the_extra_and_score_still_works(
    tmp_path, capsys, monkeypatch, prompts_file
):
    # Given an environment where scikit-learn cannot be imported (the trainer's modules not loaded yet)
    for module in ("sklearn", "sklearn.linear_model"):
        monkeypatch.setitem(sys.modules, module, None)
    for module in ("routed_bedrock.learning", "routed_bedrock.cascade_training"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    outcomes = write_outcomes(tmp_path / "outcomes.jsonl", n=60)
    # When asked to train
    code = main(train(tmp_path, "--outcomes", str(outcomes), "--weak", "nova-micro", "--strong", "claude-sonnet-4-5"))
    # Then it exits 2 naming the package extra to install, writing nothing
    assert code == 2
    assert "pip install 'routed-bedrock-endpoint[train]'" in capsys.readouterr().err
    assert not (tmp_path / "policy.json").exists()
    # And scoring, which needs no training library, still works
    assert main(["score", "--policy", str(DEFAULT_POLICY_PATH), str(prompts_file)]) == 0


def test_train_re_raises_a_missing_module_that_is_not_a_training_library(tmp_path, monkeypatch):
    # A broken install of the project itself is not "scikit-learn is missing": it surfaces as itself
    monkeypatch.setitem(sys.modules, "routed_bedrock.learning", None)
    outcomes = write_outcomes(tmp_path / "outcomes.jsonl", n=60)
    with pytest.raises(ModuleNotFoundError, match=r"routed_bedrock\.learning"):
        main(train(tmp_path, "--outcomes", str(outcomes), "--weak", "nova-micro", "--strong", "claude-sonnet-4-5"))


def test_refitting_a_cascade_keeps_the_judge_the_deployer_chose(monkeypatch):
    # Given a cascade route with a judge, and a stand-in for the fit (the real one runs in test_shipped_router)
    import argparse

    import routed_bedrock.cascade_training as cascade_training
    from routed_bedrock.learning_cli import DEFAULT_DATA, fit_cascade
    from routed_bedrock.outcome_data import read_routellm, routellm_files, split

    document = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    judge = {"model": "nova-lite", "consult_from": 0.6, "consult_below": 0.8}
    document["routes"]["math-cascade"]["cascade"]["judge"] = judge
    fitted = {"threshold": 0.5, "confidence": {"bias": 0.0, "weights": {}}, "calibration": {}}
    monkeypatch.setattr(cascade_training, "train_cascade", lambda answers, **_: dict(fitted))
    rows = split(read_routellm(routellm_files(DEFAULT_DATA)["gsm8k"]), 0, "gsm8k")[0]
    trained = argparse.Namespace(held_out={"gsm8k": [0.5] * len(rows)})
    args = argparse.Namespace(cascade_route="math-cascade", data=None, seed=0, cascade_target=0.96)
    # When the cascade is refitted
    fit_cascade(args, document, trained)  # type: ignore[arg-type]
    # Then the new confidence and threshold replace the old, and the judge is kept as it was
    refitted = document["routes"]["math-cascade"]["cascade"]
    assert refitted == {**fitted, "judge": judge}
    # And a band that no longer holds the new threshold (0.5 is below [0.6, 0.8)) is pointed out
    from routed_bedrock.learning_cli import judge_band_note

    assert "does not hold the new threshold 0.5000" in (judge_band_note(refitted) or "")
    assert judge_band_note({**refitted, "threshold": 0.7}) is None
