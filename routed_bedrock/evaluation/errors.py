"""The evaluator's errors: what stops an evaluation before any model is called (the command exits 2)."""

from __future__ import annotations


class DatasetError(ValueError):
    """The dataset cannot be used; the message names the file and each bad line."""


class EvaluationError(Exception):
    """The evaluation cannot run (bad model key, checkpoint of another run, no credentials); says what to do."""
