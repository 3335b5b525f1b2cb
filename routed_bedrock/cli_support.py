"""What the ``routed-bedrock`` commands share: argument types, the usage-error exit and plain-text tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

EXIT_USAGE = 2


def float_in(low: float, high: float, *, low_allowed: bool) -> Callable[[str], float]:
    """An argument type for a number up to ``high``, from ``low`` (``low_allowed``) or above it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if low_allowed and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        if not low_allowed and not low < value <= high:
            raise argparse.ArgumentTypeError(f"must be above {low:g} and at most {high:g}, got {text}")
        return value

    return parse


def int_from(low: int, high: int) -> Callable[[str], int]:
    """An argument type for a whole number from ``low`` to ``high`` (digits only: no sign, no underscores)."""

    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {text!r}")
        return int(text)

    return parse


positive_float = float_in(0, 600, low_allowed=False)  # seconds
positive_int = int_from(1, 64)  # workers
fraction = float_in(0, 1, low_allowed=True)  # temperature, tolerance
share = float_in(0, 1, low_allowed=False)  # quality targets


def model_keys(text: str) -> list[str]:
    keys = [key.strip() for key in text.split(",") if key.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("name at least one catalog key, e.g. nova-micro,claude-haiku-4-5")
    return list(dict.fromkeys(keys))


def fail(command: str, message: str) -> int:
    """Print ``routed-bedrock COMMAND: error: MESSAGE`` on stderr; the usage-error exit code."""
    print(f"routed-bedrock {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
