"""Running a cascade route's plan: escalate while an answer's confidence is below the route's threshold.

``cascade.py`` scores an answer; this module calls the later steps (through the executor's ``run``) and, for
an answer in a judge's band, the judge (through ``judge``), keeps what was paid for and not returned
(``Spent``: escalated answers and judge verdicts) and writes the decision's ``cascade`` reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .cascade import VETO_SIGNALS
from .engine import Decision, PlannedCall
from .executor import AttemptRecord, ExecutionResult
from .policy import CascadeSettings, JudgeSettings

Judge = Callable[[JudgeSettings, str, str], tuple[str, ExecutionResult]]
"""Asks the judge about (prompt, answer): its verdict (``cascade.judge_verdict``'s, or "failed" when no call
answered) and the calls made."""


class PaidAnswer(NamedTuple):
    """An answer a cascade paid for and did not return (escalated past, or a judge's verdict): metrics count its
    tokens and cost under its own model."""

    model_id: str
    region: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


def run_cascade(
    decision: Decision,
    cascade: CascadeSettings,
    *,
    prompt: str,
    result: ExecutionResult,
    run: Callable[[tuple[PlannedCall, ...]], ExecutionResult],
    spent: Spent,
    judge: Judge | None = None,
) -> tuple[ExecutionResult, dict[str, Any]]:
    """Escalate while an answer's confidence is below the threshold (or the judge finds it incorrect) and a later
    step remains.

    An escalation whose later steps all fail returns the last answer that came back rather than none.
    """
    complexity = decision.reasons.get("complexity", {})
    prompt_score = complexity.get("score") if complexity.get("router") == "learned" else None
    last_step = max(call.step for call in decision.plan)
    steps: list[dict[str, Any]] = []
    reason: dict[str, Any] = {"threshold": cascade.threshold, "steps": steps}
    if cascade.calibration:
        calibration = cascade.calibration
        reason["calibration"] = {k: calibration[k] for k in ("metric", "target") if k in calibration}
    while result.reply is not None and result.answered_by is not None and result.answered_by.step < last_step:
        call, reply = result.answered_by, result.reply
        confidence = cascade.confidence.score(prompt, reply.text, reply.stop_reason, prompt_score)
        step: dict[str, Any] = {
            "model": call.model.key,
            "confidence": round(confidence.value, 4),
            "signals": {name: round(value, 3) for name, value in confidence.signals.items() if value},
        }
        steps.append(step)
        accepted = confidence.value >= cascade.threshold
        verdict = None
        settings = cascade.judge
        vetoed = any(confidence.signals.get(name) for name in VETO_SIGNALS)
        if settings is not None and judge is not None and settings.consulted(confidence.value) and not vetoed:
            verdict, judged = judge(settings, prompt, reply.text)
            result.attempts.extend(judged.attempts)  # after the answer's own, whichever answer is returned
            spent.pay(judged)
            step["judge"] = {"model": settings.model, "verdict": verdict}
            if verdict == "failed":
                step["judge"]["error"] = judged.stop_reason or "no judge call answered"
            elif verdict == "unclear":
                step["judge"]["reply"] = judged.reply.text[:40] if judged.reply is not None else ""
            else:
                accepted = verdict == "correct"
        if accepted:
            step["accepted"] = True
            return result, reason
        if verdict == "incorrect":
            step["escalated"] = f"the judge found it incorrect (confidence {confidence.value:.3f})"
        else:
            step["escalated"] = _escalation_reason(confidence.signals, cascade, confidence.value)
        later = tuple(c for c in decision.plan if c.step > call.step)
        escalated = run(later)
        if escalated.reply is None:  # the earlier answer is returned after all, the failed calls after its own
            step["escalation_failed"] = escalated.stop_reason or "no later step answered"
            result.attempts.extend(escalated.attempts)
            return result, reason
        spent.add(result)  # paid for, not returned
        result = escalated
    if result.answered_by is not None:
        steps.append({"model": result.answered_by.model.key, "final": True})
    return result, reason


class Spent:
    """What a cascade paid for and did not return: its earlier, escalated answers (their attempts and cost) and
    its judge's verdicts (their cost; their attempts follow the answer they judged)."""

    def __init__(self) -> None:
        self.attempts: list[AttemptRecord] = []
        self.answers: list[PaidAnswer] = []

    def add(self, result: ExecutionResult) -> None:
        """An answer escalated past: its attempts and its cost."""
        self.attempts.extend(result.attempts)
        self.pay(result)

    def pay(self, result: ExecutionResult) -> None:
        """The cost of a call's answer (none when no call answered)."""
        if result.reply is not None and result.answered_by is not None:
            reply, call = result.reply, result.answered_by
            cost = call.model.cost_usd(reply.input_tokens, reply.output_tokens)
            tokens = (reply.input_tokens, reply.output_tokens)
            self.answers.append(PaidAnswer(call.model.model_id, call.region, *tokens, cost))


_SIGNAL_REASONS = {
    "truncated": "stopped at max_tokens",
    "empty": "empty answer",
    "short": "very short answer",
    "refusal": "refused",
    "hedging": "hedged",
    "maths_no_final_answer": "no final answer to a maths ask",
    "arithmetic_errors": "its arithmetic does not hold",
    "non_integer_answer": "a fractional answer to a word problem",
    "negative_answer": "a negative answer to a word problem",
}


def _escalation_reason(signals: Mapping[str, float], cascade: CascadeSettings, confidence: float) -> str:
    """The signals present that lowered the confidence (a veto, or a negative weight), or "low confidence"."""
    weights = cascade.confidence.weights
    named = [
        text
        for name, text in _SIGNAL_REASONS.items()
        if signals.get(name) and (name in VETO_SIGNALS or weights.get(name, 0.0) < 0)
    ]
    why = ", ".join(named) if named else "low confidence"
    return f"{why} (confidence {confidence:.3f} < {cascade.threshold})"
