"""Cascade routing: how far to trust a cheap model's answer before paying for a stronger one.

A route with ``"strategy": "cascade"`` calls its candidates in order, cheapest first. After each answer
but the last, ``confidence`` scores it from cheap signals of the answer (no model call):

- ``truncated``: the model stopped at ``max_tokens``;
- ``empty`` / ``short``: no text, or under ``SHORT_ANSWER_CHARS`` characters;
- ``refusal`` / ``hedging``: refusal phrases ("I can't help", "as an AI") or hedges ("I'm not sure",
  "it is unclear", "approximately"), counted (hedges saturate at 3);
- ``maths_no_final_answer``: the ask is maths-like (numbers and a quantity question) and the answer has no
  final number in its last line or after "answer"/"####";
- ``non_integer_answer`` / ``negative_answer``: for a maths-like ask, the final number has a fractional
  part (other than cents of a dollar amount) or is negative: word problems rarely have such answers;
- ``arithmetic_errors``: equations written in the answer (``12 * 4 = 46``, ``<<12*4=48>>``) whose sides
  differ: the cheap model's own working is checked (at most ``MAX_EQUATIONS`` of them);
- ``final_in_prompt``: for a maths-like ask, the final number is one of the prompt's own numbers (a given
  copied back rather than worked out);
- ``final_unworked``: the answer writes equations but its final number is none of their results (the
  conclusion does not follow from the working);
- ``self_correction``: "however", "actually", "wait", "mistake", "re-evaluate": the answer changed course;
- ``answer_lines``, ``worked_results``, ``prompt_numbers``, ``final_magnitude``: logs of the answer's
  non-empty lines, its equation results, the prompt's numbers and the final number's size;
- ``answer_chars``: log of the answer's length (long working tends to hold a slip);
- ``prompt_chars``: log of the prompt's length (longer word problems take more steps to get wrong);
- ``prompt_score``: the learned router's score for the prompt, when the policy has one.

Confidence is a logistic function of these and, when the policy's ``confidence.ngrams`` holds them, of
hashed word n-grams of the answer (the learned router's features, ``learned.hashed_ngrams``: phrasing that
goes with wrong answers), with weights fitted by ``routed-bedrock train`` on answers whose correctness is
known, except that ``VETO_SIGNALS`` (truncated, empty, refusal) set it to 0;
an answer below the route's ``threshold`` escalates to the next candidate. Each step's confidence, signals
and reason are reported in the decision.

A route may also name a judge (``cascade.judge``): an answer whose confidence is in the judge's band, and not
vetoed, is shown with its question to the judge model (``judge_messages``), asked for one word; its
``judge_verdict`` ("correct" accepts, "incorrect" escalates, "unclear" or a failed call leaves it to the
threshold) decides. The judge call is one more paid call (``cascade_run``), with a short deadline of its own
(``JUDGE_DEADLINE_MS``, at most ``JUDGE_TIME_SHARE`` of the time left) and no throttle retries, so that an
escalation it asks for still has time. It reads the newest user turn and the answer as text: a request with
images is not judged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .learned import decode_weights, hashed_ngrams, sigmoid

if TYPE_CHECKING:  # policy.py imports this module
    from .policy import JudgeSettings, ModelSpec

SIGNALS = (
    "truncated",
    "empty",
    "short",
    "refusal",
    "hedging",
    "maths_no_final_answer",
    "arithmetic_errors",
    "non_integer_answer",
    "negative_answer",
    "final_in_prompt",
    "final_unworked",
    "self_correction",
    "answer_lines",
    "worked_results",
    "prompt_numbers",
    "final_magnitude",
    "answer_chars",
    "prompt_chars",
    "prompt_score",
)
VETO_SIGNALS = ("truncated", "empty", "refusal")
JUDGE_SYSTEM = (
    "You check another assistant's answer to a question. Reply with exactly one word: CORRECT if the answer is "
    "correct and complete, INCORRECT if it is not."
)
JUDGE_CHARS = 12_000  # of the question (its start) and of the answer (its end, where the final answer is)
JUDGE_MAX_TOKENS = 8  # a judge's default output tokens: one word
JUDGE_DEADLINE_MS = 5_000  # the most a verdict may take, each attempt included (it writes a word)
JUDGE_TIME_SHARE = 0.5  # nor more than this share of the request's time left: an escalation keeps the rest
_VERDICT_WORD = re.compile(r"[A-Za-z]+")
SHORT_ANSWER_CHARS = 20
MAX_EQUATIONS = 40
SCAN_CHARS = 20_000

_REFUSAL = re.compile(
    r"\b(?:I can(?:no|')t (?:help|assist|provide|answer)|I(?:'m| am) (?:unable|not able) to|as an AI\b|"
    r"I (?:won't|will not) (?:help|provide))",
    re.IGNORECASE,
)
_HEDGE = re.compile(
    r"\b(?:not (?:sure|certain)|unsure|unclear|I think|I believe|might be|may be|possibly|perhaps|"
    r"approximately|roughly|it seems|I don't know|hard to say|cannot be determined|can't be determined|"
    r"not enough information|assum(?:e|ing))\b",
    re.IGNORECASE,
)
_MATHS_ASK = re.compile(
    r"\b(?:how (?:many|much|long|far|old)|what (?:is|was) the (?:total|sum|difference|product|number|"
    r"percentage|average|value|cost|price)|calculate|compute|solve|find the)\b",
    re.IGNORECASE,
)
_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
# An explicit final answer: "#### 18", "the answer is 18", "Answer: 18", "\boxed{18}", "**18**", or a last line
# that concludes ("So ...", "Therefore ...", "In total ...") with a number and ends the sentence.
# Separators are one bounded class, never runs of optional parts: "answer" + 600 spaces must not backtrack.
_FINAL_ANSWER = re.compile(
    rf"####[ \t]{{0,12}}{_NUMBER}|answer(?: is)?[\s:=*]{{0,12}}{_NUMBER}|\\boxed\{{[ \t]{{0,12}}{_NUMBER}"
    rf"|\*\*[ \t]{{0,12}}{_NUMBER}[^*\n]{{0,20}}\*\*",
    re.IGNORECASE,
)
_MARKED_NUMBER = re.compile(rf"(?:####|answer(?: is)?)[\s:=*]{{0,12}}({_NUMBER})", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
_SELF_CORRECTION = re.compile(
    r"\b(?:however|actually|wait|correction|mistake|re-?evaluate|re-?calculate|let me re)", re.IGNORECASE
)
_CONCLUSION = re.compile(
    rf"^\W*(?:so|therefore|thus|hence|in total|altogether|overall|the total|total)\b.*{_NUMBER}[^\d\n]{{0,30}}[.!]\s*$",
    re.IGNORECASE,
)
# A number in working: digits with optional thousands commas and decimals (at most 12 digits before the point).
_OPERAND = r"(?:\d{1,3}(?:,\d{3}){1,3}|\d{1,12})(?:\.\d{1,6})?"
EQUATION_WINDOW = 80  # characters before an "=" read as its left side: bounds the work per equation
# The right side of an equation: "= 12", "= $1,200.50" (not followed by more digits or a decimal point's digits).
_RESULT = re.compile(rf"=\s*\$?({_OPERAND})(?![\d,]*\d)(?!\.\d)")
# The left side: the longest run of numbers, operators, parentheses, "$" and spaces ending right before "=".
_LEFT = re.compile(r"[\d.,+\-*/×x()$ \t]+$")
_SENTENCE_END = re.compile(r"[.,](?=\s)")
_TOKEN = re.compile(rf"{_OPERAND}|[-+*/×x()]")
_BINARY = re.compile(rf"\s*\$?({_OPERAND})\s*([-+*/×x])\s*\$?({_OPERAND})\s*$")


class Confidence(NamedTuple):
    value: float
    signals: dict[str, float]


class ConfidenceModel(NamedTuple):
    """The policy's ``cascade.confidence``: weights per signal name, a bias, and optional answer n-gram weights.

    ``VETO_SIGNALS`` are rules, not weights: an answer cut at ``max_tokens``, empty, or a refusal has
    confidence 0 and always escalates, whatever the fitted weights say (the answers they were fitted on may
    hold no such case, which leaves those signals no weight at all). ``ngrams`` holds one weight per bucket of
    ``learned.hashed_ngrams(answer, hash_bits)`` (empty: signals only).
    """

    weights: Mapping[str, float]
    bias: float
    ngrams: tuple[float, ...] = ()
    hash_bits: int = 0

    def score(self, prompt: str, answer: str, stop_reason: str, prompt_score: float | None = None) -> Confidence:
        found = answer_signals(prompt, answer, stop_reason, prompt_score)
        if any(found[name] for name in VETO_SIGNALS):
            return Confidence(0.0, found)
        z = self.bias + sum(self.weights.get(name, 0.0) * value for name, value in found.items())
        if self.ngrams:
            ngrams = self.ngrams
            z += sum(ngrams[bucket] * value for bucket, value in hashed_ngrams(answer, self.hash_bits).items())
        return Confidence(sigmoid(z), found)


def compile_confidence(document: Mapping[str, Any]) -> ConfidenceModel:
    """Compile a schema-valid ``cascade.confidence`` object.

    Raises:
        LearnedRouterError: the n-gram weights are not one per bucket of ``ngrams.hash_bits`` (or bad base64).
    """
    ngrams = document.get("ngrams")
    bits = int(ngrams["hash_bits"]) if ngrams is not None else 0
    return ConfidenceModel(
        weights={name: float(value) for name, value in document["weights"].items()},
        bias=float(document["bias"]),
        ngrams=decode_weights(ngrams["weights"], 1 << bits) if ngrams is not None else (),
        hash_bits=bits,
    )


def judge_text(prompt: str, answer: str) -> str:
    """What a judge reads about an answer: the question's start and the answer's end, and the one-word ask."""
    question = prompt if len(prompt) <= JUDGE_CHARS else prompt[:JUDGE_CHARS] + " [...]"
    reply = answer if len(answer) <= JUDGE_CHARS else "[...] " + answer[-JUDGE_CHARS:]
    return (
        f"Question:\n{question}\n\nAnswer to check:\n{reply}\n\n"
        "Is this answer correct? Reply with one word: CORRECT or INCORRECT."
    )


def judge_messages(prompt: str, answer: str) -> list[dict[str, Any]]:
    """The Converse messages asking a judge about an answer (``judge_text`` as the one user turn)."""
    return [{"role": "user", "content": [{"text": judge_text(prompt, answer)}]}]


def judge_request(settings: JudgeSettings, model: ModelSpec, prompt: str, answer: str) -> dict[str, Any]:
    """The judge's Converse ``messages``, ``system`` and ``inference_config`` (temperature 0, its max_tokens)."""
    limit = model.max_output_tokens
    return {
        "messages": judge_messages(prompt, answer),
        "system": [{"text": JUDGE_SYSTEM}],
        "inference_config": {
            "maxTokens": min(settings.max_tokens, limit) if limit else settings.max_tokens,
            "temperature": 0,
        },
    }


