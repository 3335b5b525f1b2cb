"""Training and calibrating the learned router: split, fit, thresholds, outcome files, the policy section."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from lambdas.router.learned import compile_learned
from routed_bedrock import learning
from routed_bedrock.learning import (
    Hyper,
    fold_assignment,
    policy_section,
    share_error,
    share_for_quality,
    threshold_for_share,
    train_router,
    vectorise,
)
from routed_bedrock.outcome_data import (
    STRONG_COLUMN,
    WEAK_COLUMN,
    Labelled,
    TrainingError,
    read_outcomes,
    read_routellm,
    routellm_labelled,
    split,
)

FILLER = ["apple", "river", "blue", "quick", "table", "green", "stone", "light", "paper", "music", "cloud", "north"]
SMALL = Hyper(hash_bits=10)  # fewer buckets: the same learning, faster


def keyword_set(n: int, seed: int) -> list[Labelled]:
    """Prompts of filler words; every third carries "hard": only those need the strong model (the weak fails)."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        hard = i % 3 == 0
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 9))]
        if hard:
            words.insert(rng.randint(0, len(words)), "hard")
        items.append(Labelled(" ".join(words), 0.0 if hard else 1.0, 1.0))
    return items


@pytest.fixture(scope="module")
def keyword_sets() -> dict[str, list[Labelled]]:
    return {"alpha": keyword_set(60, 1), "beta": keyword_set(60, 2)}


@pytest.fixture(scope="module")
def trained(keyword_sets):
    return train_router(keyword_sets, seed=0, hyper=SMALL)


def final_scores(trained, items: list[Labelled], hash_bits: int = SMALL.hash_bits) -> list[float]:
    return trained.model.scores(vectorise([i.prompt for i in items], hash_bits))


def quality_kept(items: list[Labelled], scores: list[float], threshold: float) -> float:
    routed = sum(i.strong if s >= threshold else i.weak for i, s in zip(items, scores, strict=True))
    return routed / sum(i.strong for i in items)


# split


def test_split_is_deterministic_disjoint_and_complete():
    items = list(range(101))
    # When the same items are split twice with the same seed and set name
    train, test = split(items, 0, "gsm8k")
    again = split(items, 0, "gsm8k")
    # Then the halves are the same, share nothing and together hold every item once
    assert (train, test) == again
    assert not set(train) & set(test)
    assert sorted(train + test) == items
    assert (len(train), len(test)) == (50, 51)


def test_split_depends_on_the_seed_and_the_set_name():
    items = list(range(100))
    base = set(split(items, 0, "gsm8k")[0])
    assert set(split(items, 1, "gsm8k")[0]) != base
    assert set(split(items, 0, "mmlu")[0]) != base


# train_router


def test_learns_that_the_keyword_needs_the_strong_model(trained, keyword_sets):
    # Given a router trained where "hard" marks exactly the prompts the weak model fails
    for items in keyword_sets.values():
        scores = final_scores(trained, items)
        hard = [s for i, s in zip(items, scores, strict=True) if i.strong > i.weak]
        easy = [s for i, s in zip(items, scores, strict=True) if i.strong <= i.weak]
        # Then (nearly) every "hard" prompt scores above every other one, by a clear margin on average (labels
        # are 1 for "hard", 1/2 for the rest, which both models answer: 0.5 is the widest margin possible)
        ordered = sum(h > e for h in hard for e in easy) / (len(hard) * len(easy))
        assert ordered >= 0.98
        assert sum(hard) / len(hard) - sum(easy) / len(easy) > 0.15
    # And on prompts it never saw, the keyword still raises the score
    unseen_hard = final_scores(trained, [Labelled("music hard cloud north paper", 0, 1)])[0]
    unseen_easy = final_scores(trained, [Labelled("music cloud north paper", 1, 1)])[0]
    assert unseen_hard > unseen_easy


def test_calibrated_complex_threshold_keeps_the_target_quality(trained, keyword_sets):
    # Given the complex threshold calibrated to keep 95% of always-strong quality
    threshold = trained.thresholds["complex"]
    assert trained.calibration["complex"]["target"] == 0.95
    assert trained.calibration["complex"]["metric"] == "quality_kept"
    for name, items in keyword_sets.items():
        # When each set is routed by it
        kept = quality_kept(items, final_scores(trained, items), threshold)
        # Then at least 95% of the quality is kept, and fewer than all prompts go strong
        assert kept >= 0.95
        share = trained.calibration["complex"]["measured"][name]["held_out_strong_share"]
        assert 0 < share < 1
    # And the moderate threshold (98%) is no higher than the complex one
    assert trained.thresholds["moderate"] <= threshold


