"""A Bedrock Runtime simulator speaking the Converse wire protocol (REST-JSON) on loopback.

The real botocore/boto3 ``bedrock-runtime`` client works against it unchanged (``endpoint_url=...``):
requests are ``POST /model/{modelId}/converse`` with the model id percent-encoded, the region is read from
the SigV4 ``Authorization`` header's credential scope, and errors carry ``x-amzn-ErrorType`` and a JSON
``message`` so botocore raises ``ThrottlingException``, ``ServiceUnavailableException``, ... as from AWS.

``POST /model/{modelId}/converse-stream`` (ConverseStream) answers the same text in the AWS event-stream
encoding (``application/vnd.amazon.eventstream``: messageStart, ``STREAM_CHUNK_CHARS``-character
contentBlockDelta events, contentBlockStop, messageStop, metadata), written at once, or paced by a fault's
``stream_delay_ms`` (a wait before each delta after the first, the events sent chunked as they are made); a
fault's ``stream_fails_after`` ends it with a ``modelStreamErrorException`` event after that many deltas.

Answers are deterministic and start with ``[sim <modelId> @ <region>]`` so routing is visible. Token
counts are plausible: input = ceil(characters / 4) over system and message text plus 1,600 per image;
output = 20..400 from a hash of the prompt, never above ``maxTokens``.

Requests are checked as the Converse API reference documents (blank or ill-formed text such as an
unpaired surrogate, empty content, roles that do not alternate, out-of-range inference settings, bodies
that are not UTF-8 JSON): Bedrock answers those with a ValidationException (400), and so does the
simulator, never with a server error that would count against circuit breakers.

Faults are injected per (model, region), with ``*`` wildcards, from a JSON file or at run time through the
admin API: ``PUT /_sim/faults`` (one fault), ``GET /_sim/faults``, ``DELETE /_sim/faults``, and
``GET``/``DELETE /_sim/calls`` for the record of calls. ``"on_demand": false`` answers calls by a base model
id (not an inference profile) with Bedrock's "with on-demand throughput isn't supported". Local mode only.

Scripted answers (opt-in) make a model's answer to a prompt what a test or an evaluation needs: rules
``{"model": "<model id or *>", "prompt_contains": "...", "text": "...", "stop_reason": "end_turn"}`` from a
JSON file (``{"answers": [...]}``) or the admin API (``POST /_sim/answers`` adds one rule at the end,
``GET`` lists, ``DELETE`` clears). The first rule whose model matches and whose ``prompt_contains`` is in the
last user message answers with exactly its text (no ``[sim ...]`` prefix; output tokens ceil(chars / 4),
cut at ``maxTokens`` with stop reason ``max_tokens``); faults still apply first. Without a matching rule the
answer is the deterministic one above.

    python -m local_endpoint.bedrock_sim --port 8081 [--faults faults.json] [--answers answers.json] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lambdas.router.http_server import JsonRequestHandler, LocalHTTPServer

# HTTP status per error code, as in botocore's bedrock-runtime service model.
ERROR_STATUS: dict[str, int] = {
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
}
TOKENS_PER_IMAGE = 1600
DEFAULT_REGION = "us-east-1"
_CONVERSE_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream)$")
STREAM_CHUNK_CHARS = 16
"""Characters of answer text per ``contentBlockDelta`` event of a ConverseStream answer."""
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/bedrock/aws4_request")
_REGION = re.compile(r"^(\*|[a-z]{2}(-gov)?-[a-z]+-\d)$")
_MAX_CALL_RECORDS = 1000
# Served alone, the simulator takes bodies up to this size (images included); behind the local endpoint,
# API Gateway's 10 MB limit applies first.
MAX_REQUEST_BYTES = 32 * 1024 * 1024


def _json_fields(data: object, cls: type[Any], what: str) -> dict[str, Any]:
    """``data`` as a JSON object holding only ``cls``'s (a dataclass's) fields; ``ValueError`` names what is wrong.

    ``what`` is the thing's name with its article ("a fault"), as the messages use it.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        noun = what.split(" ", 1)[1]
        raise ValueError(f"unknown {noun} field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return data


@dataclass(frozen=True, kw_only=True)
class Fault:
    """What goes wrong for calls to a model in a region (``*`` matches any)."""

    model: str = "*"
    region: str = "*"
    outage: bool = False
    throttle_rate: float = 0.0
    latency_ms: int = 0
    error: str | None = None
    max_input_tokens: int | None = None
    on_demand: bool = True
    stream_fails_after: int | None = None  # ConverseStream: a modelStreamErrorException after this many deltas
    stream_delay_ms: int = 0  # ConverseStream: the wait before each delta after the first (paced, chunked)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.region)

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """Build a fault from parsed JSON.

        Raises:
            ValueError: naming the unknown field or the bad value.
        """
        data = _json_fields(data, cls, "a fault")
        model, region = data.get("model", "*"), data.get("region", "*")
        if not isinstance(model, str) or not model:
            raise ValueError(f"fault model must be a model id or '*', got {model!r}")
        if not isinstance(region, str) or not _REGION.match(region):
            raise ValueError(f"fault region must be a region name or '*', got {region!r}")
        outage = data.get("outage", False)
        if not isinstance(outage, bool):
            raise ValueError(f"fault outage must be true or false, got {outage!r}")
        rate = data.get("throttle_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault throttle_rate must be a number from 0 to 1, got {rate!r}")
        latency = data.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= 600_000:
            raise ValueError(f"fault latency_ms must be an integer from 0 to 600000, got {latency!r}")
        error = data.get("error")
        if error is not None and (not isinstance(error, str) or error not in ERROR_STATUS):
            raise ValueError(f"fault error must be one of {', '.join(sorted(ERROR_STATUS))}, got {error!r}")
        limit = data.get("max_input_tokens")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"fault max_input_tokens must be a positive integer, got {limit!r}")
        on_demand = data.get("on_demand", True)
        if not isinstance(on_demand, bool):
            raise ValueError(f"fault on_demand must be true or false, got {on_demand!r}")
        fails_after = data.get("stream_fails_after")
        if fails_after is not None and (
            isinstance(fails_after, bool) or not isinstance(fails_after, int) or not 0 <= fails_after <= 100_000
        ):
            raise ValueError(f"fault stream_fails_after must be an integer from 0 to 100000, got {fails_after!r}")
        delay = data.get("stream_delay_ms", 0)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 60_000:
            raise ValueError(f"fault stream_delay_ms must be an integer from 0 to 60000, got {delay!r}")
        return cls(
            model=model,
            region=region,
            outage=outage,
            throttle_rate=float(rate),
            latency_ms=latency,
            error=error,
            max_input_tokens=limit,
            on_demand=on_demand,
            stream_fails_after=fails_after,
            stream_delay_ms=delay,
        )


