"""The learned pre-call router: what would a strong model gain on this prompt? Pure-Python inference, no model call.

A logistic regression over two kinds of features, both computed here and nowhere else (the trainer in
``routed_bedrock.learning`` imports this module, so training and serving can never disagree):

- hashed word n-grams: the prompt is lower-cased and split into words and numbers (every number becomes
  ``0``); unigrams and bigrams of its first ``MAX_WORDS`` words are hashed (CRC-32, a bigram mixing its two
  words' CRCs) into ``2**hash_bits`` buckets; the count vector is scaled to unit length, so a long prompt
  does not outweigh a short one. Features ``hashed-words-v2`` (what training writes) give multiple-choice
  and free-form prompts a half of the buckets each, so a word weighs what it says in each kind of ask (a
  maths word problem's "total" is not an exam question's); ``hashed-words-v1`` (still served) shares them;
- structural signals (``DENSE_FEATURES``): logs of the size, how many numbers and distinct numbers, commas,
  newlines and the largest number, whether the prompt is a multiple-choice question, and the size signals
  again for multiple-choice prompts only (so one model serves free-form and multiple-choice asks). They are
  standardised with the training set's mean and spread.

The score, in [0, 1], is the model's estimate of the strong model's advantage on the prompt, (1 + strong -
weak) / 2 in expectation: above 1/2 a strong call is expected to gain, below it to lose. Two thresholds,
calibrated on held-out data to targets recorded beside them, turn it into the engine's classes: ``complex`` (the strong
model) at or above ``thresholds.complex``, ``moderate`` at or above ``thresholds.moderate``, else
``simple``. The weights ship in the policy as little-endian int16 quantised with one scale, base64-encoded:
2 bytes a bucket (16,384 buckets = 44 KB of JSON), so a retrained router is a policy change, not a deploy.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import sys
import zlib
from array import array
from collections.abc import Mapping
from typing import Any, NamedTuple

FEATURES_VERSION = "hashed-words-v2"
"""The features training writes. ``FEATURES_SPLIT`` says, per version served, whether the two kinds of prompt
hash into halves of their own."""
FEATURES_SPLIT = {"hashed-words-v1": False, "hashed-words-v2": True}
MAX_WORDS = 256  # words and numbers read from the prompt's start: bounds the cost on any input
WORD_SCAN_CHARS = 2_048  # characters they are read from (256 words of ~6 characters with their spaces)
SCAN_CHARS = 8_000  # characters read for the structural signals (their size signal uses the full length)
WEIGHT_ENCODING = "int16-le-base64"
DENSE_FEATURES = (
    "log_chars",
    "log_numbers",
    "log_distinct_numbers",
    "log_commas",
    "log_newlines",
    "log_max_number",
    "multiple_choice",
    "mc_log_chars",
    "mc_log_numbers",
    "mc_log_distinct_numbers",
    "mc_log_commas",
    "mc_log_newlines",
    "mc_log_max_number",
)

_WORD = re.compile(r"[a-z]+|0")  # after every run of digits became one "0"
_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_CHOICE_A = re.compile(r"(?:^|\n)\(?A[.):] ")
_CHOICE_B = re.compile(r"\n\(?B[.):] ")
_CHOICE_INDEX = DENSE_FEATURES.index("multiple_choice")
_MAX_NUMBER = 1e15
_START_CRC = zlib.crc32(b"^")
_MIX = 0x01000193
_START_MIXED = (_START_CRC * _MIX) & 0xFFFFFFFF


class LearnedRouterError(ValueError):
    """The policy's learned router is malformed (bad encoding, wrong sizes)."""


class Calibration(NamedTuple):
    """How a threshold was chosen: the target it meets on held-out data, and what it measured there."""

    metric: str  # "quality_kept" or "strong_share"
    target: float
    measured: Mapping[str, Any]