def judge_verdict(text: str) -> str:
    """A judge's reply as ``correct``, ``incorrect`` or ``unclear``: its first word, any case or markup."""
    word = _VERDICT_WORD.search(text[:200])
    return {"CORRECT": "correct", "INCORRECT": "incorrect"}.get(word.group().upper() if word else "", "unclear")


def answer_signals(prompt: str, answer: str, stop_reason: str, prompt_score: float | None = None) -> dict[str, float]:
    """The signals of ``SIGNALS`` for one answer (0 where absent)."""
    text = answer[:SCAN_CHARS]
    stripped = text.strip()
    maths = bool(_MATHS_ASK.search(prompt[:SCAN_CHARS])) and bool(re.search(r"\d", prompt[:SCAN_CHARS]))
    final = final_number(stripped) if maths else None
    final_value = _value(final) if final is not None else None
    errors, results = check_working(text)
    given = {v for v in map(_value, _ANY_NUMBER.findall(prompt[:SCAN_CHARS])) if v is not None} if maths else set()
    return {
        "truncated": 1.0 if stop_reason == "max_tokens" else 0.0,
        "empty": 0.0 if stripped else 1.0,
        "short": 1.0 if 0 < len(stripped) < SHORT_ANSWER_CHARS else 0.0,
        "refusal": 1.0 if _REFUSAL.search(text) else 0.0,
        "hedging": float(min(3, len(_HEDGE.findall(text)))),
        "maths_no_final_answer": 1.0 if maths and not has_final_number(stripped) else 0.0,
        "arithmetic_errors": float(errors),
        "non_integer_answer": 1.0 if maths and final is not None and _is_fractional(final) else 0.0,
        "negative_answer": 1.0 if maths and final is not None and final.lstrip("$").startswith("-") else 0.0,
        "final_in_prompt": 1.0 if final_value is not None and final_value in given else 0.0,
        "final_unworked": 1.0 if final_value is not None and results and final_value not in results else 0.0,
        "self_correction": 1.0 if _SELF_CORRECTION.search(text) else 0.0,
        "answer_lines": math.log1p(sum(1 for line in stripped.splitlines() if line.strip())),
        "worked_results": math.log1p(len(results)),
        "prompt_numbers": math.log1p(len(given)) if maths else 0.0,
        "final_magnitude": math.log1p(min(abs(final_value), 1e15)) if final_value is not None else 0.0,
        "answer_chars": math.log1p(len(stripped)),
        "prompt_chars": math.log1p(len(prompt)),
        "prompt_score": prompt_score if prompt_score is not None else 0.0,
    }


