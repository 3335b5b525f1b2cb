"""Training and calibrating the learned pre-call router (``lambdas/router/learned.py`` serves it).

Data: labelled outcomes, each a prompt with how well a cheap ("weak") and a strong model answered it:
RouteLLM's per-prompt files or the evaluator's ``outcomes.jsonl`` (``outcome_data``), the train half of
each set's seeded 50/50 split. The cascade's confidence is fitted in ``cascade_training``.

Model: logistic regression of "the strong model is right and the weak one is wrong" on the features of
``learned.py``, fitted by AdaGrad SGD with L2 (``Hyper``), the weights averaged over the second half of the
epochs (less dependence on the shuffle). Pure Python and deterministic given the seed: the same data and
seed give byte-identical weights.

Calibration: ``folds``-fold cross-validation on the train half gives every train prompt a score from a
model that never saw it. On those held-out scores, per set, the smallest share of strong calls that keeps
the target share of always-strong quality is found; that share is turned into a threshold on the final
model (trained on the whole train half) as the matching quantile of its scores on that set. The policy's
threshold is the lowest across sets, so every set meets the target; the measured figures are recorded.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from lambdas.router.learned import (
    FEATURES_VERSION,
    dense_features,
    encode_weights,
    hashed_ngrams,
    sigmoid,
)
from routed_bedrock.outcome_data import Answered, Labelled, TrainingError


class Hyper(NamedTuple):
    """Training settings; the defaults were chosen by cross-validation on the train halves."""

    hash_bits: int = 14
    epochs: int = 12
    learning_rate: float = 0.2
    l2_ngrams: float = 1e-2
    l2_dense: float = 1e-5
    folds: int = 5
    group_smoothing: float = 1.0  # weight of the group's rate in each training label (0: the prompt's own)


class Vectors(NamedTuple):
    sparse: list[dict[int, float]]
    dense: list[list[float]]


def vectorise(prompts: Sequence[str], hash_bits: int) -> Vectors:
    return Vectors([hashed_ngrams(p, hash_bits) for p in prompts], [dense_features(p) for p in prompts])


class Model(NamedTuple):
    weights: list[float]
    dense_weights: list[float]
    dense_mean: list[float]
    dense_std: list[float]
    bias: float

    def score(self, sparse: Mapping[int, float], dense: Sequence[float]) -> float:
        z = self.bias + sum(self.weights[k] * v for k, v in sparse.items())
        columns = zip(self.dense_weights, dense, self.dense_mean, self.dense_std, strict=True)
        z += sum(w * (x - m) / s for w, x, m, s in columns)
        return sigmoid(z)


def fit(vectors: Vectors, labels: Sequence[float], hyper: Hyper, seed: int) -> Model:
    """Logistic regression by AdaGrad SGD with L2, weights averaged over the second half of the epochs."""
    n = len(labels)
    if n == 0:
        raise TrainingError("no training prompts")
    width = len(vectors.dense[0])
    mean = [sum(d[j] for d in vectors.dense) / n for j in range(width)]
    std = []
    for j in range(width):
        spread = math.sqrt(sum((d[j] - mean[j]) ** 2 for d in vectors.dense) / n)
        std.append(spread if spread > 1e-9 else 1.0)
    dense = [[(d[j] - mean[j]) / std[j] for j in range(width)] for d in vectors.dense]
    buckets = 1 << hyper.hash_bits
    w = [0.0] * buckets
    g2 = [1e-8] * buckets
    dw = [0.0] * width
    dg2 = [1e-8] * width
    b, bg2 = 0.0, 1e-8
    avg_w, avg_dw, avg_b, averaged = [0.0] * buckets, [0.0] * width, 0.0, 0
    rate, l2, l2d = hyper.learning_rate, hyper.l2_ngrams, hyper.l2_dense
    rng = random.Random(f"{seed}:fit")
    order = list(range(n))
    for epoch in range(hyper.epochs):
        rng.shuffle(order)
        for i in order:
            sparse, x = vectors.sparse[i], dense[i]
            z = b + sum(w[k] * v for k, v in sparse.items()) + sum(a * c for a, c in zip(dw, x, strict=True))
            g = sigmoid(z) - labels[i]
            for k, v in sparse.items():
                gk = g * v + l2 * w[k]
                g2[k] += gk * gk
                w[k] -= rate * gk / math.sqrt(g2[k])
            for j in range(width):
                gj = g * x[j] + l2d * dw[j]
                dg2[j] += gj * gj
                dw[j] -= rate * gj / math.sqrt(dg2[j])
            bg2 += g * g
            b -= rate * g / math.sqrt(bg2)
        if epoch >= hyper.epochs // 2:
            averaged += 1
            avg_w = [a + (c - a) / averaged for a, c in zip(avg_w, w, strict=True)]
            avg_dw = [a + (c - a) / averaged for a, c in zip(avg_dw, dw, strict=True)]
            avg_b += (b - avg_b) / averaged
    return Model(avg_w, avg_dw, mean, std, avg_b)


def quality_curve(
    items: Sequence[Labelled | Answered],
    scores: Sequence[float],
    *,
    unusable: str = "the strong model has no correct answer in a set: nothing to calibrate against",
) -> list[float]:
    """Quality kept (routed quality / always-strong quality) with the top m prompts by score sent strong, m = 0..n.

    Raises:
        TrainingError: ``unusable``, when the strong model has no correct answer among ``items``.
    """
    strong_total = sum(item.strong for item in items)
    if not strong_total:
        raise TrainingError(unusable)
    order = sorted(range(len(items)), key=lambda i: -scores[i])
    total = sum(item.weak for item in items)
    kept = [total / strong_total]
    for i in order:
        total += items[i].strong - items[i].weak
        kept.append(total / strong_total)
    return kept


def share_for_quality(items: Sequence[Labelled], scores: Sequence[float], target: float) -> float:
    """The smallest share of strong calls whose routing keeps ``target`` of always-strong quality."""
    kept = quality_curve(items, scores)
    m = next((m for m, q in enumerate(kept) if q >= target - 1e-12), len(items))
    return m / len(items)


def threshold_for_share(scores: Sequence[float], share: float) -> float:
    """The score at or above which ``share`` of these prompts fall (1.0 when the share is 0)."""
    m = math.ceil(share * len(scores) - 1e-9)
    if m <= 0:
        return 1.0
    return sorted(scores, reverse=True)[min(m, len(scores)) - 1]


class Trained(NamedTuple):
    model: Model
    thresholds: dict[str, float]
    calibration: dict[str, dict[str, Any]]
    train_prompts: dict[str, int]
    held_out: dict[str, list[float]]  # each train prompt's score from the fold model that did not see it


def group_rates(items: Sequence[Labelled]) -> dict[str | None, float]:
    """Per group, the share of its prompts that need the strong model (groups of one are left out)."""
    totals: dict[str | None, list[float]] = {}
    for item in items:
        if item.group is not None:
            totals.setdefault(item.group, []).append(item.needs_strong)
    return {group: sum(values) / len(values) for group, values in totals.items() if len(values) > 1}


MIN_CALIBRATION_PROMPTS = 20
"""A set (dataset or task label) with fewer train prompts still trains the model but sets no threshold: a
handful of prompts would pull the lowest threshold across sets anywhere."""


def _calibratable(items: Sequence[Labelled]) -> bool:
    return len(items) >= MIN_CALIBRATION_PROMPTS and any(item.strong for item in items)


def train_router(
    sets: Mapping[str, Sequence[Labelled]],
    *,
    seed: int = 0,
    hyper: Hyper | None = None,
    targets: Mapping[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Trained:
    """Fit on every set's prompts (already the train halves) and calibrate thresholds to quality targets.

    Args:
        sets: labelled prompts per set (dataset or task label).
        targets: quality kept per class threshold; default complex 0.95, moderate 0.98. Each threshold is the
            lowest that meets its target on every set with ``MIN_CALIBRATION_PROMPTS`` and a strong-correct answer.
    """
    hyper = hyper or Hyper()
    targets = dict(targets or {"complex": 0.95, "moderate": 0.98})
    for name, value in targets.items():
        if name not in ("complex", "moderate") or not 0 < value <= 1:
            raise TrainingError(f"target {name}={value}: expected complex or moderate, in (0, 1]")
    if targets.get("moderate", 1.0) < targets["complex"]:
        raise TrainingError("the moderate target must be at least the complex target (it is the lower threshold)")
    names = [name for name in sets if sets[name]]
    if not names:
        raise TrainingError("no training prompts")
    say = progress or (lambda _message: None)
    vectors = {name: vectorise([item.prompt for item in sets[name]], hyper.hash_bits) for name in names}

    def pooled(held_fold: int | None) -> tuple[Vectors, list[float]]:
        """Every prompt but those of ``held_fold`` (all of them when it is None)."""
        sparse: list[dict[int, float]] = []
        dense: list[list[float]] = []
        labels: list[float] = []
        for name in names:
            chosen = [i for i in range(len(sets[name])) if held_fold is None or i % hyper.folds != held_fold]
            rates = group_rates([sets[name][i] for i in chosen])
            for i in chosen:
                item = sets[name][i]
                sparse.append(vectors[name].sparse[i])
                dense.append(vectors[name].dense[i])
                rate = rates.get(item.group) if item.group is not None else None
                smoothing = hyper.group_smoothing if rate is not None else 0.0
                labels.append((1 - smoothing) * item.needs_strong + smoothing * (rate or 0.0))
        return Vectors(sparse, dense), labels

    held_out: dict[str, list[float]] = {name: [0.0] * len(sets[name]) for name in names}
    for fold in range(hyper.folds):
        say(f"calibration fold {fold + 1}/{hyper.folds}")
        model = fit(*pooled(fold), hyper, seed)
        for name in names:
            for i in range(fold, len(sets[name]), hyper.folds):
                held_out[name][i] = model.score(vectors[name].sparse[i], vectors[name].dense[i])
    say("final model")
    final = fit(*pooled(None), hyper, seed)
    thresholds: dict[str, float] = {}
    calibration: dict[str, dict[str, Any]] = {}
    calibrated = [name for name in names if _calibratable(sets[name])]
    if not calibrated:
        raise TrainingError(
            f"no set can calibrate a threshold: each needs at least {MIN_CALIBRATION_PROMPTS} prompts and a "
            "correct answer from the strong model"
        )
    for klass, target in targets.items():
        per_set: dict[str, Any] = {}
        candidates = []
        for name in calibrated:
            share = share_for_quality(sets[name], held_out[name], target)
            scores = [final.score(vectors[name].sparse[i], vectors[name].dense[i]) for i in range(len(sets[name]))]
            candidates.append(threshold_for_share(scores, share))
            per_set[name] = {"held_out_strong_share": round(share, 4), "prompts": len(sets[name])}
        thresholds[klass] = min(candidates)
        calibration[klass] = {"metric": "quality_kept", "target": target, "measured": per_set}
    thresholds.setdefault("moderate", thresholds["complex"])
    thresholds["moderate"] = min(thresholds["moderate"], thresholds["complex"])
    return Trained(final, thresholds, calibration, {name: len(sets[name]) for name in names}, held_out)


def policy_section(trained: Trained, hyper: Hyper, *, seed: int, source: str, trained_at: str) -> dict[str, Any]:
    """The policy's ``rules.complexity.learned`` object for a trained router."""
    model = trained.model
    return {
        "features": FEATURES_VERSION,
        "hash_bits": hyper.hash_bits,
        "bias": round(model.bias, 6),
        "weights": encode_weights(model.weights),
        "dense": {
            "weights": [round(x, 6) for x in model.dense_weights],
            "mean": [round(x, 6) for x in model.dense_mean],
            "std": [round(x, 6) for x in model.dense_std],
        },
        "thresholds": {name: round(value, 6) for name, value in trained.thresholds.items()},
        "calibration": trained.calibration,
        "heuristic_floor": True,
        "trained": {
            "source": source,
            "split": "train half of a 50/50 seeded shuffle per set (routing_quality.py scores the other half)",
            "seed": seed,
            "prompts": trained.train_prompts,
            "label": "strong model right and weak model wrong",
            "hyperparameters": hyper._asdict(),
            "trained_at": trained_at,
        },
    }
