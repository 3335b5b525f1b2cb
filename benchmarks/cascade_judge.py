"""What a judge model would add to the maths cascade: strong calls, quality kept and cost, by the judge's accuracy.

No public data carries a judge model's verdicts, so the judge is the one modelled part: on an answer it is
consulted on, its verdict is right with probability ``accuracy`` (the same on right and wrong answers), and every
figure is an expected value. The rest is measured: gsm8k's Mixtral answers and both models' correctness, the
cascade's confidence in each answer (fitted on the train half as in ``routing_quality.py``: held-out on the train
half, the fitted model on the test half), and the default policy's prices (Nova Micro answers, Claude Sonnet 4.5
takes an escalation, Nova Lite judges, reading the question and the answer, ``cascade.judge_messages``, and
writing two tokens).

A band ``[consult_from, consult_below)`` is how the router uses a judge (``cascade.judge``): below it the answer
escalates, at or above it the answer is kept, inside it the judge decides. Per accuracy, the band is chosen on the
train half: among bands whose ends are on a grid of the held-out confidences' quantiles, the cheapest whose
expected quality kept is at least 95% of always-strong. An empty band is the cascade without a judge (its
threshold chosen the same way), so "no judge" is in every search and each row compares like with like. Then the
chosen band is scored on the test half.

    python benchmarks/cascade_judge.py [--data DIR] [--seed 0] [--train-limit N] [--out cascade_judge.json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.routing_quality import (  # noqa: E402
    CASCADE_SET,
    DEFAULT_DATA,
    QUALITY_TARGET,
    Item,
    cascade_answers,
    confidences,
    price_pair,
    read_rows,
    train_routers,
)
from lambdas.router.cascade import JUDGE_SYSTEM, judge_text  # noqa: E402
from lambdas.router.classifier import estimate_tokens  # noqa: E402
from lambdas.router.policy import DEFAULT_POLICY_PATH, ModelSpec, load_policy_file  # noqa: E402
from routed_bedrock.cascade_training import held_out_confidences  # noqa: E402
from routed_bedrock.outcome_data import routellm_files, split  # noqa: E402

JUDGE_MODEL = "nova-lite"
JUDGE_OUTPUT_TOKENS = 2
ACCURACIES = (0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class Band(NamedTuple):
    consult_from: float
    consult_below: float  # equal to consult_from: no judge (consult_from is then the escalation threshold)


class Expected(NamedTuple):
    """Expected figures of a band over a set of answers."""

    quality_kept: float
    escalated: float  # share of prompts that also pay for the strong call
    judged: float  # share of prompts whose answer the judge read
    cost_saved: float  # against always-strong

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self._asdict().items()}


def judge_cost(item: Item, judge: ModelSpec) -> float:
    """One verdict on the item's cheap answer: its system prompt and message in, two tokens out."""
    chars = len(JUDGE_SYSTEM) + len(judge_text(item.prompt, item.weak_answer or ""))
    return judge.cost_usd(estimate_tokens(chars), JUDGE_OUTPUT_TOKENS)


Figures = tuple[float, float, float, float]  # quality, cost, escalations, judged: summed over answers


class Outcomes(NamedTuple):
    """One set's answers in order of confidence, with prefix sums of each way an answer may be handled."""

    ranked: list[float]  # the confidences, ascending
    escalate: list[Figures]  # escalate[k]: the first k answers escalated
    judge: list[Figures]
    keep: list[Figures]
    strong_quality: float
    always_strong_cost: float


def _prefix_sums(rows: Sequence[Figures]) -> list[Figures]:
    sums: list[Figures] = [(0.0, 0.0, 0.0, 0.0)]
    for quality, cost, escalations, judged in rows:
        q, c, e, j = sums[-1]
        sums.append((q + quality, c + cost, e + escalations, j + judged))
    return sums


def outcomes(items: Sequence[Item], conf: Sequence[float], verdict_cost: Sequence[float], accuracy: float) -> Outcomes:
    """Each answer escalated, judged (a verdict right with probability ``accuracy``) or kept, as prefix sums over
    the answers ranked by confidence: a band's expected figures are then three differences."""
    order = sorted(range(len(items)), key=lambda i: conf[i])
    escalate, judge, keep = [], [], []
    for i in order:
        item = items[i]
        weak, strong = float(item.weak_correct), float(item.strong_correct)
        p_escalate = 1 - accuracy if item.weak_correct else accuracy  # a right answer kept, a wrong one escalated
        escalate.append((strong, item.cheap_cost_usd + item.strong_cost_usd, 1.0, 0.0))
        judge.append(
            (
                (1 - p_escalate) * weak + p_escalate * strong,
                item.cheap_cost_usd + verdict_cost[i] + p_escalate * item.strong_cost_usd,
                p_escalate,
                1.0,
            )
        )
        keep.append((weak, item.cheap_cost_usd, 0.0, 0.0))
    return Outcomes(
        [conf[i] for i in order],
        _prefix_sums(escalate),
        _prefix_sums(judge),
        _prefix_sums(keep),
        sum(item.strong_correct for item in items),
        sum(item.strong_cost_usd for item in items),
    )


def expected(set_: Outcomes, band: Band) -> Expected:
    """Escalate below the band, keep at or above it, let the judge decide inside it."""
    n = len(set_.ranked)
    low = bisect.bisect_left(set_.ranked, band.consult_from)
    high = max(low, bisect.bisect_left(set_.ranked, band.consult_below))
    quality, cost, escalated, judged = (
        set_.escalate[low][k] + set_.judge[high][k] - set_.judge[low][k] + set_.keep[n][k] - set_.keep[high][k]
        for k in range(4)
    )
    return Expected(quality / set_.strong_quality, escalated / n, judged / n, 1 - cost / set_.always_strong_cost)