class FaultStore:
    """Thread-safe set of faults, one per (model, region), with a seeded random source for throttling."""

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int = 0) -> None:
        self._faults: dict[tuple[str, str], Fault] = {}
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        for fault in faults:
            self.put(fault)

    def put(self, fault: Fault) -> None:
        with self._lock:
            self._faults[fault.key] = fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def all(self) -> list[Fault]:
        with self._lock:
            return list(self._faults.values())

    def matching(self, model: str, region: str) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults.values() if f.model in ("*", model) and f.region in ("*", region)]

    def sample(self) -> float:
        """A number in [0, 1) from the store's seeded sequence."""
        with self._lock:
            return self._random.random()

    @classmethod
    def from_file(cls, path: str | Path, *, seed: int = 0) -> FaultStore:
        """Load ``{"faults": [...]}`` from a JSON file.

        Raises:
            ValueError: naming the file and what is wrong with it.
        """
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read faults file '{path}': {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"faults file '{path}' is not valid JSON: {exc.msg}") from None
        if not isinstance(document, dict) or not isinstance(document.get("faults"), list):
            raise ValueError(f"faults file '{path}' must hold an object with a 'faults' list")
        try:
            return cls((Fault.from_json(item) for item in document["faults"]), seed=seed)
        except ValueError as exc:
            raise ValueError(f"faults file '{path}': {exc}") from None


