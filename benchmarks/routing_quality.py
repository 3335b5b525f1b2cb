"""How well each router spends strong-model calls: quality kept against the share of prompts sent to the strong model.

Data: ../shared/datasets/routellm (RouteLLM's per-prompt outcomes; weak = Mixtral-8x7B-Instruct, strong =
gpt-4-1106-preview). Each set is split 50/50 by a seeded shuffle into train and test halves; every figure is on
the test half only. Routers:

- heuristic (the keyword classifier's score), length (prompt characters), random (the expected curve of random
  routing, a straight line), oracle (strong only where it alone is right);
- learned: the learned pre-call router trained by ``routed_bedrock.learning`` on the train halves of both sets
  (with this seed), scored on the test halves;
- cascade (gsm8k only, the set that carries answers): the cheap model answers every prompt; answers are
  escalated in order of least confidence (``lambdas/router/cascade.py``, weights fitted on the train half's
  answers with held-out prompt scores). Its cost always includes the cheap call.

Each curve sweeps the threshold (top k% by score to the strong model, k = 0..100). Separately, "at the shipped
thresholds" scores the default policy's own calibrated operating points (the learned router's complex
threshold; the math-cascade route's escalation threshold) on the test halves: thresholds are chosen on the
train half only, so this is what a user of the default policy gets on unseen prompts of these kinds.

Per set and router it prints the share of strong calls needed to keep 95% of always-strong quality (linearly
interpolated between the 1% grid points, lower is better), APGR (RouteLLM's average performance gap recovered:
the trapezoidal area under PGR = (quality - weak) / (strong - weak) over the strong-call share in [0, 1];
random = 0.5) and the cost saved at 95% quality against always-strong, priced with the default policy's
cheap/strong pair (the ``fast`` route's primary, nova-micro, and the ``deep`` route's, claude-sonnet-4-5).
Tokens: input = ceil(chars / 4); output = each model's own response length / 4 on gsm8k (which carries the
responses), a flat 300 on mmlu.

Uncertainty: the test halves are samples (660 gsm8k prompts move a share by several points), so each share comes
with a 95% bootstrap interval (``--bootstrap`` resamples of the test half, drawn with replacement, seeded; the
same resamples for every router), and the share of resamples on which the learned router needs fewer strong
calls than prompt length alone.

    python benchmarks/routing_quality.py [--data DIR] [--seed 0] [--limit N] [--train-limit N] [--bootstrap 200]
                                         [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambdas.router.cascade import compile_confidence  # noqa: E402
from lambdas.router.classifier import classify, estimate_tokens  # noqa: E402
from lambdas.router.learned import LearnedRouter, compile_learned  # noqa: E402
from lambdas.router.policy import (  # noqa: E402
    DEFAULT_POLICY_PATH,
    CascadeSettings,
    ComplexityRules,
    ModelSpec,
    Policy,
    load_policy_file,
)
from routed_bedrock.cascade_training import train_cascade  # noqa: E402
from routed_bedrock.learning import (  # noqa: E402
    Hyper,
    Trained,
    policy_section,
    train_router,
)
from routed_bedrock.outcome_data import (  # noqa: E402
    STRONG_COLUMN,
    WEAK_COLUMN,
    Answered,
    Labelled,
    read_routellm,
    routellm_files,
    routellm_labelled,
    split,
)

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "routellm"
CHEAP_ROUTE = "fast"
STRONG_ROUTE = "deep"
CASCADE_ROUTE = "math-cascade"
CASCADE_SET = "gsm8k"
FLAT_OUTPUT_TOKENS = 300
QUALITY_TARGET = 0.95
GRID_PERCENT = range(101)
ROUTERS = ("heuristic", "length", "random", "oracle", "learned")
BOOTSTRAP_ROUTERS = ("heuristic", "length", "learned", "cascade")  # random's curve is analytic; the oracle's exact
DEFAULT_RESAMPLES = 200


class Item(NamedTuple):
    prompt: str
    weak_correct: bool
    strong_correct: bool
    cheap_cost_usd: float
    strong_cost_usd: float
    weak_answer: str | None = None
    group: str | None = None  # the mmlu subject (its file): training may use it, routing never sees it


class PricePair(NamedTuple):
    cheap: ModelSpec
    strong: ModelSpec


def price_pair(policy: Policy) -> PricePair:
    """The cheap/strong pair costs are priced with: the ``fast`` and ``deep`` routes' primaries."""
    return PricePair(
        cheap=policy.models[policy.routes[CHEAP_ROUTE].candidates[0].model],
        strong=policy.models[policy.routes[STRONG_ROUTE].candidates[0].model],
    )


