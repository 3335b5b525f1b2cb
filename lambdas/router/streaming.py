"""A streamed answer after its first text: the rest of the model's stream, then what it cost and how it ended.

The router opens a stream like any model call (``executor.execute_plan``: retries, backoff, region failover
and fallback models all happen before the first byte, each attempt bounded by the policy's
``resilience.first_token_timeout_ms``). Once a model has sent text the answer is committed to it: a failure
after that cannot move to another model (the caller already has part of this one), so the stream ends with
an error the caller sees, is counted (``StreamFailures``) and is reported to the circuit breaker like any
failed call. The deadline still holds: a stream still running at the request's deadline is cut there.

``LiveStream`` is framework-free: the local server and a streaming Lambda front end both iterate it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from .engine import PlannedCall
from .executor import FailureClass, ModelCallError

if TYPE_CHECKING:
    from .bedrock import ModelStream


CLIENT_GONE = "ClientGone"
"""The caller stopped reading: neither the model's failure nor a success to count for it."""
DEADLINE = "Deadline"
"""The request's deadline cut a stream that was still answering: not the model's failure either."""
NOT_THE_MODELS_FAULT = frozenset({CLIENT_GONE, DEADLINE})


class StreamEnd(NamedTuple):
    """How a stream ended, once it has."""

    text: str
    stop_reason: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error: ModelCallError | None
    latency_ms: float


class LiveStream:
    """Iterate for text pieces; ``end`` says how it ended. ``finish`` runs exactly once, however it ends.

    Args:
        call: the model and region that started answering.
        stream: the model's stream (its first text already in).
        deadline: the ``clock()`` value by which the request must be done.
        clock: monotonic seconds.
        started: the ``clock()`` value the request began at.
        estimate_input_tokens: used when the model's stream ends without usage figures.
        finish: told the ``StreamEnd`` once (settles the budget, records the attempt and the metrics).
    """

    def __init__(
        self,
        call: PlannedCall,
        stream: ModelStream,
        *,
        deadline: float,
        clock: Callable[[], float],
        started: float,
        estimate_input_tokens: int,
        finish: Callable[[StreamEnd], None],
        details: dict[str, Any],
    ) -> None:
        self.call = call
        self.details = details  # route, model, region, fallback, decision: what the first chunk may carry
        self._stream = stream
        self._deadline = deadline
        self._clock = clock
        self._started = started
        self._estimate_input_tokens = estimate_input_tokens
        self._finish = finish
        self.end: StreamEnd | None = None

    def pieces(self) -> Iterator[str]:
        """The answer's text as it comes; afterwards ``end`` holds the outcome (``error`` set if it broke)."""
        texts: list[str] = []
        stop: str = "end_turn"
        usage: tuple[int | None, int | None] = (None, None)
        error: ModelCallError | None = None
        completed = False
        try:
            for event in self._stream:
                if self._clock() > self._deadline:
                    error = ModelCallError(DEADLINE, "the request's deadline passed mid-stream", FailureClass.REGIONAL)
                    break
                if event.text:
                    texts.append(event.text)
                    yield event.text
                if event.stop_reason is not None:
                    stop = event.stop_reason
                if event.input_tokens is not None:
                    usage = (event.input_tokens, event.output_tokens)
            else:
                completed = True
        except ModelCallError as exc:
            error = exc
        except Exception as exc:  # anything else breaking the stream is a failure of this answer too
            error = ModelCallError(type(exc).__name__, str(exc)[:200], FailureClass.REGIONAL)
        finally:  # also when the caller stops reading (a client gone): the model's connection is dropped
            if not completed:
                self._stream.close()
                if error is None:
                    error = ModelCallError(CLIENT_GONE, "the caller stopped reading", FailureClass.CALLER)
            self._end("".join(texts), stop, usage, error)

    def close(self) -> None:
        """End the answer now if it has not ended (the caller went away before it was read): exactly once."""
        if self.end is None:
            self._stream.close()
            error = ModelCallError(CLIENT_GONE, "the caller stopped reading", FailureClass.CALLER)
            self._end("", "end_turn", (None, None), error)

    def _end(self, text: str, stop: str, usage: tuple[int | None, int | None], error: ModelCallError | None) -> None:
        if self.end is not None:
            return
        input_tokens = usage[0] if usage[0] is not None else self._estimate_input_tokens
        output_tokens = usage[1] if usage[1] is not None else max(1, len(text) // 4)
        self.end = StreamEnd(
            text=text,
            stop_reason=stop if error is None else "error",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self.call.model.cost_usd(input_tokens, output_tokens),
            error=error,
            latency_ms=(self._clock() - self._started) * 1000.0,
        )
        self._finish(self.end)
