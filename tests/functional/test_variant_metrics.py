"""Per-variant metrics: the canary candidate and the A/B arm a request landed on, and the cascade's escalations."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.router import metric_names as m
from tests.functional.test_cascade_route import (  # the cascade tests' handler factory and scripted answers
    CONFIDENT,
    DOUBTFUL,
    MATHS,
    STRONG,
    emf_lines,
    make_invoke,  # noqa: F401 - a fixture
    one,
    script,
)

DIRECT_VS_CASCADE = {
    "math-cascade": {
        "arms": [
            {"name": "cascade", "route": "math-cascade", "weight": 50},
            {"name": "direct", "route": "deep", "weight": 50},
        ]
    }
}


def with_experiment(document: dict[str, Any]) -> None:
    document["experiments"] = DIRECT_VS_CASCADE


def request_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return next(line for line in lines if m.REQUESTS in line and m.ROUTE_DIMENSION in line)


def dimension_sets(line: dict[str, Any]) -> list[list[str]]:
    return line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]


def test_a_canary_request_is_counted_under_its_route_and_variant(make_invoke, capsys):  # noqa: F811
    invoke = make_invoke()
    capsys.readouterr()
    status, _, body = invoke({"prompt": "Summarize this memo.", "use_case": "summarization"})
    assert status == 200
    line = request_line(emf_lines(capsys.readouterr().out))
    assert ["service", "Route", "Variant"] in dimension_sets(line)
    assert line[m.ROUTE_DIMENSION] == "balanced"
    assert line[m.VARIANT_DIMENSION] == body["decision"]["canary"]["variant"]
    assert line[m.VARIANT_DIMENSION] in ("claude-haiku-4-5", "nova-pro")


def test_an_unweighted_route_has_no_variant(make_invoke, capsys):  # noqa: F811
    invoke = make_invoke()
    capsys.readouterr()
    invoke({"prompt": "Hello!"})
    line = request_line(emf_lines(capsys.readouterr().out))
    assert m.VARIANT_DIMENSION not in line
    assert ["service", "Route", "Variant"] not in dimension_sets(line)


@pytest.mark.parametrize(("answer", "escalated"), [(CONFIDENT, 0), (DOUBTFUL, 1)])
def test_a_cascade_request_counts_whether_it_escalated(make_invoke, bedrock, monkeypatch, capsys, answer, escalated):  # noqa: F811
    invoke = make_invoke()
    script(bedrock, monkeypatch, {"nova-micro": answer, "claude-sonnet-4-5": STRONG})
    capsys.readouterr()
    invoke(MATHS)
    line = request_line(emf_lines(capsys.readouterr().out))
    assert one(line[m.ESCALATIONS]) == escalated
    assert line[m.ROUTE_DIMENSION] == "math-cascade"


def test_a_direct_request_has_no_escalation_count(make_invoke, capsys):  # noqa: F811
    invoke = make_invoke()
    capsys.readouterr()
    invoke({"prompt": "Hello!"})
    assert m.ESCALATIONS not in request_line(emf_lines(capsys.readouterr().out))


def test_an_ab_request_is_counted_once_more_under_its_experiment_and_arm(make_invoke, bedrock, monkeypatch, capsys):  # noqa: F811
    invoke = make_invoke(with_experiment)
    script(bedrock, monkeypatch, {"nova-micro": DOUBTFUL, "claude-sonnet-4-5": STRONG})
    seen: dict[str, dict[str, Any]] = {}
    for caller in range(40):  # enough callers to land on both arms
        capsys.readouterr()
        _, _, body = invoke(MATHS, {"X-Caller-Id": f"user-{caller}"})
        lines = emf_lines(capsys.readouterr().out)
        [arm_line] = [line for line in lines if m.EXPERIMENT_DIMENSION in line]
        seen[arm_line[m.VARIANT_DIMENSION]] = {"line": arm_line, "body": body, "request": request_line(lines)}
        if len(seen) == 2:
            break
    assert set(seen) == {"cascade", "direct"}
    for arm, found in seen.items():
        line, body = found["line"], found["body"]
        # Only [service, Experiment, Variant]: nothing else counts the request twice
        assert [sorted(dims) for dims in dimension_sets(line)] == [["Experiment", "Variant", "service"]]
        assert line[m.EXPERIMENT_DIMENSION] == "math-cascade"
        assert body["decision"]["experiment"]["arm"] == arm
        assert one(line[m.REQUESTS]) == 1
        # The arm's cost is all it paid: the cascade's escalated answer included
        assert one(line[m.COST_USD]) == pytest.approx(body["cost_usd"])
        if arm == "cascade":
            assert one(line[m.ESCALATIONS]) == 1
            assert found["request"][m.ROUTE_DIMENSION] == "math-cascade"
        else:
            assert m.ESCALATIONS not in line
            assert found["request"][m.ROUTE_DIMENSION] == "deep"
