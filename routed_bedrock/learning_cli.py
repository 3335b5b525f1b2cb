"""``routed-bedrock train`` and ``routed-bedrock score``: the learned router's command line.

    routed-bedrock train --policy IN --out OUT [--data DIR | --outcomes FILE --weak M --strong M]
                         [--seed 0] [--target 0.95] [--moderate-target 0.98] [--hash-bits 14] [--trained-at DATE]
    routed-bedrock score --policy FILE PROMPTS.jsonl [--tier T] [--use-case U] [--explain] [--out FILE]

``train`` writes OUT: the policy IN with ``rules.complexity.learned`` replaced by a router trained on the
train halves of the data and calibrated to the targets (exit 0), after checking OUT is a valid policy.
``score`` writes one JSON line per input line ``{"id": ..., "prompt": ...}``: ``id``, ``score`` (higher
means the prompt needs a stronger model), ``class``, ``route``, ``model`` (what the policy would call first)
and, with ``--explain``, the signals behind the score. Both exit 2 on bad usage, a bad policy or a bad input
line (named by its line number; nothing is written then).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lambdas.router.engine import RoutingError, RoutingRequest, decide
from lambdas.router.policy import Policy, PolicyError, compile_policy, load_policy_file
from routed_bedrock.cli_support import fail, share
from routed_bedrock.outcome_data import (
    Labelled,
    TrainingError,
    read_outcomes,
    read_routellm,
    routellm_answers,
    routellm_files,
    routellm_labelled,
    split,
)

if TYPE_CHECKING:
    from routed_bedrock.learning import Trained

DEFAULT_HASH_BITS = 14  # learning.Hyper's default (that module needs scikit-learn, which only training does)
TRAINING_EXTRA = "routed-bedrock-endpoint[train]"
TRAINING_LIBRARIES = ("sklearn", "scipy", "numpy")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "routellm"
MAX_PROMPT_CHARS = 400_000


def register(commands: Any) -> None:
    """Add the ``train`` and ``score`` subcommands to the CLI's subparsers."""
    train = commands.add_parser(
        "train",
        help="train the learned router on labelled outcomes and write it into a policy",
        description="Fit the learned pre-call router on the train half of each set (seeded 50/50 split), "
        "calibrate its thresholds on held-out folds to keep the target share of always-strong quality, and "
        "write the policy with rules.complexity.learned set.",
    )
    train.add_argument("--policy", type=Path, required=True, metavar="IN", help="the policy to start from")
    train.add_argument("--out", type=Path, required=True, metavar="OUT", help="where to write the new policy")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, metavar="DIR", help=f"RouteLLM outcome files (default {DEFAULT_DATA})")
    source.add_argument("--outcomes", type=Path, metavar="FILE", help="the evaluator's outcomes.jsonl")
    train.add_argument("--weak", metavar="MODEL", help="with --outcomes: the cheap model's catalog key")
    train.add_argument("--strong", metavar="MODEL", help="with --outcomes: the strong model's catalog key")
    train.add_argument("--seed", type=int, default=0, help="seed of the split and of training (default 0)")
    train.add_argument("--target", type=share, default=0.95, help="quality kept at the complex threshold")
    train.add_argument("--moderate-target", type=share, default=0.98, help="quality kept at the moderate threshold")
    train.add_argument("--hash-bits", type=int, choices=range(8, 17), default=DEFAULT_HASH_BITS, metavar="8..16")
    train.add_argument("--trained-at", default=None, metavar="DATE", help="date recorded in the policy (default today)")
    train.add_argument(
        "--cascade-target",
        type=share,
        default=0.96,
        help="quality kept on held-out answers at the cascade's threshold (default 0.96: 0.95 plus a margin for "
        "the sampling error of ~660 answers, which moved a 0.95 calibration to 93%% on the test half)",
    )
    train.add_argument(
        "--cascade-route",
        metavar="ROUTE",
        help="also fit this route's cascade (answer confidence and escalation threshold) on the gsm8k answers of "
        "the RouteLLM data, to keep --cascade-target quality with the cheap call always paid; the route must list its "
        "candidates cheapest first",
    )
    train.set_defaults(run=_train)

    score = commands.add_parser(
        "score",
        help="score prompts with a policy's router: score, class, route and first model per prompt",
        description='Read JSONL lines {"id": ..., "prompt": ...} and write one JSON line per prompt with the '
        "router's score, class, route and the model the policy would call first.",
    )
    score.add_argument("--policy", type=Path, required=True, metavar="FILE", help="routing policy JSON file")
    score.add_argument("prompts", type=Path, metavar="PROMPTS.jsonl")
    score.add_argument("--tier", default=None, help="user tier to route for (default: the policy's)")
    score.add_argument("--use-case", default=None, help="task label to route for (default: the policy's)")
    score.add_argument("--explain", action="store_true", help="add the signals behind each score")
    score.add_argument("--out", type=Path, default=None, metavar="FILE", help="write here instead of stdout")
    score.set_defaults(run=_score)


