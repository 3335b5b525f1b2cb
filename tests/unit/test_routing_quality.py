"""Smoke run of benchmarks/routing_quality.py on a slice of the routellm test splits (../shared beside the clone)."""

from __future__ import annotations

import json

import pytest

from benchmarks.routing_quality import DEFAULT_DATA, ROUTERS, Item, evaluate, main, resamples_of, uncertainty

SMOKE = ["--limit", "200", "--train-limit", "150"]


def test_smoke_run_scores_every_router_on_both_sets(tmp_path, capsys):
    # Given the routellm data beside the repository (CI checks ../shared out next to the clone)
    assert (DEFAULT_DATA / "gsm8k" / "gsm8k_responses.csv").is_file(), (
        f"routellm development data missing: expected {DEFAULT_DATA} (../shared/datasets/routellm beside the clone)"
    )
    out = tmp_path / "routing_quality.json"
    # When the benchmark trains on 150 and scores 200 test prompts per set
    assert main([*SMOKE, "--out", str(out)]) == 0
    # Then it prints a table per set and writes figures for every router on both sets
    printed = capsys.readouterr().out
    assert "gsm8k" in printed
    assert "mmlu" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report["sets"]) == {"gsm8k", "mmlu"}
    for name, result in report["sets"].items():
        assert result["test_prompts"] == 200, name
        expected = {*ROUTERS, "cascade"} if name == "gsm8k" else set(ROUTERS)  # gsm8k alone carries answers
        assert set(result["routers"]) == expected, name
        routers = result["routers"]
        for router, figures in routers.items():
            assert 0.0 <= figures["strong_share_at_95"] <= 1.0, (name, router)
            assert all(0.0 <= point["strong_share"] <= 1.0 for point in figures["curve"]), (name, router)
            assert len(figures["curve"]) == 101, (name, router)
        assert routers["oracle"]["apgr"] > routers["random"]["apgr"], name
        # Each scored router's share comes with a bootstrap interval; learned is compared with length, paired
        uncertainty = result["uncertainty"]
        assert uncertainty["resamples"] == 200
        expected_ci = (
            {"heuristic", "length", "learned", "cascade"} if name == "gsm8k" else {"heuristic", "length", "learned"}
        )
        assert set(uncertainty["strong_share_at_95_ci"]) == expected_ci, name
        for router, (low, high) in uncertainty["strong_share_at_95_ci"].items():
            assert 0.0 <= low <= high <= 1.0, (name, router)
        assert 0.0 <= uncertainty["learned_beats_length"] <= 1.0
        assert routers["oracle"]["strong_share_at_95"] < routers["random"]["strong_share_at_95"], name
        assert routers["random"]["apgr"] == pytest.approx(0.5), name  # the expected curve: a straight line
    # And the learned router, even trained on 150 prompts a set, ranks mmlu better than random (gsm8k's 150 are
    # too few: the full run's figures are the benchmark's business)
    assert report["sets"]["mmlu"]["routers"]["learned"]["apgr"] > 0.5


def test_is_deterministic_given_the_seed(tmp_path):
    # Given two runs with the same seed
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    main(["--limit", "50", "--train-limit", "100", "--bootstrap", "0", "--out", str(first)])
    main(["--limit", "50", "--train-limit", "100", "--bootstrap", "0", "--out", str(second)])
    # Then their figures and curves match (timings aside), and --bootstrap 0 wrote no intervals
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (first, second))
    assert all("uncertainty" not in result for result in a["sets"].values())
    for report in (a, b):
        report.pop("seconds")
        report.pop("training_seconds")
        for result in report["sets"].values():
            for figures in result["routers"].values():
                figures.pop("seconds")
    assert a == b


def test_perfect_ranking_needs_only_the_prompts_the_strong_model_alone_gets_right():
    # Given 10 prompts where the strong model alone is right on 2 and the router ranks exactly those first
    items = [Item("p", weak_correct=False, strong_correct=True, cheap_cost_usd=1.0, strong_cost_usd=10.0)] * 2
    items += [Item("p", weak_correct=True, strong_correct=True, cheap_cost_usd=1.0, strong_cost_usd=10.0)] * 8
    scores = [1.0, 1.0] + [0.0] * 8
    # When evaluated
    figures = evaluate(items, scores)
    # Then 95% of strong quality (0.95) is reached between 10% and 20% strong calls, by interpolation
    assert figures["strong_share_at_95"] == pytest.approx(0.15)
    assert figures["curve"][20]["quality_kept"] == pytest.approx(1.0)
    # And cost saved compares to always-strong (100): 8.5 cheap + 1.5 strong = 23.5
    assert figures["cost_saved_at_95"] == pytest.approx(1 - 23.5 / 100)
    # And APGR is the area under PGR: a ramp to 1 by 20%, then flat
    assert figures["apgr"] == pytest.approx(0.9)


def test_cascade_counts_the_cheap_call_on_every_prompt():
    # Given 4 prompts, cheap calls cost 1 and strong calls 10, the cascade escalating the least confident first
    items = [Item("p", weak_correct=False, strong_correct=True, cheap_cost_usd=1.0, strong_cost_usd=10.0)]
    items += [Item("p", weak_correct=True, strong_correct=True, cheap_cost_usd=1.0, strong_cost_usd=10.0)] * 3
    # When evaluated as a cascade
    figures = evaluate(items, [1.0, 0.0, 0.0, 0.0], cascade=True)
    # Then escalating one prompt of four (25%) reaches full quality, and it costs 4 cheap calls + 1 strong = 14
    assert figures["strong_share_at_95"] == pytest.approx(0.25 * (0.95 * 4 - 3) / 1)
    assert figures["curve"][25]["cost_usd"] == pytest.approx(14.0)
    # And escalating everything costs more than always-strong: every cheap call was paid too
    assert figures["curve"][100]["cost_usd"] == pytest.approx(44.0)


def test_expected_random_curve_is_the_straight_line_between_weak_and_strong():
    items = [Item("p", weak_correct=False, strong_correct=True, cheap_cost_usd=1.0, strong_cost_usd=10.0)] * 5
    items += [Item("p", weak_correct=True, strong_correct=True, cheap_cost_usd=1.0, strong_cost_usd=10.0)] * 5
    figures = evaluate(items, None)
    assert figures["curve"][50]["quality"] == pytest.approx(0.75)
    assert figures["strong_share_at_95"] == pytest.approx(0.9)
    assert figures["apgr"] == pytest.approx(0.5)


def test_bootstrap_intervals_bracket_a_clear_winner():
    # Given a perfect ranking and a random one on the same items
    items = [
        Item(f"p{i}", weak_correct=i % 3 != 0, strong_correct=True, cheap_cost_usd=0.001, strong_cost_usd=0.01)
        for i in range(300)
    ]
    perfect = [0.0 if item.weak_correct else 1.0 for item in items]
    shuffled = [float((i * 7919) % 300) for i in range(300)]
    resamples = resamples_of(len(items), 100, 0, "set")
    report = uncertainty(items, {"learned": (perfect, False), "length": (shuffled, False)}, resamples)
    # Then the perfect ranking's interval sits below the other's, and it wins on every resample
    (low, high), (other_low, _) = report["strong_share_at_95_ci"]["learned"], report["strong_share_at_95_ci"]["length"]
    assert low <= evaluate(items, perfect)["strong_share_at_95"] <= high < other_low
    assert report["learned_beats_length"] == 1.0
    # And the same seed draws the same resamples
    assert resamples_of(len(items), 100, 0, "set") == resamples
