"""Fuzzing local mode over real HTTP: bad input gets a 4xx with a JSON message naming the problem, never a 5xx.

Drives the running local endpoint (router, simulator admin API, live-state admin API) with seeded random
and mutated bodies, deeply nested JSON, poison text (unpaired surrogates, invalid UTF-8) and odd HTTP
framing and headers sent byte for byte. Every answer must be 200 (valid input) or a 4xx whose JSON body
has a ``message``; the server must keep serving and write no stack trace to its log.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.xdist_group("local_endpoint")

SEED = 20261201
RANDOM_BODIES = 120
MUTATED_BODIES = 160
VALID_BODY: dict[str, Any] = {
    "prompt": "Summarize: the launch moved to May.",
    "use_case": "summarization",
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    "max_tokens": 64,
    "temperature": 0.2,
}
VALID_FAULT: dict[str, Any] = {"model": "amazon.nova-micro-v1:0", "region": "us-east-1", "latency_ms": 1}


class Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, raw: bytes, what: str) -> None:
        self.status, self.headers, self.raw, self.what = status, headers, raw, what

    def check(self, *, head: bool = False) -> Any:
        """Assert the project's standard for this answer; returns the parsed body."""
        context = f"{self.what!r} -> {self.status} {self.raw[:300]!r}"
        assert 200 <= self.status < 500, context
        assert self.status == 200 or self.status >= 400, context
        assert b"Traceback" not in self.raw, context
        if head:
            assert self.raw == b"", context
            return None
        assert "json" in (self.headers.get("Content-Type") or ""), context
        try:
            document = json.loads(self.raw)
        except ValueError:
            pytest.fail(f"answer is not JSON: {context}")
        assert isinstance(document, dict), context
        if self.status >= 400:
            # The router's own {"error", "message"}, or OpenAI's {"error": {"message", ...}} under /v1
            error = document.get("error")
            message = error.get("message") if isinstance(error, dict) else document.get("message")
            assert isinstance(message, str) and message.strip(), context
        return document