class LearnedRouter(NamedTuple):
    """A compiled learned router (from the policy's ``rules.complexity.learned``)."""

    hash_bits: int
    weights: tuple[float, ...]  # one per hash bucket
    dense_weights: tuple[float, ...]
    dense_mean: tuple[float, ...]
    dense_std: tuple[float, ...]
    bias: float
    moderate_at: float
    complex_at: float
    calibration: Mapping[str, Calibration]
    trained: Mapping[str, Any]
    heuristic_floor: bool = True
    split_kinds: bool = False  # features hashed-words-v2: each kind of prompt hashes into its half of the buckets

    def score(self, text: str, total_chars: int | None = None) -> float:
        """The strong model's expected advantage on the prompt, in [0, 1] (1/2: a strong call gains nothing)."""
        raw = dense_features(text, total_chars)
        mask, offset = bucket_space(self.hash_bits, self.split_kinds, multiple_choice=raw[_CHOICE_INDEX] > 0)
        counts: dict[int, int] = {}
        get = counts.get
        for unigram, bigram in _ngram_buckets(_tokens(text), mask, offset):
            counts[unigram] = get(unigram, 0) + 1
            counts[bigram] = get(bigram, 0) + 1
        z = self.bias
        if counts:  # the unit-length n-gram vector's dot product, without building it
            weights = self.weights
            z += sum(weights[k] * c for k, c in counts.items()) / math.sqrt(sum(c * c for c in counts.values()))
        dense = _standardise(raw, self)
        z += sum(w * x for w, x in zip(self.dense_weights, dense, strict=True))
        return sigmoid(z)

    def klass(self, score: float) -> str:
        if score >= self.complex_at:
            return "complex"
        if score >= self.moderate_at:
            return "moderate"
        return "simple"

    def explain(self, text: str, total_chars: int | None = None, top: int = 8) -> dict[str, Any]:
        """The score's largest contributions: n-grams (by name) and structural signals."""
        contributions: dict[str, float] = {}
        sparse = hashed_ngrams(text, self.hash_bits, split_kinds=self.split_kinds)
        tokens = _tokens(text)
        mask, offset = bucket_space(self.hash_bits, self.split_kinds, multiple_choice=is_multiple_choice(text))
        for i, (unigram, bigram) in enumerate(_ngram_buckets(tokens, mask, offset)):
            contributions[tokens[i]] = self.weights[unigram] * sparse[unigram]
            pair = f"{tokens[i - 1] if i else '^'} {tokens[i]}"
            contributions[pair] = self.weights[bigram] * sparse[bigram]
        ngrams = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))[:top]
        dense_raw = dense_features(text, total_chars)
        dense = _standardise(dense_raw, self)
        signals = {  # every structural signal that moves the score: an absent one (0) still counts once standardised
            name: {"value": round(raw, 3), "contribution": round(w * x, 4)}
            for name, raw, w, x in zip(DENSE_FEATURES, dense_raw, self.dense_weights, dense, strict=True)
            if round(w * x, 4)
        }
        return {
            "bias": round(self.bias, 4),
            "ngrams": [{"ngram": k, "contribution": round(v, 4)} for k, v in ngrams],
            "structural": signals,
        }

    def as_reason(self) -> dict[str, Any]:
        """What the decision shows about this router: its thresholds and the targets they were calibrated to."""
        return {
            "thresholds": {"moderate": round(self.moderate_at, 4), "complex": round(self.complex_at, 4)},
            "calibration": {name: {"metric": c.metric, "target": c.target} for name, c in self.calibration.items()},
        }


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _tokens(text: str) -> list[str]:
    """The prompt's first ``MAX_WORDS`` lower-cased words and numbers, every number as ``0``."""
    tokens: list[str] = _WORD.findall(_DIGITS.sub("0", text[:WORD_SCAN_CHARS].lower()))
    return tokens[:MAX_WORDS]


def bucket_space(hash_bits: int, split_kinds: bool, *, multiple_choice: bool) -> tuple[int, int]:
    """The (mask, offset) a prompt's n-grams hash with: all ``2**hash_bits`` buckets, or with ``split_kinds``
    the lower half for a multiple-choice prompt and the upper half for a free-form one."""
    if not split_kinds:
        return (1 << hash_bits) - 1, 0
    half = 1 << (hash_bits - 1)
    return half - 1, 0 if multiple_choice else half


def is_multiple_choice(text: str) -> bool:
    """Whether the prompt lists choices A and B (``DENSE_FEATURES``' ``multiple_choice``)."""
    sample = text[:SCAN_CHARS]
    return bool(_CHOICE_A.search(sample) and _CHOICE_B.search(sample))


def _ngram_buckets(tokens: list[str], mask: int, offset: int = 0) -> list[tuple[int, int]]:
    """Per token, its unigram bucket and the bucket of the bigram it ends (the first one's starts at ``^``).

    A token's bucket is its CRC-32 (stable across processes, unlike ``hash``) under ``mask``, plus ``offset``;
    a bigram's mixes the two tokens' CRCs (FNV-style multiply and xor). Each distinct token is hashed, bucketed
    and multiplied once (kept as ``(crc, bucket, crc * _MIX)``).
    """
    seen: dict[str, tuple[int, int, int]] = {}
    buckets: list[tuple[int, int]] = []
    append = buckets.append
    previous = _START_MIXED
    for token in tokens:
        entry = seen.get(token)
        if entry is None:
            crc = zlib.crc32(token.encode("utf-8", "surrogatepass"))
            entry = seen[token] = (crc, (crc & mask) | offset, (crc * _MIX) & 0xFFFFFFFF)
        crc, unigram, mixed = entry
        append((unigram, ((previous ^ crc) & mask) | offset))
        previous = mixed
    return buckets


