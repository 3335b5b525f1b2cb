"""Bedrock Runtime adapter: one Converse call, within its time budget, mapped to ``ModelReply`` or ``ModelCallError``.

botocore's own retries are off: the executor owns retries, backoff and failover. The client comes from
botocore, the layer boto3's clients are made of: the same ``bedrock-runtime`` client and API, without
importing boto3's resource layer and s3transfer (about 0.15 s of cold start).

Time limits. A botocore ``Config`` (connect and read timeouts) is fixed per client, so clients are cached per
(region, connect timeout, read timeout), both cut down to a 50 ms grid, in a small LRU: the common attempt
(the policy's full attempt timeout) always finds its client; an attempt cut short by the deadline may build
one (about 3 ms). Socket timeouts alone do not bound a call: botocore's read timeout applies to each socket
read, not to the whole reply (a server that trickles bytes never trips it), and a slow connect adds to the
read. So the call runs on a worker thread that the caller waits for at most the attempt's budget: past it,
the attempt is a timeout and the worker is abandoned (its socket timeouts end it soon after).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from .aws_clients import new_client
from .engine import PlannedCall
from .executor import AttemptTimeout, FailureClass, ModelCallError, ModelReply

TIMEOUT_GRID_MS = 50
"""Client timeouts are cut down to this grid, so that attempts cut short by the deadline share clients."""
MAX_CLIENTS = 16
"""Clients kept per gateway (least recently used first out): regions times the few distinct budgets in use."""
GUARD_GRACE_S = 0.02
"""How long past its budget the caller waits for a call, so that the socket timeout, not the guard, ends it."""


class BedrockGateway:
    """Calls Bedrock Converse through a botocore ``bedrock-runtime`` client.

    Args:
        endpoint_url: send requests here instead of AWS (the local simulator); None for real Bedrock.
        connect_timeout_s: TCP connect timeout when a call does not say (an ``AttemptTimeout`` carries the
            policy's ``resilience.connect_timeout_ms``).
        credentials: explicit static credentials (local simulator only); None uses the default chain.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        connect_timeout_s: float = 2.0,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._connect_timeout_s = connect_timeout_s
        self._credentials = dict(credentials or {})
        self._clients: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, region: str, read_timeout_s: float, connect_timeout_s: float | None = None) -> Any:
        """The cached client whose timeouts are these, cut down to the 50 ms grid (at least one step)."""
        connect = self._connect_timeout_s if connect_timeout_s is None else connect_timeout_s
        key = (region, _grid_ms(min(connect, read_timeout_s)), _grid_ms(read_timeout_s))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._new_client(region, connect_ms=key[1], read_ms=key[2])
                self._clients[key] = client
                if len(self._clients) > MAX_CLIENTS:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(key)
        return client

    def _new_client(self, region: str, *, connect_ms: int, read_ms: int) -> Any:
        return new_client(
            "bedrock-runtime",
            region=region,
            endpoint_url=self._endpoint_url,
            credentials=self._credentials,
            connect_timeout=connect_ms / 1000.0,
            read_timeout=read_ms / 1000.0,
            retries={"total_max_attempts": 1, "mode": "standard"},
            tcp_keepalive=True,
            max_pool_connections=50,
        )

    def converse(
        self,
        call: PlannedCall,
        timeout_s: float,
        *,
        messages: Sequence[Mapping[str, Any]],
        system: Sequence[Mapping[str, Any]],
        inference_config: Mapping[str, Any],
    ) -> ModelReply:
        """One Converse call that returns or raises within ``timeout_s`` (plus about 20 ms).

        Args:
            timeout_s: the attempt's budget in seconds; an ``AttemptTimeout`` also sets the connect timeout.

        Raises:
            ModelCallError: the call failed; ``failure_class`` says whether to back off, fail over or move on.
        """
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

        request: dict[str, Any] = {
            "modelId": call.model.model_id,
            "messages": list(messages),
            "inferenceConfig": dict(inference_config),
        }
        if system:
            request["system"] = list(system)
        started = time.monotonic()
        budget_s = float(timeout_s)
        connect_s = timeout_s.connect_s if isinstance(timeout_s, AttemptTimeout) else None
        client = self.client(call.region, budget_s, connect_s)
        # The first client of a cold start takes ~70 ms to build: that counts against the budget too.
        limit_s = budget_s + GUARD_GRACE_S - (time.monotonic() - started)
        try:
            response = _call_within(limit_s, lambda: client.converse(**request))
        except ClientError as exc:
            raise _service_error(exc, "ClientError") from None
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise ModelCallError("Timeout", str(exc), FailureClass.REGIONAL) from None
        except TimeoutError:
            raise ModelCallError(
                "Timeout", f"no reply within the attempt's {budget_s * 1000:.0f} ms", FailureClass.REGIONAL
            ) from None
        except BotoCoreError as exc:  # connection refused, DNS, protocol errors: the region is unreachable
            raise ModelCallError(type(exc).__name__, str(exc), FailureClass.REGIONAL) from None
        return _reply_from(response)

    def converse_stream(
        self,
        call: PlannedCall,
        first_token_timeout_s: float,
        *,
        idle_timeout_s: float,
        messages: Sequence[Mapping[str, Any]],
        system: Sequence[Mapping[str, Any]],
        inference_config: Mapping[str, Any],
    ) -> ModelStream:
        """Open a ConverseStream call and wait at most ``first_token_timeout_s`` for its first text.

        Bedrock can hold a request without answering or throttling it; a stream that has not started in time
        is a timeout (REGIONAL: the caller moves on to its next candidate). After the start, each read waits at
        most ``idle_timeout_s`` (the client's read timeout).

        Raises:
            ModelCallError: the call failed, or no text came within ``first_token_timeout_s``.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {
            "modelId": call.model.model_id,
            "messages": list(messages),
            "inferenceConfig": dict(inference_config),
        }
        if system:
            request["system"] = list(system)
        client = self.client(call.region, idle_timeout_s, min(self._connect_timeout_s, first_token_timeout_s))

        abandoned = threading.Event()

        def start() -> tuple[str, Any, Mapping[str, Any], tuple[StreamEvent, ...]]:
            response = client.converse_stream(**request)
            events = iter(response["stream"])
            found: tuple[str, Any, Mapping[str, Any], tuple[StreamEvent, ...]] | None = None
            for event in events:
                pieces = list(_stream_events(event))
                if any(piece.text for piece in pieces):
                    found = (next(piece.text for piece in pieces if piece.text), events, response, ())
                    break
                if "messageStop" in event:  # an empty answer: nothing will follow but the metadata
                    found = ("", events, response, tuple(pieces))
                    break
            if found is None:
                raise ModelCallError("EmptyStream", "the stream ended before any text", FailureClass.REGIONAL)
            if abandoned.is_set():  # the caller moved on at the first-token timeout: drop the connection
                response["stream"].close()
            return found

        try:
            first, events, response, pending = _call_within(first_token_timeout_s + GUARD_GRACE_S, start)
        except ClientError as exc:  # an EventStreamError (an exception event before the first text) is one too
            raise _service_error(exc, "ClientError") from None
        except TimeoutError:
            abandoned.set()
            raise ModelCallError(
                "FirstTokenTimeout",
                f"no text within the first-token timeout of {first_token_timeout_s * 1000:.0f} ms",
                FailureClass.REGIONAL,
            ) from None
        except BotoCoreError as exc:
            raise ModelCallError(type(exc).__name__, str(exc), FailureClass.REGIONAL) from None
        return ModelStream(first, events, response, pending)


class StreamEvent(NamedTuple):
    """One piece of a streamed answer: text, or (at the end) the stop reason and the token counts."""

    text: str = ""
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class ModelStream:
    """A ConverseStream answer whose first text has arrived: iterate for ``StreamEvent`` s, first one first.

    Iterating may raise ``ModelCallError`` (failure class REGIONAL) when the stream breaks after its start: an
    exception event from Bedrock, or no bytes within the client's read timeout. ``close`` drops the connection.
    """

    def __init__(
        self, first_text: str, events: Any, response: Mapping[str, Any], pending: tuple[StreamEvent, ...] = ()
    ) -> None:
        self.first_text = first_text
        self._events = events
        self._response = response
        self._pending = pending  # read while waiting for the first text (an empty answer's stop reason)

    def __iter__(self) -> Iterator[StreamEvent]:
        from botocore.exceptions import BotoCoreError, EventStreamError, ReadTimeoutError
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

        yield StreamEvent(text=self.first_text)
        yield from self._pending
        try:
            for event in self._events:
                yield from _stream_events(event)
        except EventStreamError as exc:
            raise _service_error(exc, "EventStreamError", FailureClass.REGIONAL) from None
        except (ReadTimeoutError, Urllib3ReadTimeout, TimeoutError) as exc:  # the event stream reads urllib3 directly
            raise ModelCallError("Timeout", f"the stream stalled: {exc}", FailureClass.REGIONAL) from None
        except (BotoCoreError, Urllib3Error, OSError) as exc:
            raise ModelCallError(type(exc).__name__, str(exc), FailureClass.REGIONAL) from None

    def close(self) -> None:
        stream = self._response.get("stream")
        if stream is not None and hasattr(stream, "close"):
            stream.close()


def _stream_events(event: Mapping[str, Any]) -> Iterator[StreamEvent]:
    if "contentBlockDelta" in event:
        text = event["contentBlockDelta"].get("delta", {}).get("text")
        if text:
            yield StreamEvent(text=text)
    elif "messageStop" in event:
        yield StreamEvent(stop_reason=str(event["messageStop"].get("stopReason", "end_turn")))
    elif "metadata" in event:
        usage = event["metadata"].get("usage", {})
        yield StreamEvent(
            input_tokens=int(usage.get("inputTokens", 0)), output_tokens=int(usage.get("outputTokens", 0))
        )


def _service_error(exc: Any, default_code: str, failure_class: FailureClass | None = None) -> ModelCallError:
    """A botocore ``ClientError`` (or ``EventStreamError``) as a ``ModelCallError`` with Bedrock's code and message.

    ``failure_class`` None classifies by the code (``executor.classify_failure``).
    """
    error = exc.response.get("Error", {})
    return ModelCallError(error.get("Code", default_code), error.get("Message", str(exc)), failure_class)


def _grid_ms(seconds: float) -> int:
    millis = int(seconds * 1000 + 1e-6)  # 1.15 s is 1149.999... ms in binary floating point
    return max(TIMEOUT_GRID_MS, millis // TIMEOUT_GRID_MS * TIMEOUT_GRID_MS)


class _Outcome:
    __slots__ = ("error", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None


def _call_within(limit_s: float, fn: Callable[[], Any]) -> Any:
    """``fn()`` on a worker thread; its result or exception, or ``TimeoutError`` once ``limit_s`` has passed.

    A thread per call, not a pool: an abandoned call must not hold up the next one.
    """
    outcome = _Outcome()

    def run() -> None:
        try:
            outcome.value = fn()
        except BaseException as exc:  # handed to the caller, who maps it
            outcome.error = exc

    worker = threading.Thread(target=run, name="bedrock-converse", daemon=True)
    worker.start()
    worker.join(max(0.0, limit_s))
    if worker.is_alive():
        raise TimeoutError
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


def _reply_from(response: Mapping[str, Any]) -> ModelReply:
    content = response.get("output", {}).get("message", {}).get("content", [])
    text = "".join(block.get("text", "") for block in content if isinstance(block, Mapping))
    usage = response.get("usage", {})
    return ModelReply(
        text=text,
        input_tokens=int(usage.get("inputTokens", 0)),
        output_tokens=int(usage.get("outputTokens", 0)),
        stop_reason=str(response.get("stopReason", "end_turn")),
    )
