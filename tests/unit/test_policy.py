"""The policy schema and cross-reference checks: the default policy loads, bad ones are named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lambdas.router.policy import (
    DEFAULT_POLICY_PATH,
    PolicyError,
    compile_policy,
    load_policy_file,
    load_schema,
    parse_policy,
)

ROOT = Path(__file__).resolve().parents[2]


def test_default_policy_compiles_with_its_catalog_and_routes(default_policy):
    # Given the shipped policy, When compiled, Then every route's models are in the catalog
    assert default_policy.version == "2026-12-01.5"
    assert {"fast", "balanced", "deep", "premium", "vision", "long-context"} <= set(default_policy.routes)
    for route in default_policy.routes.values():
        for name in [c.model for c in route.candidates] + list(route.fallbacks):
            assert name in default_policy.models
    # And Claude 3 Haiku (end of life in these regions) is gone from the catalog
    assert set(default_policy.models) == {
        "nova-micro",
        "nova-lite",
        "nova-pro",
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "claude-opus-4-5",
    }


def test_default_policy_calls_every_model_through_a_us_inference_profile(default_policy):
    # Nova is served on demand in us-east-1 only: without the profile, us-west-2 calls would fail
    for model in default_policy.models.values():
        assert model.model_id.startswith("us."), model.key
        assert model.is_inference_profile, model.key


def test_schema_is_draft_04_for_appconfig():
    # AppConfig's validator accepts draft-04 only
    assert load_schema()["$schema"] == "http://json-schema.org/draft-04/schema#"


def test_inference_profile_knows_its_foundation_model(default_policy, policy_document):
    haiku = default_policy.models["claude-haiku-4-5"]
    assert haiku.is_inference_profile
    assert haiku.foundation_model_id == "anthropic.claude-haiku-4-5-20251001-v1:0"
    micro = default_policy.models["nova-micro"]
    assert micro.is_inference_profile
    assert micro.foundation_model_id == "amazon.nova-micro-v1:0"
    # Given a model called by its foundation model id (no profile), Then its id is its own foundation id
    policy_document["models"]["nova-micro"]["model_id"] = "amazon.example-text-v1:0"
    policy_document["models"]["nova-micro"].pop("inference_profile_destinations")
    direct = compile_policy(policy_document).models["nova-micro"]
    assert not direct.is_inference_profile
    assert direct.foundation_model_id == "amazon.example-text-v1:0"


def test_cost_uses_per_1k_prices(default_policy):
    sonnet = default_policy.models["claude-sonnet-4-5"]
    assert sonnet.cost_usd(1000, 1000) == pytest.approx(0.003 + 0.015)


def test_model_lookup_by_key_or_model_id(default_policy):
    assert default_policy.model_by_id_or_key("nova-pro").key == "nova-pro"
    assert default_policy.model_by_id_or_key("us.amazon.nova-pro-v1:0").key == "nova-pro"
    assert default_policy.model_by_id_or_key("amazon.titan-text-express-v1") is None


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["models"]["nova-micro"].__setitem__("price_per_1k_input_usd", -1),
            "models.nova-micro.price_per_1k_input_usd must be bigger than or equal to 0 (got -1)",
        ),
        (lambda d: d.__setitem__("schema_version", "9"), "schema_version must be one of ['1.0'] (got \"9\")"),
        (lambda d: d["models"]["nova-micro"].__setitem__("regions", ["Mars-1"]), "models.nova-micro.regions[0]"),
        (lambda d: d["models"]["nova-micro"].__setitem__("colour", "blue"), "models.nova-micro must not contain"),
        (lambda d: d["routes"]["fast"].__setitem__("candidates", []), "routes.fast.candidates must contain at least 1"),
        (lambda d: d["resilience"].pop("degraded_message"), "resilience must contain ['degraded_message']"),
        (
            lambda d: d["budget"]["modes"][2].__setitem__("action", "panic"),
            "budget.modes[2].action must be one of ['degrade', 'reject'] (got \"panic\")",
        ),
        (lambda d: d["budget"].__setitem__("daily_usd", 0), "budget.daily_usd must be bigger than 0 (got 0)"),
        (
            lambda d: d["circuit_breaker"].__setitem__("cooldown_seconds", 0),
            "circuit_breaker.cooldown_seconds must be bigger than or equal to 1 (got 0)",
        ),
        (lambda d: d["routes"]["fast"].__setitem__("latency_sla_ms", "fast"), "routes.fast.latency_sla_ms must be"),
        (
            lambda d: d.__setitem__("models_checked_at", "last week"),
            "models_checked_at must match pattern ^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        ),
    ],
)
def test_rejects_schema_violations_naming_field_and_value(policy_document, mutate, expected):
    # Given a policy broken in one place
    mutate(policy_document)
    # When compiled, Then the error names the field (and the value where there is one)
    with pytest.raises(PolicyError) as error:
        compile_policy(policy_document)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["routes"]["fast"]["candidates"].__setitem__(0, {"model": "gpt-x"}),
            "model 'gpt-x' in route 'fast' (routes.fast.candidates[0].model) is not in the catalog",
        ),
        (lambda d: d["routes"]["deep"]["fallbacks"].append("ghost"), "fallback model 'ghost' in route 'deep'"),
        (
            lambda d: d["rules"]["use_cases"].__setitem__("faq", "nowhere"),
            "rules.use_cases.faq names unknown route 'nowhere'",
        ),
        (lambda d: d["rules"].__setitem__("default_use_case", "other"), "rules.default_use_case 'other'"),
        (lambda d: d["rules"]["tiers"].__setitem__("default", "gold"), "rules.tiers.default 'gold'"),
        (
            lambda d: d["rules"]["tiers"]["levels"]["premium"].__setitem__("complex", "x"),
            "rules.tiers.levels.premium.complex",
        ),
        (lambda d: d["rules"].__setitem__("image_route", "nope"), "rules.image_route names unknown route 'nope'"),
        (lambda d: d["rules"]["complexity"].__setitem__("moderate_at", 0.9), "moderate_at must not exceed complex_at"),
        (
            lambda d: d["resilience"].__setitem__("backoff_base_ms", 5000),
            "backoff_base_ms must not exceed backoff_cap_ms",
        ),
        (lambda d: d["routes"]["balanced"]["candidates"][1].pop("weight"), "must all have a weight or none"),
        (
            lambda d: d["models"]["claude-haiku-4-5"].pop("inference_profile_destinations"),
            "models.claude-haiku-4-5.inference_profile_destinations is required",
        ),
        (lambda d: d["routes"].__setitem__("auto", d["routes"]["fast"]), "routes.auto is reserved"),
        (
            lambda d: d["budget"]["modes"].__setitem__(1, {"at_percent": 60, "max_model_tier": "economy"}),
            "budget.modes[1].at_percent must be above the previous mode's (got 60 after 70",
        ),
        (
            lambda d: d["budget"]["modes"].__setitem__(0, {"at_percent": 70}),
            "budget.modes[0] needs exactly one of max_model_tier or action",
        ),
        (lambda d: d["budget"]["per_tier"].__setitem__("gold", {"daily_usd": 1}), "budget.per_tier.gold is not a tier"),
        (
            lambda d: d.__setitem__("budget", {"modes": d["budget"]["modes"]}),
            "budget needs at least one of daily_usd, monthly_usd, per_tier, per_api_key",
        ),
    ],
)
def test_rejects_broken_cross_references(policy_document, mutate, expected):
    mutate(policy_document)
    with pytest.raises(PolicyError) as error:
        compile_policy(policy_document)
    assert expected in str(error.value)


def test_rejects_text_that_is_not_json():
    with pytest.raises(PolicyError, match="not valid JSON"):
        parse_policy(b"{schema_version: 1")


def test_fails_to_load_a_missing_file_naming_it(tmp_path: Path):
    missing = tmp_path / "nope.json"
    with pytest.raises(PolicyError, match=r"nope\.json"):
        load_policy_file(missing)


def test_check_command_accepts_default_and_rejects_bad_file(tmp_path: Path, policy_document: dict[str, Any]):
    # Given one good and one bad policy file
    policy_document["routes"]["fast"]["max_tokens"] = "lots"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(policy_document))
    # When the CLI checks them
    ok = subprocess.run(
        [sys.executable, "-m", "lambdas.router.policy", "check", str(DEFAULT_POLICY_PATH)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    ko = subprocess.run(
        [sys.executable, "-m", "lambdas.router.policy", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    # Then the good one passes and the bad one fails naming the field
    assert ok.returncode == 0, ok.stderr
    assert "ok:" in ok.stdout
    assert ko.returncode == 1
    assert "routes.fast.max_tokens must be integer" in ko.stderr


def test_generated_validators_match_the_schemas():
    # The router imports pre-generated validators; they must be regenerated when a schema changes.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    try:
        import generate_validators
    finally:
        sys.path.pop(0)
    for module, schema_file in generate_validators.GENERATED.items():
        current = (generate_validators.ROUTER / module).read_text(encoding="utf-8")
        assert current == generate_validators.render(schema_file), f"{module} is stale: run `make validators`"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_in_policy_text(constant):
    # Given policy text with a constant Python's JSON decoder would accept
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace('"daily_usd": 200', f'"daily_usd": {constant}')
    # When parsed, Then it is not JSON
    with pytest.raises(PolicyError, match=f"{constant} is not a JSON number"):
        parse_policy(text)


def test_non_finite_numbers_are_refused_in_a_policy_dict(policy_document):
    # Given a dict (as the construct takes one) whose learned router carries a NaN weight: it passes "type: number"
    policy_document["rules"]["complexity"]["learned"]["dense"]["weights"][3] = float("nan")
    # When compiled, Then the error names the field
    with pytest.raises(PolicyError, match=r"rules\.complexity\.learned\.dense\.weights\[3\] must be a finite number"):
        compile_policy(policy_document)


# --- resilience.stream_deadline_ms ----------------------------------------------------------------------


def _with_resilience(**settings: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["resilience"].update(settings)
    document["resilience"] = {k: v for k, v in document["resilience"].items() if v is not None}
    return document


def test_the_stream_deadline_defaults_to_two_minutes_or_the_request_deadline_the_longer():
    assert compile_policy(_with_resilience(stream_deadline_ms=None)).resilience.stream_deadline_ms == 120_000
    longer = _with_resilience(stream_deadline_ms=None, total_deadline_ms=150_000)
    assert compile_policy(longer).resilience.stream_deadline_ms == 150_000  # a policy valid before the field
    assert compile_policy(_with_resilience(stream_deadline_ms=300_000)).resilience.stream_deadline_ms == 300_000


def test_a_stream_deadline_below_the_request_deadline_is_refused():
    with pytest.raises(
        PolicyError, match=r"stream_deadline_ms must be at least total_deadline_ms \(got 20000 < 25000\)"
    ):
        compile_policy(_with_resilience(stream_deadline_ms=20_000, total_deadline_ms=25_000))
