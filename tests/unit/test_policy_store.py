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
    assert store.current().version == "2026-11-23.1"
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
    assert store.current().version == "2026-11-23.1"
    policy_document["policy_version"] = "edited"
    path.write_text(json.dumps(policy_document))
    clock.now = 6
    assert store.current().version == "edited"


def test_appconfig_fetcher_reads_through_powertools_with_a_stubbed_client(policy_document):
    # Given an appconfigdata client whose responses are stubbed (moto does not implement appconfigdata)
    client = botocore.session.get_session().create_client(
        "appconfigdata", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    raw = json.dumps(policy_document).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "start_configuration_session",
            {"InitialConfigurationToken": "token-1"},
            {
                "ApplicationIdentifier": "app",
                "EnvironmentIdentifier": "prod",
                "ConfigurationProfileIdentifier": "policy",
            },
        )
        stub.add_response(
            "get_latest_configuration",
            {
                "NextPollConfigurationToken": "token-2",
                "NextPollIntervalInSeconds": 60,
                "ContentType": "application/json",
                "Configuration": StreamingBody(io.BytesIO(raw), len(raw)),
            },
            {"ConfigurationToken": "token-1"},
        )
        fetch = appconfig_fetcher(
            application="app", environment="prod", profile="policy", max_age_s=45, boto3_client=client
        )
        store = PolicyStore(fetch, max_age_s=45, clock=Clock())
        # When the router asks for the policy
        policy = store.current()
        # Then it is the AppConfig document, compiled
        assert policy.version == "2026-11-23.1"
        stub.assert_no_pending_responses()


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
    assert store.current().version == "2026-11-23.1"
    # And a later empty answer keeps the good policy
    source.raw = b""
    clock.now = 22
    assert store.current().version == "2026-11-23.1"
