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
from routed_bedrock.learning import Hyper, Model, Vectors, fit, quality_curve
from routed_bedrock.outcome_data import Answered, TrainingError

# Chosen by 5-fold cross-validation on the gsm8k train half's answers (seed 0, signals without the prompt score;
# escalation share at 95% quality kept): 2**13 buckets at l2 1e-2 held out 37.2%, against 38.1% at 3e-3 or
# 3e-2 and 37.3-38.4% with 2**14 buckets.
CASCADE_HYPER = Hyper(hash_bits=13, l2_ngrams=1e-2, l2_dense=1e-4)


def _raw(model: Model, used: Sequence[str]) -> tuple[dict[str, float], float]:
    """The fitted model's signal weights and bias on the raw (unstandardised) signals."""
    weights = {name: w / std for name, w, std in zip(used, model.dense_weights, model.dense_std, strict=True)}
    bias = model.bias - sum(
        w * mean / std for w, mean, std in zip(model.dense_weights, model.dense_mean, model.dense_std, strict=True)
    )
    return weights, bias


def train_cascade(
    items: Sequence[Answered], *, target: float = 0.95, folds: int = 5, seed: int = 0, hyper: Hyper = CASCADE_HYPER
) -> dict[str, Any]:
    """Fit the answer confidence (label: the cheap answer is right) and calibrate the escalation threshold.

    The confidence is a logistic regression (``learning.fit``, deterministic given ``seed``) on the answer's
    signals and its hashed word n-grams. The threshold is chosen on held-out confidences (``folds``-fold: each
    answer scored by a model fitted without it): the confidence below which the fewest answers must escalate
    for the cascade to keep ``target`` of always-strong quality (every prompt pays for the cheap call). The
    weights shipped are fitted on all the answers.
    """
    if len(items) < folds:
        raise TrainingError(f"need at least {folds} answers to fit the cascade, got {len(items)}")
    signals = [answer_signals(i.prompt, i.answer, i.stop_reason, i.prompt_score) for i in items]
    used = [name for name in SIGNALS if any(s[name] for s in signals)]  # a signal that never fires gets no weight
    vectors = Vectors(
        [hashed_ngrams(i.answer, hyper.hash_bits) for i in items], [[s[name] for name in used] for s in signals]
    )
    labels = [i.weak for i in items]
    held_out = [0.0] * len(items)
    for fold in range(folds):
        kept = [n for n in range(len(items)) if n % folds != fold]
        model = fit(
            Vectors([vectors.sparse[n] for n in kept], [vectors.dense[n] for n in kept]),
            [labels[n] for n in kept],
            hyper,
            seed,
        )
        for n in range(fold, len(items), folds):
            held_out[n] = model.score(vectors.sparse[n], vectors.dense[n])
    model = fit(vectors, labels, hyper, seed)
    weights, bias = _raw(model, used)
    # The least confident answers escalate first: the curve of routing by doubt (ties keep the answers' order).
    curve = quality_curve(
        items,
        [-confidence for confidence in held_out],
        unusable="the strong model has no correct answer: nothing to calibrate the cascade against",
    )
    m = next((m for m, q in enumerate(curve) if q >= target - 1e-12), len(items))
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
            "measured": {"answers": len(items), "held_out_escalation_share": round(m / len(items), 4)},
        },
    }
