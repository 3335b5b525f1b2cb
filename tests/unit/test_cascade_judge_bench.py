"""benchmarks/cascade_judge.py: the expected figures of a judged band, and a smoke run on a slice of gsm8k."""

from __future__ import annotations

import json

import pytest

from benchmarks.cascade_judge import ACCURACIES, Band, best_band, expected, main, outcomes
from benchmarks.routing_quality import Item

# weak right / strong right: (1, 1), (0, 1), (0, 0), (1, 0); cheap calls cost 1, strong ones 10, verdicts 0.5
ITEMS = [
    Item("a", True, True, 1.0, 10.0),
    Item("b", False, True, 1.0, 10.0),
    Item("c", False, False, 1.0, 10.0),
    Item("d", True, False, 1.0, 10.0),
]
CONFIDENCE = [0.9, 0.2, 0.4, 0.6]
VERDICT = [0.5] * 4


def test_a_perfect_judge_on_every_answer_escalates_exactly_the_wrong_ones():
    figures = expected(outcomes(ITEMS, CONFIDENCE, VERDICT, 1.0), Band(0.0, 2.0))
    # b and c escalate: quality a, b (strong) and d: 3 of the strong model's 2 right answers
    assert figures.escalated == pytest.approx(0.5) and figures.judged == 1.0
    assert figures.quality_kept == pytest.approx(3 / 2)
    assert figures.cost_saved == pytest.approx(1 - (4 * 1 + 4 * 0.5 + 2 * 10) / 40)


def test_a_coin_flip_judge_escalates_half_of_what_it_reads():
    figures = expected(outcomes(ITEMS, CONFIDENCE, VERDICT, 0.5), Band(0.3, 0.7))  # c and d judged
    assert figures.judged == pytest.approx(0.5)
    assert figures.escalated == pytest.approx((1 + 0.5 + 0.5) / 4)  # b below the band, c and d half the time
    assert figures.quality_kept == pytest.approx((1 + 1 + 0 + 0.5) / 2)


def test_an_empty_band_is_a_threshold():
    set_ = outcomes(ITEMS, CONFIDENCE, VERDICT, 0.9)
    figures = expected(set_, Band(0.5, 0.5))  # b and c (below 0.5) escalate, no verdict
    assert figures.escalated == pytest.approx(0.5) and figures.judged == 0.0
    assert figures.quality_kept == pytest.approx((1 + 1 + 0 + 1) / 2)
    band, best = best_band(set_, judge=False, steps=4, objective="escalated")
    assert band.consult_from == band.consult_below and best.quality_kept >= 0.95


def test_smoke_run_compares_every_judge_accuracy_with_no_judge(tmp_path, capsys):
    out = tmp_path / "cascade_judge.json"
    assert main(["--train-limit", "150", "--steps", "20", "--out", str(out)]) == 0
    assert "no judge" in capsys.readouterr().out
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = report["rows"]
    assert [row["judge_accuracy"] for row in rows] == [None, *ACCURACIES]
    alone = rows[0]
    assert alone["test_sweep"]["judged"] == 0.0 and alone["train_band"]["train"]["judged"] == 0.0
    for row in rows:
        assert row["test_sweep"]["quality_kept"] >= 0.95 and row["train_band"]["train"]["quality_kept"] >= 0.95
        # no judge is among every search's bands: a judge never does worse where its band was chosen
        assert row["train_band"]["train"]["cost_saved"] >= alone["train_band"]["train"]["cost_saved"] - 1e-4
        assert row["test_sweep"]["escalated"] <= alone["test_sweep"]["escalated"] + 1e-4
    assert rows[-1]["test_sweep"]["escalated"] < alone["test_sweep"]["escalated"]  # a perfect judge helps
