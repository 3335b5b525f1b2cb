"""The official ``openai`` SDK pointed at ``make local``: plain chats, model choice, errors and the model list."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def client(local_endpoint) -> openai.OpenAI:
    local_endpoint.clear_faults()
    local_endpoint.clear_live_state()
    return openai.OpenAI(base_url=f"{local_endpoint.base_url}/v1", api_key="sk-local", max_retries=0, timeout=30)


def test_the_sdk_completes_a_chat_against_the_local_endpoint(client):
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Say hello."}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0
    assert raw.headers["x-selected-model"] == completion.model
    assert raw.headers["x-route"] == completion.model_extra["routing"]["route"]


def test_the_sdk_lists_the_endpoint_s_models_and_gets_a_404_for_another(client):
    ids = {model.id for model in client.models.list()}
    assert {"auto", "fast", "deep", "math-cascade"} <= ids
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.code == "model_not_found"


def test_the_math_cascade_runs_behind_the_sdk(client):
    completion = client.chat.completions.create(
        model="math-cascade",
        messages=[{"role": "user", "content": "Ana buys 4 pens at $3 each. How much does she spend?"}],
    )
    cascade = completion.model_extra["routing"]["decision"]["cascade"]
    assert cascade["steps"][0]["model"] == "nova-micro"


def test_a_region_down_falls_back_behind_the_sdk(local_endpoint, client):
    local_endpoint.fault(model="us.amazon.nova-micro-v1:0", region="*", outage=True)
    try:
        completion = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}])
    finally:
        local_endpoint.clear_faults()
    assert completion.model_extra["routing"]["fallback_used"] is True
    assert completion.model != "us.amazon.nova-micro-v1:0"