# The stop reasons a Converse answer may carry (botocore's bedrock-runtime service model).
STOP_REASONS = (
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "guardrail_intervened",
    "content_filtered",
)


@dataclass(frozen=True, kw_only=True)
class ScriptedAnswer:
    """Answer ``text`` to calls of ``model`` (``*`` matches any) whose last user message holds ``prompt_contains``."""

    text: str
    model: str = "*"
    prompt_contains: str = ""
    stop_reason: str = "end_turn"

    def matches(self, model: str, prompt: str) -> bool:
        return self.model in ("*", model) and self.prompt_contains in prompt

    @classmethod
    def from_json(cls, data: object) -> ScriptedAnswer:
        """Build a rule from parsed JSON.

        Raises:
            ValueError: naming the unknown field or the bad value.
        """
        data = _json_fields(data, cls, "an answer rule")
        text, model = data.get("text"), data.get("model", "*")
        contains, stop = data.get("prompt_contains", ""), data.get("stop_reason", "end_turn")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"answer rule text must be a non-blank string, got {text!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"answer rule model must be a model id or '*', got {model!r}")
        if not isinstance(contains, str):
            raise ValueError(f"answer rule prompt_contains must be a string, got {contains!r}")
        if stop not in STOP_REASONS:
            raise ValueError(f"answer rule stop_reason must be one of {', '.join(STOP_REASONS)}, got {stop!r}")
        return cls(text=text, model=model, prompt_contains=contains, stop_reason=stop)


class AnswerScript:
    """Thread-safe, ordered list of scripted answers; the first matching rule answers."""

    def __init__(self, rules: Iterable[ScriptedAnswer] = ()) -> None:
        self._rules = list(rules)
        self._lock = threading.Lock()

    def add(self, rule: ScriptedAnswer) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def all(self) -> list[ScriptedAnswer]:
        with self._lock:
            return list(self._rules)

    def first_match(self, model: str, prompt: str) -> ScriptedAnswer | None:
        with self._lock:
            return next((rule for rule in self._rules if rule.matches(model, prompt)), None)

    @classmethod
    def from_file(cls, path: str | Path) -> AnswerScript:
        """Load ``{"answers": [...]}`` from a JSON file.

        Raises:
            ValueError: naming the file and what is wrong with it.
        """
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read answers file '{path}': {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"answers file '{path}' is not valid JSON: {exc.msg}") from None
        if not isinstance(document, dict) or not isinstance(document.get("answers"), list):
            raise ValueError(f"answers file '{path}' must hold an object with an 'answers' list")
        try:
            return cls(ScriptedAnswer.from_json(item) for item in document["answers"])
        except ValueError as exc:
            raise ValueError(f"answers file '{path}': {exc}") from None


@dataclass(frozen=True)
class CallRecord:
    model: str
    region: str
    outcome: str  # "ok" or the error code


class CallLog:
    """The most recent calls the simulator answered, with counts per outcome."""

    def __init__(self) -> None:
        self._records: deque[CallRecord] = deque(maxlen=_MAX_CALL_RECORDS)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._counts[record.outcome] += 1

    def count(self, *, model: str | None = None, region: str | None = None, outcome: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self._records
                if (model is None or r.model == model)
                and (region is None or r.region == region)
                and (outcome is None or r.outcome == outcome)
            )

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._counts.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self._counts), "recent": [asdict(r) for r in list(self._records)[-100:]]}


class SimulatedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Response = tuple[int, dict[str, str], bytes | Iterator[bytes]]
"""Status, headers and the body: bytes, or pieces written as they are made (a paced ConverseStream)."""