def test_held_out_scores_cover_every_train_prompt(trained, keyword_sets):
    assert {name: len(scores) for name, scores in trained.held_out.items()} == {"alpha": 60, "beta": 60}
    assert trained.train_prompts == {"alpha": 60, "beta": 60}
    assert all(0 < s < 1 for scores in trained.held_out.values() for s in scores)


def test_training_twice_with_one_seed_gives_identical_weights(keyword_sets, trained):
    # When trained again with the same data and seed
    again = train_router(keyword_sets, seed=0, hyper=SMALL)
    # Then the model, thresholds and the policy section are identical
    assert again.model == trained.model
    assert again.thresholds == trained.thresholds
    first = policy_section(trained, SMALL, seed=0, source="s", trained_at="2026-01-01")
    second = policy_section(again, SMALL, seed=0, source="s", trained_at="2026-01-01")
    assert json.dumps(first) == json.dumps(second)


def test_the_seed_assigns_the_folds_and_the_fit_is_the_same(keyword_sets, trained):
    # When trained with another seed
    other = train_router(keyword_sets, seed=1, hyper=SMALL)
    # Then other folds gave other held-out scores, but the final fit at a given strength does not depend on it
    assert other.held_out != trained.held_out
    if other.strength == trained.strength:
        assert other.model == trained.model


def test_the_strength_is_the_most_regularised_within_one_standard_error_of_the_best(trained, keyword_sets):
    assert set(trained.selection) == {f"{s:g}" for s in SMALL.strengths}
    best = min(trained.selection.values())
    error = math.sqrt(sum(share_error(best, len(items)) ** 2 for items in keyword_sets.values())) / 2
    within = [s for s in sorted(SMALL.strengths) if trained.selection[f"{s:g}"] <= best + error + 1e-4]
    assert trained.strength == within[0]


def test_a_tie_goes_to_the_most_regularised_strength():
    # Given a set the weak model already answers as well as the strong one: every strength needs 0 strong calls
    items = [Labelled(f"{FILLER[i % 12]} {FILLER[(i * 5) % 12]}", 1.0, 1.0) for i in range(40)]
    trained = train_router({"easy": items}, seed=0, hyper=SMALL._replace(strengths=(1.0, 0.1, 0.3)))
    assert set(trained.selection.values()) == {0.0}
    assert trained.strength == 0.1


def test_share_error_is_the_binomial_standard_error():
    assert share_error(0.5, 100) == pytest.approx(0.05)
    assert share_error(0.0, 100) == 0.0
    assert share_error(0.3, 0) == 0.0


def test_a_prompt_only_the_weak_model_gets_right_scores_below_one_both_get_right():
    # Given prompts where "trick" marks the ones only the weak model answers, and "tough" the ones only the strong
    # does (markers of one length, so the size signals cannot tell them apart)
    rng = random.Random(5)
    items = []
    for i in range(90):
        words = [rng.choice(FILLER) for _ in range(6)]
        kind = i % 3
        words.insert(3, ("plain", "tough", "trick")[kind])
        items.append(Labelled(" ".join(words), (1.0, 0.0, 1.0)[kind], (1.0, 1.0, 0.0)[kind]))
    trained = train_router({"mixed": items}, seed=0, hyper=SMALL)
    # Then the score orders them by what a strong call gains: tough above plain above trick
    mean = {}
    for marker in ("plain", "tough", "trick"):
        chosen = [i for i in items if f" {marker} " in f" {i.prompt} "]
        scores = final_scores(trained, chosen)
        mean[marker] = sum(scores) / len(scores)
    assert mean["tough"] > mean["plain"] > mean["trick"]
    assert mean["tough"] > 0.5 > mean["trick"]


def test_fold_assignment_is_balanced_and_seeded():
    folds = fold_assignment(23, 5, 0, "set")
    assert sorted(folds.count(f) for f in range(5)) == [4, 4, 5, 5, 5]
    assert fold_assignment(23, 5, 0, "set") == folds
    assert fold_assignment(23, 5, 1, "set") != folds


def test_rejects_fewer_than_two_folds(keyword_sets):
    with pytest.raises(TrainingError, match="folds must be at least 2"):
        train_router(keyword_sets, hyper=SMALL._replace(folds=1))


def test_a_solver_that_does_not_converge_is_an_error_naming_the_strength(keyword_sets, monkeypatch):
    monkeypatch.setattr(learning, "MAX_ITERATIONS", 1)
    with pytest.raises(TrainingError, match=r"did not converge in 1 iterations at strength 0\.1"):
        train_router(keyword_sets, hyper=SMALL)


@pytest.mark.parametrize("strengths", [(), (0.0,), (1.0, -1.0)])
def test_rejects_strengths_that_are_not_positive(keyword_sets, strengths):
    with pytest.raises(TrainingError, match="strengths must be positive"):
        train_router(keyword_sets, hyper=SMALL._replace(strengths=strengths))


