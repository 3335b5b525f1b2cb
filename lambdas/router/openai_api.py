"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models`` over the same router.

A chat completion body is read into the router's own request (``contract.GenerateInput``) and checked by the
same rules as ``/generate`` (``contract.parse_generate``: sizes, turns, text, images), so both APIs accept
and refuse alike. ``model`` is one of what ``/v1/models`` lists:

- ``auto``: the policy decides (use case ``rules.default_use_case``, tier and complexity), as ``/generate``;
- a route name of the policy (``fast``, ``deep``, ``math-cascade``, ...): that route, cascade included;
- a model key or id of the policy's catalog, when the policy allows callers to choose a model
  (``rules.allow_model_override``): that model first, the route's others as fallbacks.

Anything else is a 404 ``model_not_found``. Supported: ``system``/``developer``, ``user`` and ``assistant``
messages whose content is a string or a list of ``text`` and ``image_url`` parts (``data:`` URLs of PNG,
JPEG, GIF or WebP: the router does not fetch URLs); ``max_tokens`` / ``max_completion_tokens``,
``temperature`` (0-1, what Bedrock's models take), ``top_p``, ``stop`` (up to 4); ``n`` of 1. Fields that do
not change the answer (``user``, ``seed``, ``metadata``, ``store``, zero penalties) are ignored when they have
OpenAI's types; tools, response formats, log probabilities and several choices are a 400
naming the field. ``stream: true`` answers in server-sent events (``sse``). The answer is OpenAI's
``chat.completion`` with ``usage``, plus a ``routing`` extension (route, model, region, fallback, cost,
latency and the decision), and headers ``x-selected-model`` and ``x-route``. Errors are OpenAI's
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from .contract import MAX_REQUEST_IMAGES, BadRequest, GenerateInput, UnknownModel, check_text, parse_generate
from .policy import AUTO_ROUTE, Policy

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
OWNER = "routed-bedrock"
MAX_STOP_SEQUENCES = 4
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_DATA_URL = re.compile(r"^data:image/([a-z]+);base64,", re.IGNORECASE)
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_IGNORED = frozenset(
    {"user", "seed", "metadata", "store", "service_tier", "parallel_tool_calls", "safety_identifier"}
    | {"prompt_cache_key", "prompt_cache_retention"}
)
# Fields OpenAI's own answers carry on messages, harmless when replayed empty in a history.
_EMPTY_MESSAGE_FIELDS = frozenset({"refusal", "tool_calls", "annotations", "audio", "function_call"})
_ZERO_ONLY = ("presence_penalty", "frequency_penalty")
_UNSUPPORTED = {
    "tools": "tool calling is not supported",
    "tool_choice": "tool calling is not supported",
    "functions": "function calling is not supported",
    "function_call": "function calling is not supported",
    "response_format": "response formats are not supported: ask for the format in the prompt",
    "logprobs": "log probabilities are not supported",
    "top_logprobs": "log probabilities are not supported",
    "logit_bias": "logit bias is not supported",
    "audio": "audio output is not supported",
    "modalities": "output modalities are not supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "reasoning effort is not supported",
    "web_search_options": "web search is not supported",
}
_KNOWN = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "stream"}
    | {"stream_options", *_IGNORED, *_ZERO_ONLY, *_UNSUPPORTED}
)
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
    "tool_use": "tool_calls",
    "model_context_window_exceeded": "length",
}
ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "budget_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "service_unavailable"),
}


def parse_chat(body: dict[str, Any], policy: Policy) -> GenerateInput:
    """Read a ``/v1/chat/completions`` body into the router's request, checked as ``/generate`` checks its own.

    Raises:
        UnknownModel: ``model`` is not one ``/v1/models`` lists (404).
        BadRequest: anything else wrong, naming the field (400).
    """
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(name[:40] for name in unknown[:5])}")
    for name, why in _UNSUPPORTED.items():
        value = body.get(name)
        if not (_off(value) or (name == "top_logprobs" and type(value) is int and value == 0)):
            raise BadRequest(f"{name}: {why}")
    for name in _ZERO_ONLY:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value != 0):
            raise BadRequest(f"{name}: only 0 is supported (got {_show(value)})")
    _check_ignored(body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false (got {_show(stream)})")
    include_usage = _stream_options(body.get("stream_options"), stream is True)
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n != 1):
        raise BadRequest(f"n: only 1 choice is supported (got {_show(n)})")
    if body.get("temperature") is not None and body.get("top_p") is not None:
        raise BadRequest("temperature and top_p: send one of them (Claude models on Bedrock refuse both together)")
    route, model = _resolve_model(body.get("model"), policy)
    system, turns, images = _messages(body.get("messages"))
    image_limit = min(policy.limits.max_images, MAX_REQUEST_IMAGES)
    if len(images) > image_limit:
        raise BadRequest(f"messages carry {len(images)} images, over the limit of {image_limit}")
    generate: dict[str, Any] = {"messages": [{"role": role, "content": text} for role, text in turns]}
    if system:
        generate["system"] = system
    if images:
        generate["images"] = images
    if model is not None:
        generate["model"] = model
    max_tokens = _max_tokens(body)
    if max_tokens is not None and max_tokens > policy.limits.max_output_tokens:
        name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        raise BadRequest(f"{name} {max_tokens} is over the limit of {policy.limits.max_output_tokens}")
    if max_tokens is not None:
        generate["max_tokens"] = max_tokens
    temperature = _number(body, "temperature", 0.0, 1.0)
    if temperature is not None:
        generate["temperature"] = temperature
    request = parse_generate(generate, policy.limits)
    return request._replace(
        top_p=_number(body, "top_p", 0.0, 1.0),
        stop=_stop(body.get("stop")),
        route=route,
        stream=stream is True,
        include_usage=include_usage,
    )