class BedrockSimulator:
    """Answers Converse calls and the ``/_sim/`` admin API.

    Args:
        faults: the faults to apply; an empty store by default.
        sleep: how injected latency waits (tests pass a fake).
        answers: scripted answers; none by default (every answer is the deterministic canned one).
    """

    def __init__(
        self,
        faults: FaultStore | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        answers: AnswerScript | None = None,
    ) -> None:
        self.faults = faults if faults is not None else FaultStore()
        self.answers = answers if answers is not None else AnswerScript()
        self.calls = CallLog()
        self._sleep = sleep

    def handles(self, method: str, path: str) -> bool:
        return path.startswith("/_sim/") or (method == "POST" and _CONVERSE_PATH.match(path) is not None)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        try:
            if path.startswith("/_sim/"):
                return self._admin(method, path, body)
            match = _CONVERSE_PATH.match(path)
            if method == "POST" and match:
                stream = match.group("operation") == "converse-stream"
                return self._converse(unquote(match.group("model")), _region(headers), body, stream=stream)
            return _json(404, {"message": f"no such operation: {method} {path}"})
        except Exception as exc:  # never a stack trace on the wire
            return _error("InternalServerException", f"simulator error: {type(exc).__name__}")

    # --- Converse -------------------------------------------------------------------------------

    def _converse(self, model: str, region: str, body: bytes, *, stream: bool = False) -> Response:
        started = time.perf_counter()
        try:
            request = _parse_converse(model, body)
            input_tokens = _input_tokens(request)
            self._apply_faults(model, region, input_tokens)
        except SimulatedError as exc:
            self.calls.add(CallRecord(model, region, exc.code))
            return _error(exc.code, exc.message)
        text, output_tokens, stop = self._scripted(model, request) or _answer(model, region, request)
        if stream:
            fails_after = next(
                (f.stream_fails_after for f in self.faults.matching(model, region) if f.stream_fails_after is not None),
                None,
            )
            self.calls.add(CallRecord(model, region, "ok" if fails_after is None else "stream_error"))
            latency_ms = max(1, round((time.perf_counter() - started) * 1000))
            delay_ms = max((f.stream_delay_ms for f in self.faults.matching(model, region)), default=0)
            events = stream_events(text, stop, input_tokens, output_tokens, latency_ms, fails_after=fails_after)
            stream_body = _paced(events, delay_ms / 1000.0, self._sleep) if delay_ms else b"".join(events)
            return 200, {"Content-Type": "application/vnd.amazon.eventstream"}, stream_body
        self.calls.add(CallRecord(model, region, "ok"))
        payload = {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop,
            "usage": {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": input_tokens + output_tokens,
            },
            "metrics": {"latencyMs": max(1, round((time.perf_counter() - started) * 1000))},
        }
        return _json(200, payload)

    def _scripted(self, model: str, request: Mapping[str, Any]) -> tuple[str, int, str] | None:
        rule = self.answers.first_match(model, _last_user_text(request))
        if rule is None:
            return None
        max_tokens = (request.get("inferenceConfig") or {}).get("maxTokens") or 4096
        wanted = max(1, math.ceil(len(rule.text) / 4))
        if wanted > max_tokens:
            return rule.text[: max_tokens * 4], max_tokens, "max_tokens"
        return rule.text, wanted, rule.stop_reason

    def _apply_faults(self, model: str, region: str, input_tokens: int) -> None:
        matching = self.faults.matching(model, region)
        # Checked first, as Bedrock does: it is about the model id, before any capacity is involved.
        if not _is_inference_profile(model) and any(not fault.on_demand for fault in matching):
            raise SimulatedError("ValidationException", on_demand_message(model))
        for fault in matching:
            if fault.error:
                raise SimulatedError(fault.error, _ERROR_MESSAGES.get(fault.error, f"simulated {fault.error}"))
        for fault in matching:
            if fault.outage:
                raise SimulatedError(
                    "ServiceUnavailableException", "Bedrock is unavailable in this region (simulated)."
                )
        for fault in matching:
            if fault.throttle_rate and self.faults.sample() < fault.throttle_rate:
                raise SimulatedError("ThrottlingException", "Too many requests, please wait before trying again.")
        for fault in matching:
            if fault.max_input_tokens is not None and input_tokens > fault.max_input_tokens:
                raise SimulatedError("ValidationException", "Input is too long for requested model.")
        delay_ms = max((fault.latency_ms for fault in matching), default=0)
        if delay_ms:
            self._sleep(delay_ms / 1000.0)

    # --- admin API --------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> Response:
        if path == "/_sim/faults":
            if method == "GET":
                return _json(200, self._faults_body())
            if method == "DELETE":
                self.faults.clear()
                return _json(200, self._faults_body())
            if method == "PUT":
                try:
                    self.faults.put(Fault.from_json(parse_json(body, what="fault body")))
                except ValueError as exc:
                    return _json(400, {"message": str(exc)})
                return _json(200, self._faults_body())
        if path == "/_sim/answers":
            if method == "GET":
                return _json(200, self._answers_body())
            if method == "DELETE":
                self.answers.clear()
                return _json(200, self._answers_body())
            if method == "POST":
                try:
                    self.answers.add(ScriptedAnswer.from_json(parse_json(body, what="answer rule body")))
                except ValueError as exc:
                    return _json(400, {"message": str(exc)})
                return _json(200, self._answers_body())
        if path == "/_sim/calls":
            if method == "GET":
                return _json(200, self.calls.snapshot())
            if method == "DELETE":
                self.calls.reset()
                return _json(200, self.calls.snapshot())
        return _json(404, {"message": f"no such admin operation: {method} {path}"})

    def _faults_body(self) -> dict[str, Any]:
        return {"faults": [asdict(fault) for fault in self.faults.all()]}

    def _answers_body(self) -> dict[str, Any]:
        return {"answers": [asdict(rule) for rule in self.answers.all()]}


