"""The simulator's fault model: strict parsing, wildcard matching, deterministic throttle sampling."""

from __future__ import annotations

import json

import pytest

from local_endpoint.bedrock_sim import Fault, FaultStore


def test_parses_a_full_fault():
    fault = Fault.from_json(
        {
            "model": "amazon.nova-micro-v1:0",
            "region": "us-west-2",
            "outage": True,
            "throttle_rate": 0.25,
            "latency_ms": 200,
            "error": "AccessDeniedException",
            "max_input_tokens": 10,
            "on_demand": False,
        }
    )
    assert fault.key == ("amazon.nova-micro-v1:0", "us-west-2")
    assert fault.throttle_rate == 0.25
    assert fault.on_demand is False


def test_a_fault_leaves_on_demand_serving_alone_by_default():
    assert Fault.from_json({"model": "m"}).on_demand is True


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "must be a JSON object"),
        ({"colour": "red"}, "unknown fault field(s): colour"),
        ({"region": "moon-1"}, "fault region must be a region name or '*'"),
        ({"outage": "yes"}, "fault outage must be true or false"),
        ({"throttle_rate": 1.5}, "throttle_rate must be a number from 0 to 1, got 1.5"),
        ({"latency_ms": -1}, "latency_ms must be an integer from 0 to 600000, got -1"),
        ({"error": "TeapotException"}, "fault error must be one of"),
        ({"max_input_tokens": 0}, "max_input_tokens must be a positive integer"),
        ({"on_demand": "no"}, "fault on_demand must be true or false, got 'no'"),
        ({"on_demand": 0}, "fault on_demand must be true or false, got 0"),
    ],
)
def test_rejects_bad_faults_naming_the_field(data, expected):
    with pytest.raises(ValueError) as error:
        Fault.from_json(data)
    assert expected in str(error.value)


def test_put_replaces_the_fault_for_the_same_model_and_region():
    store = FaultStore()
    store.put(Fault(model="m", region="us-east-1", outage=True))
    store.put(Fault(model="m", region="us-east-1", latency_ms=5))
    assert store.all() == [Fault(model="m", region="us-east-1", latency_ms=5)]


def test_matching_honours_wildcards():
    store = FaultStore([Fault(model="m", region="*", outage=True), Fault(model="*", region="us-west-2", latency_ms=1)])
    assert len(store.matching("m", "us-east-1")) == 1
    assert len(store.matching("m", "us-west-2")) == 2
    assert store.matching("other", "us-east-1") == []
    store.clear()
    assert store.matching("m", "us-west-2") == []


def test_throttle_sampling_is_seeded_and_near_its_rate():
    first = [FaultStore(seed=3).sample() for _ in range(1)]
    store_a, store_b = FaultStore(seed=3), FaultStore(seed=3)
    a = [store_a.sample() for _ in range(1000)]
    b = [store_b.sample() for _ in range(1000)]
    assert a == b
    assert a[0] == first[0]
    assert 400 < sum(1 for x in a if x < 0.5) < 600


def test_loads_faults_from_a_file(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"faults": [{"model": "*", "region": "us-east-1", "outage": True}]}))
    assert FaultStore.from_file(path).all() == [Fault(model="*", region="us-east-1", outage=True)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{nope", "is not valid JSON"),
        ('{"faults": {}}', "must hold an object with a 'faults' list"),
        ('{"faults": [{"throttle_rate": 7}]}', "throttle_rate must be a number from 0 to 1"),
    ],
)
def test_rejects_bad_fault_files_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "faults.json"
    path.write_text(content)
    with pytest.raises(ValueError) as error:
        FaultStore.from_file(path)
    assert "faults.json" in str(error.value)
    assert expected in str(error.value)


def test_rejects_a_missing_fault_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read faults file"):
        FaultStore.from_file(tmp_path / "absent.json")