def hashed_ngrams(text: str, hash_bits: int, *, split_kinds: bool = False) -> dict[int, float]:
    """Bucket -> count of the prompt's unigrams and bigrams in it, the vector scaled to unit length (with
    ``split_kinds``, in the half of the buckets of the prompt's kind: ``bucket_space``)."""
    mask, offset = bucket_space(hash_bits, split_kinds, multiple_choice=split_kinds and is_multiple_choice(text))
    counts: dict[int, float] = {}
    get = counts.get
    for unigram, bigram in _ngram_buckets(_tokens(text), mask, offset):
        counts[unigram] = get(unigram, 0.0) + 1.0
        counts[bigram] = get(bigram, 0.0) + 1.0
    if counts:
        scale = 1.0 / math.sqrt(sum(v * v for v in counts.values()))
        for bucket in counts:
            counts[bucket] *= scale
    return counts


def dense_features(text: str, total_chars: int | None = None) -> list[float]:
    """The structural signals of ``DENSE_FEATURES``, unstandardised."""
    sample = text[:SCAN_CHARS]
    numbers = _NUMBER.findall(sample)
    largest = 0.0
    for number in numbers:
        value = float(number.replace(",", "")) if len(number) < 20 else _MAX_NUMBER
        largest = max(largest, min(value, _MAX_NUMBER))
    size = [
        math.log1p(len(text) if total_chars is None else total_chars),
        math.log1p(len(numbers)),
        math.log1p(len(set(numbers))),
        math.log1p(sample.count(",")),
        math.log1p(sample.count("\n")),
        math.log1p(largest),
    ]
    multiple_choice = 1.0 if is_multiple_choice(sample) else 0.0
    return [*size, multiple_choice, *(v * multiple_choice for v in size)]


def _standardise(raw: list[float], router: LearnedRouter) -> list[float]:
    return [(x - m) / s for x, m, s in zip(raw, router.dense_mean, router.dense_std, strict=True)]


def encode_weights(weights: list[float]) -> dict[str, Any]:
    """Quantise weights to int16 with one scale and base64 them (the policy's ``weights`` object)."""
    peak = max((abs(w) for w in weights), default=0.0)
    scale = peak / 32767 if peak else 1.0
    quantised = array("h", (round(w / scale) for w in weights))
    if sys.byteorder != "little":
        quantised.byteswap()
    return {"encoding": WEIGHT_ENCODING, "scale": scale, "data": base64.b64encode(quantised.tobytes()).decode()}


def decode_weights(encoded: Mapping[str, Any], buckets: int) -> tuple[float, ...]:
    """The weights an ``encode_weights`` object holds.

    Raises:
        LearnedRouterError: unknown encoding, bad base64, or not one weight per bucket.
    """
    if encoded.get("encoding") != WEIGHT_ENCODING:
        raise LearnedRouterError(f"weights.encoding must be {WEIGHT_ENCODING!r}, got {encoded.get('encoding')!r}")
    try:
        raw = base64.b64decode(encoded["data"], validate=True)
    except (binascii.Error, ValueError):
        raise LearnedRouterError("weights.data is not valid base64") from None
    if len(raw) != 2 * buckets:
        raise LearnedRouterError(f"weights.data holds {len(raw) // 2} weights; hash_bits needs {buckets}")
    quantised = array("h")
    quantised.frombytes(raw)
    if sys.byteorder != "little":
        quantised.byteswap()
    scale = float(encoded["scale"])
    return tuple(q * scale for q in quantised)


def compile_learned(document: Mapping[str, Any]) -> LearnedRouter:
    """Compile a schema-valid ``rules.complexity.learned`` object.

    Raises:
        LearnedRouterError: what the schema cannot check (weight count, threshold order, feature version).
    """
    if document["features"] not in FEATURES_SPLIT:
        raise LearnedRouterError(f"features must be one of {', '.join(FEATURES_SPLIT)}, got {document['features']!r}")
    bits = int(document["hash_bits"])
    dense = document["dense"]
    for name in ("weights", "mean", "std"):
        if len(dense[name]) != len(DENSE_FEATURES):
            raise LearnedRouterError(f"dense.{name} must hold {len(DENSE_FEATURES)} numbers, got {len(dense[name])}")
    if any(s <= 0 for s in dense["std"]):
        raise LearnedRouterError("dense.std values must be above 0")
    thresholds = document["thresholds"]
    if thresholds["moderate"] > thresholds["complex"]:
        raise LearnedRouterError(
            f"thresholds.moderate must not exceed thresholds.complex (got {thresholds['moderate']} > "
            f"{thresholds['complex']})"
        )
    return LearnedRouter(
        hash_bits=bits,
        weights=decode_weights(document["weights"], 1 << bits),
        dense_weights=tuple(float(x) for x in dense["weights"]),
        dense_mean=tuple(float(x) for x in dense["mean"]),
        dense_std=tuple(float(x) for x in dense["std"]),
        bias=float(document["bias"]),
        moderate_at=float(thresholds["moderate"]),
        complex_at=float(thresholds["complex"]),
        calibration={
            name: Calibration(metric=c["metric"], target=float(c["target"]), measured=dict(c.get("measured", {})))
            for name, c in document["calibration"].items()
        },
        trained=dict(document.get("trained", {})),
        heuristic_floor=bool(document.get("heuristic_floor", True)),
        split_kinds=FEATURES_SPLIT[document["features"]],
    )
