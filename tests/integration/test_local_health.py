"""Locally, ``/health`` turns 503 when the simulator takes the region's models down, and 200 when they recover."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .conftest import LocalEndpoint, running_local_endpoint

pytestmark = pytest.mark.xdist_group("local-health")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    # A verdict cached 0.2 s and a good probe trusted 1 s, so the test waits fractions of a second
    env = {"ROUTER_HEALTH_CACHE_SECONDS": "0.2", "ROUTER_HEALTH_PROBE_INTERVAL_SECONDS": "1"}
    with running_local_endpoint(tmp_path_factory.mktemp("local_health"), env) as running:
        yield running


def wait_for_status(endpoint: LocalEndpoint, status: int, within_s: float = 10.0):
    deadline = time.monotonic() + within_s
    while True:
        response = endpoint.request("GET", "/health")
        if response.status == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_health_follows_the_region_s_models_down_and_back(endpoint):
    # Given a healthy region
    assert endpoint.request("GET", "/health").status == 200
    try:
        # When the simulator takes every model down in every region, with no traffic at all
        endpoint.fault(model="*", region="*", outage=True)
        # Then the probe finds Bedrock unreachable and /health answers 503, revealing nothing
        down = wait_for_status(endpoint, 503)
        assert down.status == 503
        assert down.body == {"status": "unavailable"}
        assert down.headers.get("Cache-Control") == "no-store"
        assert "bedrock_unreachable" in endpoint.log_text()
    finally:
        endpoint.clear_faults()
    # And when the models recover, /health is 200 again within a verdict or two
    started = time.monotonic()
    up = wait_for_status(endpoint, 200)
    assert up.status == 200 and up.body["status"] == "ok"
    assert time.monotonic() - started < 2.0


def test_a_request_that_degrades_makes_health_look_again_at_once(endpoint):
    # Given a region that just answered a request (a fresh success: no probe needed)
    assert endpoint.generate({"prompt": "hello"}).status == 200
    assert endpoint.request("GET", "/health").status == 200
    try:
        # When every model goes down and a request degrades
        endpoint.fault(model="*", region="*", outage=True)
        answered = endpoint.generate({"prompt": "hello"})
        assert answered.status == 200 and answered.body["degraded"] is True
        # Then the next verdict probes, and the region reports it cannot serve
        time.sleep(0.25)
        assert endpoint.request("GET", "/health").status == 503
    finally:
        endpoint.clear_faults()
    assert wait_for_status(endpoint, 200).status == 200


def test_health_checks_in_a_burst_reuse_one_verdict_and_call_no_model(endpoint):
    # Given a region whose good probe is fresh
    endpoint.request("DELETE", "/_sim/calls")
    assert wait_for_status(endpoint, 200).status == 200
    before = sum(endpoint.request("GET", "/_sim/calls").body["counts"].values())
    # When health checkers call 20 times
    started = time.monotonic()
    for _ in range(20):
        assert endpoint.request("GET", "/health").status == 200
    elapsed = time.monotonic() - started
    # Then the simulator saw at most one probe per probe interval (1 s here), not one per check
    after = sum(endpoint.request("GET", "/_sim/calls").body["counts"].values())
    assert after - before <= 1 + int(elapsed)
