"""The learned pre-call router: weight encoding, features, scoring, and how the classifier and policy use it."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lambdas.router.classifier import classify
from lambdas.router.engine import RoutingRequest, decide
from lambdas.router.learned import (
    DENSE_FEATURES,
    FEATURES_SPLIT,
    FEATURES_VERSION,
    MAX_WORDS,
    LearnedRouter,
    LearnedRouterError,
    compile_learned,
    decode_weights,
    dense_features,
    encode_weights,
    hashed_ngrams,
)
from lambdas.router.policy import PolicyError, compile_policy

ROOT = Path(__file__).resolve().parents[2]
ANALYSIS_ASK = (
    "Analyze the trade-offs between a microservice architecture and a modular monolith for a team of twelve "
    "engineers. First list the operational risks, then compare the costs over three years, and finally "
    "recommend a migration strategy with the implications for hiring."
)
MULTIPLE_CHOICE = DENSE_FEATURES.index("multiple_choice")


def learned_section(
    *,
    hash_bits: int = 8,
    weights: list[float] | None = None,
    bias: float = 0.0,
    moderate: float = 0.3,
    complex_: float = 0.6,
) -> dict[str, Any]:
    """A valid ``rules.complexity.learned`` object with neutral structural signals."""
    width = len(DENSE_FEATURES)
    return {
        "features": FEATURES_VERSION,
        "hash_bits": hash_bits,
        "bias": bias,
        "weights": encode_weights(weights if weights is not None else [0.0] * (1 << hash_bits)),
        "dense": {"weights": [0.0] * width, "mean": [0.0] * width, "std": [1.0] * width},
        "thresholds": {"moderate": moderate, "complex": complex_},
        "calibration": {"complex": {"metric": "quality_kept", "target": 0.95}},
    }


def unigram_bucket(word: str, hash_bits: int, *, split_kinds: bool = FEATURES_SPLIT[FEATURES_VERSION]) -> int:
    """The bucket of a word's unigram in a free-form prompt: the one bucket the word fills after any predecessor."""
    (bucket,) = set.intersection(
        *(set(hashed_ngrams(f"{before} {word}", hash_bits, split_kinds=split_kinds)) for before in ("", "zzz", "qqq"))
    )
    return bucket


MC_PROMPT = "Which is urgent?\nA. this\nB. that\nC. neither"


# Encoding


def test_weights_round_trip_within_the_quantisation_step():
    # Given weights of both signs and very different sizes
    rng = random.Random(7)
    weights = [rng.uniform(-3.0, 3.0) for _ in range(256)] + [0.0, 1e-6, -2.5]
    # When encoded and decoded
    encoded = encode_weights(weights)
    decoded = decode_weights(encoded, len(weights))
    # Then each weight comes back within half a quantisation step, and the largest one exactly
    step = encoded["scale"]
    assert len(decoded) == len(weights)
    assert all(abs(d - w) <= step / 2 + 1e-12 for d, w in zip(decoded, weights, strict=True))
    peak = max(range(len(weights)), key=lambda i: abs(weights[i]))
    assert decoded[peak] == pytest.approx(weights[peak], rel=1e-9)


def test_all_zero_weights_round_trip_to_zero():
    encoded = encode_weights([0.0] * 16)
    assert encoded["scale"] > 0
    assert decode_weights(encoded, 16) == (0.0,) * 16


def test_rejects_weights_of_the_wrong_length():
    # Given weights for 256 buckets
    encoded = encode_weights([0.5] * 256)
    # When decoded for 512 buckets
    with pytest.raises(LearnedRouterError) as error:
        decode_weights(encoded, 512)
    # Then the message says how many there are and how many are needed
    assert "holds 256 weights" in str(error.value)
    assert "512" in str(error.value)


@pytest.mark.parametrize("data", ["!!!!", "AAAAA", "AA=A"])
def test_rejects_weights_that_are_not_base64(data):
    encoded = {**encode_weights([0.5] * 2), "data": data}
    with pytest.raises(LearnedRouterError, match=r"weights\.data is not valid base64"):
        decode_weights(encoded, 2)


@pytest.mark.parametrize("encoding", ["float32-base64", None])
def test_rejects_an_unknown_weight_encoding(encoding):
    encoded = {**encode_weights([0.5] * 2), "encoding": encoding}
    with pytest.raises(LearnedRouterError, match=r"weights\.encoding must be 'int16-le-base64'"):
        decode_weights(encoded, 2)


