"""One request, one EMF line (or none): nothing carries over from one request to the next."""

from __future__ import annotations

import json

from lambdas.router import handler
from lambdas.router import metric_names as m


def _emf_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def test_metrics_disabled_keep_nothing_between_requests(invoke, monkeypatch):
    # Given metrics disabled (local mode's default)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    # When many requests are handled
    for index in range(250):
        status, _, _ = invoke("POST", "/generate", {"prompt": f"hi {index}", "use_case": "faq"})
        assert status == 200
    # Then the metric sets hold at most one request's worth
    provider = handler.metrics.provider
    assert len(provider.dimension_sets) <= 4
    assert all(len(metric["Value"]) <= 1 for metric in provider.metric_set.values())
    assert len(handler.state_metrics.metric_set) <= 3


def test_enabling_metrics_prints_one_line_per_request(invoke, monkeypatch, capsys):
    # Given requests handled while metrics were disabled
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for index in range(30):
        invoke("POST", "/generate", {"prompt": f"hi {index}", "use_case": "faq"})
    capsys.readouterr()
    # When metrics are enabled and two more requests come
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    for index in range(2):
        invoke("POST", "/generate", {"prompt": f"again {index}", "use_case": "faq"})
    # Then each request's line holds that request's values only, under its own dimension sets
    request_lines = [
        line for line in _emf_lines(capsys.readouterr().out) if m.REQUESTS in line and m.ROUTE_DIMENSION in line
    ]
    assert len(request_lines) == 2
    for line in request_lines:
        directive = line["_aws"]["CloudWatchMetrics"][0]
        # [service] + Route, Model, Outcome: four sets, not four per request seen so far ((Model, Region) has a
        # line of its own)
        assert len(directive["Dimensions"]) == 4
        assert line[m.REQUESTS] in (1.0, [1.0])  # this request's one count, not thirty-two of them
        assert line["request_id"] == "req-123"