_ERROR_MESSAGES = {
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "The requested resource could not be found.",
    "ValidationException": "The provided model identifier is invalid.",
    "ModelNotReadyException": "The model is not ready to serve inference requests.",
    "InternalServerException": "An internal server error occurred.",
    "ModelTimeoutException": "The model took too long to respond.",
    "ServiceUnavailableException": "Bedrock is unavailable in this region (simulated).",
    "ThrottlingException": "Too many requests, please wait before trying again.",
}


def _region(headers: Mapping[str, str]) -> str:
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    match = _CREDENTIAL_SCOPE.search(authorization)
    return match.group("region") if match else DEFAULT_REGION


def parse_json(body: bytes, *, what: str) -> Any:
    """Parse a JSON request body.

    Raises:
        ValueError: naming ``what`` and the problem: empty, not UTF-8, not JSON, or nested too deeply.
    """
    if not body.strip():
        raise ValueError(f"{what} is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def on_demand_message(model: str) -> str:
    """Bedrock's answer to a model that is served only through inference profiles in that region."""
    return (
        f"Invocation of model ID {model} with on-demand throughput isn\u2019t supported. Retry your request "
        "with the ID or ARN of an inference profile that contains this model."
    )


# The first segment of a cross-region inference profile id (us.anthropic..., global.amazon...).
_PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"})
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
_MAX_MODEL_ID_CHARS = 2048
_MAX_STOP_SEQUENCES = 2500
_MALFORMED = "Malformed input request, please reformat your input."


def _is_inference_profile(model: str) -> bool:
    return model.split(".", 1)[0] in _PROFILE_PREFIXES or "inference-profile/" in model


def _invalid(message: str) -> SimulatedError:
    return SimulatedError("ValidationException", message)


def _parse_converse(model: str, body: bytes) -> dict[str, Any]:
    """Check a Converse request as Bedrock does (shapes, ranges, blank and ill-formed text).

    Raises:
        SimulatedError: a ValidationException naming the field.
    """
    if not 1 <= len(model) <= _MAX_MODEL_ID_CHARS:
        raise _invalid(f"modelId must be 1 to {_MAX_MODEL_ID_CHARS} characters long.")
    try:
        request = parse_json(body or b"{}", what="request body")
    except ValueError:
        raise _invalid(_MALFORMED) from None
    if not isinstance(request, dict):
        raise _invalid(_MALFORMED)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: at least one message is required.")
    for index, message in enumerate(messages):
        _check_message(index, message)
    if messages[0]["role"] != "user":
        raise _invalid(
            "A conversation must start with a user message. Try again with a conversation that starts with a user "
            "message."
        )
    if any(a["role"] == b["role"] for a, b in pairwise(messages)):
        raise _invalid(
            "A conversation must alternate between user and assistant roles. Make sure the conversation alternates "
            "between user and assistant roles and try again."
        )
    _check_system(request.get("system"))
    _check_inference_config(request.get("inferenceConfig"))
    return request


def _check_message(index: int, message: object) -> None:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _invalid(f"messages.{index}.role must be user or assistant.")
    content = message.get("content")
    if not isinstance(content, list) or not content:
        raise _invalid(
            f"The content field in the Message object at messages.{index} is empty. "
            "Add a ContentBlock object to the content field and try again."
        )
    for position, block in enumerate(content):
        where = f"messages.{index}.content.{position}"
        if not isinstance(block, dict) or len(block) != 1 or not ({"text", "image"} & set(block)):
            raise _invalid(f"The ContentBlock object at {where} must hold exactly one of text or image.")
        if "text" in block:
            _check_text(block["text"], f"The text field in the ContentBlock object at {where}")
        else:
            _check_image(block["image"], where)


def _check_text(text: object, field: str) -> None:
    if not isinstance(text, str):
        raise _invalid(f"{field} must be a string.")
    if not text.strip():
        raise _invalid(f"{field} is blank. Add text to the text field, and try again.")
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate:
        raise _invalid(
            f"{field} is not valid Unicode: it holds an unpaired surrogate (U+{ord(surrogate.group()):04X}) at "
            f"character {surrogate.start()}. Remove it and try again."
        )


def _check_image(image: object, where: str) -> None:
    if not isinstance(image, dict) or image.get("format") not in _IMAGE_FORMATS:
        raise _invalid(f"The image format at {where} must be one of {', '.join(_IMAGE_FORMATS)}.")
    source = image.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("bytes"), str) or not source["bytes"]:
        raise _invalid(f"The image source at {where} must hold the image bytes.")