def has_final_number(answer: str) -> bool:
    """Whether the answer states a final number explicitly (``_FINAL_ANSWER``) or concludes with one."""
    if not answer:
        return False
    tail = answer[-600:]
    if _FINAL_ANSWER.search(tail):
        return True
    return bool(_CONCLUSION.search(tail.rstrip().rsplit("\n", 1)[-1][-300:]))


def final_number(answer: str) -> str | None:
    """The answer's final number: after an explicit marker (``####``, "answer is"), else the last one written."""
    tail = answer[-600:]
    marked = _MARKED_NUMBER.findall(tail)
    if marked:
        return str(marked[-1])
    numbers = _ANY_NUMBER.findall(tail[-300:])
    return str(numbers[-1]) if numbers else None


def _value(number: str) -> float | None:
    """``"-$1,200.50"`` -> -1200.5; None for a number too long to be a quantity (over 30 characters)."""
    if len(number) > 30:
        return None
    return float(number.replace(",", "").replace("$", ""))


def _is_fractional(number: str) -> bool:
    digits = number.replace(",", "")
    if "." not in digits:
        return False
    fraction = digits.split(".", 1)[1]
    if digits.lstrip("-").startswith("$") and len(fraction) == 2:
        return False  # cents
    return fraction.strip("0") != ""