def training_sets(args: argparse.Namespace) -> tuple[dict[str, list[Labelled]], str]:
    """The train halves of the chosen data, and a description of where they came from."""
    if args.outcomes is not None:
        if args.cascade_route:
            raise TrainingError("--cascade-route needs the RouteLLM data (its gsm8k file carries the answers)")
        if not args.weak or not args.strong:
            raise TrainingError("--outcomes needs --weak and --strong (catalog keys of the two models compared)")
        everything = read_outcomes(args.outcomes, args.weak, args.strong)
        source = f"evaluator outcomes {args.outcomes.name} ({args.weak} vs {args.strong})"
    else:
        data = args.data or DEFAULT_DATA
        try:
            files = routellm_files(data)
        except FileNotFoundError as exc:
            raise TrainingError(str(exc)) from None
        everything = {name: routellm_labelled(read_routellm(paths)) for name, paths in files.items()}
        source = "RouteLLM outcomes (lm-sys/RouteLLM 0b64fdaf): gsm8k, mmlu; Mixtral-8x7B vs GPT-4"
    return {name: split(items, args.seed, name)[0] for name, items in everything.items()}, source


def _train(args: argparse.Namespace) -> int:
    try:  # only training needs scikit-learn: score, evaluate and preflight run without it
        from routed_bedrock.learning import Hyper, policy_section, train_router
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in TRAINING_LIBRARIES:
            raise
        missing = f"training needs scikit-learn ({exc.name} is not installed)"
        return fail("train", f"{missing}: pip install '{TRAINING_EXTRA}'")
    try:
        base = load_policy_file(args.policy)
        sets, source = training_sets(args)
        hyper = Hyper(hash_bits=args.hash_bits)
        trained = train_router(
            sets,
            seed=args.seed,
            hyper=hyper,
            targets={"complex": args.target, "moderate": max(args.moderate_target, args.target)},
            progress=lambda message: print(f"  {message}", file=sys.stderr),
        )
        section = policy_section(
            trained,
            hyper,
            seed=args.seed,
            source=source,
            trained_at=args.trained_at or datetime.date.today().isoformat(),
        )
        document = json.loads(json.dumps(base.document))
        document["rules"]["complexity"]["learned"] = section
        if args.cascade_route:
            cascade = fit_cascade(args, document, trained)
            escalated = cascade["calibration"]["measured"]["held_out_escalation_share"]
            print(
                f"  cascade {args.cascade_route}: threshold {cascade['threshold']:.4f}, escalates {escalated:.1%} of "
                "the train answers (held out)",
                file=sys.stderr,
            )
            note = judge_band_note(cascade)
            if note is not None:
                print(f"  note: {note}", file=sys.stderr)
        compile_policy(document)
    except (PolicyError, TrainingError) as exc:
        return fail("train", str(exc))
    text = json.dumps(document, indent=2) + "\n"
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail("train", f"cannot write {args.out}: {exc.strerror}")
    print(
        f"wrote {args.out} ({len(text.encode()) / 1024:.0f} KB): thresholds moderate "
        f"{trained.thresholds['moderate']:.4f}, complex {trained.thresholds['complex']:.4f}"
    )
    for klass, calibration in trained.calibration.items():
        shares = ", ".join(f"{name} {m['held_out_strong_share']:.1%}" for name, m in calibration["measured"].items())
        print(f"  {klass}: keeps {calibration['target']:.0%} of strong quality on held-out folds at shares {shares}")
    return 0


