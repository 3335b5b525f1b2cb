"""The routing policy: load, validate (schema then cross-references) and compile into frozen objects.

The same schema file is used by the router, the CDK construct at synth time, AppConfig's validator and
the ``python -m lambdas.router.policy check FILE`` command. Every rejection is a ``PolicyError`` (a
``ValueError``) whose message names the field and the offending value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from .cascade import JUDGE_MAX_TOKENS, ConfidenceModel, compile_confidence
from .learned import LearnedRouter, LearnedRouterError, compile_learned

_HERE = Path(__file__).resolve().parent
SCHEMA_PATH = _HERE / "schemas" / "policy.schema.json"
DEFAULT_POLICY_PATH = _HERE / "policies" / "default.json"

AUTO_ROUTE = "auto"
COMPLEXITY_CLASSES = ("simple", "moderate", "complex")
# First segment of a cross-region inference profile id (us.anthropic..., global.amazon...).
INFERENCE_PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"})
# Classifier signals scan at most this much of the prompt: it keeps a decision well under a millisecond
# for huge inputs, whose size alone already saturates the length signal.
SIGNAL_SCAN_CHARS = 20_000


class PolicyError(ValueError):
    """The policy document is invalid; the message names the field and the value."""


class ModelSpec(NamedTuple):
    key: str
    model_id: str
    regions: tuple[str, ...]
    profile_destinations: tuple[str, ...]
    price_per_1k_input_usd: float
    price_per_1k_output_usd: float
    context_window_tokens: int
    max_output_tokens: int | None
    modalities: frozenset[str]
    tier: str

    @property
    def is_inference_profile(self) -> bool:
        return self.model_id.split(".", 1)[0] in INFERENCE_PROFILE_PREFIXES

    @property
    def foundation_model_id(self) -> str:
        """The underlying foundation model id (the profile prefix stripped)."""
        return self.model_id.split(".", 1)[1] if self.is_inference_profile else self.model_id

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.price_per_1k_input_usd + output_tokens * self.price_per_1k_output_usd) / 1000.0


class Candidate(NamedTuple):
    model: str
    weight: float | None


class JudgeSettings(NamedTuple):
    """A cascade's judge: the model (a ``models`` key) asked about answers whose confidence is in its band."""

    model: str
    consult_from: float
    consult_below: float
    max_tokens: int = JUDGE_MAX_TOKENS

    def consulted(self, confidence: float) -> bool:
        return self.consult_from <= confidence < self.consult_below


class CascadeSettings(NamedTuple):
    """A cascade route's confidence model, the threshold below which it escalates, and its calibration target."""

    threshold: float
    confidence: ConfidenceModel
    calibration: Mapping[str, Any]
    judge: JudgeSettings | None = None


class Arm(NamedTuple):
    """One side of an A/B experiment: its name (the ``Variant`` dimension), its weight, and the route it sends to
    or (the ``auto`` experiment) the complexity classifier it routes with: ``learned`` or ``heuristic``."""

    name: str
    weight: float
    route: str | None = None
    complexity: str | None = None


class Experiment(NamedTuple):
    """An A/B split, sticky per caller, of the callers sent to a route (``route``) between its arms' routes, or
    (``route`` is ``auto``) of those routed by tier and complexity between two complexity classifiers."""

    route: str
    arms: tuple[Arm, ...]


class Route(NamedTuple):
    name: str
    candidates: tuple[Candidate, ...]
    fallbacks: tuple[str, ...]
    max_tokens: int | None
    temperature: float | None
    latency_sla_ms: int | None = None
    cascade: CascadeSettings | None = None

    @property
    def weighted(self) -> bool:
        return any(c.weight is not None for c in self.candidates)


class Signal(NamedTuple):
    name: str
    weight: float
    keywords: re.Pattern[str] | None


class ComplexityRules(NamedTuple):
    moderate_at: float
    complex_at: float
    length_weight: float
    saturation_tokens: int
    signals: tuple[Signal, ...]
    learned: LearnedRouter | None = None  # when set, its score and thresholds replace the heuristic's


DEFAULT_STREAM_DEADLINE_MS = 120_000


