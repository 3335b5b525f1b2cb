"""Where the live policy comes from: AWS AppConfig (deployed) or a file (local mode), cached.

A new document is validated before it replaces the current policy; an invalid one is logged and the last
good policy stays in force. Until AppConfig has delivered a version to this client (the first rollout of a
new stack reaches only part of the clients at a time), the router serves the *bootstrap* policy: the very
document the construct validated at synth, shipped in the function's asset. Only when neither can be loaded
does ``current()`` raise ``PolicyUnavailable``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .policy import Policy, PolicyError, document_digest, parse_policy

FetchFn = Callable[[], bytes | str]

BOOTSTRAP_POLICY_FILENAME = "bootstrap_policy.json"
"""The policy the construct validated at synth, shipped in the function's asset root (beside ``router/``):
the router serves it until AppConfig has deployed a version to this client."""
BOOTSTRAP_POLICY_ENV = "ROUTER_BOOTSTRAP_POLICY_FILE"
"""Environment variable naming the bootstrap policy file (absolute, or relative to the asset root)."""
APPCONFIG_MIN_POLL_INTERVAL_S = 15
"""``RequiredMinimumPollIntervalInSeconds`` of the AppConfig session: the least AppConfig allows. Without it
the session's minimum is 60 s and any faster poll fails with "request too early"."""


NO_POLICY_RETRY_S = 5.0
"""With no policy loaded (neither fetched nor bootstrap), how often a request may try fetching again."""
RECENT_POLICIES = 4
"""Policies an instance keeps by digest: a Step Functions request's later tasks replay under the policy its first
task used, even after this instance moved to a newer one (a rollout)."""


class PolicyUnavailable(RuntimeError):
    """No valid policy has been loaded yet."""


class PolicyStore:
    """Caches the compiled policy and refreshes it at most every ``max_age_s`` seconds.

    ``fetch`` may answer an empty document: AppConfig does when nothing new has been deployed to this
    client since its last answer, or when no deployment has reached it yet. The policy in force then stays;
    with none yet, the ``bootstrap`` policy is loaded.

    Args:
        fetch: returns the raw policy document (bytes or str).
        max_age_s: how long a fetched document is trusted before fetching again.
        clock: monotonic seconds.
        logger: where rejected versions and fetch failures are reported.
        trusted_digest: SHA-256 of the document validated at synth (see ``policy.parse_policy``).
        bootstrap: returns the policy to serve until ``fetch`` has delivered one (the synth-validated
            document); None: no policy until then.
    """

    def __init__(
        self,
        fetch: FetchFn,
        *,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | Any | None = None,
        trusted_digest: str | None = None,
        bootstrap: FetchFn | None = None,
    ) -> None:
        self._fetch = fetch
        self._bootstrap = bootstrap
        self._trusted_digest = trusted_digest
        self._max_age_s = max_age_s
        self._clock = clock
        self._logger = logger or logging.getLogger(__name__)
        self._policy: Policy | None = None
        self._accepted_raw: bytes | str | None = None  # the fetched document in force
        self._rejected_raw: bytes | str | None = None  # the newest fetched document, when it was rejected
        self._source: str | None = None
        self._checked_at: float | None = None
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self._digest: str | None = None  # the SHA-256 of the policy in force
        self._recent: dict[str, Policy] = {}  # the policies this instance served lately, by digest (oldest first)

    @property
    def last_error(self) -> str | None:
        """Why the newest version could not be used (rejected, or not fetched), if it could not."""
        return self._last_error

    @property
    def source(self) -> str | None:
        """Where the policy in force came from: ``"fetched"``, ``"bootstrap"``, or None (none yet)."""
        return self._source

    def current(self) -> Policy:
        """The policy in force, refreshed when older than ``max_age_s``.

        Raises:
            PolicyUnavailable: no valid policy was ever loaded.
        """
        now = self._clock()
        # With no policy yet, wait for a refresh another thread may have under way rather than fail.
        if self._policy is None or self._due(now):
            with self._lock:
                if self._due(now):
                    self._refresh(now)
        if self._policy is None:
            raise PolicyUnavailable(self._last_error or "no routing policy loaded")
        return self._policy

    def current_with_digest(self) -> tuple[Policy, str]:
        """The policy in force and its document's SHA-256 (``policy.document_digest``), read together."""
        policy = self.current()
        with self._lock:
            return policy, (self._digest or "") if self._policy is policy else ""

    def by_digest(self, digest: str) -> Policy | None:
        """One of the last ``RECENT_POLICIES`` policies this instance served, by its document's SHA-256."""
        with self._lock:
            return self._recent.get(digest)

    def _keep(self, policy: Policy, raw: bytes | str) -> None:
        digest = document_digest(raw)
        self._digest = digest
        self._recent.pop(digest, None)
        self._recent[digest] = policy
        while len(self._recent) > RECENT_POLICIES:
            self._recent.pop(next(iter(self._recent)))

    def _due(self, now: float) -> bool:
        if self._checked_at is None:
            return True
        # With no policy at all, try again sooner than max_age, but not on every request.
        interval = self._max_age_s if self._policy is not None else min(self._max_age_s, NO_POLICY_RETRY_S)
        return now - self._checked_at >= interval

    def _refresh(self, now: float) -> None:
        self._checked_at = now
        try:
            raw = self._fetch()
        except Exception as exc:  # a fetch failure must never take down a working router
            self._last_error = f"cannot fetch policy: {exc}"
            self._logger.error("policy fetch failed; keeping the policy in force", extra={"error": str(exc)})
            if self._policy is None:
                self._load_bootstrap()
            return
        if not raw or not raw.strip():
            # Nothing new for this client: the version in force is still the newest (so a past fetch
            # failure is over), unless the newest was rejected; or nothing has been deployed to it yet.
            if self._rejected_raw is None:
                self._last_error = None
            if self._policy is None:
                self._load_bootstrap()
            return
        if raw == self._accepted_raw:
            self._last_error = None
            self._rejected_raw = None
            return
        if raw == self._rejected_raw:
            return  # the same bad document: already reported
        try:
            policy = parse_policy(raw, trusted_digest=self._trusted_digest)
        except PolicyError as exc:
            self._last_error = str(exc)
            self._rejected_raw = raw
            self._logger.error(
                "rejected new policy version; keeping the last good policy",
                extra={"error": str(exc), "kept_version": self._policy.version if self._policy else None},
            )
            if self._policy is None:
                self._load_bootstrap()
            return
        if self._policy is not None and policy.version != self._policy.version:
            self._logger.info("loaded new policy", extra={"policy_version": policy.version})
        self._policy, self._accepted_raw, self._source = policy, raw, "fetched"
        self._keep(policy, raw)
        self._rejected_raw = self._last_error = None

    def _load_bootstrap(self) -> None:
        if self._bootstrap is None:
            if self._last_error is None:
                self._last_error = "no policy deployed to this AppConfig environment yet (empty configuration)"
            return
        try:
            raw = self._bootstrap()
            policy = parse_policy(raw, trusted_digest=self._trusted_digest)
        except (OSError, PolicyError) as exc:
            self._last_error = f"{self._last_error or 'no policy deployed yet'}; the bootstrap policy failed: {exc}"
            self._logger.error("cannot load the bootstrap policy", extra={"error": str(exc)})
            return
        self._policy, self._source = policy, "bootstrap"
        self._keep(policy, raw)
        self._logger.info(
            "serving the bootstrap policy until a version is deployed to this client",
            extra={"policy_version": policy.version},
        )