def _check_system(system: object) -> None:
    if system is None:
        return
    if not isinstance(system, list):
        raise _invalid("system must be a list of SystemContentBlock objects.")
    for index, block in enumerate(system):
        if not isinstance(block, dict) or "text" not in block:
            raise _invalid(f"The SystemContentBlock object at system.{index} must hold text.")
        _check_text(block["text"], f"The text field in the SystemContentBlock object at system.{index}")


def _check_inference_config(config: object) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise _invalid("inferenceConfig must be an object.")
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise _invalid("inferenceConfig.maxTokens must be a positive integer.")
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1):
            raise _invalid(f"inferenceConfig.{name} must be between 0 and 1.")
    stops = config.get("stopSequences")
    if stops is not None and (
        not isinstance(stops, list)
        or len(stops) > _MAX_STOP_SEQUENCES
        or not all(isinstance(stop, str) and stop for stop in stops)
    ):
        raise _invalid(f"inferenceConfig.stopSequences must be at most {_MAX_STOP_SEQUENCES} non-empty strings.")


def _texts(request: Mapping[str, Any]) -> list[str]:
    texts = [block.get("text", "") for block in request.get("system") or [] if isinstance(block, dict)]
    for message in request["messages"]:
        texts.extend(block["text"] for block in message["content"] if "text" in block)
    return texts


def _input_tokens(request: Mapping[str, Any]) -> int:
    chars = sum(len(text) for text in _texts(request))
    images = sum(1 for message in request["messages"] for block in message["content"] if "image" in block)
    return max(1, math.ceil(chars / 4)) + images * TOKENS_PER_IMAGE


_OPENINGS = (
    "Here is a concise answer.",
    "Short version first, then the details.",
    "Good question; the key points are below.",
    "In brief:",
    "Let me walk through it.",
)


def _last_user_text(request: Mapping[str, Any]) -> str:
    return next(
        (
            block["text"]
            for message in reversed(request["messages"])
            if message["role"] == "user"
            for block in message["content"]
            if "text" in block
        ),
        "",
    )


def _answer(model: str, region: str, request: Mapping[str, Any]) -> tuple[str, int, str]:
    last_user = _last_user_text(request)
    digest = hashlib.sha256(f"{model}\x00{last_user}".encode("utf-8", "surrogatepass")).digest()
    wanted = 20 + int.from_bytes(digest[:4], "big") % 381
    max_tokens = (request.get("inferenceConfig") or {}).get("maxTokens") or 4096
    output_tokens = min(wanted, max_tokens)
    stop = "max_tokens" if wanted > max_tokens else "end_turn"
    echo = " ".join(last_user.split())[:60]
    text = f'[sim {model} @ {region}] {_OPENINGS[digest[4] % len(_OPENINGS)]} You asked: "{echo}"'
    return text, output_tokens, stop