def _output_tokens(row: dict[str, str], column: str) -> tuple[int, bool]:
    response = row.get(f"{column}_response")
    if response is None:
        return FLAT_OUTPUT_TOKENS, False
    return estimate_tokens(len(response)), True


def read_rows(paths: Sequence[Path], prices: PricePair) -> tuple[list[Item], str]:
    """RouteLLM outcome rows (``outcome_data``'s reader: the trainer's) as priced items; and where output token
    counts came from."""
    items: list[Item] = []
    from_responses: set[bool] = set()
    rows = read_routellm(paths)
    for row, outcome in zip(rows, routellm_labelled(rows), strict=True):
        input_tokens = estimate_tokens(len(row["prompt"]))
        cheap_out, cheap_measured = _output_tokens(row, WEAK_COLUMN)
        strong_out, strong_measured = _output_tokens(row, STRONG_COLUMN)
        from_responses.update((cheap_measured, strong_measured))
        items.append(
            Item(
                prompt=row["prompt"],
                weak_correct=outcome.weak == 1.0,
                strong_correct=outcome.strong == 1.0,
                cheap_cost_usd=prices.cheap.cost_usd(input_tokens, cheap_out),
                strong_cost_usd=prices.strong.cost_usd(input_tokens, strong_out),
                weak_answer=row.get(f"{WEAK_COLUMN}_response"),
                group=outcome.group,
            )
        )
    if from_responses == {True}:
        source = "each model's response length / 4"
    elif from_responses == {False}:
        source = f"flat {FLAT_OUTPUT_TOKENS}"
    else:
        source = f"response length / 4 where present, else flat {FLAT_OUTPUT_TOKENS}"
    return items, source


def labelled(items: Sequence[Item]) -> list[Labelled]:
    return [Labelled(item.prompt, float(item.weak_correct), float(item.strong_correct), item.group) for item in items]


def router_scores(name: str, items: Sequence[Item], rules: ComplexityRules) -> list[float]:
    """One score per prompt; higher means the prompt should go to the strong model."""
    if name == "heuristic":
        return [classify(item.prompt, rules._replace(learned=None)).score for item in items]
    if name == "length":
        return [float(len(item.prompt)) for item in items]
    if name == "oracle":
        # The standard oracle: the strong model only where it alone is right.
        return [1.0 if item.strong_correct and not item.weak_correct else 0.0 for item in items]
    raise ValueError(f"unknown router {name!r}")


def _interpolate(xs: Sequence[float], ys: Sequence[float], i: int, target: float) -> float:
    """x where the segment from point i-1 to point i reaches ``target`` on y."""
    if i == 0 or ys[i] == ys[i - 1]:
        return xs[i]
    fraction = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
    return xs[i - 1] + fraction * (xs[i] - xs[i - 1])


def evaluate(items: Sequence[Item], scores: Sequence[float] | None, *, cascade: bool = False) -> dict[str, Any]:
    """The quality/cost curve of routing the top k% by score to the strong model, and its summary figures.

    ``scores`` None gives the expected curve of random routing (every prompt equally likely to go strong).
    ``cascade`` counts the cheap call on every prompt: escalating adds the strong call's whole cost.
    Ties in score keep the items' order, which is the seeded shuffle of the split: deterministic, and unbiased.
    """
    n = len(items)
    weak_quality = sum(item.weak_correct for item in items) / n
    strong_quality = sum(item.strong_correct for item in items) / n
    cheap_cost = sum(item.cheap_cost_usd for item in items)
    strong_cost = sum(item.strong_cost_usd for item in items)
    gap = strong_quality - weak_quality

    def step_cost(item: Item) -> float:
        return item.strong_cost_usd if cascade else item.strong_cost_usd - item.cheap_cost_usd

    gain: list[float] = [0.0]  # prefix sums over the routing order: extra correct answers, extra cost
    extra_cost = [0.0]
    if scores is None:
        total_gain = sum(int(item.strong_correct) - int(item.weak_correct) for item in items)
        total_extra = sum(step_cost(item) for item in items)
        for m in range(1, n + 1):
            gain.append(total_gain * m / n)
            extra_cost.append(total_extra * m / n)
    else:
        for i in sorted(range(n), key=lambda i: -scores[i]):  # stable: ties keep split order
            item = items[i]
            gain.append(gain[-1] + int(item.strong_correct) - int(item.weak_correct))
            extra_cost.append(extra_cost[-1] + step_cost(item))

    curve: list[dict[str, Any]] = []
    for k in GRID_PERCENT:
        m = round(k * n / 100)
        quality = weak_quality + gain[m] / n
        curve.append(
            {
                "percent": k,
                "strong_calls": m,
                "strong_share": m / n,
                "quality": quality,
                "quality_kept": quality / strong_quality if strong_quality else None,
                "pgr": (quality - weak_quality) / gap if gap else None,
                "cost_usd": cheap_cost + extra_cost[m],
            }
        )

    shares = [point["strong_share"] for point in curve]
    qualities = [point["quality"] for point in curve]
    costs = [point["cost_usd"] for point in curve]
    target = QUALITY_TARGET * strong_quality
    # The first grid point reaching the target always exists: at 100% quality equals strong quality.
    first = next(i for i, q in enumerate(qualities) if q >= target - 1e-12)
    share_at_target = _interpolate(shares, qualities, first, target)
    if first == 0 or qualities[first] == qualities[first - 1]:
        cost_at_target = costs[first]
    else:
        fraction = (target - qualities[first - 1]) / (qualities[first] - qualities[first - 1])
        cost_at_target = costs[first - 1] + fraction * (costs[first] - costs[first - 1])

    apgr: float | None = None
    if gap:
        pgrs = [(q - weak_quality) / gap for q in qualities]
        apgr = sum((shares[i] - shares[i - 1]) * (pgrs[i] + pgrs[i - 1]) / 2 for i in range(1, len(shares)))
    return {
        "strong_share_at_95": share_at_target,
        "apgr": apgr,
        "cost_saved_at_95": 1 - cost_at_target / strong_cost if strong_cost else None,
        "cost_usd_at_95": cost_at_target,
        "curve": curve,
    }