class Resilience(NamedTuple):
    throttle_retries: int
    backoff_base_ms: int
    backoff_cap_ms: int
    connect_timeout_ms: int
    attempt_timeout_ms: int
    total_deadline_ms: int
    max_attempts: int
    degraded_message: str
    first_token_timeout_ms: int = 5000
    stream_deadline_ms: int = 120_000
    """How long a streamed answer may run from the request's start (``total_deadline_ms`` bounds its start);
    when the policy leaves it out, ``DEFAULT_STREAM_DEADLINE_MS`` or ``total_deadline_ms``, the longer."""


class BreakerSettings(NamedTuple):
    """When a (model, region) circuit opens and how it recovers (see ``breaker.py``)."""

    enabled: bool = True
    window_seconds: int = 30
    failure_threshold: int = 5
    failure_rate_percent: float = 50.0
    throttle_rate_percent: float = 90.0
    min_calls: int = 20
    cooldown_seconds: int = 30
    half_open_probes: int = 1
    min_failing_callers: int = 2


class LatencySettings(NamedTuple):
    percentile: int = 90
    min_samples: int = 5


class BudgetLimits(NamedTuple):
    daily_usd: float | None = None
    monthly_usd: float | None = None


class BudgetMode(NamedTuple):
    at_percent: float
    max_model_tier: str | None
    action: str | None  # "degrade" or "reject"


class Budget(NamedTuple):
    """Spend limits; ``modes`` ascending by ``at_percent``."""

    overall: BudgetLimits
    per_tier: Mapping[str, BudgetLimits]
    per_api_key: BudgetLimits | None
    modes: tuple[BudgetMode, ...]


MODEL_TIER_RANK: Mapping[str, int] = {"economy": 0, "standard": 1, "premium": 2}


class RequestLimits(NamedTuple):
    max_prompt_chars: int
    max_messages: int
    max_images: int
    max_output_tokens: int


class Policy(NamedTuple):
    """A validated, compiled routing policy. Immutable: one request sees one policy."""

    version: str
    models: Mapping[str, ModelSpec]
    routes: Mapping[str, Route]
    use_cases: Mapping[str, str]
    default_use_case: str
    tier_header: str
    default_tier: str
    tiers: Mapping[str, Mapping[str, str]]
    complexity: ComplexityRules
    image_route: str | None
    long_context_route: str | None
    allow_model_override: bool
    resilience: Resilience
    limits: RequestLimits
    document: Mapping[str, Any]
    breaker: BreakerSettings = BreakerSettings()
    latency: LatencySettings = LatencySettings()
    budget: Budget | None = None
    experiments: Mapping[str, Experiment] = {}

    def tier_of(self, header: str | None) -> str:
        """The user tier a request's tier header names (case-insensitive), or the default tier. Not checked
        against ``tiers``: the engine rejects an unknown one."""
        return header.lower() if header else self.default_tier

    def model_by_id_or_key(self, name: str) -> ModelSpec | None:
        """Find a catalog model by its policy key or its Bedrock model id."""
        spec = self.models.get(name)
        if spec is not None:
            return spec
        for spec in self.models.values():
            if spec.model_id == name:
                return spec
        return None


@cache
def load_schema() -> dict[str, Any]:
    """The policy JSON schema (draft-04) as a dict."""
    with SCHEMA_PATH.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


def validate_document(document: Any, *, schema_checked: bool = False) -> None:
    """Validate a policy document against the schema and its cross-references.

    Args:
        document: the parsed policy.
        schema_checked: the exact document already passed this schema elsewhere (see ``document_digest``);
            only the cross-references are checked.

    Raises:
        PolicyError: naming the field and the offending value.
    """
    if schema_checked:  # the construct checked this very text, numbers included, at synth
        _check_references(document)
        return
    _check_finite(document, "")
    # Generated from SCHEMA_PATH by tools/generate_validators.py; imported lazily: only loads need it.
    from ._policy_validator import JsonSchemaValueException, validate

    try:
        validate(document)  # type: ignore[no-untyped-call]  # generated code
    except JsonSchemaValueException as exc:
        field = exc.name.removeprefix("data").lstrip(".") or "(document)"
        rule = exc.message.removeprefix(exc.name).strip()
        raise PolicyError(f"invalid policy: {field} {rule} (got {_show(exc.value)})") from None
    _check_references(document)


