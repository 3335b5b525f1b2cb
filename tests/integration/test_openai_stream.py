"""Streamed chat completions (``stream: true``) from the ``openai`` SDK against ``make local``: tokens as they
are made, fallback before the first byte, a failure after it ending the stream with an error, and usage."""

from __future__ import annotations

import openai
import pytest

from tests.integration.conftest import timed_stream

NOVA_MICRO = "us.amazon.nova-micro-v1:0"
ASK = [{"role": "user", "content": "Say hello to the team."}]


@pytest.fixture
def client(local_endpoint) -> openai.OpenAI:
    local_endpoint.clear_faults()
    local_endpoint.clear_live_state()
    yield openai.OpenAI(base_url=f"{local_endpoint.base_url}/v1", api_key="sk-local", max_retries=0, timeout=30)
    local_endpoint.clear_faults()


def test_chunks_arrive_before_the_answer_is_complete_and_add_up_to_it(local_endpoint, client):
    whole = client.chat.completions.create(model="fast", messages=ASK).choices[0].message.content
    local_endpoint.fault(model="*", stream_delay_ms=80)  # the simulator paces its deltas
    arrivals, texts, chunks = timed_stream(client, model="fast", messages=ASK, stream_options={"include_usage": True})
    # Then the text came in several pieces, the first well before the last, and they are the whole answer
    assert len(texts) >= 3
    assert arrivals[-1] - arrivals[0] >= 0.08 * (len(texts) - 1) * 0.8
    assert "".join(texts) == whole
    # And the stream names its model and route first, ends with a finish reason, then the usage
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model_extra["routing"]["route"] == "fast" and chunks[0].model == NOVA_MICRO
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_fallback_and_region_failover_happen_before_the_first_byte(local_endpoint, client):
    local_endpoint.fault(model=NOVA_MICRO, region="*", outage=True)
    chunks = list(client.chat.completions.create(model="fast", messages=ASK, stream=True))
    routing = chunks[0].model_extra["routing"]
    assert routing["fallback_used"] is True and chunks[0].model != NOVA_MICRO
    attempts = routing["decision"]["attempts"]
    assert [a["model"] for a in attempts[:2]] == ["nova-micro", "nova-micro"]  # both regions, before streaming
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error(local_endpoint, client):
    local_endpoint.fault(model=NOVA_MICRO, stream_fails_after=2)
    texts = []
    stream = client.chat.completions.create(model="fast", messages=ASK, stream=True)
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
    assert len(texts) == 2  # what came before the failure reached the caller
    assert "broke off" in raised.value.message


def test_a_cascade_route_streams_its_final_answer_as_one_chunk(client):
    chunks = list(client.chat.completions.create(model="math-cascade", messages=ASK, stream=True))
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) == 1
    assert chunks[0].model_extra["routing"]["decision"]["cascade"]["steps"][0]["model"] == "nova-micro"


def test_a_bad_streamed_request_is_an_ordinary_400(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=ASK, stream=True, temperature=5)
