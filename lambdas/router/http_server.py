"""The HTTP/1.1 layer of local mode, the Bedrock simulator and the streaming function (``web_adapter.py``).

Robust body reading and JSON errors, answered promptly:

- ``disable_nagle_algorithm``: the base class writes the headers and the body in two ``send`` calls; with
  Nagle's algorithm on, the second waits for the client's delayed ACK of the first, about 40 ms, on every
  keep-alive response.
- The request body is read only when its framing can be trusted: one ``Content-Length`` of plain digits,
  within the limit, fully received before the socket timeout; anything else is a 4xx with a JSON message,
  and the connection is closed because its next request cannot be found.
- Errors the base class answers itself (a garbled request line, oversized headers, an unknown method)
  get a JSON ``{"message": ...}`` body too, and never a 5xx: they are the client's mistakes.

``LocalHTTPServer`` serves the handler with a thread per connection and a listen backlog that holds a
burst of clients connecting at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

# Seconds a connection may sit idle or stall mid-request before its thread gives up on it.
SOCKET_TIMEOUT_S = 60.0
# Connections the kernel holds for accept(): socketserver's default of 5 dropped or reset 16 of 32 clients
# connecting at once. The kernel caps it at net.core.somaxconn (4096 on current Linux, 128 on macOS).
LISTEN_BACKLOG = 1024


class LocalHTTPServer(ThreadingHTTPServer):
    """A thread per connection (daemon threads: stopping the server does not wait for idle keep-alives)."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A peer that hung up (a client that stopped reading a stream) is not an error worth a traceback."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class BadFraming(Exception):
    """The request's body cannot be located or read; answer ``status`` and close the connection."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def content_length(values: list[str] | None, *, limit: int) -> int:
    """The body length a request announces.

    Args:
        values: every ``Content-Length`` header of the request (none: no body).
        limit: the largest body accepted, in bytes.

    Raises:
        BadFraming: conflicting or malformed values (400), or a body over ``limit`` (413).
    """
    distinct = {value.strip() for value in values or ()}
    if not distinct:
        return 0
    if len(distinct) > 1:
        raise BadFraming(HTTPStatus.BAD_REQUEST, f"conflicting Content-Length headers: {', '.join(sorted(distinct))}")
    (text,) = distinct
    # Plain digits only: int() would also take "-5", "+5", "1_000" and 10,000-digit numbers.
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise BadFraming(HTTPStatus.BAD_REQUEST, f"Content-Length must be a non-negative integer, got {shown!r}")
    length = int(text)
    if length > limit:
        raise BadFraming(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"Request Too Long: {length} bytes, over the limit of {limit}"
        )
    return length


class JsonRequestHandler(BaseHTTPRequestHandler):
    """Base handler: subclasses implement ``do_*`` with ``read_body()`` and ``send_all()``."""

    protocol_version = "HTTP/1.1"
    # What a request line without a valid version is answered in: with the base class's "HTTP/0.9", the
    # answer to a garbled request line would lose its status line and headers.
    default_request_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = SOCKET_TIMEOUT_S
    max_body_bytes: ClassVar[int] = 10 * 1024 * 1024

    def read_body(self) -> bytes | None:
        """The request body, or None when its framing was bad (the 4xx answer is already sent)."""
        try:
            if self.headers.get("Transfer-Encoding") is not None:
                raise BadFraming(
                    HTTPStatus.LENGTH_REQUIRED,
                    "Transfer-Encoding is not supported here; send the body with a Content-Length",
                )
            length = content_length(self.headers.get_all("Content-Length"), limit=self.max_body_bytes)
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                raise BadFraming(
                    HTTPStatus.BAD_REQUEST,
                    f"request body is shorter than its Content-Length ({len(body)} of {length} bytes)",
                )
        except BadFraming as exc:
            self.send_all(exc.status, [("Content-Type", "application/json")], _message(exc.message), close=True)
            return None
        except TimeoutError:
            message = _message("timed out waiting for the request body")
            self.send_all(HTTPStatus.REQUEST_TIMEOUT, [("Content-Type", "application/json")], message, close=True)
            return None
        return body

    def send_all(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes | Iterator[bytes], *, close: bool = False
    ) -> None:
        """Send one response; the handler sets ``Content-Length`` and ``Connection`` itself.

        A body given as an iterator of byte strings is sent as it is made, in chunked transfer encoding (each
        piece flushed at once); if making it fails part way, the connection is closed without the last chunk,
        so the client sees a broken response rather than a short one that looks whole.
        """
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        if not isinstance(body, bytes):
            self._send_chunked(body, close=close)
            return
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_chunked(self, pieces: Iterator[bytes], *, close: bool) -> None:
        self.send_header("Transfer-Encoding", "chunked")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
            for piece in pieces:
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except Exception:  # the maker failed or the client left: end the connection, never a short answer
            self.close_connection = True
        finally:
            end = getattr(pieces, "close", None)
            if callable(end):
                end()  # the maker ends its work (a model stream, a budget reservation) even if unread

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own rejections, as JSON and as the client's error (4xx)."""
        if code == HTTPStatus.NOT_IMPLEMENTED:  # an unknown method: the client's choice, not a server fault
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command!r} is not supported"
        elif code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code, message = HTTPStatus.BAD_REQUEST, f"{message or 'HTTP version not supported'}; use HTTP/1.1"
        text = message or HTTPStatus(code).phrase
        self.send_all(code, [("Content-Type", "application/json")], _message(text), close=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return


def _message(text: str) -> bytes:
    return json.dumps({"message": text}).encode()


Dispatch = Callable[
    [str, str, dict[str, str], bytes, str], tuple[int, Iterable[tuple[str, str]], "bytes | Iterator[bytes]"]
]
"""What a server answers with: (method, path, headers, body, client IP) -> (status, headers, body or pieces)."""


def make_server(dispatch: Dispatch, host: str, port: int, *, max_body_bytes: int) -> LocalHTTPServer:
    """A threaded server that reads each request's body safely and sends ``dispatch``'s answer."""

    class Handler(JsonRequestHandler):
        def _serve(self) -> None:
            body = self.read_body()
            if body is None:
                return
            headers = {name: value for name, value in self.headers.items()}
            self.send_all(*dispatch(self.command, self.path, headers, body, self.client_address[0]))

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    Handler.max_body_bytes = max_body_bytes
    return LocalHTTPServer((host, port), Handler)
