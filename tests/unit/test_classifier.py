"""Complexity heuristics: size, keyword signals and structure give simple, moderate or complex."""

from __future__ import annotations

import pytest

from lambdas.router.classifier import TOKENS_PER_IMAGE, classify, estimate_tokens


def test_estimates_four_characters_a_token_plus_images():
    assert estimate_tokens(0) == 0
    assert estimate_tokens(9) == 3
    assert estimate_tokens(8, images=2) == 2 + 2 * TOKENS_PER_IMAGE


@pytest.mark.parametrize("prompt", ["Hello!", "hi there", "What time is it in Paris?", "Thanks, that helped."])
def test_short_greetings_and_lookups_are_simple(default_policy, prompt):
    result = classify(prompt, default_policy.complexity)
    assert result.klass == "simple"
    assert result.score < default_policy.complexity.moderate_at


def test_multi_step_analysis_is_complex(default_policy):
    # Given a long analytical ask with explicit steps
    prompt = (
        "Analyze the trade-offs between a microservice architecture and a modular monolith for a team of "
        "twelve engineers. First list the operational risks, then compare the costs over three years, and "
        "finally recommend a migration strategy with the implications for hiring."
    )
    # When classified
    result = classify(prompt, default_policy.complexity)
    # Then both the analysis and multi-step signals fire and the class is complex
    assert result.signals["analysis"] == 1.0
    assert result.signals["multi_step"] == 1.0
    assert result.klass == "complex"


def test_code_block_fires_the_code_signal_by_structure(default_policy):
    prompt = "Why?\n```\nx = [i for i in range(3)]\n```"
    result = classify(prompt, default_policy.complexity)
    assert result.signals["code"] == 1.0
    assert result.klass in ("moderate", "complex")


def test_equation_fires_the_math_signal(default_policy):
    result = classify("If 3x + 2 = 11, what is x?", default_policy.complexity)
    assert result.signals["math"] == 1.0


def test_numbered_list_fires_multi_step_by_structure(default_policy):
    prompt = "Do these:\n1. open the file\n2. count the lines\n3. print the total\n"
    assert classify(prompt, default_policy.complexity).signals["multi_step"] == 1.0


def test_keywords_match_whole_words_only(default_policy):
    # "classic" must not count as the code keyword "class"
    result = classify("a classic novel", default_policy.complexity)
    assert result.signals["code"] == 0.0


def test_size_alone_saturates_the_length_signal(default_policy):
    # Given a very long but plain text
    text = "lorem ipsum " * 2000
    # Then the length component is saturated and makes it at least moderate
    result = classify(text, default_policy.complexity)
    assert result.signals["length"] == 1.0
    assert result.score >= default_policy.complexity.length_weight
    assert result.klass in ("moderate", "complex")


def test_total_chars_counts_text_beyond_the_scanned_sample(default_policy):
    result = classify("short", default_policy.complexity, total_chars=40_000)
    assert result.estimated_tokens == 10_000


def test_reason_is_rounded_and_omits_silent_signals(default_policy):
    reason = classify("Hello!", default_policy.complexity).as_reason()
    assert reason["class"] == "simple"
    assert set(reason["signals"]) <= {"length"}


@pytest.mark.parametrize(
    "text",
    [
        "- " + "\n" * 19_998,  # a list marker, then blank lines: 10 s with \s* at a line start
        "1. " + "\n \n" * 6_666,
        "x" + " " * 19_999,
        "\n".join(["-"] * 10_000),
        "- a\n" + " \t" * 9_998,
        "`" * 20_000,
        ";" + " " * 19_998 + "x",
        "1" + " " * 19_998 + "+",
        "$" * 20_000,
        ("- step\n" * 2 + "text\n") * 2_000,
    ],
    ids=[
        "marker-blank-lines",
        "numbered-blank-lines",
        "spaces",
        "bare-markers",
        "tabs",
        "backticks",
        "semicolon-spaces",
        "digit-spaces",
        "dollars",
        "two-item-lists",
    ],
)
def test_adversarial_text_is_classified_in_linear_time(default_policy, text):
    # Given 20,000 characters built to make a backtracking pattern go quadratic
    import time

    started = time.perf_counter()
    classify(text * 20, default_policy.complexity, total_chars=len(text) * 20)  # the scan limit bounds the rest
    # Then classifying them takes milliseconds (a generous bound for a loaded CI machine), not seconds
    assert time.perf_counter() - started < 0.25
