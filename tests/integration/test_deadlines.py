"""Deadlines over real sockets: the router service and the real Bedrock gateway against slow servers on loopback.

The Bedrock simulator's ``latency_ms`` fault makes a model slow; a raw socket server trickles a reply a byte at a
time (botocore's read timeout is per socket read, so only the gateway's own guard ends it); a listening socket
whose backlog is full makes a connect hang.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.router.bedrock import BedrockGateway
from lambdas.router.engine import RoutingRequest, decide
from lambdas.router.executor import AttemptTimeout, ModelCallError
from lambdas.router.policy import compile_policy
from lambdas.router.policy_store import PolicyStore
from lambdas.router.service import DEGRADED_MODEL, CallerContext, RouterService
from local_endpoint.bedrock_sim import BedrockSimulator, Fault, serve

SIM_CREDENTIALS = {"aws_access_key_id": "sim", "aws_secret_access_key": "sim"}
NOVA_MICRO = "us.amazon.nova-micro-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Hello!"}]}]


# The simulator's latency faults wait on this: set, it ends the waits of calls the router has given up on, so
# that they end (writing to a closed socket) while the test that made them is still running.
_WAKE = threading.Event()


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[BedrockSimulator, str]]:
    simulator = BedrockSimulator(sleep=_WAKE.wait)
    server, _ = serve(simulator, port=0)
    yield simulator, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def simulator(sim: tuple[BedrockSimulator, str]) -> Iterator[BedrockSimulator]:
    simulator, _ = sim
    simulator.faults.clear()
    _WAKE.clear()
    yield simulator
    simulator.faults.clear()
    _WAKE.set()
    time.sleep(0.1)


def router(url: str, document: dict[str, Any]) -> RouterService:
    raw = json.dumps(document).encode()
    return RouterService(
        policies=PolicyStore(lambda: raw, max_age_s=300),
        gateway=BedrockGateway(endpoint_url=url, credentials=SIM_CREDENTIALS),
        rng=random.Random(1),
    )


def generate(service: RouterService) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    outcome = service.generate(
        json.dumps({"prompt": "Hello!"}), CallerContext(headers={}, sticky_key="k", remaining_ms=29_000)
    )
    assert outcome.status == 200, outcome.body
    return outcome.body, time.monotonic() - started


def test_a_slow_model_is_abandoned_at_the_attempt_timeout_and_the_next_call_answers(sim, simulator, policy_document):
    # Given the primary model taking 900 ms in its home region and a policy allowing 300 ms per attempt
    _, url = sim
    simulator.faults.put(Fault(model=NOVA_MICRO, region="us-east-1", latency_ms=900))
    policy_document["resilience"].update(attempt_timeout_ms=300, total_deadline_ms=5000)
    service = router(url, policy_document)
    # When a request is routed
    body, elapsed = generate(service)
    # Then the slow call was given up after about 300 ms and the same model's next region answered
    first, second = body["decision"]["attempts"]
    assert (first["region"], first["outcome"], first["code"]) == ("us-east-1", "regional", "Timeout")
    assert 250 <= first["latency_ms"] < 450
    assert (body["model_used"], body["region"], second["outcome"]) == (NOVA_MICRO, "us-west-2", "ok")
    assert elapsed < 0.6


def test_the_degraded_answer_comes_within_the_deadline_when_every_model_is_slow(sim, simulator, policy_document):
    # Given every model taking 2.5 s everywhere, 1 s attempts and a 1.5 s deadline
    _, url = sim
    simulator.faults.put(Fault(model="*", region="*", latency_ms=2500))
    policy_document["resilience"].update(attempt_timeout_ms=1000, total_deadline_ms=1500)
    service = router(url, policy_document)
    # When a request is routed
    body, elapsed = generate(service)
    # Then the degraded answer arrives at the deadline, not past it
    assert body["model_used"] == DEGRADED_MODEL
    assert [a["code"] for a in body["decision"]["attempts"]] == ["Timeout", "Timeout"]
    assert 1.4 <= elapsed < 1.5 + 0.15


class _TrickleHandler(socketserver.BaseRequestHandler):
    """Answers an HTTP request with a valid Converse reply, one byte every 50 ms."""

    def handle(self) -> None:
        self.request.recv(65536)
        reply = json.dumps(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "slowly"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            }
        ).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(reply)}\r\n\r\n"
        try:
            self.request.sendall(head.encode())
            for byte in reply:
                time.sleep(0.05)
                self.request.sendall(bytes([byte]))
        except OSError:  # the client gave up
            pass


@pytest.fixture
def trickling_url() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TrickleHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def first_call(document: dict[str, Any]) -> Any:
    return decide(compile_policy(document), RoutingRequest(text="Hello!", input_chars=6, sticky_key="k")).plan[0]


def test_a_reply_trickled_byte_by_byte_is_abandoned_at_the_attempt_budget(trickling_url, policy_document):
    # Given a server that never pauses longer than botocore's read timeout, but takes seconds to reply
    gateway = BedrockGateway(endpoint_url=trickling_url, credentials=SIM_CREDENTIALS)
    started = time.monotonic()
    # When a call with 500 ms is made
    with pytest.raises(ModelCallError) as error:
        gateway.converse(
            first_call(policy_document),
            AttemptTimeout(0.5, connect_s=0.5),
            messages=MESSAGES,
            system=[],
            inference_config={"maxTokens": 10},
        )
    # Then it is a timeout at the budget
    elapsed = time.monotonic() - started
    assert error.value.code == "Timeout"
    assert 0.45 <= elapsed < 0.6


@pytest.fixture
def hanging_connect_url() -> Iterator[str]:
    """A port whose listen backlog is full: the kernel drops further SYNs, so a connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    for _ in range(2):
        filler = socket.socket()
        filler.settimeout(0.2)
        with contextlib.suppress(OSError):  # the first fills the backlog, the next ones hang
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}"
    for filler in fillers:
        filler.close()
    listener.close()


def test_the_connect_timeout_is_the_one_the_call_is_handed(hanging_connect_url, policy_document):
    # Given a port where connecting hangs, and a call allowed 2 s in all but 200 ms to connect
    gateway = BedrockGateway(endpoint_url=hanging_connect_url, credentials=SIM_CREDENTIALS)
    started = time.monotonic()
    with pytest.raises(ModelCallError) as error:
        gateway.converse(
            first_call(policy_document),
            AttemptTimeout(2.0, connect_s=0.2),
            messages=MESSAGES,
            system=[],
            inference_config={"maxTokens": 10},
        )
    # Then the call gives up when the connect timeout passes, not the attempt's
    elapsed = time.monotonic() - started
    assert error.value.code == "Timeout"
    assert 0.15 <= elapsed < 0.4
