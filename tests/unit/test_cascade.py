"""Cascade routes: the answer-confidence signals, the confidence model, the policy's checks and the plan's steps."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lambdas.router.cascade import (
    JUDGE_CHARS,
    SIGNALS,
    ConfidenceModel,
    answer_signals,
    arithmetic_errors,
    compile_confidence,
    judge_messages,
    judge_verdict,
)
from lambdas.router.engine import LiveState, RoutingRequest, decide
from lambdas.router.learned import encode_weights, hashed_ngrams
from lambdas.router.policy import PolicyError, compile_policy

ROOT = Path(__file__).resolve().parents[2]
WORD_PROBLEM = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
NOT_MATHS = "Write a short poem about the sea in 3 stanzas."
MATHS_SIGNALS = ("maths_no_final_answer", "non_integer_answer", "negative_answer")


def signals(answer: str, *, prompt: str = WORD_PROBLEM, stop_reason: str = "end_turn") -> dict[str, float]:
    return answer_signals(prompt, answer, stop_reason)


def request(text: str = WORD_PROBLEM, **overrides) -> RoutingRequest:
    return RoutingRequest(text=text, input_chars=len(text), sticky_key="caller-1", use_case="math", **overrides)


# --- Signals -------------------------------------------------------------------------------------------------


def test_an_answer_cut_at_max_tokens_is_truncated():
    # Given the same text, When it stopped at max_tokens or at the end of its turn
    cut = signals("Natalia sold 48 clips in April and", stop_reason="max_tokens")
    whole = signals("Natalia sold 48 clips in April and", stop_reason="end_turn")
    # Then only the first is truncated
    assert cut["truncated"] == 1.0
    assert whole["truncated"] == 0.0


@pytest.mark.parametrize("answer", ["", "   \n\t  "])
def test_a_blank_answer_is_empty_and_not_short(answer):
    # Given an answer with no text, When scored, Then it is empty (not "short")
    found = signals(answer)
    assert found["empty"] == 1.0
    assert found["short"] == 0.0


def test_an_answer_under_twenty_characters_is_short():
    # Given answers of 18 (once stripped), 19 and 20 characters
    assert signals("  #### 72 clips sold \n")["short"] == 1.0
    assert signals("x" * 19)["short"] == 1.0
    # Then twenty characters is no longer short, and neither is either empty
    assert signals("x" * 20)["short"] == 0.0
    assert signals("x" * 19)["empty"] == 0.0


@pytest.mark.parametrize(
    "answer",
    [
        "I can't help with that request.",
        "I cannot provide an answer to this.",
        "As an AI, I do not do homework.",
        "I'm unable to solve this problem.",
        "I won't help with that.",
    ],
)
def test_refusal_phrases_are_a_refusal(answer):
    assert signals(answer)["refusal"] == 1.0


def test_a_plain_working_is_no_refusal_and_no_hedge():
    # Given a confident, worked answer
    found = signals("In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72 clips.\n#### 72")
    # Then no refusal or hedge is seen, nor any maths doubt
    assert found["refusal"] == 0.0
    assert found["hedging"] == 0.0
    assert all(found[name] == 0.0 for name in MATHS_SIGNALS)
    assert found["arithmetic_errors"] == 0.0


def test_hedges_are_counted_and_saturate_at_three():
    # Given one hedge, then five
    one = signals("I think she sold 72 clips.\n#### 72")
    five = signals("I think it might be 72, perhaps 70, possibly 74, roughly 72. I'm not sure.\n#### 72")
    # Then one counts 1 and five count no more than 3
    assert one["hedging"] == 1.0
    assert five["hedging"] == 3.0


@pytest.mark.parametrize(
    "answer",
    [
        "48 / 2 = 24, and 48 + 24 = 72.\n#### 72",
        "The answer is 18.",
        "So she has 12 apples.",
        "Answer: 72",
        "Therefore, Natalia sold 72 clips in total.",
        "She sold 72 clips.\n\\boxed{72}",
        "She sold **72 clips** altogether.",
    ],
)
def test_a_stated_final_number_answers_a_maths_ask(answer):
    assert signals(answer)["maths_no_final_answer"] == 0.0


@pytest.mark.parametrize(
    "answer",
    [
        "She sold some clips in April and fewer in May.",
        "Natalia sold clips in April. In May she sold half as many, which is 24",  # cut before concluding
        "So she sold a lot of clips.",
    ],
)
def test_a_maths_ask_with_no_final_number_is_flagged(answer):
    assert signals(answer)["maths_no_final_answer"] == 1.0


@pytest.mark.parametrize(
    ("answer", "flagged"),
    [
        ("#### 2.67", 1.0),
        ("The answer is 7.5.", 1.0),
        ("The answer is $12.50.", 0.0),  # cents of a dollar amount are not a fraction of a thing
        ("So the total is $1,234.50.", 0.0),
        ("#### 12.0", 0.0),  # a whole number written with a decimal point
        ("#### 72", 0.0),
        ("The answer is 12,000.", 0.0),  # a thousands separator, not a decimal
    ],
)
def test_a_fractional_final_number_is_a_non_integer_answer(answer, flagged):
    assert signals(answer)["non_integer_answer"] == flagged


@pytest.mark.parametrize(("answer", "flagged"), [("#### -4", 1.0), ("The answer is -12.", 1.0), ("#### 4", 0.0)])
def test_a_negative_final_number_is_a_negative_answer(answer, flagged):
    assert signals(answer)["negative_answer"] == flagged


@pytest.mark.parametrize(
    ("answer", "errors"),
    [
        ("12 * 4 = 46", 1),
        ("12 * 4 = 48", 0),
        ("<<12*4=48>>48", 0),  # GSM8K's calculator annotation
        ("<<12*4=46>>46", 1),
        ("(3 + 4) * 2 = 14", 0),
        ("3 + 4 * 2 = 11", 0),  # precedence: 3 + 8
        ("3 + 4 * 2 = 14", 1),
        ("12 x 4 = 48 and 12 × 4 = 48", 0),
        ("2 + 2 = 5, then 3 * 3 = 10", 2),
        ("5 / 0 = 3", 0),  # division by zero is not an equation it can check
        ("1/3 = 0.33", 0),  # rounding to cents is tolerated
        ("2/3 = 0.5", 1),
        ("100 - 25 = 75 dollars", 0),
        ("12 * 4 = 48.", 0),  # the sentence's full stop is not a decimal point
    ],
)
def test_written_equations_are_checked(answer, errors):
    assert arithmetic_errors(answer) == errors
    # And the signal is the same count
    assert signals(answer)["arithmetic_errors"] == float(errors)


@pytest.mark.parametrize(
    "answer",
    [
        "1,000 + 500 = 1,500",  # thousands separators: the left operand is 1000, not 000
        "She paid $1,200 + 300 = 1,500 dollars.",
        "-3 + 5 = 2",  # a negative first operand
    ],
)
def test_equations_that_hold_are_not_arithmetic_errors(answer):
    # Given a written equation whose sides are equal, When checked, Then it is no error
    assert arithmetic_errors(answer) == 0


def test_arithmetic_errors_count_at_most_forty_equations():
    # Given 100 wrong equations, When checked, Then at most 40 count
    assert arithmetic_errors("1 + 1 = 3. " * 100) == 40


def test_a_prompt_that_is_not_maths_never_gets_the_maths_signals():
    # Given answers that would all be doubtful to a word problem
    for answer in ("A poem with no numbers at all.", "#### 2.67", "#### -4", ""):
        # When they answer a prompt that is no quantity question
        found = signals(answer, prompt=NOT_MATHS)
        # Then no maths signal is raised
        assert all(found[name] == 0.0 for name in MATHS_SIGNALS), (answer, found)


def test_a_quantity_question_without_numbers_is_not_a_maths_ask():
    found = signals("There are many of them.", prompt="How many planets are there in the solar system?")
    assert found["maths_no_final_answer"] == 0.0


def test_every_signal_is_reported_and_the_prompt_score_is_passed_through():
    found = answer_signals(WORD_PROBLEM, "#### 72", "end_turn", prompt_score=0.4)
    assert set(found) == set(SIGNALS)
    assert found["prompt_score"] == 0.4
    assert answer_signals(WORD_PROBLEM, "#### 72", "end_turn")["prompt_score"] == 0.0
    # And the length signal grows with the answer
    assert signals("#### 72")["answer_chars"] < signals("In May she sold 24. " * 20 + "#### 72")["answer_chars"]


def test_a_final_number_the_working_never_reached_is_unworked():
    working = "In May she sold 48 / 2 = 24 clips, and 48 + 24 = 72 in all.\n"
    assert signals(working + "#### 72")["final_unworked"] == 0.0
    assert signals(working + "#### 70")["final_unworked"] == 1.0
    # And with no equation written there is nothing to compare against
    assert signals("She sold 72 clips.\n#### 72")["final_unworked"] == 0.0


def test_a_final_number_copied_from_the_prompt_is_flagged():
    assert signals("She sold 48 clips in April.\n#### 48")["final_in_prompt"] == 1.0
    assert signals("She sold 72 clips.\n#### 72")["final_in_prompt"] == 0.0
    # And numbers are compared by value: "$1,200" in the prompt is the answer "1200"
    prompt = "A bike costs $1,200 and a helmet $80. How much is the bike alone?"
    assert signals("#### 1200", prompt=prompt)["final_in_prompt"] == 1.0
    # And a prompt that is not maths gets neither signal
    assert signals("48 + 24 = 72. #### 48", prompt=NOT_MATHS)["final_in_prompt"] == 0.0


@pytest.mark.parametrize(
    ("answer", "flagged"),
    [
        ("She sold 48 + 24 = 72. However, May was half: 48 + 24 = 72.\n#### 72", 1.0),
        ("Wait, I made a mistake.\n#### 72", 1.0),
        ("Let me recalculate: 48 + 24 = 72.\n#### 72", 1.0),
        ("She sold 48 + 24 = 72 clips.\n#### 72", 0.0),
    ],
)
def test_a_change_of_course_is_self_correction(answer, flagged):
    assert signals(answer)["self_correction"] == flagged


def test_the_size_signals_count_lines_results_and_prompt_numbers():
    found = signals("48 / 2 = 24\n\n48 + 24 = 72\n#### 72")
    assert found["answer_lines"] == pytest.approx(math.log1p(3))  # blank lines do not count
    assert found["worked_results"] == pytest.approx(math.log1p(2))
    assert found["prompt_numbers"] == pytest.approx(math.log1p(1))  # "48"
    assert found["final_magnitude"] == pytest.approx(math.log1p(72))
    # And an absurd final number is capped, not an overflow
    assert signals("#### " + "9" * 25)["final_magnitude"] == pytest.approx(math.log1p(1e15))


# --- Robustness ----------------------------------------------------------------------------------------------

# Each adversarial answer is scored in a child process: a regex that backtracks cannot be interrupted in
# process, and a hang must fail this test in seconds rather than stall the suite.
_TIMING_CHILD = r"""
import random, sys, time
from lambdas.router.cascade import answer_signals