def arithmetic_errors(answer: str) -> int:
    """How many written equations (at most ``MAX_EQUATIONS``, each read within ``EQUATION_WINDOW``) do not hold."""
    return check_working(answer)[0]


def check_working(answer: str) -> tuple[int, set[float]]:
    """One pass over the answer's ``=`` signs (its first ``5 * MAX_EQUATIONS``): how many of its equations do
    not hold (at most ``MAX_EQUATIONS`` checked, each read within ``EQUATION_WINDOW``) and every result written.

    Linear in the answer: each "=" is found once and its left side read from a bounded window before it.
    """
    errors = 0
    checked = 0
    results: set[float] = set()
    for seen, match in enumerate(_RESULT.finditer(answer)):
        if seen >= 5 * MAX_EQUATIONS:  # "=" signs that are not equations also cost a window's read
            break
        right = float(match.group(1).replace(",", ""))
        results.add(right)
        if checked > MAX_EQUATIONS:
            continue
        window = answer[max(0, match.start() - EQUATION_WINDOW) : match.start()]
        found = _LEFT.search(window)
        if found is None:
            continue
        expression = _SENTENCE_END.split(found.group())[-1]  # "3. 1 + 1" -> " 1 + 1": a full stop ends a sentence
        if not any(op in expression for op in "+-*/×x"):
            continue
        left = _evaluate(expression)
        if left is None:
            continue
        checked += 1
        if checked > MAX_EQUATIONS:
            continue
        tolerance = max(0.01, abs(right) / 1000)
        if abs(left - right) > tolerance:
            errors += 1
    return errors, results


def _evaluate(expression: str) -> float | None:
    """Value of + - * / over decimals with parentheses; None when it is not such an expression.

    Floats suffice: at most 80 characters of 12-digit operands, compared with a tolerance of 0.1% or 0.01.
    """
    simple = _BINARY.match(expression)
    if simple is not None:  # "a op b", most written working: no parser needed
        a, operator, b = float(simple[1].replace(",", "")), simple[2], float(simple[3].replace(",", ""))
        if operator == "+":
            return a + b
        if operator == "-":
            return a - b
        if operator == "/":
            return a / b if b else None
        return a * b
    tokens: list[str] = _TOKEN.findall(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def atom() -> float:
        token = peek()
        if token == "-":  # a negative number
            take()
            return -atom()
        if token == "(":
            take()
            value = expr()
            if peek() != ")":
                raise ValueError("unbalanced")
            take()
            return value
        if token is None or not token[0].isdigit():
            raise ValueError("operand expected")
        return float(take().replace(",", ""))

    def term() -> float:
        value = atom()
        while peek() in ("*", "/", "x", "×"):
            operator = take()
            right = atom()
            if operator == "/":
                if right == 0:
                    raise ValueError("division by zero")
                value /= right
            else:
                value *= right
        return value

    def expr() -> float:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    if not tokens or len(tokens) > EQUATION_WINDOW:
        return None
    try:
        value = expr()
    except (ValueError, ZeroDivisionError, RecursionError):
        return None
    return value if position == len(tokens) else None
