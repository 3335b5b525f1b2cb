"""``openai_api.parse_chat`` on structure-aware mutations of a full chat body: every field, at any depth,
replaced by odd JSON (wrong types, lone surrogates, lists where a string is looked up, huge numbers). Whatever
it is given, it returns a request or raises ``BadRequest`` (a 400 naming the field): never another exception,
which the handler would answer with a 500 (and API 5XX rolls a policy deployment back)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

from lambdas.router.contract import BadRequest
from lambdas.router.openai_api import parse_chat
from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAeIhvDMAAAAASUVORK5CYII="
FULL_BODY: dict[str, Any] = {
    "model": "auto",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ana"},
        {"role": "assistant", "content": "Hello", "refusal": None, "tool_calls": []},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "low"}},
            ],
        },
    ],
    "max_tokens": 50,
    "temperature": 0.5,
    "stop": ["END"],
    "n": 1,
    "stream": True,
    "stream_options": {"include_usage": True},
    "seed": 3,
    "metadata": {"team": "search"},
    "user": "u-1",
    "presence_penalty": 0,
    "tools": [],
    "top_logprobs": 0,
}
ODD_LEAVES: list[Any] = [None, True, False, 0, 1, -1, 1.5, 10**30, float("inf"), "", "x", "\ud800", "auto", "text"]
ODD_LEAVES += ["image_url", "user", [], {}, "data:image/png;base64,"]
KEYS = ["type", "text", "url", "image_url", "role", "content", "detail", "include_usage", "a"]


def odd_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(ODD_LEAVES)
    if roll < 0.75:
        return [odd_json(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(KEYS): odd_json(rng, depth + 1) for _ in range(rng.randrange(3))}


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from paths(child, (*prefix, key))


def replace(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def test_the_full_body_itself_parses():
    request = parse_chat(copy.deepcopy(FULL_BODY), load_policy_file(DEFAULT_POLICY_PATH))
    assert request.stream is True and request.include_usage is True and len(request.images) == 1


def test_any_mutation_of_a_chat_body_is_a_request_or_a_bad_request_never_another_error():
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    rng = random.Random(20261201)
    refused = 0
    for _ in range(3_000):
        body = copy.deepcopy(FULL_BODY)
        for _ in range(rng.randrange(1, 4)):
            choices = list(paths(body))
            if choices:
                replace(body, rng.choice(choices), odd_json(rng))
        try:
            parse_chat(body, policy)
        except BadRequest:
            refused += 1
    # And the mutations reached the checks: most are refused, some still parse
    assert 1_500 < refused < 3_000