builders = {
    "plus_chain": lambda: "1+" * 50_000,
    "open_parens": lambda: "(" * 50_000 + "1",
    "equals_chain": lambda: "1 = " * 50_000,
    "digits": lambda: "7" * 20_000,
    "random_megabyte": lambda: "".join(random.Random(20261201).choices("0123456789+-*/=(). x\n", k=1_000_000)),
}
answer = builders[sys.argv[1]]()
prompt = sys.argv[2]
best = float("inf")
for _ in range(3):  # the best of three: one slow run under a loaded machine is not the code's doing
    started = time.perf_counter()
    answer_signals(prompt, answer, "end_turn")
    best = min(best, time.perf_counter() - started)
print(best)
"""
_CHILD_TIMEOUT_S = 4.0


@pytest.mark.parametrize("case", ["plus_chain", "open_parens", "equals_chain", "digits", "random_megabyte"])
def test_adversarial_answers_are_scored_in_linear_time(case):
    # Given an answer built to make a regex or the evaluator work hard
    # When its signals are computed
    try:
        done = subprocess.run(
            [sys.executable, "-c", _TIMING_CHILD, case, WORD_PROBLEM],
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT_S,
            check=True,
        )
        elapsed = float(done.stdout)
    except subprocess.TimeoutExpired:
        elapsed = math.inf  # killed: it took over _CHILD_TIMEOUT_S
    # Then it takes well under half a second: a megabyte scans in ~16 ms here, and a regex gone quadratic on these
    # inputs takes seconds (100 ms was too tight on a loaded CI machine: 128 ms seen; the figure is in the bench)
    took = f"over {_CHILD_TIMEOUT_S} s" if math.isinf(elapsed) else f"{elapsed * 1000:.0f} ms"
    assert elapsed < 0.5, f"scoring the {case} answer took {took}"


@pytest.mark.parametrize("depth", [400, 5_000])
def test_deeply_nested_parentheses_in_an_equation_do_not_raise(depth):
    # Given an equation whose left side nests deeper than Python's recursion limit allows a recursive evaluator
    answer = "(" * depth + "1 + 1" + ")" * depth + " = 2"
    # When checked, Then it is scored (it holds, or is not checked), never an exception
    assert arithmetic_errors(answer) == 0
    assert signals(answer)["arithmetic_errors"] == 0.0


@pytest.mark.parametrize(
    "answer", ["\x00" * 1000, "#### 72\x00", "So she sold 72 clips.\ud800", "\udfff12 * 4 = 46\ud83d", "\ud800" * 5000]
)
def test_nul_bytes_and_lone_surrogates_do_not_raise(answer):
    # Given odd code points in the answer and in the prompt, When scored, Then every signal is a number
    for prompt in (WORD_PROBLEM, WORD_PROBLEM + "\x00\ud800"):
        found = answer_signals(prompt, answer, "end_turn")
        assert all(isinstance(value, float) and math.isfinite(value) for value in found.values())
    assert signals("\udfff12 * 4 = 46\ud83d")["arithmetic_errors"] == 1.0


# --- The confidence model ------------------------------------------------------------------------------------


def logistic(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_a_negative_weight_lowers_confidence_when_its_signal_is_present():
    # Given a model that distrusts hedging
    model = ConfidenceModel(weights={"hedging": -1.5}, bias=2.0)
    # When a hedged and a plain answer are scored
    hedged = model.score(WORD_PROBLEM, "I think she sold 72 clips.\n#### 72", "end_turn")
    plain = model.score(WORD_PROBLEM, "She sold 72 clips.\n#### 72", "end_turn")
    # Then the hedged one is less confident, by exactly its weight in the logit
    assert hedged.value < plain.value
    assert plain.value == pytest.approx(logistic(2.0))
    assert hedged.value == pytest.approx(logistic(2.0 - 1.5))
    assert hedged.signals["hedging"] == 1.0


def test_a_positive_weight_raises_confidence():
    model = ConfidenceModel(weights={"answer_chars": 0.5}, bias=-1.0)
    short = model.score(NOT_MATHS, "ok", "end_turn")
    long = model.score(NOT_MATHS, "ok " * 500, "end_turn")
    assert long.value > short.value


def test_a_signal_without_a_weight_does_not_change_confidence():
    # Given a model that weights only hedging
    model = ConfidenceModel(weights={"hedging": -3.0}, bias=1.2)
    # When a wrong answer with no final number, but no hedge, is scored
    doubtful = model.score(WORD_PROBLEM, "Well, 2 + 2 = 5", "end_turn")
    # Then its other signals are seen but count for nothing
    assert doubtful.signals["arithmetic_errors"] == 1.0 and doubtful.signals["maths_no_final_answer"] == 1.0
    assert doubtful.value == pytest.approx(logistic(1.2))
    # And the weighted signal does count
    assert model.score(WORD_PROBLEM, "I'm not sure. #### 72", "end_turn").value == pytest.approx(logistic(1.2 - 3.0))


@pytest.mark.parametrize(
    ("answer", "stop_reason", "veto"),
    [
        ("#### 72", "max_tokens", "truncated"),
        ("  ", "end_turn", "empty"),
        ("I can't help with that.", "end_turn", "refusal"),
    ],
)
def test_a_veto_signal_escalates_whatever_the_weights(answer, stop_reason, veto):
    # Given a model so confident that no weighted signal could bring it below any threshold
    model = ConfidenceModel(weights={}, bias=50.0)
    # When an answer carrying a veto is scored (on a prompt that is not maths)
    confidence = model.score("Write a limerick about the sea.", answer, stop_reason)
    # Then its confidence is 0
    assert confidence.signals[veto] == 1.0
    assert confidence.value == 0.0


def test_the_prompt_score_counts_with_its_weight():
    model = ConfidenceModel(weights={"prompt_score": -2.0}, bias=1.0)
    easy = model.score(WORD_PROBLEM, "#### 72", "end_turn", prompt_score=0.1)
    hard = model.score(WORD_PROBLEM, "#### 72", "end_turn", prompt_score=0.9)
    assert hard.value < easy.value
    assert hard.value == pytest.approx(logistic(1.0 - 1.8))


def _ngram_weights(buckets: dict[int, float], bits: int = 8) -> dict:
    weights = [0.0] * (1 << bits)
    for bucket, weight in buckets.items():
        weights[bucket] = weight
    return {"hash_bits": bits, "weights": encode_weights(weights)}


def test_answer_ngram_weights_move_confidence_by_the_answer_s_words():
    # Given a model whose only n-gram weight is on the buckets of "sorry"
    answer = "Sorry, she sold 72 clips.\n#### 72"
    sorry = hashed_ngrams("sorry", 8)
    model = compile_confidence({"bias": 1.0, "weights": {}, "ngrams": _ngram_weights(dict.fromkeys(sorry, -4.0))})
    # When answers with and without the word are scored
    with_word = model.score(WORD_PROBLEM, answer, "end_turn")
    without = model.score(WORD_PROBLEM, "She sold 72 clips.\n#### 72", "end_turn")
    # Then only the one holding it loses confidence, by its weights times its unit-length counts
    assert without.value == pytest.approx(logistic(1.0), abs=1e-3)
    expected = sum(v * -4.0 for k, v in hashed_ngrams(answer, 8).items() if k in sorry)
    assert with_word.value == pytest.approx(logistic(1.0 + expected), abs=1e-3)
    assert with_word.value < without.value


def test_a_confidence_without_ngrams_scores_the_signals_alone():
    model = compile_confidence({"bias": 0.5, "weights": {"hedging": -1.0}})
    assert model.ngrams == () and model.hash_bits == 0
    assert model.score(WORD_PROBLEM, "I think 72.\n#### 72", "end_turn").value == pytest.approx(logistic(-0.5))


@pytest.mark.parametrize(
    ("ngrams", "message"),
    [
        ({"hash_bits": 9, "weights": encode_weights([0.0] * 256)}, r"holds 256 weights; hash_bits needs 512"),
        ({"hash_bits": 8, "weights": {"encoding": "int16-le-base64", "scale": 0.1, "data": "@@@@"}}, r"ngrams"),
        ({"hash_bits": 20, "weights": encode_weights([0.0] * 256)}, r"ngrams\.hash_bits"),
    ],
)
def test_rejects_answer_ngram_weights_that_do_not_fit(policy_document, ngrams, message):
    policy_document["routes"]["math-cascade"]["cascade"]["confidence"]["ngrams"] = ngrams
    with pytest.raises(PolicyError, match=r"routes\.math-cascade\.cascade\.confidence") as raised:
        compile_policy(policy_document)
    assert re.search(message, str(raised.value))


def test_the_default_policy_trusts_a_worked_answer_and_doubts_a_wrong_one(default_policy):
    # Given the shipped math-cascade's confidence model and threshold, and the learned router's score for the
    # prompt (the service passes it on)
    cascade = default_policy.routes["math-cascade"].cascade
    prompt_score = decide(default_policy, request()).reasons["complexity"]["score"]

    def confidence(answer: str) -> float:
        return cascade.confidence.score(WORD_PROBLEM, answer, "end_turn", prompt_score).value

    # When a correct worked answer, the same with a slip, with a final number its working never reached, and
    # one with no final number are scored
    working = "In April, Natalia sold 48 clips.\nIn May, she sold half as many: 48 / 2 = 24 clips.\n"
    right = confidence(working + "Altogether she sold 48 + 24 = 72 clips.\n#### 72")
    slip = confidence(working + "Altogether she sold 48 + 24 = 70 clips.\n#### 70")
    unworked = confidence(working + "Altogether she sold 48 + 24 = 72 clips.\n#### 48")
    no_final = confidence("She sold some clips in April and fewer in May.")
    # Then only the correct one clears the threshold, and the doubts rank as their signals say
    assert right >= cascade.threshold
    assert max(slip, unworked, no_final) < cascade.threshold
    assert right > slip > no_final


# --- Policy validation ---------------------------------------------------------------------------------------


def test_default_policy_routes_maths_to_a_calibrated_cascade(default_policy):
    route = default_policy.routes[default_policy.use_cases["math"]]
    assert route.name == "math-cascade"
    assert [c.model for c in route.candidates] == ["nova-micro", "claude-sonnet-4-5"]
    assert route.cascade is not None
    assert 0.0 < route.cascade.threshold < 1.0
    assert set(route.cascade.confidence.weights) <= set(SIGNALS)
    assert route.cascade.calibration["metric"] in ("quality_kept", "escalation_share")


def test_rejects_a_cascade_route_with_one_candidate(policy_document):
    # Given the cascade cut to its cheap model
    policy_document["routes"]["math-cascade"]["candidates"] = [{"model": "nova-micro"}]
    # When compiled, Then the route is named
    with pytest.raises(PolicyError, match=r"routes\.math-cascade is a cascade.*at least two candidates"):
        compile_policy(policy_document)


def test_rejects_a_cascade_route_with_weighted_candidates(policy_document):
    # Given a canary split on the cascade
    policy_document["routes"]["math-cascade"]["candidates"] = [
        {"model": "nova-micro", "weight": 90},
        {"model": "claude-sonnet-4-5", "weight": 10},
    ]
    with pytest.raises(PolicyError, match=r"routes\.math-cascade is a cascade.*no weights"):
        compile_policy(policy_document)


def test_rejects_an_unknown_signal_in_the_confidence_weights(policy_document):
    policy_document["routes"]["math-cascade"]["cascade"]["confidence"]["weights"]["vibes"] = -1.0
    with pytest.raises(PolicyError, match=r"routes\.math-cascade\.cascade\.confidence\.weights") as raised:
        compile_policy(policy_document)
    assert "vibes" in str(raised.value)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "0.5"])
def test_rejects_a_threshold_outside_zero_to_one(policy_document, threshold):
    policy_document["routes"]["math-cascade"]["cascade"]["threshold"] = threshold
    with pytest.raises(PolicyError, match=r"routes\.math-cascade\.cascade\.threshold"):
        compile_policy(policy_document)


JUDGE = {"model": "nova-lite", "consult_from": 0.5, "consult_below": 0.9}


def test_a_judge_compiles_with_its_band_and_a_one_word_default(policy_document):
    policy_document["routes"]["math-cascade"]["cascade"]["judge"] = dict(JUDGE)
    judge = compile_policy(policy_document).routes["math-cascade"].cascade.judge
    assert judge is not None and (judge.model, judge.max_tokens) == ("nova-lite", 8)
    assert [judge.consulted(c) for c in (0.49, 0.5, 0.89, 0.9)] == [False, True, True, False]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"model": "gpt-judge"},
            r"judge model 'gpt-judge' in route 'math-cascade' \(routes\.math-cascade\.cascade\.judge",
        ),
        ({"consult_from": 0.9}, r"routes\.math-cascade\.cascade\.judge\.consult_from \(0\.9\) must be below"),
        ({"consult_below": 1.5}, r"routes\.math-cascade\.cascade\.judge\.consult_below"),
        ({"max_tokens": 0}, r"routes\.math-cascade\.cascade\.judge\.max_tokens"),
        ({"prompt": "be nice"}, r"routes\.math-cascade\.cascade\.judge"),
    ],
)
def test_rejects_a_judge_it_cannot_call(policy_document, change, message):
    policy_document["routes"]["math-cascade"]["cascade"]["judge"] = {**JUDGE, **change}
    with pytest.raises(PolicyError, match=message):
        compile_policy(policy_document)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("CORRECT", "correct"),
        ("correct.", "correct"),
        ("**Correct**", "correct"),
        ("INCORRECT", "incorrect"),
        (" Incorrect: 48 + 24 is 72", "incorrect"),
        ("Yes", "unclear"),
        ("I think it is correct", "unclear"),
        ("", "unclear"),
        ("123", "unclear"),
    ],
)
def test_a_judges_reply_is_read_by_its_first_word(reply, verdict):
    assert judge_verdict(reply) == verdict


def test_the_judge_reads_the_questions_start_and_the_answers_end():
    # Given a question and an answer both longer than the judge reads
    question = "Q" * (JUDGE_CHARS + 10)
    answer = "working " * 3000 + "#### 72"
    [message] = judge_messages(question, answer)
    text = message["content"][0]["text"]
    # Then it holds the question's start and the answer's end (its final answer), each marked as cut
    assert message["role"] == "user"
    assert "Q" * JUDGE_CHARS + " [...]" in text and "Q" * (JUDGE_CHARS + 1) not in text
    assert text.count("[...]") == 2 and "#### 72" in text
    assert len(text) < 2 * JUDGE_CHARS + 300


def test_every_signal_may_be_weighted(policy_document):
    # Given a weight on every signal the scorer reports
    policy_document["routes"]["math-cascade"]["cascade"]["confidence"]["weights"] = {name: -0.5 for name in SIGNALS}
    # When compiled, Then the schema takes them all
    route = compile_policy(policy_document).routes["math-cascade"]
    assert dict(route.cascade.confidence.weights) == dict.fromkeys(SIGNALS, -0.5)


def test_the_policy_check_command_rejects_a_one_candidate_cascade(policy_document, tmp_path):
    # Given a policy file with a one-candidate cascade
    policy_document["routes"]["math-cascade"]["candidates"] = [{"model": "nova-micro"}]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_document), encoding="utf-8")
    # When checked from the command line, Then it fails naming the route
    done = subprocess.run(
        [sys.executable, "-m", "lambdas.router.policy", "check", str(path)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "routes.math-cascade is a cascade" in done.stdout + done.stderr


# --- The plan's steps ----------------------------------------------------------------------------------------


def test_a_maths_request_plans_the_cheap_step_then_the_strong_one(default_policy):
    # Given a word problem with use_case math
    decision = decide(default_policy, request())
    # Then the plan runs as a cascade: nova-micro in both regions (step 0), then Sonnet (step 1), whose
    # fallbacks join the last step and are that step's fallbacks, not the cheap model's
    assert decision.route == "math-cascade"
    assert decision.cascade is default_policy.routes["math-cascade"].cascade
    assert [(c.model.key, c.region, c.step, c.fallback) for c in decision.plan] == [
        ("nova-micro", "us-east-1", 0, False),
        ("nova-micro", "us-west-2", 0, False),
        ("claude-sonnet-4-5", "us-east-1", 1, False),
        ("claude-sonnet-4-5", "us-west-2", 1, False),
        ("claude-haiku-4-5", "us-east-1", 1, True),
        ("claude-haiku-4-5", "us-west-2", 1, True),
        ("nova-pro", "us-east-1", 1, True),
        ("nova-pro", "us-west-2", 1, True),
    ]
    assert "cascade" not in decision.reasons


def test_a_model_pinned_by_the_caller_disables_the_cascade(default_policy):
    decision = decide(default_policy, request(model="claude-haiku-4-5"))
    assert decision.cascade is None
    assert decision.primary_model == "claude-haiku-4-5"
    assert decision.plan[0].model.key == "claude-haiku-4-5"


def test_a_budget_capped_at_economy_skips_the_cascade_with_a_reason(default_policy):
    # Given 95% of the daily budget spent: models are capped at the economy tier
    decision = decide(default_policy, request(), LiveState(budget_used_percent=95.0, budget_scope="daily"))
    # Then only the cheap step is left, so the cascade is skipped and says why
    assert decision.cascade is None
    assert "fewer than two" in decision.reasons["cascade"]["skipped"]
    assert {c.model.key for c in decision.plan} == {"nova-micro"}


def test_a_cascade_whose_cheap_model_cannot_take_the_request_is_skipped(default_policy):
    # Given an image with the word problem: nova-micro reads text only
    decision = decide(default_policy, request(images=1))
    # Then the one step left is no cascade
    assert decision.cascade is None
    assert "skipped" in decision.reasons["cascade"]
    assert decision.plan[0].model.key == "claude-sonnet-4-5"


def test_open_circuits_on_the_strong_model_leave_its_fallbacks_as_the_last_step(default_policy):
    # Given Sonnet's circuits open in both regions
    state = LiveState(open_circuits=frozenset({("claude-sonnet-4-5", "us-east-1"), ("claude-sonnet-4-5", "us-west-2")}))
    decision = decide(default_policy, request(), state)
    # Then the cascade still escalates: to the last step's fallbacks
    assert decision.cascade is not None
    assert [(c.model.key, c.step) for c in decision.plan if c.step == 1] == [
        ("claude-haiku-4-5", 1),
        ("claude-haiku-4-5", 1),
        ("nova-pro", 1),
        ("nova-pro", 1),
    ]


def test_a_cascade_with_every_circuit_open_degrades_rather_than_failing(default_policy):
    # Given every (model, region) of the policy behind an open circuit
    circuits = frozenset((key, region) for key, spec in default_policy.models.items() for region in spec.regions)
    # When a math ask is routed
    decision = decide(
        default_policy,
        RoutingRequest(text=WORD_PROBLEM, input_chars=len(WORD_PROBLEM), use_case="math"),
        LiveState(open_circuits=circuits),
    )
    # Then the plan is empty and no cascade is left to run
    assert decision.plan == ()
    assert decision.cascade is None
    assert decision.reasons["cascade"]["skipped"].startswith("fewer than two of its steps")


def test_latency_moves_a_call_within_its_cascade_step_never_past_it(default_policy):
    # Given Nova Micro far slower than the route's latency budget in both regions
    slow = {
        ("nova-micro", "us-east-1"): 9000.0,
        ("nova-micro", "us-west-2"): 9000.0,
        ("claude-sonnet-4-5", "us-east-1"): 9000.0,
    }
    request = RoutingRequest(text=WORD_PROBLEM, input_chars=len(WORD_PROBLEM), use_case="math", latency_budget_ms=1000)
    # When routed
    decision = decide(default_policy, request, LiveState(latency_ms=slow))
    # Then the cheap step still comes first (the cascade stays a cascade), and the slow Sonnet region moved within
    # the strong step
    assert decision.cascade is not None
    assert [c.step for c in decision.plan] == sorted(c.step for c in decision.plan)
    strong = [(c.model.key, c.region) for c in decision.plan if c.step == 1]
    assert strong.index(("claude-sonnet-4-5", "us-east-1")) == len(strong) - 1
