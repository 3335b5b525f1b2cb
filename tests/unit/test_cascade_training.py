"""Fitting the cascade's answer confidence (signals and answer n-grams) and calibrating its threshold."""

from __future__ import annotations

import random

import pytest

from lambdas.router.cascade import compile_confidence
from routed_bedrock.cascade_training import CASCADE_HYPER, train_cascade
from routed_bedrock.learning import quality_curve, share_error
from routed_bedrock.outcome_data import Answered, TrainingError

PROMPT = "Tom has {a} apples and buys {b} more. How many apples does he have?"


def answers(n: int = 200, seed: int = 7) -> list[Answered]:
    """Right answers show their working; wrong ones say "roughly guessing" (a phrase no signal names)."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        right = i % 3 != 0
        text = f"He has {a} + {b} = {a + b} apples.\n#### {a + b}" if right else f"Roughly guessing.\n#### {a + b + 1}"
        items.append(Answered(PROMPT.format(a=a, b=b), text, "end_turn", None, float(right), 1.0))
    return items


def test_the_fitted_confidence_doubts_the_phrasing_of_wrong_answers():
    # Given answers whose wrong ones share a phrasing
    items = answers()
    # When the cascade is fitted
    fitted = train_cascade(items, target=0.95, seed=0)
    model = compile_confidence(fitted["confidence"])
    # Then n-gram weights ship with it and every wrong answer scores below every right one
    assert fitted["confidence"]["ngrams"]["hash_bits"] == model.hash_bits == 13
    scores = [model.score(i.prompt, i.answer, i.stop_reason).value for i in items]
    wrong = [s for s, i in zip(scores, items, strict=True) if not i.weak]
    right = [s for s, i in zip(scores, items, strict=True) if i.weak]
    assert max(wrong) < min(right)
    # And the threshold escalates wrong answers only, enough of them to keep the target quality
    escalate = [s < fitted["threshold"] for s in scores]
    assert not any(e for e, i in zip(escalate, items, strict=True) if i.weak)
    kept = quality_curve(items, [-s for s in scores])[sum(escalate)]
    assert kept >= 0.95
    assert fitted["calibration"]["measured"]["answers"] == len(items)


def test_fitting_is_deterministic_and_the_seed_only_assigns_the_folds():
    items = answers()
    first, other = train_cascade(items, seed=3), train_cascade(items, seed=4)
    assert train_cascade(items, seed=3) == first
    # The seed picks the cross-validation folds; at one strength the final fit is the same
    if first["calibration"]["measured"]["strength"] == other["calibration"]["measured"]["strength"]:
        assert first["confidence"] == other["confidence"]


def test_the_strength_is_the_most_regularised_within_one_standard_error_of_the_fewest_escalations():
    items = answers()
    measured = train_cascade(items, seed=0)["calibration"]["measured"]
    by_strength = measured["held_out_escalation_share_by_strength"]
    assert set(by_strength) == {"0.1", "0.3", "1", "3", "10"}
    fewest = min(by_strength.values())
    error = share_error(fewest, len(items))
    within = [s for s in (0.1, 0.3, 1.0, 3.0, 10.0) if by_strength[f"{s:g}"] <= fewest + error + 1e-4]
    assert measured["strength"] == within[0]
    assert by_strength[f"{measured['strength']:g}"] == measured["held_out_escalation_share"]


def test_rejects_fewer_answers_than_folds():
    with pytest.raises(TrainingError, match="at least 5 answers"):
        train_cascade(answers(4))


def test_rejects_answers_where_the_strong_model_is_never_right():
    items = [i._replace(strong=0.0) for i in answers(20)]
    with pytest.raises(TrainingError, match="strong model has no correct answer"):
        train_cascade(items)


@pytest.mark.parametrize(
    ("strengths", "folds", "message"), [((), 5, "strengths must be positive"), ((1.0,), 1, "folds")]
)
def test_rejects_unusable_settings(strengths, folds, message):
    with pytest.raises(TrainingError, match=message):
        train_cascade(answers(20), folds=folds, hyper=CASCADE_HYPER._replace(strengths=strengths))
