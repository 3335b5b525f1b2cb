"""Training and calibrating the learned pre-call router (``lambdas/router/learned.py`` serves it).

Data: labelled outcomes, each a prompt with how well a cheap ("weak") and a strong model answered it:
RouteLLM's per-prompt files or the evaluator's ``outcomes.jsonl`` (``outcome_data``), the train half of
each set's seeded 50/50 split. The cascade's confidence is fitted in ``cascade_training``.

Model: logistic regression (scikit-learn's, L2, lbfgs) on the features of ``learned.py``. The label is the
strong model's advantage on the prompt, ``(1 + strong - weak) / 2``: 1 where only the strong model is right,
0 where only the weak one is, 1/2 where both or neither are (sending such a prompt strong gains nothing), so
the score orders prompts by what a strong call is expected to gain, which is what the quality curve pays
for. Prompts with a group (an mmlu subject) take their group's mean advantage (``Hyper.group_smoothing``).
The L2 strength is chosen from ``Hyper.strengths`` by ``folds``-fold cross-validation on the train halves
with the one-standard-error rule: the most regularised strength whose held-out scores need at most one
standard error more strong calls (to keep the complex target, averaged over the sets) than the best one's.
The fit is deterministic; ``seed`` assigns the folds.

Calibration: the chosen strength's held-out scores give every train prompt a score from a model that never
saw it. On those, per set, the smallest share of strong calls that keeps the target share of always-strong
quality is found; that share is turned into a threshold as the matching quantile of the held-out scores on
that set (how prompts the model never saw score), and applied to the final model (trained on the whole train
half). The policy's threshold is the lowest across sets, so every set meets the target; the measured figures
are recorded.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from lambdas.router.learned import (
    FEATURES_SPLIT,
    FEATURES_VERSION,
    dense_features,
    encode_weights,
    hashed_ngrams,
    sigmoid,
)
from routed_bedrock.outcome_data import Answered, Labelled, TrainingError

MAX_ITERATIONS = 5_000
TOLERANCE = 1e-6
"""The solver's stopping tolerance: tight enough that the weights are the optimum's, not the path's (at
scikit-learn's default 1e-4 the cross-validated choice of strength moved)."""


class Hyper(NamedTuple):
    """Training settings. ``strengths`` are the candidate inverse L2 strengths (scikit-learn's ``C``)."""

    hash_bits: int = 14
    strengths: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    folds: int = 5
    group_smoothing: float = 1.0  # weight of the group's mean in each training label (0: the prompt's own)


class Vectors(NamedTuple):
    """Prompts' features as the solver takes them: n-gram counts (one row per prompt) and structural signals."""

    ngrams: sparse.csr_matrix
    dense: np.ndarray

    def rows(self, chosen: Sequence[int]) -> Vectors:
        index = np.asarray(chosen, dtype=np.intp)
        return Vectors(self.ngrams[index], self.dense[index])


def vectors_of(rows: Sequence[Mapping[int, float]], dense: Sequence[Sequence[float]], hash_bits: int) -> Vectors:
    """Per-row bucket -> value maps and structural signals as ``Vectors``."""
    indptr, indices, data = [0], [], []
    for row in rows:
        for bucket in sorted(row):
            indices.append(bucket)
            data.append(row[bucket])
        indptr.append(len(indices))
    ngrams = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), 1 << hash_bits))
    width = len(dense[0]) if dense else 0
    return Vectors(ngrams, np.asarray(dense, dtype=float).reshape(len(rows), width))


def vectorise(prompts: Sequence[str], hash_bits: int) -> Vectors:
    """The learned router's features of each prompt (``hashed_ngrams`` and ``dense_features``)."""
    split = FEATURES_SPLIT[FEATURES_VERSION]
    return vectors_of(
        [hashed_ngrams(p, hash_bits, split_kinds=split) for p in prompts],
        [dense_features(p) for p in prompts],
        hash_bits,
    )


class Model(NamedTuple):
    weights: list[float]
    dense_weights: list[float]
    dense_mean: list[float]
    dense_std: list[float]
    bias: float

    def scores(self, vectors: Vectors) -> list[float]:
        """Each row's score (the served ``LearnedRouter.score`` before int16 quantisation), as one matrix product."""
        standardised = (vectors.dense - np.asarray(self.dense_mean)) / np.asarray(self.dense_std)
        z = vectors.ngrams @ np.asarray(self.weights) + standardised @ np.asarray(self.dense_weights) + self.bias
        return [sigmoid(float(value)) for value in z]