def operating_point(items: Sequence[Item], strong: Sequence[bool], *, cascade: bool = False) -> dict[str, float]:
    """Quality kept, strong-call share and cost saved when exactly the ``strong`` prompts go to the strong model."""
    strong_quality = sum(item.strong_correct for item in items)
    quality = sum(item.strong_correct if s else item.weak_correct for item, s in zip(items, strong, strict=True))
    cost = sum(
        (item.strong_cost_usd + (item.cheap_cost_usd if cascade else 0.0)) if s else item.cheap_cost_usd
        for item, s in zip(items, strong, strict=True)
    )
    return {
        "strong_share": sum(strong) / len(items),
        "quality_kept": quality / strong_quality if strong_quality else 0.0,
        "cost_saved": 1 - cost / sum(item.strong_cost_usd for item in items),
    }


class Learned(NamedTuple):
    """The routers trained for this run (on the train halves only)."""

    router: LearnedRouter
    cascade: CascadeSettings | None
    trained: Trained


def cascade_answers(items: Sequence[Item], prompt_scores: Sequence[float]) -> list[Answered]:
    """The items' weak answers as the cascade trains on them (with the router's held-out prompt scores)."""
    return [
        Answered(item.prompt, item.weak_answer, "end_turn", score, float(item.weak_correct), float(item.strong_correct))
        for item, score in zip(items, prompt_scores, strict=True)
        if item.weak_answer is not None
    ]


def train_routers(splits: dict[str, tuple[list[Item], list[Item]]], seed: int, train_limit: int | None) -> Learned:
    """Train the learned router on every set's train half and the cascade on the answer-carrying set's."""
    train = {name: labelled(halves[0][:train_limit]) for name, halves in splits.items()}
    trained = train_router(train, seed=seed)
    hyper = Hyper()
    router = compile_learned(policy_section(trained, hyper, seed=seed, source="benchmark", trained_at="-"))
    cascade: CascadeSettings | None = None
    if CASCADE_SET in splits:
        answered = cascade_answers(splits[CASCADE_SET][0][:train_limit], trained.held_out[CASCADE_SET])
        if answered:
            fitted = train_cascade(answered, target=QUALITY_TARGET, seed=seed)
            confidence = compile_confidence(fitted["confidence"])
            cascade = CascadeSettings(fitted["threshold"], confidence, fitted["calibration"])
    return Learned(router, cascade, trained)


def confidences(items: Sequence[Item], cascade: CascadeSettings, router: LearnedRouter | None) -> list[float]:
    """The cascade's confidence in each item's weak answer (the prompt scored by ``router`` when given)."""
    return [
        cascade.confidence.score(
            item.prompt, item.weak_answer or "", "end_turn", router.score(item.prompt) if router else None
        ).value
        for item in items
    ]


