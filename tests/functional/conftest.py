"""Drive the real Lambda handler with API Gateway REST proxy events and an in-memory Bedrock."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "router-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RoutedBedrockTest")

from lambdas.router import handler
from lambdas.router.bedrock import StreamEvent
from lambdas.router.engine import PlannedCall
from lambdas.router.executor import ModelCallError, ModelReply
from lambdas.router.policy import DEFAULT_POLICY_PATH
from lambdas.router.policy_store import PolicyStore, file_fetcher
from lambdas.router.service import RouterService
from lambdas.router.state_store import InMemoryBackend
from local_endpoint.server import LocalLambdaContext, proxy_event


class FakeBedrock:
    """Answers every call unless a (model key, region) is told to fail; records what it was sent."""

    def __init__(self) -> None:
        self.failures: dict[tuple[str, str], str] = {}
        self.calls: list[dict[str, Any]] = []

    def fail(self, model: str, region: str = "*", code: str = "ServiceUnavailableException") -> None:
        self.failures[(model, region)] = code

    def converse(self, call: PlannedCall, timeout_s: float, *, messages, system, inference_config) -> ModelReply:
        self.calls.append(
            {
                "model": call.model.key,
                "region": call.region,
                "messages": messages,
                "system": system,
                "inference_config": inference_config,
                "timeout_s": timeout_s,
            }
        )
        code = self.failures.get((call.model.key, call.region)) or self.failures.get((call.model.key, "*"))
        if code is None and ("*", "*") in self.failures:
            code = self.failures[("*", "*")]
        if code:
            raise ModelCallError(
                code, "Input is too long for requested model." if code == "ValidationException" else code
            )
        return ModelReply(
            text=f"answer from {call.model.model_id}", input_tokens=100, output_tokens=50, stop_reason="end_turn"
        )


class FakeStream:
    """A started stream of one answer: its first piece, the rest, then the stop reason and usage."""

    def __init__(self, text: str) -> None:
        self.first_text = text[:6]
        self._rest = [text[6:]] if text[6:] else []
        self.closed = False

    def __iter__(self):
        yield StreamEvent(text=self.first_text)
        for piece in self._rest:
            yield StreamEvent(text=piece)
        yield StreamEvent(stop_reason="end_turn")
        yield StreamEvent(input_tokens=100, output_tokens=50)

    def close(self) -> None:
        self.closed = True


def _converse_stream(self, call, first_token_timeout_s, *, idle_timeout_s, messages, system, inference_config):
    reply = self.converse(
        call, first_token_timeout_s, messages=messages, system=system, inference_config=inference_config
    )
    self.calls[-1]["stream"] = True
    return FakeStream(reply.text)


FakeBedrock.converse_stream = _converse_stream  # type: ignore[attr-defined]


def api_event(
    method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: str | None = None
) -> dict[str, Any]:
    text = raw if raw is not None else (json.dumps(body) if body is not None else "")
    headers = {"Content-Type": "application/json", **(headers or {})}
    return proxy_event(method, path, headers, text.encode(), source_ip="203.0.113.9", request_id="req-123")


Invoke = Callable[..., tuple[int, dict[str, str], dict[str, Any]]]


@pytest.fixture
def bedrock() -> FakeBedrock:
    return FakeBedrock()


@pytest.fixture
def invoke(bedrock: FakeBedrock) -> Iterator[Invoke]:
    """Call the handler; returns (status, headers, json body)."""
    service = RouterService(
        policies=PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=300),
        gateway=bedrock,
        sleep=lambda _s: None,
    )
    handler.configure(service)

    def call(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: str | None = None):
        result = handler.lambda_handler(api_event(method, path, body, headers, raw), LocalLambdaContext("req-123"))
        flat = {k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}
        flat.update(result.get("headers") or {})
        return result["statusCode"], flat, json.loads(result["body"])

    yield call
    handler.configure(None)


def today_key(store: InMemoryBackend) -> str:
    """The key of the day's global spend counter in an in-memory live-state store."""
    return next(key for key in store.spend if key.startswith("d:") and ":" not in key[2:])


def reserved_at_each_call(bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch, store: InMemoryBackend) -> list[float]:
    """The day's spend counter as each model call starts (the reservation is made before the first)."""
    seen: list[float] = []
    answer = bedrock.converse

    def converse(call, timeout_s, **kwargs):
        seen.append(store.spend[today_key(store)])
        return answer(call, timeout_s, **kwargs)

    monkeypatch.setattr(bedrock, "converse", converse)
    return seen