def _stream_options(value: Any, stream: bool) -> bool:
    """Whether a streamed answer ends with a usage chunk (``stream_options.include_usage``)."""
    if value is None:
        return False
    if not stream:  # as OpenAI answers it, whatever the options say
        raise BadRequest("stream_options is only allowed with stream: true")
    if not isinstance(value, dict) or set(value) - {"include_usage", "include_obfuscation"}:
        raise BadRequest(f"stream_options must be an object with include_usage (got {_show(value)})")
    for name in ("include_usage", "include_obfuscation"):
        if not isinstance(value.get(name, False), bool):
            raise BadRequest(f"stream_options.{name} must be true or false (got {_show(value[name])})")
    return bool(value.get("include_usage", False))


def _off(value: Any) -> bool:
    """Whether an unsupported feature's field leaves it off: absent, null, false or empty (not 0 or "")."""
    return value is None or value is False or (isinstance(value, list | dict) and not value)


_IGNORED_TYPES: dict[str, tuple[type, ...]] = {
    "user": (str,),
    "seed": (int,),
    "metadata": (dict,),
    "store": (bool,),
    "service_tier": (str,),
    "parallel_tool_calls": (bool,),
    "safety_identifier": (str,),
    "prompt_cache_key": (str,),
    "prompt_cache_retention": (str,),
}
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", bool: "true or false"}


def _check_ignored(body: dict[str, Any]) -> None:
    """Fields that do not change the answer are ignored, but only when they are what OpenAI takes."""
    for name, types in _IGNORED_TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise BadRequest(f"{name} must be {_TYPE_NAMES[types[0]]} (got {_show(value)})")
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and not all(isinstance(v, str) for v in metadata.values()):
        raise BadRequest(f"metadata must be an object of strings (got {_show(metadata)})")


