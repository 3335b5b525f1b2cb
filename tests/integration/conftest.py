"""Integration fixtures: the real local endpoint (`python -m local_endpoint.server`) over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: Any


class LocalEndpoint:
    def __init__(self, base_url: str, log_path: Path | None = None) -> None:
        self.base_url = base_url
        self.log_path = log_path  # the server's combined stdout and stderr

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> HttpResponse:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, resp_headers, payload = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            status, resp_headers, payload = err.code, dict(err.headers), err.read()
        return HttpResponse(status, resp_headers, json.loads(payload) if payload else None)

    def generate(self, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
        return self.request("POST", "/generate", body, headers)

    def fault(self, **fault: Any) -> None:
        response = self.request("PUT", "/_sim/faults", fault)
        assert response.status == 200, response.body

    def clear_faults(self) -> None:
        assert self.request("DELETE", "/_sim/faults").status == 200

    def clear_live_state(self) -> None:
        """Close every circuit and zero the spend, so one test's outages do not route the next."""
        assert self.request("DELETE", "/_local/state").status == 200


@contextmanager
def running_local_endpoint(log_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[LocalEndpoint]:
    """`make local`'s server, started as a subprocess on a free port, with the shipped policy.

    Its output goes to a file, not a pipe: nobody reads a pipe while tests run, and once the pipe's buffer
    fills with log lines the server would block on its next write.

    Args:
        log_dir: where the server's log file goes.
        extra_env: environment on top of the test's own, which is stripped of AWS, Powertools, router and
            Bedrock settings.
    """
    port = free_port()
    log_path = log_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "ROUTER_", "BEDROCK_"))}
    env.update(extra_env or {})
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "local_endpoint.server", "--port", str(port), "--seed", "7"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            endpoint = LocalEndpoint(f"http://127.0.0.1:{port}", log_path)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if endpoint.request("GET", "/health").status == 200:
                        break
                except (urllib.error.URLError, ConnectionError):
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"local endpoint did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def local_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    """The local endpoint with the in-memory live state, shared by the session."""
    with running_local_endpoint(tmp_path_factory.mktemp("local_endpoint")) as endpoint:
        yield endpoint


@contextmanager
def running_moto_server() -> Iterator[str]:
    """moto's server on a free loopback port (its base URL), over real HTTP.

    Many connections at once, but one request at a time inside moto: its in-memory DynamoDB applies ADD as
    an unlocked read-modify-write, which real DynamoDB does atomically.
    """
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ: Any, start_response: Any) -> list[bytes]:
        with lock:
            return list(moto_app(environ, start_response))

    server = make_server("127.0.0.1", free_port(), one_at_a_time, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def endpoint(local_endpoint: LocalEndpoint) -> Iterator[LocalEndpoint]:
    """The local endpoint with no faults and a fresh live state before and after the test."""
    local_endpoint.clear_faults()
    local_endpoint.clear_live_state()
    yield local_endpoint
    local_endpoint.clear_faults()
    local_endpoint.clear_live_state()


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[Any, str]]:
    """A standalone Bedrock simulator on a free loopback port, per test module: (simulator, base URL)."""
    from local_endpoint.bedrock_sim import BedrockSimulator, serve

    simulator = BedrockSimulator()
    server, _ = serve(simulator, port=0)
    yield simulator, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def simulator(sim: tuple[Any, str]) -> Iterator[Any]:
    """``sim``'s simulator with no faults and no recorded calls, for one test (its faults cleared after)."""
    simulator, _ = sim
    simulator.faults.clear()
    simulator.calls.reset()
    yield simulator
    simulator.faults.clear()


def timed_stream(client: Any, **request: Any) -> tuple[list[float], list[str], list[Any]]:
    """A streamed chat completion read through: each text piece's arrival (seconds from the call), the pieces,
    and every chunk."""
    started = time.perf_counter()
    arrivals: list[float] = []
    texts: list[str] = []
    chunks: list[Any] = []
    for chunk in client.chat.completions.create(stream=True, **request):
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - started)
            texts.append(chunk.choices[0].delta.content)
    return arrivals, texts, chunks