def _corrupt_data(section: dict[str, Any]) -> None:
    data = section["weights"]["data"]
    section["weights"]["data"] = "A" + data[1:-2]  # a valid alphabet, a broken length: not base64


def _truncate_data(section: dict[str, Any]) -> None:
    section["weights"]["data"] = section["weights"]["data"][:-8]  # valid base64, too few weights


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (_corrupt_data, "weights.data"),
        (_truncate_data, "weights.data holds"),
        (lambda s: s["weights"].update(data="!!!!" + s["weights"]["data"][4:]), "weights.data"),
        (lambda s: s["dense"].update(mean=s["dense"]["mean"][:-1]), "dense.mean"),
        (lambda s: s["dense"]["std"].__setitem__(0, 0.0), "dense.std"),
        (lambda s: s["thresholds"].update(moderate=0.5, complex=0.4), "thresholds.moderate"),
        (lambda s: s.update(features="hashed-words-v9"), "features"),
        (lambda s: s.update(hash_bits=s["hash_bits"] - 1), "weights.data holds"),
    ],
    ids=["bad-base64", "truncated", "bad-alphabet", "mean-length", "zero-std", "thresholds", "features", "bits"],
)
def test_rejects_a_policy_with_a_malformed_learned_router(policy_document, corrupt, problem):
    # Given the shipped policy with its learned router damaged
    corrupt(policy_document["rules"]["complexity"]["learned"])
    # When compiled
    with pytest.raises(PolicyError) as error:
        compile_policy(policy_document)
    # Then the rejection names the learned router and the problem
    message = str(error.value)
    assert "rules.complexity.learned" in message
    assert problem in message


# Features


def test_ngram_hashing_is_the_same_in_another_process_with_another_hash_seed():
    # Given a prompt's n-gram vector computed here
    prompt = "Explain the difference between TCP and UDP, with 3 examples each."
    here = {str(k): v for k, v in hashed_ngrams(prompt, 14).items()}
    # When another interpreter with a different PYTHONHASHSEED computes it
    code = (
        "import json, sys; from lambdas.router.learned import hashed_ngrams; "
        "print(json.dumps({str(k): v for k, v in hashed_ngrams(sys.argv[1], 14).items()}))"
    )
    seed = "12345" if os.environ.get("PYTHONHASHSEED") != "12345" else "54321"
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code, prompt], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=True
    )
    # Then the buckets and values are identical
    assert json.loads(result.stdout) == here


def test_ngram_vector_has_unit_length():
    # Given a prompt with repeated words (counts above one)
    vector = hashed_ngrams("the cat sat on the mat and the cat slept", 12)
    # Then its length is 1 whatever the counts
    assert math.sqrt(sum(v * v for v in vector.values())) == pytest.approx(1.0)
    assert max(vector.values()) > min(vector.values())


def test_every_number_is_the_same_feature():
    # Given two prompts that differ only in their numbers
    # Then their n-gram vectors are the same
    assert hashed_ngrams("add 12 and 7 apples", 14) == hashed_ngrams("add 99999 and 3 apples", 14)
    assert hashed_ngrams("add 12 apples", 14) != hashed_ngrams("add many apples", 14)


def test_ngrams_ignore_case():
    assert hashed_ngrams("Prove The Theorem", 14) == hashed_ngrams("prove the theorem", 14)


def test_words_beyond_max_words_do_not_change_the_ngrams():
    # Given a prompt of exactly MAX_WORDS words
    prefix = " ".join(f"w{'a' * (i % 7 + 1)}" for i in range(MAX_WORDS))
    # When more (different) words follow
    longer = prefix + " quantum chromodynamics derivation"
    # Then the n-gram vector is unchanged
    assert hashed_ngrams(longer, 14) == hashed_ngrams(prefix, 14)


@pytest.mark.parametrize(
    "prompt",
    ["Q\nA. x\nB. y", "Which colour?\n(A) red\n(B) blue\n(C) green", "A) yes\nB) no", "Pick:\r\nA: one\r\nB: two"],
)
def test_multiple_choice_flag_fires_on_lettered_options(prompt):
    features = dense_features(prompt)
    assert features[MULTIPLE_CHOICE] == 1.0
    # And the multiple-choice copies of the size signals carry the size signals
    assert features[MULTIPLE_CHOICE + 1 :] == features[:MULTIPLE_CHOICE]


@pytest.mark.parametrize(
    "prompt",
    [
        "Tell me about the weather in Lisbon.",
        "Plan A. Then plan B. Then rest.",
        "A. Smith wrote it. B. Jones agreed.",
        "A. only one option here",
    ],
)
def test_multiple_choice_flag_stays_off_on_prose(prompt):
    features = dense_features(prompt)
    assert features[MULTIPLE_CHOICE] == 0.0
    assert all(v == 0.0 for v in features[MULTIPLE_CHOICE + 1 :])


