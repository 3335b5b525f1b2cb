"""Prompt complexity from cheap heuristics: size, keyword signals and structure. No model call.

A score in [0, 1] is the sum of a length component and weighted signals (code, math, multi-step,
analysis), each of whose strength is 0.5 per keyword hit (saturating at 1) or 1 when its structural
marker is present (a code block, an equation, a numbered list). Thresholds in the policy turn the score
into a class: simple, moderate or complex.

When the policy carries a learned router (``rules.complexity.learned``, see ``learned.py``) its score and
calibrated thresholds give the class instead; the decision then shows that score, the thresholds and the
targets they were calibrated to. With ``heuristic_floor`` (the default) the heuristic can still raise the
class, never lower it: a router trained on maths and multiple-choice outcomes has not seen a code review or
an architecture question, which the heuristic's keyword and structure signals do recognise.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .policy import COMPLEXITY_CLASSES, SIGNAL_SCAN_CHARS, ComplexityRules

CHARS_PER_TOKEN = 4
KEYWORD_HITS_TO_SATURATE = 2  # each keyword hit is worth 0.5 of a signal's strength, which saturates at 1
TOKENS_PER_IMAGE = 1600  # Bedrock bills roughly (width*height)/750 tokens; ~1.2 MP images are the common case

# Linear time on any input: whitespace inside a line is [ \t], never \s, which also matches newlines and let a
# line-start pattern run over every following blank line (quadratic: "- " + "\n" * 19998 took 10 s).
_STRUCTURE: dict[str, re.Pattern[str]] = {
    "code": re.compile(
        r"```|^[ \t]*(?:def |class |function |import |from \S+ import |#include|public |const |let |SELECT "
        r"|CREATE TABLE)|[;{}][ \t]*$",
        re.MULTILINE,
    ),
    "math": re.compile(r"\d[ \t]*[-+*/^=<>][ \t]*\(?\d|\\frac|\\sum|\\int|\$[^$\n]+\$"),
    "multi_step": re.compile(
        r"(?:^[ \t]*(?:\d+[.)]|[-*•])[ \t]+\S.*\n){2,}^[ \t]*(?:\d+[.)]|[-*•])[ \t]+\S", re.MULTILINE
    ),
}


class Complexity(NamedTuple):
    score: float
    klass: str
    estimated_tokens: int
    signals: dict[str, float]
    learned: dict[str, Any] | None = None  # the learned router's thresholds and calibration, when it decided

    def as_reason(self) -> dict[str, object]:
        if self.learned is not None:
            return {
                "router": "learned",
                "score": round(self.score, 4),
                "class": self.klass,
                "estimated_input_tokens": self.estimated_tokens,
                **self.learned,
            }
        return {
            "router": "heuristic",
            "score": round(self.score, 3),
            "class": self.klass,
            "estimated_input_tokens": self.estimated_tokens,
            "signals": {name: round(value, 2) for name, value in self.signals.items() if value},
        }


def estimate_tokens(chars: int, images: int = 0) -> int:
    """Rough input token count: about four characters a token, plus a flat cost per image."""
    return -(-chars // CHARS_PER_TOKEN) + images * TOKENS_PER_IMAGE


def classify(
    text: str, rules: ComplexityRules, *, total_chars: int | None = None, images: int = 0, ask: str | None = None
) -> Complexity:
    """Score a prompt's complexity.

    Args:
        text: the text to read signals from (the conversation's user and system text).
        rules: the policy's complexity rules.
        total_chars: the full input size when ``text`` is only part of it; defaults to ``len(text)``.
        images: number of attached images (they count towards size, not towards signals).
        ask: the newest user turn alone: the learned router reads it (and its length) instead of ``text``, as it
            was trained on bare prompts; the heuristic and the size estimate still read everything.
    """
    chars = len(text) if total_chars is None else total_chars
    tokens = estimate_tokens(chars, images)
    learned = rules.learned
    if learned is None:
        return _heuristic(text, rules, tokens)
    score = learned.score(text, chars) if ask is None else learned.score(ask)
    learned_class = learned.klass(score)
    reason = {"learned_class": learned_class, **learned.as_reason()}
    klass = learned_class
    signals: dict[str, float] = {}
    if learned.heuristic_floor and learned_class != COMPLEXITY_CLASSES[-1]:  # complex cannot be raised
        heuristic = _heuristic(text, rules, tokens)
        reason["heuristic"] = {"score": round(heuristic.score, 3), "class": heuristic.klass}
        klass = max(learned_class, heuristic.klass, key=COMPLEXITY_CLASSES.index)
        signals = heuristic.signals
    return Complexity(score=score, klass=klass, estimated_tokens=tokens, signals=signals, learned=reason)


def _heuristic(text: str, rules: ComplexityRules, tokens: int) -> Complexity:
    sample = text[:SIGNAL_SCAN_CHARS]
    lowered = sample.lower()  # the keyword patterns are lower case (policy._keyword_pattern)
    length_strength = min(1.0, tokens / rules.saturation_tokens)
    score = rules.length_weight * length_strength
    strengths: dict[str, float] = {"length": round(length_strength, 3)}
    for signal in rules.signals:
        hits = 0
        if signal.keywords is not None:
            for _ in signal.keywords.finditer(lowered):  # two hits saturate a signal: stop there
                hits += 1
                if hits == KEYWORD_HITS_TO_SATURATE:
                    break
        strength = min(1.0, 0.5 * hits)
        structure = _STRUCTURE.get(signal.name)
        if strength < 1.0 and structure is not None and structure.search(sample):
            strength = 1.0
        strengths[signal.name] = strength
        score += signal.weight * strength
    score = min(1.0, score)
    if score >= rules.complex_at:
        klass = "complex"
    elif score >= rules.moderate_at:
        klass = "moderate"
    else:
        klass = "simple"
    return Complexity(score=score, klass=klass, estimated_tokens=tokens, signals=strengths)
