"""The live policy: cached for max_age, validated on load, last good kept when a new one is bad."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import botocore.session
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from lambdas.router.policy_store import PolicyStore, PolicyUnavailable, appconfig_fetcher, file_fetcher


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self, document: Any) -> None:
        self.raw = json.dumps(document).encode()
        self.fetches = 0

    def __call__(self) -> bytes:
        self.fetches += 1
        return self.raw


def test_caches_for_max_age_then_refreshes(policy_document):
    clock, source = Clock(), Source(policy_document)
    store = PolicyStore(source, max_age_s=30, clock=clock)
    first = store.current()
    clock.now = 29
    assert store.current() is first
    assert source.fetches == 1
    clock.now = 31
    store.current()
    assert source.fetches == 2


def test_new_valid_version_replaces_the_old_one(policy_document):
    clock, source = Clock(), Source(policy_document)
    store = PolicyStore(source, max_age_s=10, clock=clock)
    assert store.current().version == "2026-12-01.5"
    policy_document["policy_version"] = "v2"
    source.raw = json.dumps(policy_document).encode()
    clock.now = 11
    assert store.current().version == "v2"


def test_bad_new_version_keeps_the_last_good_one_and_logs(policy_document, caplog):
    # Given a store with a good policy
    clock, source = Clock(), Source(policy_document)
    store = PolicyStore(source, max_age_s=10, clock=clock, logger=logging.getLogger("test-store"))
    good = store.current()
    # When a bad version is published
    policy_document["routes"]["fast"]["candidates"][0]["model"] = "missing-model"
    source.raw = json.dumps(policy_document).encode()
    clock.now = 11
    with caplog.at_level(logging.ERROR, logger="test-store"):
        kept = store.current()
    # Then the last good policy stays in force, the error is logged and remembered
    assert kept is good
    assert "rejected new policy version" in caplog.text
    assert "missing-model" in store.last_error


def test_fetch_failure_keeps_the_last_good_policy(policy_document):
    clock, source = Clock(), Source(policy_document)
    store = PolicyStore(source, max_age_s=10, clock=clock)
    good = store.current()

    def broken() -> bytes:
        raise ConnectionError("appconfig unreachable")

    store._fetch = broken
    clock.now = 11
    assert store.current() is good
    assert "appconfig unreachable" in store.last_error


def test_fails_when_no_valid_policy_was_ever_loaded():
    store = PolicyStore(lambda: b'{"schema_version": "1.0"}', max_age_s=10, clock=Clock())
    with pytest.raises(PolicyUnavailable, match="invalid policy"):
        store.current()


def test_file_fetcher_reads_the_file_each_refresh(tmp_path, policy_document):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_document))
    clock = Clock()
    store = PolicyStore(file_fetcher(path), max_age_s=5, clock=clock)
    assert store.current().version == "2026-12-01.5"
    policy_document["policy_version"] = "edited"
    path.write_text(json.dumps(policy_document))
    clock.now = 6
    assert store.current().version == "edited"


def _appconfig_client():
    return botocore.session.get_session().create_client(
        "appconfigdata", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


SESSION_PARAMS = {
    "ApplicationIdentifier": "app",
    "EnvironmentIdentifier": "prod",
    "ConfigurationProfileIdentifier": "policy",
    "RequiredMinimumPollIntervalInSeconds": 15,
}


def _session(stub, token="token-1"):
    stub.add_response("start_configuration_session", {"InitialConfigurationToken": token}, SESSION_PARAMS)


def _latest(stub, token, content: bytes, next_token):
    # What AppConfig answers: the document, or empty content when nothing new was deployed to this client
    stub.add_response(
        "get_latest_configuration",
        {
            "NextPollConfigurationToken": next_token,
            "NextPollIntervalInSeconds": 15,
            "ContentType": "application/json",
            "Configuration": StreamingBody(io.BytesIO(content), len(content)),
        },
        {"ConfigurationToken": token},
    )


def test_appconfig_fetcher_starts_a_session_allowing_15_s_polls(policy_document):
    # Given an appconfigdata client whose responses are stubbed (moto does not implement appconfigdata)
    client = _appconfig_client()
    raw = json.dumps(policy_document).encode()
    with Stubber(client) as stub:
        _session(stub)
        _latest(stub, "token-1", raw, "token-2")
        _latest(stub, "token-2", b"", "token-3")
        fetch = appconfig_fetcher(application="app", environment="prod", profile="policy", client=client)
        clock = Clock()
        store = PolicyStore(fetch, max_age_s=15, clock=clock)
        # When the router asks for the policy, and again after 15 s
        assert store.current().version == "2026-12-01.5"
        clock.now = 15
        assert store.current().version == "2026-12-01.5"
        # Then the session asked for AppConfig's 15 s minimum (the default 60 s refuses a poll every 45 s)
        # and each poll used the token the previous answer gave
        stub.assert_no_pending_responses()
        assert store.last_error is None


def test_first_rollout_serves_the_bootstrap_policy_while_appconfig_answers_empty(policy_document, caplog):
    # Given a gradual first rollout: this client is outside its share, so AppConfig answers empty content
    client = _appconfig_client()
    bootstrap_raw = json.dumps(policy_document).encode()
    deployed = json.dumps({**policy_document, "policy_version": "deployed"}).encode()
    with Stubber(client) as stub:
        _session(stub)
        _latest(stub, "token-1", b"", "token-2")
        _latest(stub, "token-2", b"", "token-3")
        _latest(stub, "token-3", deployed, "token-4")
        fetch = appconfig_fetcher(application="app", environment="prod", profile="policy", client=client)
        clock = Clock()
        store = PolicyStore(fetch, max_age_s=45, clock=clock, bootstrap=lambda: bootstrap_raw)
        # When the router asks for the policy from its first second
        # Then it serves the synth-validated bootstrap, with no warning (nothing is wrong)
        assert store.current().version == "2026-12-01.5"
        assert store.source == "bootstrap"
        assert store.last_error is None
        clock.now = 45
        assert store.current().version == "2026-12-01.5"
        # And once the rollout reaches this client, the deployed version replaces it
        clock.now = 90
        assert store.current().version == "deployed"
        assert store.source == "fetched"
        stub.assert_no_pending_responses()


def test_without_a_bootstrap_an_empty_first_answer_is_unavailable_not_invalid(policy_document):
    client = _appconfig_client()
    with Stubber(client) as stub:
        _session(stub)
        _latest(stub, "token-1", b"", "token-2")
        fetch = appconfig_fetcher(application="app", environment="prod", profile="policy", client=client)
        store = PolicyStore(fetch, max_age_s=45, clock=Clock())
        with pytest.raises(PolicyUnavailable, match="no policy deployed"):
            store.current()


def test_an_unreachable_appconfig_at_cold_start_serves_the_bootstrap(policy_document):
    def unreachable() -> bytes:
        raise ConnectionError("appconfigdata endpoint unreachable")

    raw = json.dumps(policy_document).encode()
    store = PolicyStore(unreachable, max_age_s=45, clock=Clock(), bootstrap=lambda: raw)
    assert store.current().version == "2026-12-01.5"
    assert "cannot fetch policy" in store.last_error


def test_fails_when_the_bootstrap_is_missing_too(tmp_path):
    store = PolicyStore(lambda: b"", max_age_s=45, clock=Clock(), bootstrap=file_fetcher(tmp_path / "absent.json"))
    with pytest.raises(PolicyUnavailable, match="the bootstrap policy failed"):
        store.current()


def test_an_expired_session_token_starts_a_new_session_at_once(policy_document):
    client = _appconfig_client()
    raw = json.dumps(policy_document).encode()
    with Stubber(client) as stub:
        _session(stub)
        _latest(stub, "token-1", raw, "token-2")
        stub.add_client_error(
            "get_latest_configuration",
            service_error_code="BadRequestException",
            service_message="Token expired",
            http_status_code=400,
            expected_params={"ConfigurationToken": "token-2"},
        )
        _session(stub, token="token-9")
        _latest(stub, "token-9", raw, "token-10")
        fetch = appconfig_fetcher(application="app", environment="prod", profile="policy", client=client)
        clock = Clock()
        store = PolicyStore(fetch, max_age_s=15, clock=clock)
        store.current()
        clock.now = 20
        store.current()
        stub.assert_no_pending_responses()
        assert store.last_error is None


def test_an_unchanged_refresh_clears_a_transient_fetch_error(policy_document):
    # Given a good policy, then one failed refresh
    answers: list[Any] = [json.dumps(policy_document).encode(), ConnectionError("timeout"), b""]

    def fetch() -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = Clock()
    store = PolicyStore(fetch, max_age_s=10, clock=clock)
    store.current()
    clock.now = 10
    store.current()
    assert "cannot fetch policy" in store.last_error
    # When the next refresh says nothing changed (AppConfig's empty answer)
    clock.now = 20
    store.current()
    # Then the warning is gone: the version in force is the newest
    assert store.last_error is None


def test_an_unchanged_file_clears_a_transient_read_error(tmp_path, policy_document):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_document))
    clock = Clock()
    store = PolicyStore(file_fetcher(path), max_age_s=5, clock=clock)
    store.current()
    path.rename(tmp_path / "moved.json")
    clock.now = 5
    store.current()
    assert store.last_error is not None
    (tmp_path / "moved.json").rename(path)
    clock.now = 10
    store.current()
    assert store.last_error is None


def test_an_empty_answer_after_a_rejected_version_keeps_the_warning(policy_document):
    answers = [json.dumps(policy_document).encode(), b'{"schema_version": "1.0"}', b""]
    clock = Clock()
    store = PolicyStore(lambda: answers.pop(0), max_age_s=10, clock=clock)
    store.current()
    clock.now = 10
    store.current()
    clock.now = 20
    assert store.current().version == "2026-12-01.5"
    assert store.last_error is not None  # the newest version is still the rejected one


def test_trusted_digest_skips_only_the_schema_pass(policy_document, monkeypatch):
    # Given a document whose digest the construct computed at synth
    from lambdas.router import _policy_validator
    from lambdas.router.policy import document_digest

    raw = json.dumps(policy_document).encode()
    calls = []
    real = _policy_validator.validate
    monkeypatch.setattr(_policy_validator, "validate", lambda doc: calls.append(doc) or real(doc))
    # When that exact document loads, Then the schema validator is not run
    PolicyStore(lambda: raw, max_age_s=10, clock=Clock(), trusted_digest=document_digest(raw)).current()
    assert calls == []
    # And any other document is fully validated, even with the digest configured
    other = json.dumps({**policy_document, "policy_version": "v9"}).encode()
    PolicyStore(lambda: other, max_age_s=10, clock=Clock(), trusted_digest=document_digest(raw)).current()
    assert len(calls) == 1


def test_trusted_digest_still_checks_cross_references(policy_document):
    from lambdas.router.policy import document_digest

    policy_document["routes"]["fast"]["fallbacks"] = ["ghost"]
    raw = json.dumps(policy_document).encode()
    store = PolicyStore(lambda: raw, max_age_s=10, clock=Clock(), trusted_digest=document_digest(raw))
    with pytest.raises(PolicyUnavailable, match="ghost"):
        store.current()


def test_empty_configuration_is_not_deployed_yet_rather_than_invalid(policy_document):
    # Given AppConfig has not yet delivered a version to this client (first gradual rollout)
    clock = Clock()
    source = Source(policy_document)
    source.raw = b""
    store = PolicyStore(source, max_age_s=10, clock=clock)
    # Then there is no policy yet, and the error says why
    with pytest.raises(PolicyUnavailable, match="no policy deployed"):
        store.current()
    # And once the rollout reaches the client, the policy loads
    source.raw = json.dumps(policy_document).encode()
    clock.now = 11
    assert store.current().version == "2026-12-01.5"
    # And a later empty answer keeps the good policy
    source.raw = b""
    clock.now = 22
    assert store.current().version == "2026-12-01.5"


def test_without_any_policy_fetches_are_spaced_not_made_on_every_request():
    # Given a source that has nothing and no bootstrap
    fetches = []
    clock = Clock()
    store = PolicyStore(lambda: fetches.append(clock.now) or b"", max_age_s=45, clock=clock)
    # When requests keep coming every 100 ms for 12 s
    for step in range(120):
        clock.now = step / 10
        with pytest.raises(PolicyUnavailable):
            store.current()
    # Then the source was asked every 5 s, not 120 times
    assert fetches == [0.0, 5.0, 10.0]


def test_concurrent_first_callers_wait_for_the_first_fetch(policy_document):
    # Given a slow first fetch (a cold start) and several requests arriving together
    import threading
    import time

    raw = json.dumps(policy_document).encode()

    def slow_fetch() -> bytes:
        time.sleep(0.2)
        return raw

    store = PolicyStore(slow_fetch, max_age_s=45)
    results: list[object] = []

    def ask() -> None:
        try:
            results.append(store.current().version)
        except PolicyUnavailable as exc:
            results.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    # Then every one of them gets the policy, none a PolicyUnavailable (a 503)
    assert results == ["2026-12-01.5"] * 8