def shipped_points(policy: Policy, test: Sequence[Item], set_name: str) -> dict[str, Any]:
    """The default policy's own thresholds (chosen on the train half) applied to this set's test half."""
    points: dict[str, Any] = {}
    learned = policy.complexity.learned
    if learned is not None:
        scores = [learned.score(item.prompt) for item in test]
        points["learned_complex"] = {
            "threshold": learned.complex_at,
            **operating_point(test, [score >= learned.complex_at for score in scores]),
        }
        points["learned_complex_or_moderate"] = {
            "threshold": learned.moderate_at,
            **operating_point(test, [score >= learned.moderate_at for score in scores]),
        }
    route = policy.routes.get(CASCADE_ROUTE)
    if route is not None and route.cascade is not None and all(item.weak_answer is not None for item in test):
        values = confidences(test, route.cascade, learned)
        points["cascade"] = {
            "threshold": route.cascade.threshold,
            **operating_point(test, [value < route.cascade.threshold for value in values], cascade=True),
        }
    return points


def resamples_of(n: int, count: int, seed: int, set_name: str) -> list[list[int]]:
    """``count`` bootstrap resamples of n test prompts (indices drawn with replacement), seeded per set."""
    rng = random.Random(f"{seed}:bootstrap:{set_name}")
    return [[rng.randrange(n) for _ in range(n)] for _ in range(count)]


def bootstrap_shares(
    items: Sequence[Item], scores: Sequence[float], resamples: Sequence[Sequence[int]], *, cascade: bool = False
) -> list[float]:
    """The strong-call share at 95% quality on each resample (the same resamples for every router: paired)."""
    return [
        evaluate([items[i] for i in picks], [scores[i] for i in picks], cascade=cascade)["strong_share_at_95"]
        for picks in resamples
    ]


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def uncertainty(
    test: Sequence[Item], scored: dict[str, tuple[list[float], bool]], resamples: Sequence[Sequence[int]]
) -> dict[str, Any]:
    """Per router, a 95% bootstrap interval of its strong-call share at 95% quality; and, paired on the same
    resamples, how often the learned router needs fewer strong calls than prompt length alone."""
    shares = {
        name: bootstrap_shares(test, scores, resamples, cascade=cascade) for name, (scores, cascade) in scored.items()
    }
    report: dict[str, Any] = {
        "resamples": len(resamples),
        "strong_share_at_95_ci": {
            name: [_percentile(values, 2.5), _percentile(values, 97.5)] for name, values in shares.items()
        },
    }
    if "learned" in shares and "length" in shares:
        wins = sum(a < b for a, b in zip(shares["learned"], shares["length"], strict=True))
        report["learned_beats_length"] = wins / len(resamples)
    return report


