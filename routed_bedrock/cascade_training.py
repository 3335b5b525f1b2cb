"""Fitting a cascade route's answer confidence and calibrating its escalation threshold.

Data: a cheap model's answers with whether they were right (RouteLLM's gsm8k carries Mixtral's), the
strong model's correctness on the same prompts, and a held-out learned-router score per prompt. The
confidence is a logistic function of ``lambdas/router/cascade.py``'s signals; the threshold is chosen on
held-out confidences to keep a target share of always-strong quality with the cheap call always paid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lambdas.router.cascade import SIGNALS, ConfidenceModel, answer_signals
from lambdas.router.learned import sigmoid
from routed_bedrock.learning import quality_curve
from routed_bedrock.outcome_data import Answered, TrainingError


def fit_logistic(
    rows: Sequence[Sequence[float]], labels: Sequence[float], *, l2: float = 1e-2, iterations: int = 300
) -> tuple[list[float], float]:
    """Full-batch gradient descent on standardised columns, returned as weights and bias on the raw columns."""
    n, width = len(rows), len(rows[0])
    mean = [sum(r[j] for r in rows) / n for j in range(width)]
    std = [math.sqrt(sum((r[j] - mean[j]) ** 2 for r in rows) / n) or 1.0 for j in range(width)]
    z = [[(r[j] - mean[j]) / std[j] for j in range(width)] for r in rows]
    w, b = [0.0] * width, 0.0
    for _ in range(iterations):
        gw, gb = [0.0] * width, 0.0
        for x, y in zip(z, labels, strict=True):
            g = sigmoid(b + sum(a * c for a, c in zip(w, x, strict=True))) - y
            gb += g
            for j in range(width):
                gw[j] += g * x[j]
        w = [w[j] - 0.5 * (gw[j] / n + l2 * w[j]) for j in range(width)]
        b -= 0.5 * gb / n
    raw = [w[j] / std[j] for j in range(width)]
    return raw, b - sum(w[j] * mean[j] / std[j] for j in range(width))


def train_cascade(items: Sequence[Answered], *, target: float = 0.95, folds: int = 5) -> dict[str, Any]:
    """Fit the answer-confidence weights (label: the cheap answer is right) and calibrate the escalation threshold.

    The threshold is chosen on held-out confidences (``folds``-fold: each answer scored by a model fitted
    without it): the confidence below which the fewest answers must escalate for the cascade to keep
    ``target`` of always-strong quality (every prompt pays for the cheap call). The weights shipped are fitted
    on all the answers.
    """
    if len(items) < folds:
        raise TrainingError(f"need at least {folds} answers to fit the cascade, got {len(items)}")
    signals = [answer_signals(i.prompt, i.answer, i.stop_reason, i.prompt_score) for i in items]
    used = [name for name in SIGNALS if any(s[name] for s in signals)]  # a signal that never fires gets no weight
    rows = [[s[name] for name in used] for s in signals]
    labels = [i.weak for i in items]
    held_out = [0.0] * len(items)
    for fold in range(folds):
        kept_rows = [(r, y) for n, (r, y) in enumerate(zip(rows, labels, strict=True)) if n % folds != fold]
        weights, bias = fit_logistic([r for r, _ in kept_rows], [y for _, y in kept_rows])
        for n in range(fold, len(items), folds):
            held_out[n] = sigmoid(bias + sum(w * x for w, x in zip(weights, rows[n], strict=True)))
    weights, bias = fit_logistic(rows, labels)
    model = ConfidenceModel(dict(zip(used, weights, strict=True)), bias)
    # The least confident answers escalate first: the curve of routing by doubt (ties keep the answers' order).
    kept = quality_curve(
        items,
        [-confidence for confidence in held_out],
        unusable="the strong model has no correct answer: nothing to calibrate the cascade against",
    )
    m = next((m for m, q in enumerate(kept) if q >= target - 1e-12), len(items))
    ranked = sorted(held_out)
    if m == 0:
        threshold = 0.0
    elif m >= len(ranked):
        threshold = 1.0
    else:
        threshold = (ranked[m - 1] + ranked[m]) / 2
    return {
        "threshold": round(threshold, 6),
        "confidence": {"bias": round(bias, 6), "weights": {k: round(v, 6) for k, v in model.weights.items()}},
        "calibration": {
            "metric": "quality_kept",
            "target": target,
            "measured": {"answers": len(items), "held_out_escalation_share": round(m / len(items), 4)},
        },
    }