def _resolve_model(value: Any, policy: Policy) -> tuple[str | None, str | None]:
    """(route, model) for ``model``: ``auto`` is neither, a route name the route, a catalog model the model."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"model is required: a string, one of GET {MODELS_PATH} (got {_show(value)})")
    if value == AUTO_ROUTE:
        return None, None
    if value in policy.routes:
        return value, None
    if policy.allow_model_override and policy.model_by_id_or_key(value) is not None:
        return None, value
    raise UnknownModel(f"The model '{value[:80]}' does not exist: GET {MODELS_PATH} lists the models of this endpoint")


def _messages(value: Any) -> tuple[str | None, list[tuple[str, str]], list[dict[str, str]]]:
    """System text, (role, text) turns and data-URL images (attached to the newest user turn by the router)."""
    if not isinstance(value, list) or not value:
        raise BadRequest(f"messages is required: a non-empty array of messages (got {_show(value)})")
    systems: list[str] = []
    turns: list[tuple[str, str]] = []
    images: list[dict[str, str]] = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object with a role and a content (got {_show(message)})")
        raw_role = message.get("role")
        role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise BadRequest(
                f"{where}.role must be system, developer, user or assistant (got {_show(message.get('role'))})"
            )
        extra = sorted(
            name
            for name in set(message) - {"role", "content", "name"}
            if not (name in _EMPTY_MESSAGE_FIELDS and message[name] in (None, "", [], {}))
        )
        if extra:
            raise BadRequest(f"{where} has unsupported field(s): {', '.join(name[:40] for name in extra[:5])}")
        if message.get("name") is not None and not isinstance(message["name"], str):
            raise BadRequest(f"{where}.name must be a string (got {_show(message['name'])})")
        before = len(images)
        text = _content(message.get("content"), where, images if role == "user" else None)
        if len(images) > before and index != len(value) - 1:
            raise BadRequest(f"{where}: images are accepted in the last message only (the one being answered)")
        if not text.strip():
            raise BadRequest(f"{where}.content must not be blank")
        if role == "system":
            systems.append(text)
        else:
            turns.append((role, text))
    if not any(role == "user" for role, _ in turns):
        raise BadRequest("messages needs at least one user message")
    if images and turns[-1][0] != "user":
        raise BadRequest("images must be in a user message, and the last message must come from the user")
    return ("\n\n".join(systems) if systems else None), turns, images


def _content(value: Any, where: str, images: list[dict[str, str]] | None) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{where}.content must be a string or a non-empty array of parts (got {_show(value)})")
    texts: list[str] = []
    for index, part in enumerate(value):
        at = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and images is not None:
            images.append(_image(part.get("image_url"), at))
        elif kind == "image_url":
            raise BadRequest(f"{at}: images are accepted in user messages only")
        else:
            raise BadRequest(f"{at} must be a text part or an image_url part (got {_show(part)})")
    if not texts:
        raise BadRequest(f"{where}.content has no text part: send the question with the image")
    return "\n".join(texts)


def _image(value: Any, at: str) -> dict[str, str]:
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str):
        raise BadRequest(f"{at}.image_url must be an object with a url (got {_show(value)})")
    if value.get("detail") is not None and not isinstance(value["detail"], str):  # its values grow: not checked
        raise BadRequest(f"{at}.image_url.detail must be a string (got {_show(value['detail'])})")
    match = _DATA_URL.match(url)
    if match is None:
        raise BadRequest(f"{at}.image_url.url must be a data: URL (data:image/png;base64,...): URLs are not fetched")
    kind = _IMAGE_FORMATS.get(match.group(1).lower())
    if kind is None:
        raise BadRequest(f"{at}: image/{match.group(1)[:20]} is not supported (png, jpeg, gif or webp)")
    data = url[match.end() :]
    if len(data) < 4:  # the base64 of one byte
        raise BadRequest(f"{at}.image_url.url holds no image data")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{at}.image_url.url holds data that is not valid base64") from None
    return {"format": kind, "data": data}


def _max_tokens(body: dict[str, Any]) -> int | None:
    values = {name: body[name] for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{name} must be a whole number of at least 1 (got {_show(value)})")
    if len(set(values.values())) > 1:
        raise BadRequest("max_tokens and max_completion_tokens differ: send one of them")
    return next(iter(values.values()), None)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"{name} must be a number from {low:g} to {high:g} (got {_show(value)})")
    return float(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or not 1 <= len(stops) <= MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s.strip() for s in stops)
    ):
        raise BadRequest(
            f"stop must be a string with non-blank text or an array of 1-4 of them (got {_show(value)}): "
            "Claude models on Bedrock refuse whitespace-only stop sequences"
        )
    for index, text in enumerate(stops):
        where = "stop" if isinstance(value, str) else f"stop[{index}]"
        check_text(where, text)
    return tuple(stops)


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def models_list(policy: Policy) -> dict[str, Any]:
    """``GET /v1/models``: ``auto``, every route, and the catalog's models when callers may choose one."""
    ids = [AUTO_ROUTE, *policy.routes]
    if policy.allow_model_override:
        ids += [key for key in policy.models if key not in ids]
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": OWNER} for name in ids],
    }


def chat_completion(body: dict[str, Any], *, request_id: str, now: float | None = None) -> dict[str, Any]:
    """A ``/generate``-shaped answer as OpenAI's ``chat.completion``, the routing in the ``routing`` extension."""
    usage = body.get("usage") or {}
    prompt, completion = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(now if now is not None else time.time()),
        "model": str(body.get("model_used", "")).removeprefix("FALLBACK:"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": body.get("output", "")},
                "finish_reason": FINISH_REASONS.get(str(body.get("stop_reason")), "stop"),
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "routing": {
            "route": body.get("route"),
            "model_used": body.get("model_used"),
            "region": body.get("region"),
            "fallback_used": body.get("fallback_used", False),
            "cost_usd": body.get("cost_usd"),
            "latency_ms": body.get("latency_ms"),
            "decision": body.get("decision"),
        },
    }


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape for an HTTP status (``code`` replaces the status's usual one)."""
    kind, usual = ERROR_TYPES.get(status, ERROR_TYPES[500] if status >= 500 else ERROR_TYPES[400])
    return {"error": {"message": message, "type": kind, "param": param, "code": code or usual}}


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def sse(
    start: dict[str, Any],
    pieces: Iterator[str],
    end: Callable[[], tuple[str, int, int, str | None]],
    *,
    request_id: str,
    include_usage: bool,
    now: float | None = None,
) -> Iterator[bytes]:
    """OpenAI's ``chat.completion.chunk`` events for a streamed answer, ending with ``data: [DONE]``.

    ``start`` is the answer's routing (its first chunk carries it in ``routing``); ``pieces`` the text as it
    comes; ``end()`` then gives (stop reason, input tokens, output tokens, error message or None). A failure
    after the first byte ends the stream with an OpenAI-shaped error event, then ``[DONE]``.
    """
    created = int(now if now is not None else time.time())
    base = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": str(start.get("model_used", "")).removeprefix("FALLBACK:"),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    yield chunk({"role": "assistant", "content": ""}, routing=start)
    for piece in pieces:
        yield chunk({"content": piece})
    stop, prompt, completion, error = end()
    if error is not None:
        yield _sse({"error": {"message": error, "type": "server_error", "param": None, "code": "stream_error"}})
    else:
        yield chunk({}, FINISH_REASONS.get(stop, "stop"))
        if include_usage:
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            yield _sse({**base, "choices": [], "usage": usage})
    yield _sse("[DONE]")
