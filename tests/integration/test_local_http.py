"""Both local servers' HTTP layer over real sockets: a burst of clients connecting at once, and framing that
cannot be trusted answered once, as JSON, without a hang."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from local_endpoint.bedrock_sim import BedrockSimulator, serve

pytestmark = pytest.mark.xdist_group("local_endpoint")

BURST = 128
# Generous for 128 requests on loopback; a connection the kernel dropped from a full backlog waits for
# SYN retransmits (1 s, 3 s, 7 s, ...) or is never answered.
ANSWER_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    """The standalone simulator (what ``python -m local_endpoint.bedrock_sim`` serves)."""
    server, thread = serve(BedrockSimulator(), port=0)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@pytest.fixture(params=["local_endpoint", "simulator"])
def base_url(request: pytest.FixtureRequest) -> str:
    if request.param == "local_endpoint":
        return str(request.getfixturevalue("local_endpoint").base_url)
    return str(request.getfixturevalue("simulator_url"))


def _address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def burst_of_gets(base_url: str, path: str, clients: int = BURST) -> list[int | str]:
    """``clients`` threads connect at the same moment and GET ``path``: each one's status or error."""
    host, port = _address(base_url)
    start = threading.Barrier(clients)

    def one(_: int) -> int | str:
        start.wait(timeout=30)
        connection = http.client.HTTPConnection(host, port, timeout=ANSWER_WITHIN_S)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        except OSError as exc:  # ConnectionResetError, TimeoutError, ...
            return repr(exc)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, range(clients)))


# --- item 10: a burst of connections ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/_sim/faults"])
def test_a_burst_of_128_simultaneous_connections_is_answered_in_full(local_endpoint, path):
    # Given 128 clients released at once, When each opens a connection and GETs
    statuses = burst_of_gets(local_endpoint.base_url, path)
    # Then every one is answered: none reset, none left waiting in a full listen backlog
    assert statuses == [200] * BURST, sorted(set(map(str, statuses)))


@pytest.mark.parametrize("path", ["/_sim/faults", "/_sim/calls"])
def test_a_burst_of_128_simultaneous_connections_to_the_standalone_simulator_is_answered_in_full(simulator_url, path):
    statuses = burst_of_gets(simulator_url, path)
    assert statuses == [200] * BURST, sorted(set(map(str, statuses)))


# --- item 11: framing that cannot be trusted ----------------------------------------------------------

BODY = b'{"prompt": "Hello!"}'


def post(headers: list[tuple[str, str]], body: bytes = BODY, path: str = "/generate") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


CHUNKED = b"14\r\n" + BODY + b"\r\n0\r\n\r\n"


def read_until_closed(base_url: str, data: bytes) -> bytes:
    """Send ``data`` without closing our side and read until the server closes the connection."""
    with socket.create_connection(_address(base_url), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pytest.fail(f"the server neither answered nor closed the connection; got {received[:300]!r}")
        return received


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (post([("Content-Length", "abc")]), 400, "Content-Length must be a non-negative integer, got 'abc'"),
        (post([("Content-Length", "-1")]), 400, "Content-Length must be a non-negative integer, got '-1'"),
        (post([("Content-Length", "-1")], b""), 400, "got '-1'"),  # read(-1) would wait for the client's EOF
        (post([("Transfer-Encoding", "chunked")], CHUNKED), 411, "send the body with a Content-Length"),
        (post([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], CHUNKED), 411, "Transfer-Encoding"),
        (post([("Content-Length", "20"), ("Content-Length", "3")]), 400, "conflicting Content-Length"),
    ],
    ids=["abc", "minus-one", "minus-one-no-body", "chunked", "chunked-and-length", "conflicting"],
)
def test_rejects_untrusted_framing_with_one_json_answer_and_closes(base_url, data, status, message):
    # Given a request whose body cannot be located, sent on a connection the client keeps open
    received = read_until_closed(base_url, data)
    # Then exactly one answer: a JSON 4xx naming the problem, with Connection: close, and nothing after
    # its body (the leftover bytes are never read as a second request)
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    assert status_line.startswith(f"HTTP/1.1 {status} "), received[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert len(rest) == int(headers["content-length"]), f"more than one answer: {received!r}"
    assert message in json.loads(rest)["message"]