class Client:
    """One keep-alive HTTP/1.1 connection to the endpoint, reopened when the server closes it."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None) -> Answer:
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        raw = response.read()
        return Answer(response.status, response.headers, raw, f"{method} {path} {(body or b'')[:120]!r}")

    def raw(self, data: bytes, *, half_close: bool = False) -> Answer:
        """Send bytes as they are on a fresh connection and read the one answer."""
        with socket.create_connection((self.host, self.port), timeout=60) as sock:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            response = http.client.HTTPResponse(sock)
            response.begin()
            return Answer(response.status, response.headers, response.read(), data[:160].decode("latin-1"))

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def client(endpoint) -> Iterator[Client]:
    log_before = len(endpoint.log_text())
    http_client = Client(endpoint.base_url)
    yield http_client
    http_client.close()
    # The server is still serving, and nothing it answered went through a stack trace
    assert Client(endpoint.base_url).send("GET", "/health", None).check()["status"] == "ok"
    assert "Traceback" not in endpoint.log_text()[log_before:]


# --- generators ----------------------------------------------------------------------------------

_ALPHABET = string.printable + "éß中文😀\u200b\u202e\x00\x7f"


def random_text(rng: random.Random, *, max_len: int = 40) -> str:
    chars = [rng.choice(_ALPHABET) for _ in range(rng.randrange(max_len))]
    if rng.random() < 0.15:  # an unpaired surrogate: json.dumps writes it as a \udXXX escape
        chars.insert(rng.randrange(len(chars) + 1), chr(rng.randrange(0xD800, 0xE000)))
    return "".join(chars)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "text"] + (["list", "object"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, rng.randrange(-1000, 100_000)])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e308, 1e-320, rng.uniform(-5, 5)])
    if kind == "text":
        return random_text(rng)
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [*VALID_BODY, "images", "model", "", "__proto__", random_text(rng, max_len=8)]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def mutate(rng: random.Random, document: dict[str, Any]) -> bytes:
    """A valid document with one structural or byte-level mutation."""
    choice = rng.randrange(8)
    if choice == 0:  # one field gets a random value
        mutated = dict(document)
        mutated[rng.choice(list(document))] = random_json(rng)
        return json.dumps(mutated).encode()
    if choice == 1:  # an unknown field
        return json.dumps({**document, random_text(rng, max_len=10): random_json(rng)}).encode()
    if choice == 2:  # a field dropped
        mutated = dict(document)
        mutated.pop(rng.choice(list(document)))
        return json.dumps(mutated).encode()
    raw = bytearray(json.dumps(document).encode())
    position = rng.randrange(len(raw))
    if choice == 3:  # a byte flipped (may break UTF-8 or JSON)
        raw[position] ^= 1 << rng.randrange(8)
    elif choice == 4:  # truncated
        del raw[position:]
    elif choice == 5:  # random bytes inserted
        raw[position:position] = rng.randbytes(rng.randrange(1, 6))
    elif choice == 6:  # a slice duplicated
        raw[position:position] = raw[position : position + rng.randrange(1, 20)]
    else:  # a structural character swapped for another
        raw[position] = ord(rng.choice('{}[]:,"\\'))
    return bytes(raw)


def nested_arrays(depth: int, *, closed: bool = True) -> bytes:
    return b"[" * depth + (b"]" * depth if closed else b"")


def nested_objects(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


# --- /generate -------------------------------------------------------------------------------------


def test_random_bodies_get_json_answers_never_a_5xx(client):
    rng = random.Random(SEED)
    for _ in range(RANDOM_BODIES):
        body = json.dumps(random_json(rng)).encode() if rng.random() < 0.7 else rng.randbytes(rng.randrange(64))
        client.send("POST", "/generate", body, {"Content-Type": "application/json"}).check()


def test_mutated_valid_bodies_get_json_answers_never_a_5xx(client):
    rng = random.Random(SEED + 1)
    for _ in range(MUTATED_BODIES):
        client.send("POST", "/generate", mutate(rng, VALID_BODY), {"Content-Type": "application/json"}).check()


CHAT_BODY = {
    "model": "auto",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ],
    "max_tokens": 64,
    "temperature": 0.5,
    "stop": ["\n\n"],
}


def test_chat_completions_answer_random_and_mutated_bodies_with_json_never_a_5xx(client):
    rng = random.Random(SEED + 3)
    for _ in range(RANDOM_BODIES // 2):
        body = json.dumps(random_json(rng)).encode() if rng.random() < 0.7 else rng.randbytes(rng.randrange(64))
        client.send("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"}).check()
    for _ in range(MUTATED_BODIES // 2):
        answer = client.send(
            "POST", "/v1/chat/completions", mutate(rng, CHAT_BODY), {"Content-Type": "application/json"}
        )
        body = answer.check()
        assert answer.status == 200 or set(body) == {"error"}, body  # OpenAI's error shape, always


@pytest.mark.parametrize(
    "body",
    [
        b'{"stream": true, "a": ' + nested_arrays(100_000) + b"}",
        b'{"model": "auto", "stream": true, "messages": ' + nested_arrays(5_000) + b"}",
    ],
    ids=["stream-arrays-100000", "stream-messages-arrays-5000"],
)
def test_a_deeply_nested_chat_body_asking_for_a_stream_is_a_400(client, body):
    # Local mode peeks at "stream" before the handler reads the body: the peek must not fail on it either
    answer = client.send("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    document = answer.check()
    assert answer.status == 400
    assert "nests arrays or objects too deeply" in document["error"]["message"]


def test_random_header_values_get_json_answers_never_a_5xx(client):
    rng = random.Random(SEED + 2)
    names = ["X-User-Tier", "X-Caller-Id", "X-Latency-Budget-Ms", "Content-Type", "Accept", "X-Api-Key"]
    odd_values = ["", " ", "-1", "0", "NaN", "1e309", "99999999999999999999", "premium" * 200, "é", "a\tb"]
    for _ in range(60):
        headers = {
            rng.choice(names): rng.choice([*odd_values, random_text(rng).encode("utf-8", "replace").hex()])
            for _ in range(rng.randrange(1, 4))
        }
        client.send("POST", "/generate", json.dumps({"prompt": "Hi"}).encode(), headers).check()


@pytest.mark.parametrize(
    "body",
    [
        nested_arrays(1_000),
        nested_arrays(100_000),
        nested_arrays(100_000, closed=False),
        nested_objects(1_000),
        nested_objects(100_000),
        b'{"prompt": ' + nested_objects(1_000) + b"}",
        b'{"prompt": ' + nested_arrays(1_000) + b"}",
        b'{"prompt": "hi", "messages": ' + nested_arrays(1_000) + b"}",
        b'{"prompt": "hi", "system": ' + nested_objects(1_000) + b"}",
        b'{"prompt": "hi", "images": [{"format": "png", "data": ' + nested_arrays(100_000) + b"}]}",
    ],
    ids=[
        "arrays-1000",
        "arrays-100000",
        "arrays-100000-unclosed",
        "objects-1000",
        "objects-100000",
        "prompt-objects-1000",
        "prompt-arrays-1000",
        "messages-arrays-1000",
        "system-objects-1000",
        "image-data-arrays-100000",
    ],
)
def test_rejects_deeply_nested_json_with_a_400(client, body):
    answer = client.send("POST", "/generate", body, {"Content-Type": "application/json"})
    answer.check()
    assert answer.status == 400, answer.raw[:300]


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "hi \\ud800"}',
        b'{"prompt": "\\udfff tail"}',
        b'{"prompt": "hi", "system": "\\ud83d"}',
        b'{"messages": [{"role": "user", "content": "x \\udc00"}]}',
        b'{"prompt": "hi \xed\xa0\x80"}',  # a surrogate encoded as UTF-8: invalid UTF-8
        b'{"prompt": "hi \xff\xfe"}',
        b'{"prompt": "hi \xc0\xaf"}',  # an overlong encoding
        b"\xef\xbb\xbf" + b'{"prompt": "hi"}',  # a byte order mark
        b'{"prompt": "\x00"}',
    ],
)
def test_poison_text_gets_a_4xx_never_a_server_error(client, body):
    answer = client.send("POST", "/generate", body, {"Content-Type": "application/json"})
    answer.check()
    if b"\\ud" in body or b"\xed\xa0" in body or b"\xff" in body or b"\xc0" in body:
        assert answer.status == 400, answer.raw[:300]


# --- framing and headers, byte for byte ------------------------------------------------------------


def request_bytes(method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


BODY = b'{"prompt": "Hello!"}'
CHUNKED = b"14\r\n" + BODY + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request_bytes("POST", "/generate", [("Content-Length", "abc")], BODY), 400),
        (request_bytes("POST", "/generate", [("Content-Length", "-5")], BODY), 400),
        (request_bytes("POST", "/generate", [("Content-Length", "+20")], BODY), 400),
        (request_bytes("POST", "/generate", [("Content-Length", "1e3")], BODY), 400),
        (request_bytes("POST", "/generate", [("Content-Length", "9" * 40)], BODY), 400),
        (request_bytes("POST", "/generate", [("Content-Length", "999999999999")], BODY), 413),
        (request_bytes("POST", "/generate", [("Content-Length", "20"), ("Content-Length", "21")], BODY), 400),
        (request_bytes("POST", "/generate", [("Transfer-Encoding", "chunked")], CHUNKED), 411),
        (request_bytes("POST", "/generate", [("Connection", "close")], BODY), 400),  # no Content-Length
        (request_bytes("POST", "/generate", [("Content-Length", "0")]), 400),
        (request_bytes("POST", "/generate", [("X-User-Tier", "\xff\xfe"), ("Content-Length", "20")], BODY), 400),
        (request_bytes("POST", "/generate", [("X-Latency-Budget-Ms", "1e309"), ("Content-Length", "20")], BODY), 400),
        (request_bytes("GET", "/health", [("X-Big", "a" * 70_000)]), 431),
        (request_bytes("GET", "/health", [(f"X-H{i}", "v") for i in range(120)]), 431),
        (request_bytes("GET", "/" + "a" * 70_000, []), 414),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 400),
        (b"GET /health HTTP/x.y\r\nHost: x\r\n\r\n", 400),
        (request_bytes("BREW", "/generate", []), 405),
        (request_bytes("GET", "/%ff%fe?%zz=%", []), 404),
    ],
    ids=lambda value: value if isinstance(value, int) else value[:50].decode("latin-1"),
)
def test_odd_framing_and_headers_get_a_json_4xx(client, data, status):
    answer = client.raw(data)
    answer.check()
    assert answer.status == status, answer.raw[:300]


def test_a_body_shorter_than_its_content_length_is_a_400_once_the_client_stops_sending(client):
    answer = client.raw(request_bytes("POST", "/generate", [("Content-Length", "200")], BODY), half_close=True)
    answer.check()
    assert answer.status == 400
    assert "shorter than its Content-Length" in json.loads(answer.raw)["message"]


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PATCH", "PUT", "DELETE"])
def test_other_methods_on_generate_get_json_answers(client, method):
    answer = client.send(method, "/generate", b"{}" if method in ("PATCH", "PUT") else None)
    answer.check(head=method == "HEAD")


# --- the admin APIs ----------------------------------------------------------------------------------


def test_fault_admin_api_answers_random_and_mutated_bodies_with_200_or_a_json_400(client):
    rng = random.Random(SEED + 3)
    bodies = [json.dumps(random_json(rng)).encode() for _ in range(60)]
    bodies += [mutate(rng, VALID_FAULT) for _ in range(80)]
    bodies += [rng.randbytes(rng.randrange(40)) for _ in range(20)]
    for body in bodies:
        answer = client.send("PUT", "/_sim/faults", body, {"Content-Type": "application/json"})
        answer.check()
        assert answer.status in (200, 400), answer.raw[:300]
    assert client.send("GET", "/_sim/faults", None).check()["faults"] is not None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"null", "must be a JSON object"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"model": "\xed\xa0\x80"}', "not valid UTF-8"),
        (nested_arrays(1_000), "nested too deeply"),
        (nested_arrays(100_000), "nested too deeply"),
        (b'{"model": "m", "region": "*", "extra": ' + nested_objects(1_000) + b"}", "nested too deeply"),
        (b'{"latency_ms": ' + b"9" * 5_000 + b"}", "not valid JSON"),
        (b'{"model": "m",', "not valid JSON"),
        (b'{"model": "m", "on_demand": "no"}', "on_demand must be true or false"),
        (b'{"model": "m", "error": []}', "fault error must be one of"),
        (b'{"model": "m", "error": {}}', "fault error must be one of"),
    ],
)
def test_fault_admin_api_rejects_bad_bodies_with_a_message_naming_the_problem(client, body, expected):
    answer = client.send("PUT", "/_sim/faults", body, {"Content-Type": "application/json"})
    document = answer.check()
    assert answer.status == 400
    assert expected in document["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/_local/state"), ("POST", "/_local/state"), ("PUT", "/_sim/calls"), ("POST", "/_sim/nothing")],
)
def test_admin_apis_answer_unsupported_calls_with_a_json_4xx(client, method, path):
    client.send(method, path, b'{"x": 1}').check()
