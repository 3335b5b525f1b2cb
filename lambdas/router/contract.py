"""The ``POST /generate`` contract: parse and check the body, shape the Converse call, build the answer.

Body shape (JSON schema: schemas/generate_request.schema.json, shared with API Gateway's validator)::

    {"prompt": "...", "use_case": "general", "messages": [{"role": "user", "content": "..."}],
     "system": "...", "max_tokens": 512, "temperature": 0.2, "model": "claude-haiku-4-5",
     "images": [{"format": "png", "data": "<base64>"}]}

Either ``prompt`` or ``messages`` is required; with both, ``prompt`` is the newest user turn.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, NamedTuple

from .policy import RequestLimits

MAX_REQUEST_IMAGES = 20
"""Images in one request: the Converse API's limit (``images.maxItems`` in the request schema)."""


class BadRequest(ValueError):
    """The caller sent something the router cannot accept (HTTP 400)."""


class UnknownModel(BadRequest):
    """The caller named a model the policy does not offer (HTTP 404)."""


class Image(NamedTuple):
    format: str
    data: bytes


class GenerateInput(NamedTuple):
    messages: tuple[tuple[str, str], ...]  # (role, text), alternating, ending with a user turn
    system: str | None
    images: tuple[Image, ...]
    use_case: str | None
    model: str | None
    max_tokens: int | None
    temperature: float | None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    route: str | None = None  # a route the caller names (the OpenAI API's model), or None
    stream: bool = False  # answer as a stream (the OpenAI API's stream: true)
    include_usage: bool = False  # a streamed answer ends with a usage chunk (stream_options.include_usage)

    @property
    def text(self) -> str:
        """User and system text, for the complexity classifier."""
        user_turns = [content for role, content in self.messages if role == "user"]
        return "\n".join(([self.system] if self.system else []) + user_turns)

    @property
    def ask(self) -> str:
        """The newest user turn: what the learned router and the cascade were trained to read (a bare prompt)."""
        return self.messages[-1][1]