_MAX_SAFE_INTEGER = 2**53


def _check_finite(value: Any, where: str) -> None:
    """NaN and infinities pass a schema's "number" and JSON cannot carry them; integers past 2**53 lose digits in
    most JSON readers and overflow a float: name the first such number found."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PolicyError(f"invalid policy: {where.lstrip('.') or '(document)'} must be a finite number (got {value})")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE_INTEGER:
        shown = str(value) if len(str(value)) <= 24 else f"an integer of {len(str(value))} digits"
        raise PolicyError(f"invalid policy: {where.lstrip('.')} must be at most 2**53 in size (got {shown})")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, f"{where}[{index}]")


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _check_experiments(experiments: Mapping[str, Any], routes: Mapping[str, Any], rules: Mapping[str, Any]) -> None:
    for key, experiment in experiments.items():
        arms = experiment["arms"]
        names = [arm["name"] for arm in arms]
        if len(set(names)) != len(names):
            raise PolicyError(f"invalid policy: experiments.{key}.arms names must be distinct (got {names})")
        if key == AUTO_ROUTE:  # the tier-and-complexity routing: arms choose the complexity classifier
            for index, arm in enumerate(arms):
                if "complexity" not in arm:
                    raise PolicyError(
                        f"invalid policy: experiments.{AUTO_ROUTE}.arms[{index}] needs complexity (learned or "
                        "heuristic): the auto experiment splits callers between classifiers, not routes"
                    )
                if arm["complexity"] == "learned" and "learned" not in rules["complexity"]:
                    raise PolicyError(
                        f"invalid policy: experiments.{AUTO_ROUTE}.arms[{index}] uses the learned router, and "
                        "rules.complexity.learned is not set (routed-bedrock train writes it)"
                    )
            continue
        if key not in routes:
            raise PolicyError(f"invalid policy: experiments.{key} names no route (its key is the route it splits)")
        for index, arm in enumerate(arms):
            target = arm.get("route")
            if target is None:
                raise PolicyError(
                    f"invalid policy: experiments.{key}.arms[{index}] needs a route: only the {AUTO_ROUTE} "
                    "experiment's arms choose a complexity classifier"
                )
            if target not in routes:
                raise PolicyError(
                    f"invalid policy: experiments.{key}.arms[{index}].route names unknown route '{target}'"
                )
            if target != key and target in experiments:
                raise PolicyError(
                    f"invalid policy: experiments.{key}.arms[{index}].route '{target}' is split by an experiment "
                    "of its own: an arm's route must be the experiment's own route or one no experiment splits"
                )


def _check_references(doc: Mapping[str, Any]) -> None:
    models: Mapping[str, Any] = doc["models"]
    routes: Mapping[str, Any] = doc["routes"]
    rules: Mapping[str, Any] = doc["rules"]

    for key, model in models.items():
        prefix = model["model_id"].split(".", 1)[0]
        if prefix in INFERENCE_PROFILE_PREFIXES and "inference_profile_destinations" not in model:
            raise PolicyError(
                f"invalid policy: models.{key}.inference_profile_destinations is required for inference "
                f"profile '{model['model_id']}'"
            )
    if AUTO_ROUTE in routes:
        raise PolicyError(f"invalid policy: routes.{AUTO_ROUTE} is reserved (it means 'route by tier and complexity')")
    for name, route in routes.items():
        weights = [c.get("weight") for c in route["candidates"]]
        if "cascade" in route and (len(weights) < 2 or any(w is not None for w in weights)):
            raise PolicyError(
                f"invalid policy: routes.{name} is a cascade: it needs at least two candidates, cheapest first, "
                f"and no weights (got {len(weights)} candidate(s), weights {weights})"
            )
        if any(w is not None for w in weights):
            if any(w is None for w in weights):
                raise PolicyError(
                    f"invalid policy: routes.{name}.candidates must all have a weight or none (got {weights})"
                )
            if sum(weights) <= 0:
                raise PolicyError(f"invalid policy: routes.{name}.candidates weights must add up to more than 0")
        for index, candidate in enumerate(route["candidates"]):
            if candidate["model"] not in models:
                raise PolicyError(
                    f"invalid policy: model '{candidate['model']}' in route '{name}' "
                    f"(routes.{name}.candidates[{index}].model) is not in the catalog"
                )
        for index, fallback in enumerate(route.get("fallbacks", [])):
            if fallback not in models:
                raise PolicyError(
                    f"invalid policy: fallback model '{fallback}' in route '{name}' "
                    f"(routes.{name}.fallbacks[{index}]) is not in the catalog"
                )
        judge = route.get("cascade", {}).get("judge")
        if judge is not None:
            if judge["model"] not in models:
                raise PolicyError(
                    f"invalid policy: judge model '{judge['model']}' in route '{name}' "
                    f"(routes.{name}.cascade.judge.model) is not in the catalog"
                )
            if not judge["consult_from"] < judge["consult_below"]:
                raise PolicyError(
                    f"invalid policy: routes.{name}.cascade.judge.consult_from ({judge['consult_from']}) must be "
                    f"below consult_below ({judge['consult_below']})"
                )

    _check_experiments(doc.get("experiments", {}), routes, rules)

    for use_case, target in rules["use_cases"].items():
        if target != AUTO_ROUTE and target not in routes:
            raise PolicyError(f"invalid policy: rules.use_cases.{use_case} names unknown route '{target}'")
    default_use_case = rules.get("default_use_case")
    if default_use_case is not None and default_use_case not in rules["use_cases"]:
        raise PolicyError(f"invalid policy: rules.default_use_case '{default_use_case}' is not in rules.use_cases")

    tiers = rules["tiers"]
    if tiers["default"] not in tiers["levels"]:
        raise PolicyError(f"invalid policy: rules.tiers.default '{tiers['default']}' is not in rules.tiers.levels")
    for tier, table in tiers["levels"].items():
        for klass, target in table.items():
            if target not in routes:
                raise PolicyError(f"invalid policy: rules.tiers.levels.{tier}.{klass} names unknown route '{target}'")

    for field in ("image_route", "long_context_route"):
        target = rules.get(field)
        if target is not None and target not in routes:
            raise PolicyError(f"invalid policy: rules.{field} names unknown route '{target}'")

    complexity = rules["complexity"]
    if complexity["moderate_at"] > complexity["complex_at"]:
        raise PolicyError(
            "invalid policy: rules.complexity.moderate_at must not exceed complex_at "
            f"(got {complexity['moderate_at']} > {complexity['complex_at']})"
        )

    if "budget" in doc:
        _check_budget(doc["budget"], tiers["levels"])

    resilience = doc["resilience"]
    base, cap = resilience.get("backoff_base_ms", 100), resilience.get("backoff_cap_ms", 2000)
    if base > cap:
        raise PolicyError(
            f"invalid policy: resilience.backoff_base_ms must not exceed backoff_cap_ms (got {base} > {cap})"
        )
    total, stream = resilience.get("total_deadline_ms", 25000), resilience.get("stream_deadline_ms")
    if stream is not None and stream < total:
        raise PolicyError(
            f"invalid policy: resilience.stream_deadline_ms must be at least total_deadline_ms (got {stream} < {total})"
        )


def _check_budget(budget: Mapping[str, Any], tiers: Mapping[str, Any]) -> None:
    limits = [budget.get("daily_usd"), budget.get("monthly_usd"), budget.get("per_tier"), budget.get("per_api_key")]
    if not any(limits):
        raise PolicyError("invalid policy: budget needs at least one of daily_usd, monthly_usd, per_tier, per_api_key")
    for tier in budget.get("per_tier", {}):
        if tier not in tiers:
            raise PolicyError(f"invalid policy: budget.per_tier.{tier} is not a tier in rules.tiers.levels")
    previous = 0.0
    for index, mode in enumerate(budget["modes"]):
        if ("max_model_tier" in mode) == ("action" in mode):
            raise PolicyError(
                f"invalid policy: budget.modes[{index}] needs exactly one of max_model_tier or action "
                f"(got {_show(mode)})"
            )
        if mode["at_percent"] <= previous:
            raise PolicyError(
                f"invalid policy: budget.modes[{index}].at_percent must be above the previous mode's "
                f"(got {mode['at_percent']} after {previous})"
            )
        previous = mode["at_percent"]


def _keyword_pattern(keywords: list[str]) -> re.Pattern[str] | None:
    if not keywords:
        return None
    # Longest first so "step by step" wins over "step"; word boundaries so "class" misses "classic". Matched
    # against lower-cased text (``classifier``), which is 2.5x faster than re.IGNORECASE.
    alternatives = "|".join(re.escape(k.lower()) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b")


def compile_policy(document: Mapping[str, Any], *, schema_checked: bool = False) -> Policy:
    """Validate and compile a policy document.

    Raises:
        PolicyError: the document is invalid.
    """
    validate_document(document, schema_checked=schema_checked)
    rules = document["rules"]
    complexity = rules["complexity"]
    resilience = document["resilience"]
    limits = document.get("request_limits", {})
    models = {
        key: ModelSpec(
            key=key,
            model_id=m["model_id"],
            regions=tuple(m["regions"]),
            profile_destinations=tuple(m.get("inference_profile_destinations", ())),
            price_per_1k_input_usd=float(m["price_per_1k_input_usd"]),
            price_per_1k_output_usd=float(m["price_per_1k_output_usd"]),
            context_window_tokens=m["context_window_tokens"],
            max_output_tokens=m.get("max_output_tokens"),
            modalities=frozenset(m["modalities"]),
            tier=m["tier"],
        )
        for key, m in document["models"].items()
    }
    routes = {
        name: Route(
            name=name,
            candidates=tuple(Candidate(model=c["model"], weight=c.get("weight")) for c in r["candidates"]),
            fallbacks=tuple(r.get("fallbacks", ())),
            max_tokens=r.get("max_tokens"),
            temperature=r.get("temperature"),
            latency_sla_ms=r.get("latency_sla_ms"),
            cascade=_cascade(name, r.get("cascade")),
        )
        for name, r in document["routes"].items()
    }
    signals = tuple(
        Signal(name=name, weight=float(s["weight"]), keywords=_keyword_pattern(s["keywords"]))
        for name, s in complexity["signals"].items()
    )
    experiments = {
        key: Experiment(
            route=key,
            arms=tuple(
                Arm(name=a["name"], weight=float(a["weight"]), route=a.get("route"), complexity=a.get("complexity"))
                for a in e["arms"]
            ),
        )
        for key, e in document.get("experiments", {}).items()
    }
    return Policy(
        experiments=experiments,
        version=document.get("policy_version", "unversioned"),
        models=models,
        routes=routes,
        use_cases=dict(rules["use_cases"]),
        default_use_case=rules.get("default_use_case", next(iter(rules["use_cases"]))),
        tier_header=rules["tiers"].get("header", "X-User-Tier"),
        default_tier=rules["tiers"]["default"],
        tiers={tier: dict(table) for tier, table in rules["tiers"]["levels"].items()},
        complexity=ComplexityRules(
            moderate_at=float(complexity["moderate_at"]),
            complex_at=float(complexity["complex_at"]),
            length_weight=float(complexity["length"]["weight"]),
            saturation_tokens=complexity["length"]["saturation_tokens"],
            signals=signals,
            learned=_compile_learned(complexity.get("learned")),
        ),
        image_route=rules.get("image_route"),
        long_context_route=rules.get("long_context_route"),
        allow_model_override=rules.get("allow_model_override", False),
        resilience=Resilience(
            throttle_retries=resilience.get("throttle_retries", 2),
            backoff_base_ms=resilience.get("backoff_base_ms", 100),
            backoff_cap_ms=resilience.get("backoff_cap_ms", 2000),
            connect_timeout_ms=resilience.get("connect_timeout_ms", 2000),
            attempt_timeout_ms=resilience.get("attempt_timeout_ms", 20000),
            total_deadline_ms=resilience.get("total_deadline_ms", 25000),
            max_attempts=resilience.get("max_attempts", 8),
            degraded_message=resilience["degraded_message"],
            first_token_timeout_ms=resilience.get("first_token_timeout_ms", 5000),
            stream_deadline_ms=resilience.get(
                "stream_deadline_ms", max(DEFAULT_STREAM_DEADLINE_MS, resilience.get("total_deadline_ms", 25000))
            ),
        ),
        limits=RequestLimits(
            max_prompt_chars=limits.get("max_prompt_chars", 400_000),
            max_messages=limits.get("max_messages", 100),
            max_images=limits.get("max_images", 5),
            max_output_tokens=limits.get("max_output_tokens", 8192),
        ),
        document=document,
        breaker=BreakerSettings(**document.get("circuit_breaker", {})),
        latency=LatencySettings(**document.get("latency", {})),
        budget=_compile_budget(document["budget"]) if "budget" in document else None,
    )


def _cascade(route: str, document: Mapping[str, Any] | None) -> CascadeSettings | None:
    if document is None:
        return None
    try:
        confidence = compile_confidence(document["confidence"])
    except LearnedRouterError as exc:
        raise PolicyError(f"invalid policy: routes.{route}.cascade.confidence.ngrams: {exc}") from None
    judge = document.get("judge")
    return CascadeSettings(
        threshold=float(document["threshold"]),
        confidence=confidence,
        calibration=dict(document.get("calibration", {})),
        judge=JudgeSettings(
            model=judge["model"],
            consult_from=float(judge["consult_from"]),
            consult_below=float(judge["consult_below"]),
            max_tokens=int(judge.get("max_tokens", JUDGE_MAX_TOKENS)),
        )
        if judge is not None
        else None,
    )


def _compile_learned(document: Mapping[str, Any] | None) -> LearnedRouter | None:
    if document is None:
        return None
    try:
        return compile_learned(document)
    except LearnedRouterError as exc:
        raise PolicyError(f"invalid policy: rules.complexity.learned: {exc}") from None


def _limits(data: Mapping[str, Any]) -> BudgetLimits:
    return BudgetLimits(daily_usd=data.get("daily_usd"), monthly_usd=data.get("monthly_usd"))


def _compile_budget(budget: Mapping[str, Any]) -> Budget:
    return Budget(
        overall=_limits(budget),
        per_tier={tier: _limits(limits) for tier, limits in budget.get("per_tier", {}).items()},
        per_api_key=_limits(budget["per_api_key"]) if "per_api_key" in budget else None,
        modes=tuple(
            BudgetMode(
                at_percent=float(m["at_percent"]), max_model_tier=m.get("max_model_tier"), action=m.get("action")
            )
            for m in budget["modes"]
        ),
    )


def _reject_constant(name: str) -> Any:
    raise PolicyError(f"invalid policy: not valid JSON ({name} is not a JSON number)")


def document_digest(raw: bytes | str) -> str:
    """SHA-256 of the policy document's bytes, as the construct computes it for the document it validated."""
    return hashlib.sha256(raw.encode("utf-8") if isinstance(raw, str) else raw).hexdigest()