def event_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message of the AWS event-stream encoding (what botocore's ``EventStream`` parses).

    Prelude (total length, headers length, CRC-32 of those 8 bytes), string headers (name length, name,
    type 7, value length, value), the payload, and a CRC-32 of everything before it; all big-endian.
    """
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + len(value.encode()).to_bytes(2, "big") + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    message = prelude + encoded + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def _event(kind: str, payload: Mapping[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return event_message(headers, json.dumps(payload).encode())


def stream_events(
    text: str,
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
    latency_ms: int,
    *,
    fails_after: int | None = None,
) -> list[bytes]:
    """A ConverseStream answer: messageStart, ``STREAM_CHUNK_CHARS``-character deltas, contentBlockStop,
    messageStop and metadata; or, with ``fails_after``, a ``modelStreamErrorException`` after that many deltas.
    """
    events = [_event("messageStart", {"role": "assistant"})]
    chunks = [text[i : i + STREAM_CHUNK_CHARS] for i in range(0, len(text), STREAM_CHUNK_CHARS)] or [""]
    for n, chunk in enumerate(chunks):
        if fails_after is not None and n >= fails_after:
            break
        events.append(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": chunk}}))
    if fails_after is not None:  # after that many deltas, or after the last one when the answer is shorter
        headers = {":exception-type": "modelStreamErrorException", ":content-type": "application/json"}
        payload = {"message": "simulated failure in the middle of the stream", "originalStatusCode": 500}
        events.append(event_message({**headers, ":message-type": "exception"}, json.dumps(payload).encode()))
        return events
    events.append(_event("contentBlockStop", {"contentBlockIndex": 0}))
    events.append(_event("messageStop", {"stopReason": stop_reason}))
    usage = {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}
    events.append(_event("metadata", {"usage": usage, "metrics": {"latencyMs": latency_ms}}))
    return events


def _paced(events: list[bytes], delay_s: float, sleep: Callable[[float], None]) -> Iterator[bytes]:
    """The events one at a time, waiting ``delay_s`` before each text delta but the first."""
    deltas = 0
    for event in events:
        if b"contentBlockDelta" in event[:120]:
            if deltas:
                sleep(delay_s)
            deltas += 1
        yield event


def _json(status: int, payload: Mapping[str, Any]) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(code: str, message: str) -> Response:
    status, headers, body = _json(ERROR_STATUS.get(code, 500), {"message": message})
    headers["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    return status, headers, body


def serve(
    simulator: BedrockSimulator, host: str = "127.0.0.1", port: int = 0
) -> tuple[LocalHTTPServer, threading.Thread]:
    """Serve the simulator on a daemon thread; port 0 picks a free port (see ``server.server_address``)."""

    class Handler(JsonRequestHandler):
        max_body_bytes = MAX_REQUEST_BYTES

        def _serve(self) -> None:
            body = self.read_body()
            if body is None:
                return
            path = urlsplit(self.path).path
            status, headers, payload = simulator.handle(self.command, path, dict(self.headers.items()), body)
            headers = {**headers, "x-amzn-RequestId": str(uuid.uuid4())}  # as Bedrock does: SDKs report it
            self.send_all(status, headers.items(), payload)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    server = LocalHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="bedrock-sim", daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the Bedrock Converse simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--faults", type=Path, default=None, help='JSON file: {"faults": [...]}')
    parser.add_argument("--answers", type=Path, default=None, help='scripted answers JSON file: {"answers": [...]}')
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        faults = FaultStore.from_file(args.faults, seed=args.seed) if args.faults else FaultStore(seed=args.seed)
        answers = AnswerScript.from_file(args.answers) if args.answers else AnswerScript()
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    server, thread = serve(BedrockSimulator(faults, answers=answers), args.host, args.port)
    print(
        f"Bedrock simulator on http://{args.host}:{server.server_address[1]} (admin: /_sim/faults, /_sim/answers)",
        flush=True,
    )
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