def test_numbers_give_the_number_signals():
    # Given a prompt with three numbers, two of them equal, the largest with a thousands separator
    features = dict(zip(DENSE_FEATURES, dense_features("Pay 1,200 now, 15 later and 15 more"), strict=True))
    # Then the counts and the largest value are read
    assert features["log_numbers"] == pytest.approx(math.log1p(3))
    assert features["log_distinct_numbers"] == pytest.approx(math.log1p(2))
    assert features["log_max_number"] == pytest.approx(math.log1p(1200))


def test_total_chars_sets_the_size_signal():
    short = dense_features("short")
    declared = dense_features("short", total_chars=40_000)
    assert declared[0] == pytest.approx(math.log1p(40_000))
    assert declared[1:] == short[1:]


def test_a_huge_prompt_scores_quickly(default_policy):
    # Given a 400,000-character prompt of words, numbers, commas, newlines and options
    router = default_policy.complexity.learned
    unit = "Solve 12,345 + 678 = ?, then explain each step.\nA. 13023\nB. 13,024\n"
    prompt = (unit * (400_000 // len(unit) + 1))[:400_000]
    # When scored (the best of three runs, so a busy machine does not decide the result)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        score = router.score(prompt)
        timings.append(time.perf_counter() - started)
    # Then it takes well under 50 ms and is a probability
    assert min(timings) < 0.050
    assert 0.0 <= score <= 1.0


@pytest.mark.parametrize("prompt", ["!!!???...", "\x00\x00\x00", "😀🎉🔥", "\ud800\udfff", "—–…“”", "\n\n\t "])
def test_a_prompt_without_words_scores_in_range(default_policy, prompt):
    router = default_policy.complexity.learned
    # When a prompt with no word or number is scored and explained
    score = router.score(prompt)
    explanation = router.explain(prompt)
    # Then it has no n-grams, a score in [0, 1] and an explanation without n-grams
    assert hashed_ngrams(prompt, router.hash_bits) == {}
    assert 0.0 <= score <= 1.0
    assert explanation["ngrams"] == []


# Scoring


def test_klass_follows_the_thresholds_inclusively():
    router = compile_learned(learned_section(moderate=0.3, complex_=0.6))
    assert router.klass(0.6) == "complex"
    assert router.klass(0.5999) == "moderate"
    assert router.klass(0.3) == "moderate"
    assert router.klass(0.2999) == "simple"
    assert router.klass(1.0) == "complex"
    assert router.klass(0.0) == "simple"


def test_a_positive_weight_raises_the_score_of_prompts_with_that_word():
    # Given a router whose only non-zero weight is on the unigram "urgent"
    weights = [0.0] * 4096
    weights[unigram_bucket("urgent", 12)] = 4.0
    router = compile_learned(learned_section(hash_bits=12, weights=weights, bias=-1.0))
    # When prompts with and without the word are scored
    with_word = router.score("this is urgent please")
    without = router.score("this is calm please")
    # Then the word raises the score, and the prompt without it scores the bias alone
    assert with_word > without
    assert without == pytest.approx(1 / (1 + math.exp(1.0)))
    # And the explanation names the word as the largest contribution
    top = router.explain("this is urgent please")["ngrams"][0]
    assert top["ngram"] == "urgent"
    assert top["contribution"] > 0


def test_v2_features_hash_each_kind_of_prompt_into_its_own_half_of_the_buckets():
    half = 1 << 11
    free_form = hashed_ngrams("this is urgent please", 12, split_kinds=True)
    multiple_choice = hashed_ngrams(MC_PROMPT, 12, split_kinds=True)
    assert free_form and all(bucket >= half for bucket in free_form)
    assert multiple_choice and all(bucket < half for bucket in multiple_choice)
    # And within its half a prompt's buckets are v1's with the top bit set or cleared
    shared = hashed_ngrams("this is urgent please", 12)
    assert {b | half for b in shared} == set(free_form)


def test_under_v2_a_word_weighs_in_its_own_kind_of_prompt_only():
    # Given a v2 router whose only weight is on "urgent" in free-form prompts
    weights = [0.0] * 4096
    weights[unigram_bucket("urgent", 12, split_kinds=True)] = 4.0
    router = compile_learned(learned_section(hash_bits=12, weights=weights, bias=-1.0))
    assert router.split_kinds is True
    # Then it raises a free-form prompt with the word, and not a multiple-choice question with the same word
    assert router.score("this is urgent please") > router.score("this is calm please")
    assert router.score(MC_PROMPT) == pytest.approx(router.score(MC_PROMPT.replace("urgent", "calm")))


def test_a_v1_router_still_compiles_and_shares_its_buckets_between_kinds():
    # Given a router trained before v2 (features hashed-words-v1): one bucket space for every prompt
    weights = [0.0] * 4096
    weights[unigram_bucket("urgent", 12, split_kinds=False)] = 4.0
    router = compile_learned(
        {**learned_section(hash_bits=12, weights=weights, bias=-1.0), "features": "hashed-words-v1"}
    )
    assert router.split_kinds is False
    # Then its weight moves both kinds of prompt with the word, as it was trained to
    assert router.score("this is urgent please") > router.score("this is calm please")
    assert router.score(MC_PROMPT) > router.score(MC_PROMPT.replace("urgent", "calm"))
    assert router.explain("this is urgent please")["ngrams"][0]["ngram"] == "urgent"


def test_compile_learned_keeps_thresholds_calibration_and_floor():
    section = learned_section(moderate=0.2, complex_=0.7)
    section["heuristic_floor"] = False
    section["trained"] = {"seed": 3}
    router = compile_learned(section)
    assert router.as_reason() == {
        "thresholds": {"moderate": 0.2, "complex": 0.7},
        "calibration": {"complex": {"metric": "quality_kept", "target": 0.95}},
    }
    assert router.heuristic_floor is False
    assert router.trained == {"seed": 3}


def test_heuristic_floor_defaults_to_on():
    assert compile_learned(learned_section()).heuristic_floor is True


# Classifier integration


def _never_above_simple(document: dict[str, Any], *, floor: bool) -> None:
    """Make the learned router call every prompt simple (thresholds at 1.0), with or without the floor."""
    learned = document["rules"]["complexity"]["learned"]
    learned["thresholds"] = {"moderate": 1.0, "complex": 1.0}
    learned["heuristic_floor"] = floor


def test_learned_decision_shows_score_thresholds_and_calibration_targets(default_policy):
    # Given the shipped policy and its learned router
    router: LearnedRouter = default_policy.complexity.learned
    # When a prompt is classified
    reason = classify("What is the capital of France?", default_policy.complexity).as_reason()
    # Then the reason says the learned router decided, with its score, thresholds and targets
    assert reason["router"] == "learned"
    assert reason["score"] == round(router.score("What is the capital of France?"), 4)
    assert reason["thresholds"] == {"moderate": round(router.moderate_at, 4), "complex": round(router.complex_at, 4)}
    assert reason["calibration"]["complex"] == {"metric": "quality_kept", "target": 0.95}
    assert reason["calibration"]["moderate"] == {"metric": "quality_kept", "target": 0.98}
    assert reason["learned_class"] == router.klass(router.score("What is the capital of France?"))


def test_heuristic_floor_raises_a_lower_learned_class(policy_document):
    # Given a learned router that calls everything simple, with the heuristic floor on
    _never_above_simple(policy_document, floor=True)
    policy = compile_policy(policy_document)
    # When an analysis ask with steps and trade-offs (complex to the heuristic) is classified
    result = classify(ANALYSIS_ASK, policy.complexity)
    reason = result.as_reason()
    # Then the class is the heuristic's complex and the reason shows both classes
    assert result.klass == "complex"
    assert reason["class"] == "complex"
    assert reason["learned_class"] == "simple"
    assert reason["heuristic"]["class"] == "complex"
    # And the engine routes it as complex (standard tier: deep)
    assert decide(policy, RoutingRequest(text=ANALYSIS_ASK, input_chars=len(ANALYSIS_ASK))).route == "deep"


def test_heuristic_floor_never_lowers_the_learned_class(policy_document):
    # Given a learned router that calls everything moderate, with the heuristic floor on
    learned = policy_document["rules"]["complexity"]["learned"]
    learned["thresholds"] = {"moderate": 0.0, "complex": 1.0}
    policy = compile_policy(policy_document)
    # When a greeting (simple to the heuristic) is classified
    reason = classify("Hello!", policy.complexity).as_reason()
    # Then the learned class stands
    assert reason["heuristic"]["class"] == "simple"
    assert reason["class"] == "moderate"


def test_a_learned_complex_is_final_and_skips_the_heuristic(policy_document):
    # Given a learned router that calls everything complex
    learned = policy_document["rules"]["complexity"]["learned"]
    learned["thresholds"] = {"moderate": 0.0, "complex": 0.0}
    policy = compile_policy(policy_document)
    # When a greeting is classified
    reason = classify("Hello!", policy.complexity).as_reason()
    # Then it is complex, and the heuristic (which could not raise it) was not run
    assert reason["class"] == "complex"
    assert "heuristic" not in reason


def test_without_the_floor_the_learned_class_alone_decides(policy_document):
    # Given a learned router that calls everything simple, with the heuristic floor off
    _never_above_simple(policy_document, floor=False)
    policy = compile_policy(policy_document)
    # When the same analysis ask is classified
    result = classify(ANALYSIS_ASK, policy.complexity)
    # Then it is simple, and the heuristic is not part of the reason
    assert result.klass == "simple"
    assert "heuristic" not in result.as_reason()
    assert decide(policy, RoutingRequest(text=ANALYSIS_ASK, input_chars=len(ANALYSIS_ASK))).route == "fast"


def test_a_policy_without_a_learned_router_keeps_the_heuristic_reason(policy_document):
    # Given the shipped policy without its learned router
    del policy_document["rules"]["complexity"]["learned"]
    policy = compile_policy(policy_document)
    # When the analysis ask is classified
    reason = classify(ANALYSIS_ASK, policy.complexity).as_reason()
    # Then the heuristic decided and shows its signals, with no learned fields
    assert reason["router"] == "heuristic"
    assert reason["class"] == "complex"
    assert reason["signals"]["analysis"] == 1.0
    assert not {"thresholds", "calibration", "learned_class"} & set(reason)


# The shipped default policy


def test_shipped_learned_router_is_small(policy_document):
    section = policy_document["rules"]["complexity"]["learned"]
    assert len(json.dumps(section)) < 200_000


def test_shipped_learned_router_records_how_it_was_trained(policy_document):
    trained = policy_document["rules"]["complexity"]["learned"]["trained"]
    assert isinstance(trained["seed"], int)
    assert trained["source"]


def test_shipped_learned_router_is_calibrated_to_the_documented_targets(policy_document):
    learned = policy_document["rules"]["complexity"]["learned"]
    calibration = learned["calibration"]
    assert (calibration["complex"]["metric"], calibration["complex"]["target"]) == ("quality_kept", 0.95)
    assert (calibration["moderate"]["metric"], calibration["moderate"]["target"]) == ("quality_kept", 0.98)
    assert 0.0 <= learned["thresholds"]["moderate"] <= learned["thresholds"]["complex"] <= 1.0


def test_shipped_learned_router_compiles_with_one_weight_per_bucket(default_policy):
    router = default_policy.complexity.learned
    assert router is not None
    assert len(router.weights) == 1 << router.hash_bits
    assert any(router.weights)


def test_the_learned_router_reads_the_newest_user_turn_not_the_system_prompt(default_policy):
    # Given a bare ask, and the same ask behind a system prompt and an earlier turn
    ask = "Natalia sold 48 clips in April and half as many in May. How many clips did she sell?"
    context = "You are a patient maths tutor for a school. Explain every step.\nEarlier question about fractions"
    bare = decide(default_policy, RoutingRequest(text=ask, input_chars=len(ask), ask=ask))
    wrapped_text = f"{context}\n{ask}"
    wrapped = decide(default_policy, RoutingRequest(text=wrapped_text, input_chars=len(wrapped_text), ask=ask))
    # Then the learned score is the same: it was trained on bare prompts
    assert wrapped.reasons["complexity"]["score"] == bare.reasons["complexity"]["score"]
    # And the size estimate still counts everything
    assert (
        wrapped.reasons["complexity"]["estimated_input_tokens"] > bare.reasons["complexity"]["estimated_input_tokens"]
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bias", 10**400, "must be at most 2\\*\\*53 in size"),
        ("bias", 1e6, "must be smaller than or equal to 100"),
        ("weights.scale", 1e308, "must be smaller than or equal to 1"),
        ("dense.std", [1e-320] * 13, "must be bigger than or equal to 1e-06"),
    ],
)
def test_numbers_that_would_make_scores_inf_or_nan_are_refused(policy_document, field, value, message):
    # Given a learned section with a number JSON and the schema's types would take
    section = policy_document["rules"]["complexity"]["learned"]
    *parents, leaf = field.split(".")
    for parent in parents:
        section = section[parent]
    section[leaf] = value
    # When compiled, Then it is refused, naming the field
    with pytest.raises(PolicyError, match=message):
        compile_policy(policy_document)