def fit(vectors: Vectors, labels: Sequence[float], *, strength: float) -> Model:
    """Logistic regression of labels in [0, 1] (soft labels allowed), L2 with inverse strength ``strength``.

    The structural signals are standardised with these rows' mean and spread. A soft label y is fitted as the
    prompt twice, a 1 weighted y and a 0 weighted 1 - y: the cross-entropy against y. Deterministic: the same
    rows give the same weights.
    """
    n = len(labels)
    if n == 0:
        raise TrainingError("no training prompts")
    mean = vectors.dense.mean(axis=0)
    std = vectors.dense.std(axis=0)
    std[std <= 1e-9] = 1.0
    matrix = sparse.hstack([vectors.ngrams, sparse.csr_matrix((vectors.dense - mean) / std)], format="csr")
    y = np.clip(np.asarray(labels, dtype=float), 0.0, 1.0)
    solver = LogisticRegression(C=strength, solver="lbfgs", max_iter=MAX_ITERATIONS, tol=TOLERANCE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            solver.fit(
                sparse.vstack([matrix, matrix], format="csr"),
                np.concatenate([np.ones(n), np.zeros(n)]),
                sample_weight=np.concatenate([y, 1.0 - y]),
            )
        except ConvergenceWarning:
            raise TrainingError(
                f"the solver did not converge in {MAX_ITERATIONS} iterations at strength {strength:g}: "
                "leave that strength out"
            ) from None
    coefficients = solver.coef_[0]
    buckets = vectors.ngrams.shape[1]
    return Model(
        [float(w) for w in coefficients[:buckets]],
        [float(w) for w in coefficients[buckets:]],
        [float(m) for m in mean],
        [float(s) for s in std],
        float(solver.intercept_[0]),
    )


def checked_strengths(hyper: Hyper) -> list[float]:
    """``hyper.strengths`` most regularised (smallest inverse strength) first, after checking the settings.

    Raises:
        TrainingError: no strengths, a strength that is not positive, or fewer than 2 folds.
    """
    if not hyper.strengths or any(not strength > 0 for strength in hyper.strengths):
        raise TrainingError(f"strengths must be positive numbers, got {list(hyper.strengths)}")
    if hyper.folds < 2:
        raise TrainingError(f"folds must be at least 2 (cross-validation holds one out), got {hyper.folds}")
    return sorted(set(hyper.strengths))


def fold_assignment(n: int, folds: int, seed: int, name: str) -> list[int]:
    """Each of n rows' fold, balanced (sizes differ by at most one) and seeded."""
    order = list(range(n))
    random.Random(f"{seed}:folds:{name}").shuffle(order)
    assigned = [0] * n
    for position, row in enumerate(order):
        assigned[row] = position % folds
    return assigned


def quality_curve(items: Sequence[Labelled | Answered], scores: Sequence[float]) -> list[float]:
    """Quality kept (routed quality / always-strong quality) with the top m prompts by score sent strong, m = 0..n.

    Raises:
        TrainingError: when the strong model has no correct answer among ``items``.
    """
    strong_total = sum(item.strong for item in items)
    if not strong_total:
        raise TrainingError("the strong model has no correct answer in a set: nothing to calibrate against")
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


def simplest_within_error(shares: Mapping[float, float], error: float) -> float:
    """The one-standard-error rule: the smallest strength (the most regularised) whose held-out share is at most
    the lowest share plus ``error``."""
    best = min(shares.values())
    return min(strength for strength, share in shares.items() if share <= best + error + 1e-12)


def share_error(share: float, n: int) -> float:
    """The standard error of a share measured on n prompts (binomial), used to prefer the simpler of two fits
    whose held-out figures differ by less than it (the one-standard-error rule)."""
    return math.sqrt(max(share * (1 - share), 0.0) / n) if n else 0.0


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
    strength: float  # the L2 strength chosen by cross-validation
    selection: dict[str, float]  # per candidate strength: mean held-out strong share at the complex target


def advantage(item: Labelled) -> float:
    """The strong model's advantage on a prompt, in [0, 1]: ``(1 + strong - weak) / 2``."""
    return (1.0 + item.strong - item.weak) / 2


def group_means(items: Sequence[Labelled]) -> dict[str | None, float]:
    """Per group, the mean advantage of its prompts (groups of one are left out)."""
    totals: dict[str | None, list[float]] = {}
    for item in items:
        if item.group is not None:
            totals.setdefault(item.group, []).append(advantage(item))
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
    strengths = checked_strengths(hyper)
    names = [name for name in sets if sets[name]]
    if not names:
        raise TrainingError("no training prompts")
    calibrated = [name for name in names if _calibratable(sets[name])]
    if not calibrated:
        raise TrainingError(
            f"no set can calibrate a threshold: each needs at least {MIN_CALIBRATION_PROMPTS} prompts and a "
            "correct answer from the strong model"
        )
    say = progress or (lambda _message: None)
    vectors = {name: vectorise([item.prompt for item in sets[name]], hyper.hash_bits) for name in names}
    fold_of = {name: fold_assignment(len(sets[name]), hyper.folds, seed, name) for name in names}

    def labels(name: str, chosen: Sequence[int]) -> list[float]:
        """The labels of a set's ``chosen`` prompts (a group's mean taken over the chosen prompts alone)."""
        means = group_means([sets[name][i] for i in chosen])
        out = []
        for i in chosen:
            item = sets[name][i]
            mean = means.get(item.group) if item.group is not None else None
            smoothing = hyper.group_smoothing if mean is not None else 0.0
            out.append((1 - smoothing) * advantage(item) + smoothing * (mean or 0.0))
        return out

    def fitted(held_fold: int | None, strength: float) -> Model:
        """A model of every prompt but those of ``held_fold`` (all of them when it is None)."""
        parts, targets_ = [], []
        for name in names:
            chosen = [i for i in range(len(sets[name])) if fold_of[name][i] != held_fold]
            parts.append(vectors[name].rows(chosen))
            targets_.extend(labels(name, chosen))
        pooled = Vectors(
            sparse.vstack([part.ngrams for part in parts], format="csr"), np.vstack([part.dense for part in parts])
        )
        return fit(pooled, targets_, strength=strength)

    def held_out_scores(strength: float) -> dict[str, list[float]]:
        scores = {name: [0.0] * len(sets[name]) for name in names}
        for fold in range(hyper.folds):
            model = fitted(fold, strength)
            for name in names:
                held = [i for i in range(len(sets[name])) if fold_of[name][i] == fold]
                for i, value in zip(held, model.scores(vectors[name].rows(held)), strict=True):
                    scores[name][i] = value
        return scores

    # The most regularised strength whose held-out scores need no more strong calls than the best one's plus a
    # standard error (mean over the calibrated sets).
    selection: dict[str, float] = {}
    tried: list[tuple[float, float, list[float], dict[str, list[float]]]] = []
    for number, strength in enumerate(strengths, start=1):
        say(f"cross-validating strength {strength:g} ({number}/{len(strengths)}, {hyper.folds} folds)")
        held_out = held_out_scores(strength)
        shares = [share_for_quality(sets[name], held_out[name], targets["complex"]) for name in calibrated]
        mean_share = sum(shares) / len(shares)
        selection[f"{strength:g}"] = round(mean_share, 4)
        tried.append((strength, mean_share, shares, held_out))
    _, _, best_shares, _ = min(tried, key=lambda candidate: candidate[1])
    errors = [share_error(share, len(sets[name])) for share, name in zip(best_shares, calibrated, strict=True)]
    error = math.sqrt(sum(e**2 for e in errors)) / len(errors)
    strength = simplest_within_error({candidate[0]: candidate[1] for candidate in tried}, error)
    held_out = next(candidate[3] for candidate in tried if candidate[0] == strength)
    say(f"final model (strength {strength:g})")
    final = fitted(None, strength)
    thresholds: dict[str, float] = {}
    calibration: dict[str, dict[str, Any]] = {}
    for klass, target in targets.items():
        per_set: dict[str, Any] = {}
        chosen = []
        for name in calibrated:
            share = share_for_quality(sets[name], held_out[name], target)
            chosen.append(threshold_for_share(held_out[name], share))
            per_set[name] = {"held_out_strong_share": round(share, 4), "prompts": len(sets[name])}
        thresholds[klass] = min(chosen)
        calibration[klass] = {"metric": "quality_kept", "target": target, "measured": per_set}
    thresholds.setdefault("moderate", thresholds["complex"])
    thresholds["moderate"] = min(thresholds["moderate"], thresholds["complex"])
    return Trained(
        final,
        thresholds,
        calibration,
        {name: len(sets[name]) for name in names},
        held_out,
        strength,
        selection,
    )


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
            "label": "the strong model's advantage, (1 + strong - weak) / 2; an mmlu prompt takes its subject's mean",
            "model": "logistic regression (scikit-learn, L2, lbfgs)",
            "hyperparameters": {**hyper._asdict(), "strengths": list(hyper.strengths), "strength": trained.strength},
            "held_out_strong_share_by_strength": trained.selection,
            "trained_at": trained_at,
        },
    }
