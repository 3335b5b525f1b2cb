"""The OpenAI-compatible API through the real handler, driven by the official ``openai`` SDK.

The SDK's HTTP client is given a transport that turns each request into an API Gateway proxy event for
``handler.lambda_handler``, so the SDK parses exactly what API Gateway would return.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest

from lambdas.router import handler
from lambdas.router.bedrock import StreamEvent
from lambdas.router.budget import scopes_for
from lambdas.router.executor import FailureClass
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.policy import DEFAULT_POLICY_PATH, compile_policy
from lambdas.router.policy_store import PolicyStore, file_fetcher
from lambdas.router.service import RouterService
from lambdas.router.state_store import InMemoryBackend
from local_endpoint.server import LocalLambdaContext, proxy_event

from .conftest import FakeBedrock

NOVA_MICRO = "us.amazon.nova-micro-v1:0"
# A 1x1 PNG
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


def transport(events: list[dict]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        headers = {k: v for k, v in request.headers.items()}
        event = proxy_event(request.method, path, headers, request.content, source_ip="203.0.113.9", request_id="r1")
        events.append(event)
        result = handler.lambda_handler(event, LocalLambdaContext("r1"))
        out = {k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}
        out.update(result.get("headers") or {})
        return httpx.Response(result["statusCode"], headers=out, content=result["body"].encode())

    return httpx.MockTransport(handle)


@pytest.fixture
def store() -> InMemoryBackend:
    return InMemoryBackend()


@pytest.fixture
def router(bedrock: FakeBedrock, store: InMemoryBackend) -> Iterator[None]:
    """The handler serving the shipped policy over the fake Bedrock and an in-memory live state."""
    handler.configure(
        RouterService(
            policies=PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=300),
            gateway=bedrock,
            live_state=LiveStateTracker(store, cache_ttl_s=0.0),
            sleep=lambda _s: None,
        )
    )
    yield
    handler.configure(None)


@pytest.fixture
def client(router: None) -> openai.OpenAI:
    http = httpx.Client(transport=transport([]))
    return openai.OpenAI(base_url="http://router.test/v1", api_key="sk-local", http_client=http, max_retries=0)


def test_a_plain_chat_is_routed_and_answered_with_usage_and_the_routing(client, bedrock):
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Hello!"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == f"answer from {NOVA_MICRO}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == NOVA_MICRO
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 50)
    assert completion.usage.total_tokens == 150
    assert raw.headers["x-selected-model"] == NOVA_MICRO and raw.headers["x-route"] == "fast"
    routing = completion.model_extra["routing"]
    assert routing["route"] == "fast" and routing["decision"]["rule"] == "tier_complexity"
    assert routing["cost_usd"] > 0


def test_system_messages_and_the_inference_settings_reach_converse(client, bedrock):
    client.chat.completions.create(
        model="fast",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        ],
        max_completion_tokens=64,
        temperature=0.2,
        stop=["END"],
    )
    [call] = bedrock.calls
    assert call["system"] == [{"text": "Be brief."}]
    assert [m["role"] for m in call["messages"]] == ["user", "assistant", "user"]
    assert call["messages"][-1]["content"] == [{"text": "Name a colour."}]
    assert call["inference_config"] == {"maxTokens": 64, "temperature": 0.2, "stopSequences": ["END"]}


def test_a_callers_top_p_replaces_the_route_temperature_on_a_claude_route(client, bedrock):
    # Claude Sonnet 4.5 refuses temperature and top_p together: the deep route's own temperature is left out
    client.chat.completions.create(model="deep", messages=[{"role": "user", "content": "Hi"}], top_p=0.9)
    call = bedrock.calls[0]
    assert call["model"] == "claude-sonnet-4-5"
    assert call["inference_config"]["topP"] == 0.9 and "temperature" not in call["inference_config"]
    # And without top_p the route's temperature is sent as before
    client.chat.completions.create(model="deep", messages=[{"role": "user", "content": "Hi"}])
    assert "temperature" in bedrock.calls[-1]["inference_config"]


def test_a_replayed_openai_history_and_the_sdk_s_extra_fields_are_accepted(client, bedrock):
    client.chat.completions.create(
        model="auto",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello.", "refusal": None, "tool_calls": [], "annotations": []},
            {"role": "user", "content": "And now?"},
        ],
        safety_identifier="user-1",
        prompt_cache_key="k",
    )
    assert [m["role"] for m in bedrock.calls[0]["messages"]] == ["user", "assistant", "user"]


def test_a_route_name_pins_the_route_and_a_model_key_the_model(client, bedrock):
    deep = client.chat.completions.with_raw_response.create(model="deep", messages=[{"role": "user", "content": "Hi"}])
    assert deep.headers["x-route"] == "deep"
    assert deep.parse().model_extra["routing"]["decision"]["rule"] == "explicit_route"
    pinned = client.chat.completions.create(model="nova-pro", messages=[{"role": "user", "content": "Hi"}])
    assert pinned.model_extra["routing"]["decision"]["rule"] == "explicit_model"
    assert bedrock.calls[-1]["model"] == "nova-pro"


def test_an_image_part_as_a_data_url_goes_to_a_vision_model(client, bedrock):
    client.chat.completions.create(
        model="auto",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                ],
            }
        ],
    )
    [call] = bedrock.calls
    image = call["messages"][-1]["content"][0]["image"]
    assert image["format"] == "png" and image["source"]["bytes"] == base64.b64decode(PIXEL)


def test_models_list_names_auto_the_routes_and_the_catalog(client):
    ids = [model.id for model in client.models.list()]
    policy = compile_policy(json.loads(DEFAULT_POLICY_PATH.read_text()))
    assert ids[0] == "auto"
    assert set(policy.routes) <= set(ids) and set(policy.models) <= set(ids)


def test_an_unknown_model_is_a_404_model_not_found(client, bedrock):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.code == "model_not_found"
    assert "gpt-4o" in raised.value.message
    assert bedrock.calls == []


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"temperature": 1.5}, "temperature"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": [{"id": "c1"}]}]}, "unsupported field"),
        ({"messages": "Hi"}, "messages is required"),
        ({"model": ""}, "model is required"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "differ"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "user message"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ]
            },
            "data: URL",
        ),
        ({"stream": "yes"}, "stream must be true or false"),
        ({"temperature": 0.5, "top_p": 0.9}, "send one of them"),
        ({"stop": ["\n"]}, "whitespace-only"),
        ({"max_completion_tokens": 10**9}, "max_completion_tokens 1000000000 is over the limit"),
        ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " "}]}, "messages[1]"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Look"},
                            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                        ],
                    },
                    {"role": "assistant", "content": "I see."},
                    {"role": "user", "content": "Again?"},
                ]
            },
            "last message only",
        ),
    ],
)
def test_a_bad_request_is_a_400_in_openai_s_shape_naming_the_field(client, bedrock, overrides, named):
    arguments = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], **overrides}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**arguments)
    assert named in raised.value.message
    assert raised.value.body["type"] == "invalid_request_error"
    assert bedrock.calls == []


def _image_part(url: str, **extra: object) -> dict:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        # Python's 1 == True and 0 == False must not let numbers pass for booleans, or the reverse
        ({"stream": 1}, "stream must be true or false (got 1)"),
        ({"stream": 0}, "stream must be true or false (got 0)"),
        ({"stream": 1.0}, "stream must be true or false"),
        ({"n": True}, "n: only 1 choice is supported (got True)"),
        ({"n": 1.0}, "n: only 1 choice is supported (got 1.0)"),
        ({"tools": 0}, "tools: tool calling is not supported"),
        ({"logprobs": 0}, "logprobs: log probabilities are not supported"),
        ({"tools": ""}, "tools: tool calling is not supported"),
        ({"presence_penalty": False}, "presence_penalty: only 0 is supported (got False)"),
        ({"frequency_penalty": "0"}, "frequency_penalty: only 0 is supported"),
        ({"stream_options": {"include_usage": False}}, "stream_options is only allowed with stream: true"),
        ({"stream": True, "stream_options": {"include_obfuscation": 1}}, "include_obfuscation must be true or false"),
        ({"stop": "\ud800"}, "stop holds an unpaired UTF-16 surrogate"),
        ({"stop": ["END", "x\udfff"]}, "stop[1] holds an unpaired UTF-16 surrogate"),
        # Ignored fields are ignored only when they are what OpenAI takes
        ({"seed": {"x": 1}}, "seed must be an integer"),
        ({"seed": True}, "seed must be an integer (got True)"),
        ({"metadata": "x"}, "metadata must be an object"),
        ({"metadata": {"team": 7}}, "metadata must be an object of strings"),
        ({"user": 42}, "user must be a string (got 42)"),
        ({"store": "yes"}, "store must be true or false"),
        ({"messages": [{"role": "user", "content": "Hi", "name": {"n": 1}}]}, "messages[0].name must be a string"),
        # A part's type that cannot be a dict key (a list, an object) is named, not a server error
        (
            {"messages": [{"role": "user", "content": [{"type": ["text"], "text": "Hi"}]}]},
            "messages[0].content[0] must be a text part or an image_url part",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": {"a": 1}, "text": "Hi"}]}]},
            "messages[0].content[0] must be a text part or an image_url part",
        ),
        ({"top_logprobs": 2}, "top_logprobs: log probabilities are not supported"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "Look"}, _image_part("data:image/png;base64,")],
                    }
                ]
            },
            "messages[0].content[1].image_url.url holds no image data",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Look"},
                            _image_part(f"data:image/png;base64,{PIXEL}", detail=3),
                        ],
                    }
                ]
            },
            "image_url.detail must be a string (got 3)",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "Look"}]
                        + [_image_part(f"data:image/png;base64,{PIXEL}")] * 21,
                    }
                ]
            },
            "messages carry 21 images, over the limit of",
        ),
    ],
)
def test_a_raw_body_openai_s_sdk_would_not_send_is_a_400_naming_the_field(router, bedrock, overrides, named):
    body = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], **overrides}
    http = httpx.Client(transport=transport([]))
    answer = http.post("http://router.test/v1/chat/completions", content=json.dumps(body).encode())
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert named in error["message"], error["message"]
    assert error["type"] == "invalid_request_error"
    assert bedrock.calls == []


def test_the_fields_openai_takes_and_the_router_ignores_are_accepted_when_well_formed(client, bedrock):
    image = {"url": f"data:image/png;base64,{PIXEL}", "detail": "original"}  # detail's values grow: any string
    completion = client.chat.completions.create(
        model="auto",
        messages=[
            {"role": "user", "content": "Hi", "name": "ana"},
            {"role": "assistant", "content": "Hello."},
            {
                "role": "user",
                "content": [
                    # Fields an SDK or a proxy adds to parts (prompt caching hints) are left alone
                    {"type": "text", "text": "Look", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": image, "prompt_cache_breakpoint": {"type": "ephemeral"}},
                ],
            },
        ],
        top_logprobs=0,
        seed=7,
        metadata={"team": "search"},
        user="u-1",
        store=False,
        presence_penalty=0,
        frequency_penalty=0.0,
        n=1,
        stream=False,
        tools=[],
    )
    [call] = bedrock.calls
    assert completion.choices[0].message.content.startswith("answer from ") and call["model"]
    assert [block for block in call["messages"][-1]["content"] if "image" in block]  # the image went to the model


def test_a_spent_budget_that_refuses_is_a_429_with_retry_after(bedrock, store, tmp_path):
    document = json.loads(DEFAULT_POLICY_PATH.read_text())
    document["budget"]["modes"][2] = {"at_percent": 100, "action": "reject"}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    handler.configure(
        RouterService(
            policies=PolicyStore(file_fetcher(path), max_age_s=300),
            gateway=bedrock,
            live_state=LiveStateTracker(store, cache_ttl_s=0.0),
        )
    )
    policy = compile_policy(document)
    for scope in scopes_for(policy.budget, time.time(), tier="standard", api_key=None):
        store.spend[scope.key] = 250.0
    client = openai.OpenAI(
        base_url="http://router.test/v1", api_key="k", http_client=httpx.Client(transport=transport([])), max_retries=0
    )
    try:
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    finally:
        handler.configure(None)
    assert raised.value.code == "budget_exceeded"
    assert 0 < int(raised.value.response.headers["Retry-After"]) <= 86_400
    assert bedrock.calls == []


def test_no_model_answering_is_a_503_the_sdk_may_retry(client, bedrock):
    bedrock.fail("*")
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code == 503
    assert raised.value.response.headers["Retry-After"] == "5"
    assert "no model could answer" in raised.value.message


def test_errors_take_the_shape_of_the_api_asked_and_generate_keeps_its_own(client, bedrock):
    # An unknown /v1 path is a 404 in OpenAI's shape
    with pytest.raises(openai.NotFoundError) as raised:
        client.get("/nope", cast_to=dict)
    assert raised.value.body["type"] == "invalid_request_error"
    assert raised.value.code == "unknown_url"  # not model_not_found: no model was named
    # And /generate answers and fails in its own contract, untouched
    http = httpx.Client(transport=transport([]))
    bad = http.post("http://router.test/generate", json={"prompt": ""})
    assert bad.status_code == 400 and set(bad.json()) == {"error", "message"} and bad.json()["error"] == "BadRequest"
    good = http.post("http://router.test/generate", json={"prompt": "Hello!"})
    assert good.status_code == 200 and good.json()["output"] == f"answer from {NOVA_MICRO}"


def test_a_budget_that_degrades_at_the_cap_is_a_429_the_sdk_does_not_retry(bedrock, store):
    handler.configure(
        RouterService(
            policies=PolicyStore(file_fetcher(DEFAULT_POLICY_PATH), max_age_s=300),
            gateway=bedrock,
            live_state=LiveStateTracker(store, cache_ttl_s=0.0),
        )
    )
    policy = compile_policy(json.loads(DEFAULT_POLICY_PATH.read_text()))
    for scope in scopes_for(policy.budget, time.time(), tier="standard", api_key=None):
        store.spend[scope.key] = 250.0  # the default policy degrades at 100%
    client = openai.OpenAI(
        base_url="http://router.test/v1", api_key="k", http_client=httpx.Client(transport=transport([])), max_retries=2
    )
    try:
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    finally:
        handler.configure(None)
    assert raised.value.code == "budget_exceeded"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert 0 < int(raised.value.response.headers["Retry-After"]) <= 86_400
    assert bedrock.calls == []


def test_a_stream_through_the_lambda_handler_is_the_same_events_sent_at_once(client, bedrock):
    chunks = list(
        client.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"answer from {NOVA_MICRO}"
    assert chunks[-1].usage.total_tokens == 150
    assert bedrock.calls[0]["stream"] is True


def test_stream_options_without_stream_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Hi"}], stream_options={"include_usage": True}
        )


def test_a_model_that_does_not_start_in_time_is_passed_over_before_the_first_byte(client, bedrock):
    # Given nova-micro holding every stream past the first-token timeout (the gateway raises it as REGIONAL)
    bedrock.fail("nova-micro", code="FirstTokenTimeout")
    chunks = list(
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True)
    )
    # Then both its regions were tried, and the stream came from the fallback, whole
    assert [c["model"] for c in bedrock.calls][:2] == ["nova-micro", "nova-micro"]
    routing = chunks[0].model_extra["routing"]
    assert routing["fallback_used"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("answer from")


def test_a_streamed_answer_is_charged_to_the_budget_when_it_ends(client, bedrock, store):
    stream = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True)
    list(stream)
    handler.service().live_state.flush()
    policy = compile_policy(json.loads(DEFAULT_POLICY_PATH.read_text()))
    expected = policy.models["nova-micro"].cost_usd(100, 50)
    [daily] = [scope for scope in scopes_for(policy.budget, time.time(), tier="standard", api_key=None)][:1]
    assert store.spend[daily.key] == pytest.approx(expected)


def test_a_stream_that_breaks_is_counted_and_reported_to_the_breaker(client, bedrock, capsys, monkeypatch):
    from lambdas.router.executor import ModelCallError

    from .conftest import FakeStream

    class Breaking(FakeStream):
        def __iter__(self):
            yield StreamEvent(text=self.first_text)
            raise ModelCallError("modelStreamErrorException", "broke", FailureClass.REGIONAL)

    original = type(bedrock).converse_stream

    def breaking(self, call, *args, **kwargs):
        original(self, call, *args, **kwargs)
        return Breaking("answer from a model")

    monkeypatch.setattr(type(bedrock), "converse_stream", breaking)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    with pytest.raises(openai.APIError, match="broke off"):
        list(client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    request_line = next(line for line in lines if "StreamFailures" in line)
    assert request_line["StreamFailures"] == [1.0] or request_line["StreamFailures"] == 1.0


def _stream_event(body: dict) -> dict:
    return proxy_event(
        "POST",
        "/v1/chat/completions",
        {"Content-Type": "application/json"},
        json.dumps(body).encode(),
        source_ip="203.0.113.9",
        request_id="s1",
    )


@pytest.fixture
def recorded(client, monkeypatch):
    """The service's breaker reports and budget settlements, as (kind, details) pairs."""
    tracker = handler.service().live_state
    seen: list[tuple[str, object]] = []
    original_record, original_settle, original_release = tracker.record_attempt, tracker.settle, tracker.release

    def record_attempt(policy, model_id, region, outcome, latency_ms, **kwargs):
        seen.append(("attempt", (model_id, region, outcome)))
        return original_record(policy, model_id, region, outcome, latency_ms, **kwargs)

    def settle(reservation, usd):
        seen.append(("settle", usd))
        return original_settle(reservation, usd)

    def release(probes):
        seen.append(("release", None))
        return original_release(probes)

    monkeypatch.setattr(tracker, "record_attempt", record_attempt)
    monkeypatch.setattr(tracker, "settle", settle)
    monkeypatch.setattr(tracker, "release", release)
    return seen