def parse_policy(raw: bytes | str, *, trusted_digest: str | None = None) -> Policy:
    """Parse JSON text and compile it.

    Args:
        raw: the document.
        trusted_digest: ``document_digest`` of a document already validated against this schema (the
            construct validates the policy at synth and passes its digest to the function). When ``raw``
            has that digest the schema pass is skipped: it is the slowest part of a cold start (the
            generated validator is compiled from source in Lambda). Any other document is fully validated.

    Raises:
        PolicyError: the text is not JSON or the document is invalid.
    """
    try:
        document = json.loads(raw, parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"invalid policy: not valid JSON ({exc})") from None
    schema_checked = trusted_digest is not None and document_digest(raw) == trusted_digest
    return compile_policy(document, schema_checked=schema_checked)


def load_policy_file(path: str | Path) -> Policy:
    """Read and compile a policy file.

    Raises:
        PolicyError: the file is missing, not JSON or invalid; the message names the file.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file '{path}': {exc.strerror}") from None
    try:
        return parse_policy(raw)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m lambdas.router.policy check FILE...``: validate policy files; exit 1 on the first bad one."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "check":
        print("usage: python -m lambdas.router.policy check FILE [FILE...]", file=sys.stderr)
        return 2
    for path in args[1:]:
        try:
            policy = load_policy_file(path)
        except PolicyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"ok: {path} (policy_version {policy.version}, {len(policy.models)} models, {len(policy.routes)} routes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