def file_fetcher(path: str | Path) -> FetchFn:
    """Reads the policy file on every refresh, so local edits take effect within ``max_age_s``."""
    target = Path(path)
    return target.read_bytes


class AppConfigFetcher:
    """Polls one AppConfig configuration profile through the AppConfig Data API.

    A thin session on botocore's ``appconfigdata`` client rather than Powertools' ``AppConfigProvider``,
    which (3.37) raises on the empty first answer a client outside a rollout's share gets, starts its
    session with the default 60 s minimum poll interval, and never renews an expired session token.
    Here: the session asks for ``APPCONFIG_MIN_POLL_INTERVAL_S``; an empty answer is returned as is
    (``PolicyStore`` knows it means "nothing new"); a rejected token (expired after 24 h, or refused)
    starts a new session once, at once.

    Args:
        application: environment: profile: AppConfig names or ids.
        client: an ``appconfigdata`` client (a Stubber-wrapped one in tests); None creates one lazily.
        region: the client's region when it is created here (the function's own by default).
    """

    def __init__(
        self, *, application: str, environment: str, profile: str, client: Any = None, region: str | None = None
    ) -> None:
        self._identifiers = {
            "ApplicationIdentifier": application,
            "EnvironmentIdentifier": environment,
            "ConfigurationProfileIdentifier": profile,
        }
        self._client = client
        self._region = region
        self._token: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from .aws_clients import new_client

            # One attempt each, on the request path: a slow AppConfig costs a request at most about 2 s of
            # each call, and the policy in force (or the bootstrap) serves meanwhile; the next poll retries.
            self._client = new_client(
                "appconfigdata",
                region=self._region,
                connect_timeout=1,
                read_timeout=1,
                retries={"total_max_attempts": 1},
            )
        return self._client

    def __call__(self) -> bytes:
        from botocore.exceptions import ClientError

        for renewed in (False, True):
            if self._token is None:
                session = self.client.start_configuration_session(
                    **self._identifiers, RequiredMinimumPollIntervalInSeconds=APPCONFIG_MIN_POLL_INTERVAL_S
                )
                self._token = session["InitialConfigurationToken"]
            try:
                response = self.client.get_latest_configuration(ConfigurationToken=self._token)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BadRequestException" or renewed:
                    raise
                self._token = None  # an expired or refused token: a new session answers at once
                continue
            self._token = response["NextPollConfigurationToken"]
            content: bytes = response["Configuration"].read()
            return content
        raise AssertionError("unreachable")  # pragma: no cover


def appconfig_fetcher(
    *, application: str, environment: str, profile: str, client: Any = None, region: str | None = None
) -> FetchFn:
    """The fetch function for ``PolicyStore`` reading AppConfig (see ``AppConfigFetcher``)."""
    return AppConfigFetcher(
        application=application, environment=environment, profile=profile, client=client, region=region
    )
