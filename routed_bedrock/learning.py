"""Training and calibrating the learned pre-call router (``lambdas/router/learned.py`` serves it).

Data: labelled outcomes, each a prompt with how well a cheap ("weak") and a strong model answered it:
RouteLLM's per-prompt files (``../shared/datasets/routellm``) or the evaluator's ``outcomes.jsonl``. Each
set is split 50/50 by a seeded shuffle (``split``, the same one ``benchmarks/routing_quality.py`` scores
on); only the train half is read here.

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

import csv
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from lambdas.router.learned import (
    DENSE_FEATURES,
    FEATURES_VERSION,
    dense_features,
    encode_weights,
    hashed_ngrams,
    sigmoid,
)

WEAK_COLUMN = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_COLUMN = "gpt-4-1106-preview"
_T = TypeVar("_T")


class TrainingError(ValueError):
    """The training data or options are unusable; the message says which file, line or value."""


class Labelled(NamedTuple):
    """One prompt and how well the weak and the strong model answered it (1 right, 0 wrong).

    ``group`` is what the prompt is about when the data says so (an mmlu subject, an evaluator task label):
    training may pull each label towards its group's rate (``Hyper.group_smoothing``). Serving never sees it.
    """

    prompt: str
    weak: float
    strong: float
    group: str | None = None

    @property
    def needs_strong(self) -> float:
        return 1.0 if self.strong >= 0.5 > self.weak else 0.0


class Hyper(NamedTuple):
    """Training settings; the defaults were chosen by cross-validation on the train halves."""

    hash_bits: int = 14
    epochs: int = 12
    learning_rate: float = 0.2
    l2_ngrams: float = 1e-2
    l2_dense: float = 1e-5
    folds: int = 5
    group_smoothing: float = 1.0  # weight of the group's rate in each training label (0: the prompt's own)


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
    width = len(DENSE_FEATURES)
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


def quality_curve(items: Sequence[Labelled], scores: Sequence[float]) -> list[float]:
    """Quality kept (routed quality / always-strong quality) with the top m prompts by score sent strong, m = 0..n."""
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
        targets: quality kept per class threshold; default complex 0.95, moderate 0.98.
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
    for klass, target in targets.items():
        per_set: dict[str, Any] = {}
        candidates = []
        for name in names:
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


def cascade_curve(items: Sequence[Answered], confidences: Sequence[float]) -> list[float]:
    """Quality kept with the m least confident answers escalated to the strong model, m = 0..n."""
    strong_total = sum(item.strong for item in items)
    if not strong_total:
        raise TrainingError("the strong model has no correct answer: nothing to calibrate the cascade against")
    order = sorted(range(len(items)), key=lambda i: confidences[i])
    total = sum(item.weak for item in items)
    kept = [total / strong_total]
    for i in order:
        total += items[i].strong - items[i].weak
        kept.append(total / strong_total)
    return kept


def train_cascade(items: Sequence[Answered], *, target: float = 0.95, folds: int = 5) -> dict[str, Any]:
    """Fit the answer-confidence weights (label: the cheap answer is right) and calibrate the escalation threshold.

    The threshold is chosen on held-out confidences (``folds``-fold: each answer scored by a model fitted
    without it): the confidence below which the fewest answers must escalate for the cascade to keep
    ``target`` of always-strong quality (every prompt pays for the cheap call). The weights shipped are fitted
    on all the answers.
    """
    from lambdas.router.cascade import SIGNALS, ConfidenceModel, answer_signals

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
    kept = cascade_curve(items, held_out)
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