def test_a_streamed_call_is_one_ok_for_the_breaker_reported_when_it_ends(client, recorded):
    status, headers, events = handler.stream_chat_completions(
        _stream_event({"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "stream": True}),
        LocalLambdaContext("s1"),
    )
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    first = next(events)
    assert b'"role":"assistant"' in first
    assert [k for k, _ in recorded] == []  # nothing reported while the answer streams
    rest = b"".join(events)
    assert rest.endswith(b"data: [DONE]\n\n")
    assert [kind for kind, _ in recorded] == ["attempt", "settle", "release"]
    assert recorded[0][1][2] == "ok"


def test_a_caller_gone_before_reading_still_settles_and_closes_the_model_stream(client, bedrock, recorded):
    status, _, events = handler.stream_chat_completions(
        _stream_event({"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "stream": True}),
        LocalLambdaContext("s1"),
    )
    assert status == 200
    # When the front end closes the answer without reading a byte (the client hung up)
    events.close()
    # Then the request is settled and released once, and not blamed on the model
    assert [kind for kind, _ in recorded] == ["attempt", "settle", "release"]
    assert recorded[0][1][2] == "ok"
    events.close()  # a second close changes nothing
    assert len(recorded) == 3


def test_a_stream_broken_by_an_unexpected_error_ends_with_an_error_event_and_a_failed_attempt(
    client, bedrock, recorded, monkeypatch
):
    from .conftest import FakeStream

    class Exploding(FakeStream):
        def __iter__(self):
            yield StreamEvent(text=self.first_text)
            raise RuntimeError("socket gone")

    original = type(bedrock).converse_stream
    monkeypatch.setattr(
        type(bedrock),
        "converse_stream",
        lambda self, call, *a, **k: (original(self, call, *a, **k), Exploding("x" * 20))[1],
    )
    _, _, events = handler.stream_chat_completions(
        _stream_event({"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "stream": True}),
        LocalLambdaContext("s1"),
    )
    text = b"".join(events).decode()
    assert '"code":"stream_error"' in text and text.endswith("data: [DONE]\n\n")
    assert recorded[0][0] == "attempt" and recorded[0][1][2] == "regional"


def test_no_policy_on_the_streaming_front_end_is_an_openai_503(bedrock):
    def no_policy() -> bytes:
        raise OSError("AppConfig unreachable")

    handler.configure(RouterService(policies=PolicyStore(no_policy, max_age_s=300), gateway=bedrock))
    try:
        status, _, body = handler.stream_chat_completions(
            _stream_event({"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "stream": True}),
            LocalLambdaContext("s1"),
        )
    finally:
        handler.configure(None)
    assert status == 503 and json.loads(body)["error"]["code"] == "service_unavailable"


@pytest.fixture
def stream_deadlines(monkeypatch) -> list[float]:
    """Seconds from each streamed request's start to the deadline its LiveStream was given."""
    from lambdas.router import service as service_module

    seen: list[float] = []
    original = service_module.LiveStream

    def recording(*args, deadline, started, **kwargs):
        seen.append(round(deadline - started, 3))
        return original(*args, deadline=deadline, started=started, **kwargs)

    monkeypatch.setattr(service_module, "LiveStream", recording)
    return seen


def test_a_live_front_end_streams_for_the_policys_stream_deadline(client, stream_deadlines):
    # Given the streaming function's front end (it sends events as they are made) with 10 minutes left
    body = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    _, _, events = handler.stream_chat_completions(_stream_event(body), LocalLambdaContext("s1", timeout_ms=600_000))
    list(events)
    # Then the stream may run the policy's stream_deadline_ms (default 120 s), not the 25 s request deadline
    assert stream_deadlines == [120.0]
    # And with less time left in the function, what is left (minus the 500 ms reserve) bounds it
    _, _, events = handler.stream_chat_completions(_stream_event(body), LocalLambdaContext("s2", timeout_ms=60_000))
    list(events)
    assert 59.0 < stream_deadlines[1] <= 59.5


def test_a_buffered_front_end_keeps_the_stream_within_the_request_deadline(client, stream_deadlines):
    # Through the buffered Lambda handler the events leave only when the stream ends, inside API Gateway's 29 s
    list(client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert stream_deadlines == [25.0]  # total_deadline_ms