def band_ends(ranked: Sequence[float], steps: int) -> list[float]:
    """Candidate band ends: the confidences' quantiles on a grid of ``steps``, plus one above every confidence."""
    ends = {ranked[round(k * (len(ranked) - 1) / steps)] for k in range(steps + 1)}
    return sorted(ends | {2.0})


def best_band(set_: Outcomes, *, judge: bool, steps: int, objective: str) -> tuple[Band, Expected]:
    """Among bands on the grid (empty ones only, when ``judge`` is False) keeping the quality target, the one
    with the most cost saved (``objective`` "cost") or the fewest escalations ("escalated")."""
    ends = band_ends(set_.ranked, steps)
    best: tuple[Band, Expected] | None = None
    for i, low in enumerate(ends):
        for high in ends[i:] if judge else (low,):
            band = Band(low, high)
            figures = expected(set_, band)
            if figures.quality_kept < QUALITY_TARGET - 1e-12:
                continue
            better = (
                figures.cost_saved > best[1].cost_saved + 1e-12
                if objective == "cost" and best is not None
                else best is None or figures.escalated < best[1].escalated - 1e-12
            )
            if better:
                best = (band, figures)
    assert best is not None, "escalating every answer keeps always-strong quality"
    return best


def _band(band: Band) -> dict[str, float]:
    return {"consult_from": round(band.consult_from, 4), "consult_below": round(min(band.consult_below, 1.0), 4)}


def run(data: Path, seed: int, train_limit: int | None, steps: int) -> dict[str, Any]:
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    prices = price_pair(policy)
    judge = policy.models[JUDGE_MODEL]
    splits: dict[str, tuple[list[Item], list[Item]]] = {}
    for set_name, paths in routellm_files(data).items():
        items, _ = read_rows(paths, prices)
        splits[set_name] = split(items, seed, set_name)
    learned = train_routers(splits, seed, train_limit)  # the router's held-out scores feed the cascade's confidence
    assert learned.cascade is not None
    train, test = splits[CASCADE_SET][0][:train_limit], splits[CASCADE_SET][1]
    answered = cascade_answers(train, learned.trained.held_out[CASCADE_SET])
    assert len(answered) == len(train), "every gsm8k row carries the weak model's answer"
    strength = float(learned.cascade.calibration["measured"]["strength"])
    halves = {
        "train": (train, held_out_confidences(answered, strength=strength, seed=seed)),
        "test": (test, confidences(test, learned.cascade, learned.router)),
    }
    costs = {name: [judge_cost(item, judge) for item in items] for name, (items, _) in halves.items()}
    rows: list[dict[str, Any]] = []
    for accuracy in (None, *ACCURACIES):
        sets = {name: outcomes(items, conf, costs[name], accuracy or 0.0) for name, (items, conf) in halves.items()}
        judged = accuracy is not None
        band, on_train = best_band(sets["train"], judge=judged, steps=steps, objective="cost")
        swept, at_95 = best_band(sets["test"], judge=judged, steps=steps, objective="escalated")
        rows.append(
            {
                "judge_accuracy": accuracy,
                "test_sweep": {"band": _band(swept), **at_95.as_dict()},
                "train_band": {
                    "band": _band(band),
                    "train": on_train.as_dict(),
                    "test": expected(sets["test"], band).as_dict(),
                },
            }
        )
    return {
        "data": str(data),
        "seed": seed,
        "train_limit": train_limit,
        "answers": {"train": len(train), "test": len(test)},
        "models": {"cheap": prices.cheap.key, "strong": prices.strong.key, "judge": judge.key},
        "quality_target": QUALITY_TARGET,
        "judge_model": "a verdict right with probability judge_accuracy, on right and wrong answers alike",
        "grid_steps": steps,
        "rows": rows,
    }


def print_table(report: dict[str, Any]) -> None:
    answers, models = report["answers"], report["models"]
    print(
        f"gsm8k cascade with a judge ({models['cheap']} -> {models['strong']}, judge {models['judge']}), "
        f"{answers['test']} test answers, expected values; target {report['quality_target']:.0%} of "
        "always-strong quality\n"
    )
    print(
        "| judge accuracy | strong calls at 95% (test sweep) | judged there | cost saved there "
        "| band chosen on train: escalated, quality kept, cost saved on test |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in report["rows"]:
        swept, chosen = row["test_sweep"], row["train_band"]["test"]
        accuracy = "no judge" if row["judge_accuracy"] is None else f"{row['judge_accuracy']:.0%}"
        print(
            f"| {accuracy} | {swept['escalated']:.1%} | {swept['judged']:.1%} | {swept['cost_saved']:.1%} | "
            f"{chosen['escalated']:.1%}, {chosen['quality_kept']:.1%}, {chosen['cost_saved']:.1%} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the routellm directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and of training")
    parser.add_argument("--train-limit", type=int, default=None, help="train on only the first N per set (smoke runs)")
    parser.add_argument("--steps", type=int, default=100, help="band ends on this grid of confidence quantiles")
    parser.add_argument("--out", type=Path, default=Path("cascade_judge.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = run(args.data, args.seed, args.train_limit, args.steps)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_table(report)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\n{report['seconds']:.1f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