@pytest.mark.parametrize(
    "targets",
    [{"complex": 0.0}, {"complex": 1.5}, {"complex": 0.95, "simple": 0.9}, {"complex": 0.95, "moderate": 0.9}],
)
def test_rejects_unusable_targets(keyword_sets, targets):
    with pytest.raises(TrainingError):
        train_router(keyword_sets, hyper=SMALL, targets=targets)


def test_rejects_no_training_prompts():
    with pytest.raises(TrainingError, match="no training prompts"):
        train_router({"empty": []}, hyper=SMALL)


def test_rejects_a_set_where_the_strong_model_is_never_right():
    never = [Labelled(f"prompt {word}", 0.0, 0.0) for word in FILLER * 5]
    with pytest.raises(
        TrainingError, match="no set can calibrate a threshold: each needs at least 20 prompts and a correct"
    ):
        train_router({"never": never}, hyper=SMALL)


# policy_section


def test_policy_section_serves_the_scores_the_trainer_computed(trained, keyword_sets):
    # Given the policy section of a trained router
    section = policy_section(trained, SMALL, seed=0, source="synthetic keyword data", trained_at="2026-01-02")
    # When it is compiled as the router would
    router = compile_learned(section)
    # Then serving scores match training scores (up to the int16 quantisation and rounding)
    items = keyword_sets["alpha"][:20]
    for item, expected in zip(items, final_scores(trained, items), strict=True):
        assert router.score(item.prompt) == pytest.approx(expected, abs=2e-3)
    # And it records how it was trained
    assert section["trained"]["seed"] == 0
    assert section["trained"]["source"] == "synthetic keyword data"
    assert section["trained"]["trained_at"] == "2026-01-02"
    assert section["trained"]["hyperparameters"]["hash_bits"] == SMALL.hash_bits
    assert router.complex_at == pytest.approx(trained.thresholds["complex"], abs=1e-6)


# threshold_for_share and share_for_quality


def test_threshold_for_share_zero_is_one():
    assert threshold_for_share([0.2, 0.9, 0.4], 0.0) == 1.0


def test_threshold_for_share_picks_the_matching_quantile():
    scores = [0.1, 0.9, 0.5, 0.3]
    assert threshold_for_share(scores, 1.0) == 0.1
    assert threshold_for_share(scores, 0.5) == 0.5
    assert threshold_for_share(scores, 0.26) == 0.5  # rounds the count of strong prompts up
    assert threshold_for_share(scores, 0.25) == 0.9
    # And the share of scores at or above it is at least the share asked for
    for share in (0.1, 0.25, 0.6, 0.75):
        threshold = threshold_for_share(scores, share)
        assert sum(s >= threshold for s in scores) / len(scores) >= share


def test_share_for_quality_is_zero_when_the_weak_model_already_meets_the_target():
    items = [Labelled("a", 1.0, 1.0), Labelled("b", 1.0, 1.0), Labelled("c", 1.0, 0.0)]
    assert share_for_quality(items, [0.9, 0.5, 0.1], 0.95) == 0.0


def test_share_for_quality_sends_the_top_scores_until_the_target_is_met():
    # Given four prompts, two the weak model fails, ranked perfectly by the scores
    items = [Labelled("a", 0.0, 1.0), Labelled("b", 0.0, 1.0), Labelled("c", 1.0, 1.0), Labelled("d", 1.0, 1.0)]
    # Then 75% quality needs one strong call, 100% needs two
    assert share_for_quality(items, [0.9, 0.8, 0.2, 0.1], 0.75) == 0.25
    assert share_for_quality(items, [0.9, 0.8, 0.2, 0.1], 1.0) == 0.5
    # And a ranking that puts them last needs every call
    assert share_for_quality(items, [0.1, 0.2, 0.8, 0.9], 1.0) == 1.0


def test_share_for_quality_fails_when_the_strong_model_is_never_right():
    with pytest.raises(TrainingError):
        share_for_quality([Labelled("a", 0.0, 0.0)], [0.5], 0.95)


# read_outcomes


def outcome(identifier: str, prompt: str, task: str | None, **scores: float | None) -> str:
    models = {name: {"score": score, "correct": score is not None and score >= 0.5} for name, score in scores.items()}
    line = {"id": identifier, "prompt": prompt, "reference": "x", "models": models}
    if task is not None:
        line["task"] = task
    return json.dumps(line)


