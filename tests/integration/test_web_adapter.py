"""The streaming function's process as Lambda Web Adapter drives it: ``python -m router.web_adapter`` on a
loopback port, readiness polled every 10 ms, requests carrying the adapter's context headers, SIGTERM at the end.
The router inside is the real one, calling the Bedrock simulator; the client is the ``openai`` SDK."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from lambdas.router.web_adapter import EVENTS_PATH, READY_PATH
from local_endpoint.bedrock_sim import Fault
from tests.integration.conftest import ROOT, free_port, timed_stream

ASK = [{"role": "user", "content": "Say hello to the team."}]
NOVA_MICRO = "us.amazon.nova-micro-v1:0"


def adapter_headers(deadline_s: float = 120.0) -> dict[str, str]:
    """What the adapter adds to every request it forwards (API Gateway's request context, Lambda's context)."""
    request_context = {
        "accountId": "123456789012",
        "stage": "prod",
        "requestId": "api-request",
        "httpMethod": "POST",
        "resourcePath": "/v1/chat/completions",
        "path": "/prod/v1/chat/completions",
        "identity": {"sourceIp": "203.0.113.9", "apiKeyId": "key-42"},
    }
    lambda_context = {"request_id": "lambda-request", "deadline": int((time.time() + deadline_s) * 1000)}
    return {
        "x-amzn-request-context": json.dumps(request_context),
        "x-amzn-lambda-context": json.dumps(lambda_context),
    }


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@contextmanager
def running_adapter(
    log_dir: Path, sim_url: str, *, command: list[str] | None = None, cwd: Path = ROOT, **extra_env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """The front end as a process: (process, base URL, seconds from start to its first ready answer)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "ROUTER_", "BEDROCK_"))}
    env.update(
        AWS_LWA_PORT=str(port),
        ROUTER_POLICY_FILE=str(ROOT / "lambdas" / "router" / "policies" / "default.json"),
        BEDROCK_ENDPOINT_URL=sim_url,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        POWERTOOLS_METRICS_NAMESPACE="RoutedBedrock",
        POWERTOOLS_SERVICE_NAME="stream-test",
        **extra_env,
    )
    log_path = log_dir / "adapter.log"
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command or [sys.executable, "-m", "lambdas.router.web_adapter"], cwd=cwd, env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            while True:  # as the adapter does: every 10 ms until a ready answer
                try:
                    if get(base + READY_PATH)[0] == 200:
                        break
                except (urllib.error.URLError, ConnectionError):
                    pass
                if process.poll() is not None or time.perf_counter() - started > 30:
                    raise RuntimeError(f"the front end did not become ready:\n{log_path.read_text()}")
                time.sleep(0.01)
            yield process, base, time.perf_counter() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, sim) -> Iterator[str]:
    _, sim_url = sim
    with running_adapter(tmp_path_factory.mktemp("adapter"), sim_url) as (_, base, _):
        yield base


@pytest.fixture
def client(adapter, simulator) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{adapter}/v1", api_key="sk-test", max_retries=0, timeout=30, default_headers=adapter_headers()
    )


def test_a_streamed_chat_arrives_in_pieces_as_the_model_makes_them(client, simulator):
    whole = client.chat.completions.create(model="fast", messages=ASK).choices[0].message.content
    simulator.faults.put(Fault.from_json({"model": "*", "stream_delay_ms": 80}))  # the deltas paced
    arrivals, texts, chunks = timed_stream(client, model="fast", messages=ASK, stream_options={"include_usage": True})
    assert len(texts) >= 3
    assert arrivals[-1] - arrivals[0] >= 0.08 * (len(texts) - 1) * 0.8  # paced, not all at once
    assert "".join(texts) == whole
    assert chunks[0].model == NOVA_MICRO and chunks[0].model_extra["routing"]["route"] == "fast"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error(client, simulator):
    simulator.faults.put(Fault.from_json({"model": NOVA_MICRO, "stream_fails_after": 2}))
    texts = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model="fast", messages=ASK, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
    assert len(texts) == 2
    assert "broke off" in raised.value.message


def test_a_bad_request_is_openais_400(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="auto", messages=ASK, stream=True, temperature=5)
    assert "temperature" in raised.value.message


def test_a_direct_invocation_is_refused(adapter):
    request = urllib.request.Request(f"{adapter}{EVENTS_PATH}", data=b'{"Records": []}', method="POST")
    request.add_header("x-amzn-request-context", "null")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 400
    assert "not routed" in json.loads(raised.value.read())["message"]


def test_sigterm_stops_the_process_cleanly(tmp_path, sim):
    _, sim_url = sim
    with running_adapter(tmp_path, sim_url) as (process, _, ready_after_s):
        assert ready_after_s < 20
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_the_start_script_runs_the_front_end_from_the_asset_root(tmp_path, sim):
    # As in the function: run-stream.sh from the task root, where the package is `router`, with `python3` on
    # PATH (here a wrapper around this interpreter, which has the Powertools and botocore the layers give).
    _, sim_url = sim
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    task_root = ROOT / "lambdas"
    with running_adapter(
        tmp_path,
        sim_url,
        command=["/bin/sh", str(task_root / "run-stream.sh")],
        cwd=task_root,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        LAMBDA_TASK_ROOT=str(task_root),
        LAMBDA_RUNTIME_DIR=str(tmp_path / "no-runtime"),
    ) as (process, base, _):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0, default_headers=adapter_headers())
        chunks = list(client.chat.completions.create(model="fast", messages=ASK, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def _fuzz_contexts(rng: random.Random) -> list[str]:
    """Odd request contexts: what a buggy or hostile adapter could put in the header."""
    base = json.loads(adapter_headers()["x-amzn-request-context"])
    odd: list[Any] = [
        None,
        [],
        "text",
        7,
        {},
        {"identity": "me"},
        {"identity": None},
        {"identity": {"apiKeyId": 5}},
        {"identity": {"sourceIp": ["a"]}},
        {"resourcePath": 12},
        {"resourcePath": "/v1/chat/completions", "authorizer": "x"},
        {"requestId": {"deep": [1, 2]}},
        {"authorizer": {"claims": "not-a-map"}},
    ]
    values = [json.dumps(value) for value in odd] + ["{not json", "", "\u00ff" * 20, "[" * 500 + "]" * 500]
    for _ in range(20):
        mutated = dict(base)
        key = rng.choice(sorted(mutated))
        mutated[key] = rng.choice([None, 0, "", [], {"x": {"y": [1]}}, "é" * 50])
        values.append(json.dumps(mutated))
    return values


def test_odd_adapter_headers_and_bodies_are_never_a_5xx(adapter):
    rng = random.Random(20261201)
    valid = {"model": "fast", "messages": ASK}
    bodies = [json.dumps(valid).encode(), b"{}", b"[]", b"null", b'{"model": "fast"}', b"\xff\xfe", b"{" * 300]
    for context in _fuzz_contexts(rng):
        body = rng.choice(bodies)
        request = urllib.request.Request(f"{adapter}/v1/chat/completions", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("x-amzn-request-context", context.encode("utf-8").decode("latin-1"))
        request.add_header("x-amzn-lambda-context", rng.choice(["{}", "null", "[1]", '{"deadline": "soon"}']))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        assert status < 500, (context[:200], body[:60], status, raw[:300])
        assert b"Traceback" not in raw
    assert get(adapter + READY_PATH)[0] == 200  # still serving
