"""The progress line an evaluation run redraws on a terminal while its calls are made."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TextIO


class ProgressLine:
    """A one-line progress display (done/total, errors, elapsed, ETA), redrawn at most 5 times a second."""

    def __init__(self, total: int, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._total = total
        self._stream = stream
        self._clock = clock
        self._started = clock()
        self._drawn_at = -math.inf
        self._width = 0

    def __call__(self, done: int, errors: int) -> None:
        now = self._clock()
        if now - self._drawn_at < 0.2 and done < self._total:
            return
        self._drawn_at = now
        elapsed = now - self._started
        eta = _clock_time(elapsed / done * (self._total - done)) if done else "?"
        line = (
            f"evaluate: {done}/{self._total} calls ({done * 100 // max(1, self._total)}%), {errors} error(s), "
            f"{_clock_time(elapsed)} elapsed, ETA {eta}"
        )
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """End the line, so what is printed next starts on a line of its own."""
        if self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
