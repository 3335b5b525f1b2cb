"""The reference metric: an answer's score against its reference, in [0, 1], without dependencies.

- the reference is a number (``18``, ``#### 18``, ``$1,080``, ``-2.5``): 1 when the answer's number equals
  it (numeric compare). The answer's number is the first after its last ``####``, else the first after its
  last "answer is" / "answer:", else its last number;
- the reference is one letter A-E (``B``, ``(B)``, ``B.``): 1 when the answer chooses that letter:
  "answer is B" / "Answer: (B)", else a letter opening the answer ("B.", "(B)", "B)", "B:" or just "B"),
  else the one letter in parentheses "(B)" the answer holds;
- otherwise SQuAD's token F1: lowercase, punctuation and the articles a/an/the removed, F1 over tokens.

An answer is ``correct`` when its score is at least 0.5 (``CORRECT_AT``).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

CORRECT_AT = 0.5
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER_MARKER = re.compile(r"answer\s+is|answer\s*:", re.IGNORECASE)
_LETTER_REFERENCE = re.compile(r"\(?([A-E])\)?\.?")
_LETTER_AFTER_MARKER = re.compile(r"(?i:answer)(?:\s+is)?[\s:*\-]*(?:\(([A-Ea-e])\)|([A-E])(?![A-Za-z0-9]))")
_LETTER_OPENING = re.compile(r"\s*\**\s*(?:\(([A-E])\)|([A-E])(?:[.):]|\s*$))")
_LETTER_IN_PARENS = re.compile(r"\(([A-E])\)")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def score_answer(answer: str, reference: str) -> float:
    """The reference metric in [0, 1]: numeric match, multiple-choice letter match, or token F1."""
    number = reference_number(reference)
    if number is not None:
        found = answer_number(answer)
        return 1.0 if found is not None and math.isclose(found, number, rel_tol=1e-9, abs_tol=1e-9) else 0.0
    letter = _LETTER_REFERENCE.fullmatch(reference.strip())
    if letter:
        return 1.0 if answer_letter(answer) == letter.group(1) else 0.0
    return token_f1(answer, reference)


def reference_number(reference: str) -> float | None:
    """The number a reference is (``18``, ``#### 18``, ``$1,080.50``), or None when it is not one."""
    text = reference.rsplit("####", 1)[-1].strip().replace(",", "").replace("$", "").rstrip(".")
    return float(text) if _PLAIN_NUMBER.fullmatch(text) else None


def answer_number(answer: str) -> float | None:
    """The number an answer gives: first after its last ``####``, else after "answer is"/"answer:", else its last."""
    if "####" in answer:
        tail: str | None = answer.rsplit("####", 1)[1]
    else:
        markers = list(_ANSWER_MARKER.finditer(answer))
        tail = answer[markers[-1].end() :] if markers else None
    if tail is not None:
        first = _NUMBER.search(tail)
        if first:
            return _number(first.group())
    numbers = _NUMBER.findall(answer)
    return _number(numbers[-1]) if numbers else None


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("$", ""))


def answer_letter(answer: str) -> str | None:
    """The multiple-choice letter (A-E) an answer chooses, or None."""
    markers = list(_LETTER_AFTER_MARKER.finditer(answer))
    if markers:
        last = markers[-1]
        return (last.group(1) or last.group(2)).upper()
    opening = _LETTER_OPENING.match(answer)
    if opening:
        return opening.group(1) or opening.group(2)
    in_parens = set(_LETTER_IN_PARENS.findall(answer))
    return in_parens.pop() if len(in_parens) == 1 else None


def normalize_tokens(text: str) -> list[str]:
    """SQuAD's normalisation: lowercase, punctuation and articles removed, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token F1 of an answer against a reference; 1.0 when both normalise to nothing."""
    answer_tokens, reference_tokens = normalize_tokens(answer), normalize_tokens(reference)
    if not answer_tokens or not reference_tokens:
        return 1.0 if answer_tokens == reference_tokens else 0.0
    common = sum((Counter(answer_tokens) & Counter(reference_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(answer_tokens), common / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)