def test_reads_outcomes_per_task_for_the_two_models(tmp_path: Path):
    # Given outcomes for three models over two tasks and one prompt without a task
    path = tmp_path / "outcomes.jsonl"
    lines = [
        outcome("1", "add 2 and 3", "math", weak=0.0, strong=1.0, other=1.0),
        outcome("2", "capital of France", "trivia", weak=1.0, strong=1.0),
        "",
        outcome("3", "say hi", None, weak=0.5, strong=0.75),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # When read for (weak, strong)
    sets = read_outcomes(path, "weak", "strong")
    # Then each task's prompts carry the two models' scores, and a missing task is "default"
    assert sets == {
        "math": [Labelled("add 2 and 3", 0.0, 1.0)],
        "trivia": [Labelled("capital of France", 1.0, 1.0)],
        "default": [Labelled("say hi", 0.5, 0.75)],
    }


def test_skips_prompts_without_a_score_for_either_model(tmp_path: Path):
    path = tmp_path / "outcomes.jsonl"
    lines = [
        outcome("1", "kept", "t", weak=1.0, strong=1.0),
        outcome("2", "weak failed", "t", strong=1.0),
        outcome("3", "strong failed", "t", weak=1.0, strong=None),
        outcome("4", "both failed", "t"),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_outcomes(path, "weak", "strong") == {"t": [Labelled("kept", 1.0, 1.0)]}


@pytest.mark.parametrize(
    "bad",
    ["{not json", json.dumps({"id": "x", "models": {}}), json.dumps({"prompt": "p"}), "[1, 2]", "[" * 100_000],
)
def test_fails_on_a_bad_outcome_line_naming_the_file_and_line(tmp_path: Path, bad):
    # Given a good line then a bad one
    path = tmp_path / "outcomes.jsonl"
    path.write_text(outcome("1", "ok", "t", weak=1.0, strong=1.0) + "\n" + bad + "\n", encoding="utf-8")
    # When read
    with pytest.raises(TrainingError) as error:
        read_outcomes(path, "weak", "strong")
    # Then the message names the file and the line
    assert f"{path}:2" in str(error.value)


def test_fails_when_no_prompt_has_both_models(tmp_path: Path):
    path = tmp_path / "outcomes.jsonl"
    path.write_text(outcome("1", "p", "t", weak=1.0, other=1.0) + "\n", encoding="utf-8")
    with pytest.raises(TrainingError) as error:
        read_outcomes(path, "weak", "strong")
    message = str(error.value)
    assert str(path) in message
    assert "'weak'" in message
    assert "'strong'" in message


def test_fails_on_a_missing_outcomes_file(tmp_path: Path):
    with pytest.raises(TrainingError, match="cannot read"):
        read_outcomes(tmp_path / "absent.jsonl", "weak", "strong")


def test_fails_on_an_outcomes_file_that_is_not_utf8(tmp_path: Path):
    # Given an outcomes file in another encoding (Latin-1 "café")
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(outcome("1", "café", "t", weak=1.0, strong=1.0).replace("\\u00e9", "\xe9").encode("latin-1"))
    # When read
    # Then the failure is a TrainingError naming the file (the CLI turns it into exit 2), not a traceback
    with pytest.raises(TrainingError) as error:
        read_outcomes(path, "weak", "strong")
    assert str(path) in str(error.value)


# RouteLLM files


def test_fails_on_a_routellm_value_that_is_not_true_or_false(tmp_path: Path):
    path = tmp_path / "mmlu_x.csv"
    path.write_text(
        f"prompt,{WEAK_COLUMN},{STRONG_COLUMN}\nq1,True,False\nq2,yes,True\n",
        encoding="utf-8",
    )
    with pytest.raises(TrainingError, match=r"mmlu_x\.csv:3: expected 'True' or 'False', got 'yes'"):
        routellm_labelled(read_routellm([path]))


def test_fails_on_a_routellm_file_without_the_model_columns(tmp_path: Path):
    path = tmp_path / "gsm8k_responses.csv"
    path.write_text("prompt,answer\nq1,4\n", encoding="utf-8")
    with pytest.raises(TrainingError, match="missing columns"):
        read_routellm([path])


def test_a_tiny_or_strong_wrong_set_trains_but_sets_no_threshold():
    # Given a calibratable set and two that cannot calibrate: 3 prompts, and 60 the strong model never gets right
    good = [
        Labelled(f"hard question {i} " + FILLER[i % 12], 0.0, 1.0)
        if i % 3 == 0
        else Labelled(f"easy question {i} " + FILLER[i % 12], 1.0, 1.0)
        for i in range(60)
    ]
    tiny = [Labelled("hard tiny one", 0.0, 1.0), Labelled("easy tiny two", 1.0, 1.0), Labelled("tiny three", 1.0, 1.0)]
    hopeless = [Labelled(f"impossible {i}", 0.0, 0.0) for i in range(60)]
    # When trained on all three
    trained = train_router({"good": good, "tiny": tiny, "hopeless": hopeless}, seed=0, hyper=SMALL)
    # Then only the calibratable set set the thresholds, and every set trained the model
    assert set(trained.calibration["complex"]["measured"]) == {"good"}
    assert trained.train_prompts == {"good": 60, "tiny": 3, "hopeless": 60}
