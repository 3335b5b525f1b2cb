"""Fitting a cascade route's answer confidence and calibrating its escalation threshold.

Data: a cheap model's answers with whether they were right (RouteLLM's gsm8k carries Mixtral's), the
strong model's correctness on the same prompts, and a held-out learned-router score per prompt. The
confidence is a logistic function of ``lambdas/router/cascade.py``'s signals and the answer's hashed word
n-grams; the threshold is chosen on held-out confidences to keep a target share of always-strong quality
with the cheap call always paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lambdas.router.cascade import SIGNALS, answer_signals
from lambdas.router.learned import encode_weights, hashed_ngrams
from routed_bedrock.learning import (
    Hyper,
    Model,
    Vectors,
    checked_strengths,
    fit,
    fold_assignment,
    quality_curve,
    share_error,
    simplest_within_error,
    vectors_of,
)
from routed_bedrock.outcome_data import Answered, TrainingError

# 2**13 buckets of answer n-grams; the L2 strength is chosen per fit from these by cross-validation.
CASCADE_HYPER = Hyper(hash_bits=13, strengths=(0.1, 0.3, 1.0, 3.0, 10.0))


def _raw(model: Model, used: Sequence[str]) -> tuple[dict[str, float], float]:
    """The fitted model's signal weights and bias on the raw (unstandardised) signals."""
    weights = {name: w / std for name, w, std in zip(used, model.dense_weights, model.dense_std, strict=True)}
    bias = model.bias - sum(
        w * mean / std for w, mean, std in zip(model.dense_weights, model.dense_mean, model.dense_std, strict=True)
    )
    return weights, bias


def _features(items: Sequence[Answered], hyper: Hyper) -> tuple[Vectors, list[str]]:
    """The answers' hashed n-grams and signals (those that fire on some answer: one that never does gets no weight)."""
    signals = [answer_signals(i.prompt, i.answer, i.stop_reason, i.prompt_score) for i in items]
    used = [name for name in SIGNALS if any(s[name] for s in signals)]
    vectors = vectors_of(
        [hashed_ngrams(i.answer, hyper.hash_bits) for i in items],
        [[s[name] for name in used] for s in signals],
        hyper.hash_bits,
    )
    return vectors, used


def _held_out(vectors: Vectors, labels: Sequence[float], *, folds: int, seed: int, strength: float) -> list[float]:
    """Each answer's confidence from a model fitted on the other folds (seeded folds)."""
    fold_of = fold_assignment(len(labels), folds, seed, "cascade")
    held_out = [0.0] * len(labels)
    for fold in range(folds):
        kept = [n for n in range(len(labels)) if fold_of[n] != fold]
        model = fit(vectors.rows(kept), [labels[n] for n in kept], strength=strength)
        held = [n for n in range(len(labels)) if fold_of[n] == fold]
        for n, value in zip(held, model.scores(vectors.rows(held)), strict=True):
            held_out[n] = value
    return held_out


def held_out_confidences(
    items: Sequence[Answered], *, strength: float, folds: int = 5, seed: int = 0, hyper: Hyper = CASCADE_HYPER
) -> list[float]:
    """The held-out confidences ``train_cascade`` calibrates on, for a chosen strength (its
    ``calibration.measured.strength``): for choosing anything else on answers the confidence never saw."""
    vectors, _ = _features(items, hyper)
    return _held_out(vectors, [i.weak for i in items], folds=folds, seed=seed, strength=strength)


def train_cascade(
    items: Sequence[Answered], *, target: float = 0.95, folds: int = 5, seed: int = 0, hyper: Hyper = CASCADE_HYPER
) -> dict[str, Any]:
    """Fit the answer confidence (label: the cheap answer is right) and calibrate the escalation threshold.

    The confidence is a logistic regression (``learning.fit``) on the answer's signals and its hashed word
    n-grams. Held-out confidences (``folds``-fold, seeded: each answer scored by a model fitted without it)
    choose the L2 strength from ``hyper.strengths`` (the most regularised within one standard error of the
    fewest escalations that keep ``target``) and the threshold: the confidence below which the fewest answers
    must escalate for the cascade to keep ``target`` of always-strong quality (every prompt pays for the cheap
    call). The weights shipped are fitted on all the answers.
    """
    strengths = checked_strengths(hyper._replace(folds=folds))
    if len(items) < folds:
        raise TrainingError(f"need at least {folds} answers to fit the cascade, got {len(items)}")
    if not any(item.strong for item in items):
        raise TrainingError("the strong model has no correct answer: nothing to calibrate the cascade against")
    vectors, used = _features(items, hyper)
    labels = [i.weak for i in items]

    def escalations(strength: float) -> tuple[int, list[float]]:
        """How many answers must escalate on held-out confidences to keep the target, and the confidences."""
        held_out = _held_out(vectors, labels, folds=folds, seed=seed, strength=strength)
        # The least confident answers escalate first: the curve of routing by doubt (ties keep the answers' order).
        curve = quality_curve(items, [-confidence for confidence in held_out])
        return next((m for m, q in enumerate(curve) if q >= target - 1e-12), len(items)), held_out

    # The most regularised strength within one standard error of the fewest escalations
    tried = {strength: escalations(strength) for strength in strengths}
    shares = {strength: m / len(items) for strength, (m, _) in tried.items()}
    strength = simplest_within_error(shares, share_error(min(shares.values()), len(items)))
    m, held_out = tried[strength]
    model = fit(vectors, labels, strength=strength)
    weights, bias = _raw(model, used)
    ranked = sorted(held_out)
    if m == 0:
        threshold = 0.0
    elif m >= len(ranked):
        threshold = 1.0
    else:
        threshold = (ranked[m - 1] + ranked[m]) / 2
    return {
        "threshold": round(threshold, 6),
        "confidence": {
            "bias": round(bias, 6),
            "weights": {k: round(v, 6) for k, v in weights.items()},
            "ngrams": {"hash_bits": hyper.hash_bits, "weights": encode_weights(model.weights)},
        },
        "calibration": {
            "metric": "quality_kept",
            "target": target,
            "measured": {
                "answers": len(items),
                "held_out_escalation_share": round(m / len(items), 4),
                "strength": strength,
                "held_out_escalation_share_by_strength": {f"{s:g}": round(tried[s][0] / len(items), 4) for s in tried},
            },
        },
    }