def benchmark_set(
    set_name: str,
    train: Sequence[Item],
    test: Sequence[Item],
    *,
    policy: Policy,
    learned: Learned,
    shipped: bool,
    resamples: Sequence[Sequence[int]] = (),
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "train_prompts": len(train),
        "test_prompts": len(test),
        "weak_quality": sum(item.weak_correct for item in test) / len(test),
        "strong_quality": sum(item.strong_correct for item in test) / len(test),
        "always_weak_cost_usd": sum(item.cheap_cost_usd for item in test),
        "always_strong_cost_usd": sum(item.strong_cost_usd for item in test),
        "routers": {},
    }
    scored: dict[str, tuple[list[float], bool]] = {}  # what the bootstrap resamples: scores, and whether a cascade
    for router in ROUTERS:
        started = time.perf_counter()
        if router == "random":
            figures = evaluate(test, None)
        else:
            if router == "learned":
                scores = [learned.router.score(item.prompt) for item in test]
            else:
                scores = router_scores(router, test, policy.complexity)
            figures = evaluate(test, scores)
            scored[router] = (scores, False)
        figures["seconds"] = time.perf_counter() - started
        result["routers"][router] = figures
    if learned.cascade is not None and all(item.weak_answer is not None for item in test):
        started = time.perf_counter()
        doubts = [-value for value in confidences(test, learned.cascade, learned.router)]
        figures = evaluate(test, doubts, cascade=True)
        figures["seconds"] = time.perf_counter() - started
        result["routers"]["cascade"] = figures
        scored["cascade"] = (doubts, True)
    if resamples:
        result["uncertainty"] = uncertainty(
            test, {name: scored[name] for name in BOOTSTRAP_ROUTERS if name in scored}, resamples
        )
    if shipped:
        result["shipped"] = shipped_points(policy, test, set_name)
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def print_table(set_name: str, result: dict[str, Any], output_source: str) -> None:
    print(
        f"\n{set_name}: {result['test_prompts']:,} test prompts ({result['train_prompts']:,} train); "
        f"always-strong quality {result['strong_quality']:.1%}, always-weak {result['weak_quality']:.1%} "
        f"({result['weak_quality'] / result['strong_quality']:.1%} kept); output tokens: {output_source}"
    )
    oracle = result["routers"]["oracle"]["strong_share_at_95"]
    intervals = result.get("uncertainty", {}).get("strong_share_at_95_ci", {})
    print(f"| {'router':<10} | strong calls at 95% | 95% interval  | vs oracle | APGR  | cost saved at 95% |")
    print(f"| {'-' * 10} | {'-' * 19} | {'-' * 13} | {'-' * 9} | {'-' * 5} | {'-' * 17} |")
    for router, figures in result["routers"].items():
        apgr = "n/a" if figures["apgr"] is None else f"{figures['apgr']:.3f}"
        gap = figures["strong_share_at_95"] - oracle
        low, high = intervals.get(router, (None, None))
        interval = "" if low is None else f"{low:.1%}-{high:.1%}"
        print(
            f"| {router:<10} | {_pct(figures['strong_share_at_95']):>19} | {interval:>13} | {gap * 100:+8.1f}p | "
            f"{apgr:>5} | {_pct(figures['cost_saved_at_95']):>17} |"
        )
    if "learned_beats_length" in result.get("uncertainty", {}):
        figures = result["uncertainty"]
        print(
            f"  learned needs fewer strong calls than length alone on {figures['learned_beats_length']:.0%} of "
            f"{figures['resamples']} bootstrap resamples of the test half"
        )
    for name, point in result.get("shipped", {}).items():
        print(
            f"  shipped {name} (threshold {point['threshold']:.4f}): strong calls {point['strong_share']:.1%}, "
            f"quality kept {point['quality_kept']:.1%}, cost saved {point['cost_saved']:.1%}"
        )


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the routellm directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and of training")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N test prompts per set")
    parser.add_argument("--train-limit", type=int, default=None, help="train on only the first N per set (smoke runs)")
    parser.add_argument("--out", type=Path, default=Path("routing_quality.json"), help="where to write the figures")
    parser.add_argument(
        "--bootstrap",
        type=_count,
        default=DEFAULT_RESAMPLES,
        metavar="N",
        help=f"bootstrap resamples of each test half for the 95%% intervals (default {DEFAULT_RESAMPLES}; 0: none)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    prices = price_pair(policy)
    learned_meta = policy.complexity.learned.trained if policy.complexity.learned is not None else {}
    shipped = learned_meta.get("seed") == args.seed and args.train_limit is None
    report: dict[str, Any] = {
        "data": str(args.data),
        "seed": args.seed,
        "limit": args.limit,
        "train_limit": args.train_limit,
        "split": "50/50 train/test by a seeded shuffle per set; figures on the test half only",
        "calibration": "curves sweep the threshold (top k% by score to strong, k = 0..100); learned routers are "
        "trained, and shipped thresholds chosen, on the train halves only",
        "quality_target": QUALITY_TARGET,
        "policy_version": policy.version,
        "cheap_model": {"route": CHEAP_ROUTE, "model": prices.cheap.key, "model_id": prices.cheap.model_id},
        "strong_model": {"route": STRONG_ROUTE, "model": prices.strong.key, "model_id": prices.strong.model_id},
        "weak_column": WEAK_COLUMN,
        "strong_column": STRONG_COLUMN,
        "sets": {},
    }
    splits: dict[str, tuple[list[Item], list[Item]]] = {}
    sources: dict[str, str] = {}
    for set_name, paths in routellm_files(args.data).items():
        items, sources[set_name] = read_rows(paths, prices)
        splits[set_name] = split(items, args.seed, set_name)
    training_started = time.perf_counter()
    learned = train_routers(splits, args.seed, args.train_limit)
    report["training_seconds"] = time.perf_counter() - training_started
    for set_name, (train, whole_test) in splits.items():
        test = whole_test[: args.limit] if args.limit is not None else whole_test
        if not test:
            raise ValueError(f"{set_name}: the test split is empty")
        result = benchmark_set(
            set_name,
            train[: args.train_limit],
            test,
            policy=policy,
            learned=learned,
            shipped=shipped,
            resamples=resamples_of(len(test), args.bootstrap, args.seed, set_name),
        )
        result["prompts"] = len(train) + len(whole_test)
        result["output_tokens"] = sources[set_name]
        report["sets"][set_name] = result
        print_table(set_name, result, sources[set_name])
    if not shipped:
        print("\n(shipped thresholds not scored: the default policy's router was trained on another split or subset)")
    report["seconds"] = time.perf_counter() - started
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\n{report['seconds']:.1f} s (training {report['training_seconds']:.1f} s); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
