"""Construct ids for the per-variant alarms (the variants themselves: ``lambdas/router/variants.py``)."""

from __future__ import annotations

import re


def id_part(text: str) -> str:
    """A readable construct-id part: ``claude-haiku-4-5`` -> ``ClaudeHaiku45``."""
    return "".join(piece[:1].upper() + piece[1:] for piece in re.split(r"[^A-Za-z0-9]+", text) if piece)