def judge_band_note(cascade: dict[str, Any]) -> str | None:
    """A warning when a refitted cascade kept a judge whose band no longer holds the new threshold."""
    judge = cascade.get("judge")
    if judge is None or judge["consult_from"] <= cascade["threshold"] < judge["consult_below"]:
        return None
    return (
        f"the route's judge (kept) consults [{judge['consult_from']}, {judge['consult_below']}), which does not "
        f"hold the new threshold {cascade['threshold']:.4f}: re-check its band"
    )


def fit_cascade(args: argparse.Namespace, document: dict[str, Any], trained: Trained) -> dict[str, Any]:
    """Fit ``routes[--cascade-route].cascade`` on the gsm8k train answers, with held-out prompt scores."""
    from routed_bedrock.cascade_training import train_cascade

    route = document["routes"].get(args.cascade_route)
    if route is None:
        raise TrainingError(f"--cascade-route {args.cascade_route!r} is not a route of the policy")
    if len(route["candidates"]) < 2:
        raise TrainingError(f"route {args.cascade_route!r} needs at least two candidates (cheapest first) to cascade")
    data = args.data or DEFAULT_DATA
    rows = split(read_routellm(routellm_files(data)["gsm8k"]), args.seed, "gsm8k")[0]
    answers = routellm_answers(rows, trained.held_out["gsm8k"])
    cascade = train_cascade(answers, target=args.cascade_target, seed=args.seed)
    judge = (route.get("cascade") or {}).get("judge")
    if judge is not None:  # the judge is the deployer's choice, not fitted: it stays (its band is in confidence units)
        cascade["judge"] = judge
    route["cascade"] = cascade
    for candidate in route["candidates"]:
        candidate.pop("weight", None)
    return cascade


def read_prompts(path: Path) -> list[tuple[Any, str]]:
    """(id, prompt) per non-blank line; ``TrainingError`` names the first bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read {path}: {exc}") from None
    prompts: list[tuple[Any, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{where}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise TrainingError(f"{where}: not JSON (nested too deeply)") from None
        if not isinstance(record, dict):
            raise TrainingError(f"{where}: expected an object with 'id' and 'prompt'")
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise TrainingError(f"{where}: 'prompt' must be a non-empty string")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise TrainingError(f"{where}: 'prompt' is {len(prompt)} characters (at most {MAX_PROMPT_CHARS})")
        identifier = record.get("id", number)
        if not isinstance(identifier, str | int) or isinstance(identifier, bool):
            raise TrainingError(f"{where}: 'id' must be a string or an integer")
        prompts.append((identifier, prompt))
    return prompts


def score_line(policy: Policy, identifier: Any, prompt: str, args: argparse.Namespace) -> dict[str, Any]:
    """One output line: what the router makes of the prompt."""
    request = RoutingRequest(text=prompt, input_chars=len(prompt), use_case=args.use_case, tier=args.tier)
    decision = decide(policy, request)
    complexity = decision.reasons["complexity"]
    line: dict[str, Any] = {
        "id": identifier,
        "score": complexity["score"],
        "class": complexity["class"],
        "route": decision.route,
        "model": decision.primary_model,
    }
    if args.explain:
        learned = policy.complexity.learned
        line["router"] = complexity["router"]
        if learned is not None:
            line["thresholds"] = complexity["thresholds"]
            line["learned_class"] = complexity["learned_class"]
            line["heuristic"] = complexity.get("heuristic")
            line["signals"] = learned.explain(prompt)
        else:
            line["signals"] = complexity["signals"]
    return line


def _score(args: argparse.Namespace) -> int:
    try:
        policy = load_policy_file(args.policy)
        prompts = read_prompts(args.prompts)
        lines = [score_line(policy, identifier, prompt, args) for identifier, prompt in prompts]
    except (PolicyError, TrainingError, RoutingError) as exc:
        return fail("score", str(exc))
    out: TextIO
    if args.out is None:
        _write(lines, sys.stdout)
        return 0
    try:
        with args.out.open("w", encoding="utf-8") as out:
            _write(lines, out)
    except OSError as exc:
        return fail("score", f"cannot write {args.out}: {exc.strerror}")
    return 0


def _write(lines: list[dict[str, Any]], out: TextIO) -> None:
    for line in lines:
        out.write(json.dumps(line) + "\n")
