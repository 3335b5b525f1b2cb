"""Two router instances on one live-state store, many callers at once, spending one budget to its cap.

Shared by the in-memory and the DynamoDB (moto) tests of the budget's overshoot bound.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from lambdas.router.budget import UNCONFIRMED_SHARE_PERCENT, scopes_for
from lambdas.router.engine import PlannedCall
from lambdas.router.executor import ModelReply
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.policy import DEFAULT_POLICY_PATH
from lambdas.router.policy_store import PolicyStore, file_fetcher
from lambdas.router.service import CallerContext, RouterService
from lambdas.router.state_store import StateBackend

# 400 characters: the router estimates 100 input tokens, which is what the gateway below reports.
PROMPT = "Tell me about the weather in spring. " * 10 + "Thanks!" + " " * 23
MAX_TOKENS = 50
# Nova Micro made dear: 100 input tokens cost 0.002 USD and 50 output tokens 0.008, so an answer costs
# 0.006-0.010 USD and its estimate (all of max_tokens) is 0.010.
PRICE_PER_1K_INPUT = 0.02
PRICE_PER_1K_OUTPUT = 0.16


class MeteredGateway:
    """Answers after a few milliseconds with 100 input tokens and between half and all of ``maxTokens``."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def converse(self, call: PlannedCall, timeout_s: float, *, messages, system, inference_config) -> ModelReply:
        with self._lock:
            delay = self._rng.uniform(0.002, 0.015)
            output = self._rng.randint(inference_config["maxTokens"] // 2, inference_config["maxTokens"])
        time.sleep(delay)
        return ModelReply(text="ok", input_tokens=100, output_tokens=output, stop_reason="end_turn")


def write_policy(folder: Path, daily_usd: float) -> Path:
    """The shipped policy with one daily budget whose cap refuses requests (429) at 100%."""
    document: dict[str, Any] = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["budget"] = {"daily_usd": daily_usd, "modes": [{"at_percent": 100, "action": "reject"}]}
    document["models"]["nova-micro"]["price_per_1k_input_usd"] = PRICE_PER_1K_INPUT
    document["models"]["nova-micro"]["price_per_1k_output_usd"] = PRICE_PER_1K_OUTPUT
    path = folder / "budget-policy.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


class Run(NamedTuple):
    answered_usd: float  # the sum of every answer's cost: what was really spent
    answers: int
    refusals: int
    counter_usd: float  # the shared counter once both instances flushed
    seconds: float


def bound_usd(daily_usd: float, instances: int) -> float:
    """The stated bound: the cap plus each instance's unconfirmed share (answers never cost more than their
    estimate here, so nothing is added for underestimates)."""
    return daily_usd * (1 + instances * UNCONFIRMED_SHARE_PERCENT / 100.0)


def two_instances_spend(
    backends: tuple[StateBackend, StateBackend], policy_path: Path, *, callers: int = 32, per_caller: int = 400
) -> Run:
    """``callers`` threads, alternately on two instances (each its own tracker with the default cache and
    flush periods), each sending requests until it is refused."""
    services = [
        RouterService(
            policies=PolicyStore(file_fetcher(policy_path), max_age_s=300),
            gateway=MeteredGateway(seed=index),
            live_state=LiveStateTracker(backend),
            sleep=lambda _s: None,
        )
        for index, backend in enumerate(backends)
    ]
    for service in services:
        service.policies.current()  # loaded before the callers arrive, as at an instance's start
    body = json.dumps({"prompt": PROMPT, "use_case": "faq", "max_tokens": MAX_TOKENS})
    lock = threading.Lock()
    costs: list[float] = []
    refusals = [0]
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        service = services[index % len(services)]
        context = CallerContext(headers={}, sticky_key=f"caller-{index}", remaining_ms=None, principal=f"ip:{index}")
        try:
            for _ in range(per_caller):
                outcome = service.generate(body, context)
                with lock:
                    if outcome.status == 429:
                        refusals[0] += 1
                        return
                    assert outcome.status == 200 and not outcome.body["degraded"], outcome.body
                    costs.append(outcome.cost_usd)
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=caller, args=(index,)) for index in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    seconds = time.monotonic() - started
    assert not errors, errors[0]
    for service in services:
        assert service.live_state is not None
        service.live_state.flush()
    policy = services[0].policies.current()
    [daily] = [s for s in scopes_for(policy.budget, time.time(), tier=None, api_key=None) if s.limit_usd]
    counter = backends[0].read([], [], [daily.key]).spend[daily.key]
    return Run(sum(costs), len(costs), refusals[0], counter, seconds)
