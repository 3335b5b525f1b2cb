"""The DynamoDB live-state store against moto's server over real HTTP (botocore's real client)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import boto3
import pytest

from benchmarks.budget_drill import bound_usd, two_instances_spend, write_policy
from lambdas.router import breaker as b
from lambdas.router.budget import scopes_for
from lambdas.router.dynamo_state import DynamoBackend
from lambdas.router.live_state import LiveStateTracker

from .conftest import free_port, running_moto_server

PAIR = ("us.amazon.nova-micro-v1:0", "us-east-1")
REGION = "us-east-1"
_tables = itertools.count()


@pytest.fixture(scope="module")
def moto_url(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto"}.items():
        monkeypatch_module.setenv(name, value)
    monkeypatch_module.delenv("AWS_PROFILE", raising=False)
    with running_moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def backend(moto_url: str) -> DynamoBackend:
    """A fresh table shaped as the construct defines it: partition key ``pk``, TTL on ``expires_at``."""
    name = f"live-state-{next(_tables)}"
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_url)
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    # Generous timeouts: these tests are about atomicity, and a loaded test machine can make moto slower than
    # the production 0.5 s read timeout (whose retry of an ADD may count it twice, as documented).
    return DynamoBackend(name, region=REGION, endpoint_url=moto_url, connect_timeout_s=5.0, read_timeout_s=10.0)


def test_empty_table_reads_as_all_closed_and_nothing_spent(backend):
    view = backend.read([PAIR], [100, 99], ["d:2026-11-23"])
    assert view.circuits == {}
    assert view.counts == {}
    assert view.spend == {"d:2026-11-23": 0.0}


def test_counts_add_up_and_come_back_with_the_latency_histogram(backend):
    backend.add_counts(PAIR, 100, b.one_call("ok", 120.0), 9e9)
    totals = backend.add_counts(PAIR, 100, b.one_call("regional", 0.0).plus(b.one_call("throttled", 0)), 9e9)
    assert (totals.ok, totals.failed, totals.throttled) == (1, 1, 1)
    assert totals.latency[b.latency_bucket(120.0)] == 1
    assert backend.read([PAIR], [100, 99], []).counts == {(PAIR, 100): totals}


def test_concurrent_increments_from_threads_are_not_lost(backend):
    def worker() -> None:
        for _ in range(20):
            backend.add_counts(PAIR, 7, b.one_call("regional", 0.0), 9e9)
            backend.add_spend({"d:2026-11-23": (0.25, 9e9)})

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    view = backend.read([PAIR], [7], ["d:2026-11-23"])
    assert view.counts[(PAIR, 7)].failed == 120
    assert view.spend["d:2026-11-23"] == pytest.approx(30.0)


def test_opening_is_conditional_so_instances_agree_on_one_opened_at(backend):
    assert backend.open_circuit(PAIR, opened_at=1000.0, expected=None, reason="5 failures")
    # A second instance that also saw it closed loses the race
    assert not backend.open_circuit(PAIR, opened_at=1000.5, expected=None, reason="5 failures")
    # A failed probe re-opens the circuit it saw
    assert backend.open_circuit(PAIR, opened_at=1040.0, expected=1000.0, reason="probe failed")
    assert backend.read([PAIR], [1], []).circuits[PAIR].opened_at == 1040.0


def test_half_open_probes_are_bounded_and_stale_slots_are_reclaimed(backend):
    backend.open_circuit(PAIR, opened_at=1000.0, expected=None, reason="x")
    assert backend.claim_probe(PAIR, opened_at=1000.0, max_probes=1, now=1031.0, stale_before=1001.0)
    assert not backend.claim_probe(PAIR, opened_at=1000.0, max_probes=1, now=1032.0, stale_before=1002.0)
    # A claim for a circuit that has since re-opened is refused
    assert not backend.claim_probe(PAIR, opened_at=999.0, max_probes=5, now=1032.0, stale_before=1002.0)
    # A slot whose probe never reported is free again after a cooldown
    assert backend.claim_probe(PAIR, opened_at=1000.0, max_probes=1, now=1070.0, stale_before=1040.0)


def test_a_probe_given_back_frees_its_slot_once(backend):
    backend.open_circuit(PAIR, opened_at=1000.0, expected=None, reason="x")
    assert backend.claim_probe(PAIR, opened_at=1000.0, max_probes=1, now=1031.0, stale_before=1001.0)
    assert backend.release_probe(PAIR, opened_at=1000.0)
    assert backend.read([PAIR], [1], []).circuits[PAIR].probes == 0
    # Never below zero, and never for another opening
    assert not backend.release_probe(PAIR, opened_at=1000.0)
    assert not backend.release_probe(PAIR, opened_at=999.0)
    assert backend.claim_probe(PAIR, opened_at=1000.0, max_probes=1, now=1032.0, stale_before=1002.0)


def test_a_cheap_calls_spend_is_written_exactly(backend):
    # A Nova Micro greeting costs about a hundred-thousandth of a dollar: Python spells it 1.05e-05
    for _ in range(3):
        backend.add_spend({"d:2026-11-23": (1.05e-05, 9e9)})
    assert backend.read([], [], ["d:2026-11-23"]).spend["d:2026-11-23"] == pytest.approx(3.15e-05)


def test_counts_can_be_taken_back_when_a_circuit_closes(backend):
    backend.add_counts(PAIR, 7, b.WindowCounts(ok=2, failed=5, throttled=1), 9e9)
    totals = backend.add_counts(PAIR, 7, b.WindowCounts(failed=-5, throttled=-1), 9e9)
    assert (totals.ok, totals.failed, totals.throttled) == (2, 0, 0)


def test_closing_needs_the_same_circuit(backend):
    backend.open_circuit(PAIR, opened_at=1000.0, expected=None, reason="x")
    assert not backend.close_circuit(PAIR, opened_at=999.0)
    assert backend.close_circuit(PAIR, opened_at=1000.0)
    assert backend.read([PAIR], [1], []).circuits == {}
    # Closed again means it can be opened afresh
    assert backend.open_circuit(PAIR, opened_at=2000.0, expected=None, reason="x")


def test_reads_more_keys_than_one_batch_holds(backend):
    pairs = [(f"model-{i}", "us-east-1") for i in range(60)]  # 60 circuits + 120 windows: two batches
    backend.open_circuit(pairs[-1], opened_at=5.0, expected=None, reason="x")
    view = backend.read(pairs, [1, 0], [])
    assert set(view.circuits) == {pairs[-1]}


def test_two_trackers_share_breakers_through_the_table(backend, default_policy):
    clock_now = [1_800_000_000.0]
    a = LiveStateTracker(backend, clock=lambda: clock_now[0])
    other = LiveStateTracker(backend, clock=lambda: clock_now[0])
    for index in range(default_policy.breaker.failure_threshold):
        a.record_attempt(default_policy, *PAIR, "regional", 20.0, caller=f"ip:198.51.100.{index}")
    scopes = scopes_for(default_policy.budget, clock_now[0], tier="standard", api_key=None)
    assert ("nova-micro", "us-east-1") in other.snapshot(default_policy, scopes).state.open_circuits


def test_store_down_never_fails_the_request(default_policy):
    # Given a table endpoint nobody listens on
    dead = DynamoBackend("live-state", region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}")
    tracker = LiveStateTracker(dead)
    scopes = scopes_for(default_policy.budget, 1_800_000_000.0, tier="standard", api_key=None)
    # When the router asks for a snapshot and records failures
    first = tracker.snapshot(default_policy, scopes)
    for index in range(default_policy.breaker.failure_threshold):
        tracker.record_attempt(default_policy, *PAIR, "regional", 20.0, caller=f"ip:198.51.100.{index}")
    # Then it answers from local knowledge: nothing known at first, then its own breaker
    assert first.state.open_circuits == frozenset()
    assert ("nova-micro", "us-east-1") in tracker.snapshot(default_policy, scopes).state.open_circuits
    assert tracker.drain_events().store_errors >= 1


def test_failures_are_counted_per_caller_bucket_and_an_undo_takes_them_back(backend):
    # Given failures from two callers added by two writers, one caller twice
    delta_a = b.one_call("regional", 1, "ip:a")
    backend.add_counts(PAIR, 7, delta_a, 10_000)
    backend.add_counts(PAIR, 7, delta_a, 10_000)
    totals = backend.add_counts(PAIR, 7, b.one_call("regional", 1, "ip:b"), 10_000)
    # Then the window holds three failures, two in a's bucket and one in b's, read back the same way
    assert totals.failed == 3
    assert totals.failed_by_caller[b.caller_bucket("ip:a")] == 2
    assert totals.failed_by_caller[b.caller_bucket("ip:b")] == 1
    assert backend.read([PAIR], [7], []).counts[(PAIR, 7)] == totals
    # And undoing them (a circuit closed) leaves every bucket at zero
    undo = b.WindowCounts(failed=-3, failed_by_caller=tuple(-n for n in totals.failed_by_caller))
    after = backend.add_counts(PAIR, 7, undo, 10_000)
    assert (after.failed, sum(after.failed_by_caller)) == (0, 0)


def test_reserving_spend_never_takes_the_counter_past_the_cap(backend):
    assert backend.reserve_spend("d:2026-11-23", 0.6, cap_usd=1.0, expires_at=9e9) == (True, pytest.approx(0.6))
    assert backend.reserve_spend("d:2026-11-23", 0.4, cap_usd=1.0, expires_at=9e9) == (True, pytest.approx(1.0))
    # Refused: the counter is unchanged and comes back as found
    assert backend.reserve_spend("d:2026-11-23", 0.01, cap_usd=1.0, expires_at=9e9) == (False, pytest.approx(1.0))
    # A reservation given back (a negative add) makes room again
    backend.add_spend({"d:2026-11-23": (-0.3, 9e9)})
    assert backend.reserve_spend("d:2026-11-23", 0.25, cap_usd=1.0, expires_at=9e9) == (True, pytest.approx(0.95))


def test_two_instances_on_the_table_spend_at_most_the_cap_plus_their_unconfirmed_shares(backend, moto_url, tmp_path):
    # Given two instances, each with its own client on the one table, and a 2 USD daily budget refusing at its cap
    other = DynamoBackend(
        backend.table_name, region=REGION, endpoint_url=moto_url, connect_timeout_s=5.0, read_timeout_s=10.0
    )
    # When 32 callers spend it concurrently, each until refused
    run = two_instances_spend((backend, other), write_policy(tmp_path, 2.0))
    # Then the spend stays within the stated bound, the budget was used, and the table holds what was spent
    assert run.answered_usd <= bound_usd(2.0, instances=2)
    assert run.answered_usd >= 0.9 * 2.0
    assert run.refusals == 32
    assert run.counter_usd == pytest.approx(run.answered_usd)
