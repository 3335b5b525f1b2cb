"""Complexity heuristics: size, keyword signals and structure give simple, moderate or complex."""

from __future__ import annotations

import pytest

from lambdas.router.classifier import TOKENS_PER_IMAGE, classify, estimate_tokens
from lambdas.router.policy import ComplexityRules, Policy


@pytest.fixture
def heuristic_rules(default_policy: Policy) -> ComplexityRules:
    """The default policy's keyword heuristic on its own (without the learned router it ships with)."""
    return default_policy.complexity._replace(learned=None)


def test_estimates_four_characters_a_token_plus_images():
    assert estimate_tokens(0) == 0
    assert estimate_tokens(9) == 3
    assert estimate_tokens(8, images=2) == 2 + 2 * TOKENS_PER_IMAGE


@pytest.mark.parametrize("prompt", ["Hello!", "hi there", "What time is it in Paris?", "Thanks, that helped."])
def test_short_greetings_and_lookups_are_simple(heuristic_rules, prompt):
    result = classify(prompt, heuristic_rules)
    assert result.klass == "simple"
    assert result.score < heuristic_rules.moderate_at


def test_multi_step_analysis_is_complex(heuristic_rules):
    # Given a long analytical ask with explicit steps
    prompt = (
        "Analyze the trade-offs between a microservice architecture and a modular monolith for a team of "
        "twelve engineers. First list the operational risks, then compare the costs over three years, and "
        "finally recommend a migration strategy with the implications for hiring."
    )
    # When classified
    result = classify(prompt, heuristic_rules)
    # Then both the analysis and multi-step signals fire and the class is complex
    assert result.signals["analysis"] == 1.0
    assert result.signals["multi_step"] == 1.0
    assert result.klass == "complex"


def test_code_block_fires_the_code_signal_by_structure(heuristic_rules):
    prompt = "Why?\n```\nx = [i for i in range(3)]\n```"
    result = classify(prompt, heuristic_rules)
    assert result.signals["code"] == 1.0
    assert result.klass in ("moderate", "complex")


def test_equation_fires_the_math_signal(heuristic_rules):
    result = classify("If 3x + 2 = 11, what is x?", heuristic_rules)
    assert result.signals["math"] == 1.0


def test_numbered_list_fires_multi_step_by_structure(heuristic_rules):
    prompt = "Do these:\n1. open the file\n2. count the lines\n3. print the total\n"
    assert classify(prompt, heuristic_rules).signals["multi_step"] == 1.0


def test_keywords_match_whole_words_only(heuristic_rules):
    # "classic" must not count as the code keyword "class"
    result = classify("a classic novel", heuristic_rules)
    assert result.signals["code"] == 0.0


@pytest.mark.parametrize(
    ("prompt", "strength"),
    [("Refactor this", 0.5), ("REFACTOR this", 0.5), ("Debug the CODE", 1.0), ("code " * 500, 1.0), ("Codes", 0.0)],
)
def test_keywords_match_in_any_case_and_two_hits_saturate(heuristic_rules, prompt, strength):
    # The patterns are lower case and read lower-cased text; a signal's strength is 0.5 a hit, at most 1
    assert classify(prompt, heuristic_rules).signals["code"] == strength


def test_size_alone_saturates_the_length_signal(heuristic_rules):
    # Given a very long but plain text
    text = "lorem ipsum " * 2000
    # Then the length component is saturated and makes it at least moderate
    result = classify(text, heuristic_rules)
    assert result.signals["length"] == 1.0
    assert result.score >= heuristic_rules.length_weight
    assert result.klass in ("moderate", "complex")


def test_total_chars_counts_text_beyond_the_scanned_sample(heuristic_rules):
    result = classify("short", heuristic_rules, total_chars=40_000)
    assert result.estimated_tokens == 10_000


def test_reason_is_rounded_and_omits_silent_signals(heuristic_rules):
    reason = classify("Hello!", heuristic_rules).as_reason()
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
def test_adversarial_text_is_classified_in_linear_time(heuristic_rules, text):
    # Given 20,000 characters built to make a backtracking pattern go quadratic
    import time

    started = time.perf_counter()
    classify(text * 20, heuristic_rules, total_chars=len(text) * 20)  # the scan limit bounds the rest
    # Then classifying them takes milliseconds (a generous bound for a loaded CI machine), not seconds
    assert time.perf_counter() - started < 0.25