def parse_body(raw: str | bytes | None, *, max_body_bytes: int, base64_encoded: bool = False) -> dict[str, Any]:
    """Decode a JSON object body (``base64_encoded``: the event's ``isBase64Encoded``, set by front ends for a
    body that is not UTF-8 text; it is decoded first, so such a body is refused for what it is).

    Raises:
        BadRequest: empty, too large, not JSON, or not an object.
    """
    if raw and base64_encoded:
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("request body is flagged base64-encoded (isBase64Encoded) but is not base64") from None
    if not raw:
        raise BadRequest("request body is empty: send a JSON object with a 'prompt'")
    # surrogatepass: a str body may hold a lone surrogate; the text checks name it once it is parsed
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > max_body_bytes:
        raise BadRequest(f"request body is {size} bytes, over the limit of {max_body_bytes} bytes")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise BadRequest("request body nests arrays or objects too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4,300)
        raise BadRequest(f"request body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def parse_generate(body: dict[str, Any], limits: RequestLimits) -> GenerateInput:
    """Validate a ``/generate`` body against the schema and the policy's limits.

    Raises:
        BadRequest: naming the field and the problem.
    """
    from ._request_validator import JsonSchemaValueException, validate

    try:
        validate(body)  # type: ignore[no-untyped-call]  # generated code
    except JsonSchemaValueException as exc:
        field = exc.name.removeprefix("data").lstrip(".")
        if exc.rule == "additionalProperties":
            unknown = sorted(set(exc.value) - _known_fields(field)) if isinstance(exc.value, dict) else []
            where = f" in {field}" if field else ""
            names = ", ".join(_clip(name, 40) for name in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise BadRequest(f"unknown field(s){where}: {names}") from None
        rule = exc.message.removeprefix(exc.name).strip()
        shown = _show(exc.value)
        if exc.rule == "pattern" and (field == "prompt" or field.endswith(".content")):
            rule = "must not be blank"
        raise BadRequest(f"{field or 'body'} {rule} (got {shown})") from None

    prompt: str | None = body.get("prompt")
    history = body.get("messages") or []
    if prompt is None and not history:
        raise BadRequest("'prompt' is required (a non-empty string), or 'messages'")
    check_text("prompt", prompt)
    check_text("system", body.get("system"))
    if body.get("system") and not body["system"].strip():  # Bedrock rejects a blank text block
        raise BadRequest("system must not be blank: send text, or no system prompt")
    for index, message in enumerate(history):
        check_text(f"messages[{index}].content", message["content"])
    turns = [(m["role"], m["content"]) for m in history]
    if prompt is not None:
        turns.append(("user", prompt))
    messages = _merge_turns(turns)
    if messages[-1][0] != "user":
        raise BadRequest("the last message must come from the user")
    if len(messages) > limits.max_messages:
        raise BadRequest(f"messages has {len(messages)} turns, over the limit of {limits.max_messages}")

    system = body.get("system") or None  # "" is no system prompt
    chars = sum(len(content) for _, content in messages) + len(system or "")
    if chars > limits.max_prompt_chars:
        raise BadRequest(f"input is {chars} characters, over the limit of {limits.max_prompt_chars}")

    max_tokens = body.get("max_tokens")
    if max_tokens is not None and max_tokens > limits.max_output_tokens:
        raise BadRequest(f"max_tokens {max_tokens} is over the limit of {limits.max_output_tokens}")

    raw_images = body.get("images") or []
    if len(raw_images) > limits.max_images:
        raise BadRequest(f"images has {len(raw_images)} items, over the limit of {limits.max_images}")
    images = tuple(_decode_image(index, item) for index, item in enumerate(raw_images))

    return GenerateInput(
        messages=tuple(messages),
        system=system,
        images=images,
        use_case=body.get("use_case"),
        model=body.get("model"),
        max_tokens=max_tokens,
        temperature=body.get("temperature"),
    )


def _clip(text: str, limit: int) -> str:
    """Caller text quoted in a message, at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON; Python's decoder accepts them unless told."""
    raise BadRequest(f"request body is not valid JSON: {name} is not a JSON number")


def _show(value: Any) -> str:
    """A value for an error message, at most 80 characters."""
    try:
        shown = json.dumps(value, default=str)
    except (RecursionError, ValueError):  # nested too deeply to print
        shown = f"a deeply nested {type(value).__name__}"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_text(field: str, text: str | None) -> None:
    """Bedrock takes only valid Unicode: a lone UTF-16 surrogate (``"\\ud800"`` in JSON) fails at the model
    as a server error, so it is the caller's mistake to name here, before any call (and before any breaker
    can count it)."""
    if not text:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise BadRequest(
            f"{field} holds an unpaired UTF-16 surrogate (\\u{code:04x}) at character {exc.start}: "
            "send valid Unicode text"
        ) from None


def _known_fields(field: str) -> set[str]:
    if field.startswith("messages"):
        return {"role", "content"}
    if field.startswith("images"):
        return {"format", "data"}
    return {"prompt", "use_case", "model", "system", "messages", "max_tokens", "temperature", "images"}


def _merge_turns(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Bedrock wants alternating roles starting with the user; join consecutive turns of one role."""
    merged: list[tuple[str, str]] = []
    for role, content in turns:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, merged[-1][1] + "\n\n" + content)
        else:
            merged.append((role, content))
    if merged and merged[0][0] != "user":
        raise BadRequest("the first message must come from the user")
    return merged


def _decode_image(index: int, item: dict[str, str]) -> Image:
    try:
        data = base64.b64decode(item["data"], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"images[{index}].data is not valid base64") from None
    return Image(format=item["format"], data=data)


def converse_messages(request: GenerateInput) -> list[dict[str, Any]]:
    """The Converse API ``messages``; images ride on the newest user turn."""
    messages: list[dict[str, Any]] = [{"role": role, "content": [{"text": text}]} for role, text in request.messages]
    if request.images:
        blocks = [{"image": {"format": image.format, "source": {"bytes": image.data}}} for image in request.images]
        messages[-1]["content"] = blocks + messages[-1]["content"]
    return messages


def converse_system(request: GenerateInput) -> list[dict[str, str]]:
    return [{"text": request.system}] if request.system else []
