"""How well each router spends strong-model calls: quality kept against the share of prompts sent to the strong model.

Data: ../shared/datasets/routellm (RouteLLM's per-prompt outcomes; weak = Mixtral-8x7B-Instruct, strong =
gpt-4-1106-preview). Each set is split 50/50 by a seeded shuffle into train and test halves; every figure is on
the test half only. The routers here (heuristic, length, random, oracle) need no training, and no threshold is
calibrated: each curve sweeps the threshold, sending the top k% of prompts by score (k = 0..100) to the strong
model, so the train half is unused today; it is kept so learned routers score on the very same test prompts.

Per set and router it prints the share of strong calls needed to keep 95% of always-strong quality (linearly
interpolated between the 1% grid points, lower is better), APGR (RouteLLM's average performance gap recovered:
the trapezoidal area under PGR = (quality - weak) / (strong - weak) over the strong-call share in [0, 1];
random = 0.5) and the cost saved at 95% quality against always-strong, priced with the default policy's
cheap/strong pair (the ``fast`` route's primary, nova-micro, and the ``deep`` route's, claude-sonnet-4-5).
Tokens: input = ceil(chars / 4); output = each model's own response length / 4 on gsm8k (which carries the
responses), a flat 300 on mmlu.

    python benchmarks/routing_quality.py [--data DIR] [--seed 0] [--limit N] [--out routing_quality.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambdas.router.classifier import classify, estimate_tokens  # noqa: E402
from lambdas.router.policy import DEFAULT_POLICY_PATH, ComplexityRules, ModelSpec, load_policy_file  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "routellm"
WEAK_COLUMN = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_COLUMN = "gpt-4-1106-preview"
CHEAP_ROUTE = "fast"
STRONG_ROUTE = "deep"
FLAT_OUTPUT_TOKENS = 300
QUALITY_TARGET = 0.95
GRID_PERCENT = range(101)
ROUTERS = ("heuristic", "length", "random", "oracle")


class Item(NamedTuple):
    prompt: str
    weak_correct: bool
    strong_correct: bool
    cheap_cost_usd: float
    strong_cost_usd: float


class PricePair(NamedTuple):
    cheap: ModelSpec
    strong: ModelSpec


def _bool(value: str, where: str) -> bool:
    if value == "True":
        return True
    if value == "False":
        return False
    raise ValueError(f"{where}: expected 'True' or 'False', got {value!r}")


def _output_tokens(row: dict[str, str], column: str) -> tuple[int, bool]:
    response = row.get(f"{column}_response")
    if response is None:
        return FLAT_OUTPUT_TOKENS, False
    return estimate_tokens(len(response)), True


def read_rows(paths: Sequence[Path], prices: PricePair) -> tuple[list[Item], str]:
    """Read RouteLLM outcome CSVs into items; also say where output token counts came from."""
    items: list[Item] = []
    from_responses: set[bool] = set()
    for path in paths:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"prompt", WEAK_COLUMN, STRONG_COLUMN} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                where = f"{path.name}:{line}"
                input_tokens = estimate_tokens(len(row["prompt"]))
                cheap_out, cheap_measured = _output_tokens(row, WEAK_COLUMN)
                strong_out, strong_measured = _output_tokens(row, STRONG_COLUMN)
                from_responses.update((cheap_measured, strong_measured))
                items.append(
                    Item(
                        prompt=row["prompt"],
                        weak_correct=_bool(row[WEAK_COLUMN], where),
                        strong_correct=_bool(row[STRONG_COLUMN], where),
                        cheap_cost_usd=prices.cheap.cost_usd(input_tokens, cheap_out),
                        strong_cost_usd=prices.strong.cost_usd(input_tokens, strong_out),
                    )
                )
    if from_responses == {True}:
        source = "each model's response length / 4"
    elif from_responses == {False}:
        source = f"flat {FLAT_OUTPUT_TOKENS}"
    else:
        source = f"response length / 4 where present, else flat {FLAT_OUTPUT_TOKENS}"
    return items, source


def dataset_files(data: Path) -> dict[str, list[Path]]:
    """The CSV files of each set; fails clearly when the data directory is absent or incomplete."""
    sets = {
        "gsm8k": [data / "gsm8k" / "gsm8k_responses.csv"],
        "mmlu": sorted((data / "mmlu").glob("*.csv")),
    }
    for name, paths in sets.items():
        if not paths or not all(p.is_file() for p in paths):
            raise FileNotFoundError(
                f"routellm data for {name!r} not found under {data} (expected ../shared/datasets/routellm beside "
                "the repository, or pass --data DIR)"
            )
    return sets


def split(items: Sequence[Item], seed: int, set_name: str) -> tuple[list[Item], list[Item]]:
    """A fixed 50/50 train/test split by a seeded shuffle (string seeds are stable across runs and platforms)."""
    order = list(range(len(items)))
    random.Random(f"{seed}:split:{set_name}").shuffle(order)
    half = len(order) // 2
    return [items[i] for i in order[:half]], [items[i] for i in order[half:]]


def router_scores(name: str, items: Sequence[Item], rules: ComplexityRules, seed: int, set_name: str) -> list[float]:
    """One score per prompt; higher means the prompt should go to the strong model."""
    if name == "heuristic":
        return [classify(item.prompt, rules).score for item in items]
    if name == "length":
        return [float(len(item.prompt)) for item in items]
    if name == "random":
        rng = random.Random(f"{seed}:random:{set_name}")
        return [rng.random() for _ in items]
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


def evaluate(items: Sequence[Item], scores: Sequence[float]) -> dict[str, Any]:
    """The quality/cost curve of routing the top k% by score to the strong model, and its summary figures.

    Ties in score keep the items' order, which is the seeded shuffle of the split: deterministic, and unbiased.
    """
    n = len(items)
    order = sorted(range(n), key=lambda i: -scores[i])  # stable: ties keep split order
    weak_quality = sum(item.weak_correct for item in items) / n
    strong_quality = sum(item.strong_correct for item in items) / n
    cheap_cost = sum(item.cheap_cost_usd for item in items)
    strong_cost = sum(item.strong_cost_usd for item in items)
    gap = strong_quality - weak_quality

    gain = [0]  # prefix sums over the routing order: extra correct answers and extra cost from the strong model
    extra_cost = [0.0]
    for i in order:
        item = items[i]
        gain.append(gain[-1] + int(item.strong_correct) - int(item.weak_correct))
        extra_cost.append(extra_cost[-1] + item.strong_cost_usd - item.cheap_cost_usd)

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
    first = next(i for i, q in enumerate(qualities) if q >= target)
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


def benchmark_set(
    set_name: str, items: Sequence[Item], rules: ComplexityRules, seed: int, limit: int | None
) -> dict[str, Any]:
    train, test = split(items, seed, set_name)
    if limit is not None:
        test = test[:limit]
    if not test:
        raise ValueError(f"{set_name}: the test split is empty")
    result: dict[str, Any] = {
        "prompts": len(items),
        "train_prompts": len(train),
        "test_prompts": len(test),
        "weak_quality": sum(item.weak_correct for item in test) / len(test),
        "strong_quality": sum(item.strong_correct for item in test) / len(test),
        "always_weak_cost_usd": sum(item.cheap_cost_usd for item in test),
        "always_strong_cost_usd": sum(item.strong_cost_usd for item in test),
        "routers": {},
    }
    for router in ROUTERS:
        started = time.perf_counter()
        scores = router_scores(router, test, rules, seed, set_name)
        figures = evaluate(test, scores)
        figures["seconds"] = time.perf_counter() - started
        result["routers"][router] = figures
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def print_table(set_name: str, result: dict[str, Any], output_source: str) -> None:
    print(
        f"\n{set_name}: {result['test_prompts']:,} test prompts (of {result['prompts']:,}); "
        f"always-strong quality {result['strong_quality']:.1%}, always-weak {result['weak_quality']:.1%} "
        f"({result['weak_quality'] / result['strong_quality']:.1%} kept); output tokens: {output_source}"
    )
    print(f"| {'router':<10} | strong calls at 95% | APGR  | cost saved at 95% |")
    print(f"| {'-' * 10} | {'-' * 19} | {'-' * 5} | {'-' * 17} |")
    for router, figures in result["routers"].items():
        apgr = "n/a" if figures["apgr"] is None else f"{figures['apgr']:.3f}"
        print(
            f"| {router:<10} | {_pct(figures['strong_share_at_95']):>19} | {apgr:>5} | "
            f"{_pct(figures['cost_saved_at_95']):>17} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the routellm directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and the random router")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N test prompts per set")
    parser.add_argument("--out", type=Path, default=Path("routing_quality.json"), help="where to write the figures")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    prices = PricePair(
        cheap=policy.models[policy.routes[CHEAP_ROUTE].candidates[0].model],
        strong=policy.models[policy.routes[STRONG_ROUTE].candidates[0].model],
    )
    report: dict[str, Any] = {
        "data": str(args.data),
        "seed": args.seed,
        "limit": args.limit,
        "split": "50/50 train/test by a seeded shuffle per set; figures on the test half only",
        "calibration": "none: curves sweep the threshold (top k% by score to strong, k = 0..100)",
        "quality_target": QUALITY_TARGET,
        "policy_version": policy.version,
        "cheap_model": {"route": CHEAP_ROUTE, "model": prices.cheap.key, "model_id": prices.cheap.model_id},
        "strong_model": {"route": STRONG_ROUTE, "model": prices.strong.key, "model_id": prices.strong.model_id},
        "weak_column": WEAK_COLUMN,
        "strong_column": STRONG_COLUMN,
        "sets": {},
    }
    for set_name, paths in dataset_files(args.data).items():
        items, output_source = read_rows(paths, prices)
        result = benchmark_set(set_name, items, policy.complexity, args.seed, args.limit)
        result["output_tokens"] = output_source
        report["sets"][set_name] = result
        print_table(set_name, result, output_source)
    report["seconds"] = time.perf_counter() - started
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\n{report['seconds']:.1f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
