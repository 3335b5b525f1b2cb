"""Where the live policy comes from: AWS AppConfig (deployed) or a file (local mode), cached.

A new document is validated before it replaces the current policy; an invalid one is logged and the last
good policy stays in force. Until a first good policy has loaded, ``current()`` raises
``PolicyUnavailable``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .policy import Policy, PolicyError, parse_policy

FetchFn = Callable[[], bytes | str]


class PolicyUnavailable(RuntimeError):
    """No valid policy has been loaded yet."""


class PolicyStore:
    """Caches the compiled policy and refreshes it at most every ``max_age_s`` seconds.

    Args:
        fetch: returns the raw policy document (bytes or str).
        max_age_s: how long a fetched document is trusted before fetching again.
        clock: monotonic seconds.
        logger: where rejected versions and fetch failures are reported.
        trusted_digest: SHA-256 of the document validated at synth (see ``policy.parse_policy``).
    """

    def __init__(
        self,
        fetch: FetchFn,
        *,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | Any | None = None,
        trusted_digest: str | None = None,
    ) -> None:
        self._fetch = fetch
        self._trusted_digest = trusted_digest
        self._max_age_s = max_age_s
        self._clock = clock
        self._logger = logger or logging.getLogger(__name__)
        self._policy: Policy | None = None
        self._raw: bytes | str | None = None
        self._checked_at: float | None = None
        self._last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def last_error(self) -> str | None:
        """Why the newest fetched document was rejected, if it was."""
        return self._last_error

    def current(self) -> Policy:
        """The policy in force, refreshed when older than ``max_age_s``.

        Raises:
            PolicyUnavailable: no valid policy was ever loaded.
        """
        now = self._clock()
        if self._policy is None or self._checked_at is None or now - self._checked_at >= self._max_age_s:
            with self._lock:
                if self._policy is None or self._checked_at is None or now - self._checked_at >= self._max_age_s:
                    self._refresh(now)
        if self._policy is None:
            raise PolicyUnavailable(self._last_error or "no routing policy loaded")
        return self._policy

    def _refresh(self, now: float) -> None:
        self._checked_at = now
        try:
            raw = self._fetch()
        except Exception as exc:  # a fetch failure must never take down a working router
            self._last_error = f"cannot fetch policy: {exc}"
            self._logger.error("policy fetch failed; keeping the last good policy", extra={"error": str(exc)})
            return
        if not raw or not raw.strip():
            # AppConfig answers with no content until a deployment reaches this client (the first gradual
            # rollout of a new stack); keep what we have rather than calling it an invalid policy.
            self._last_error = "no policy deployed to this AppConfig environment yet (empty configuration)"
            self._logger.warning("policy source returned an empty document; keeping the last good policy")
            return
        if self._policy is not None and raw == self._raw:
            return
        try:
            policy = parse_policy(raw, trusted_digest=self._trusted_digest)
        except PolicyError as exc:
            self._last_error = str(exc)
            self._logger.error(
                "rejected new policy version; keeping the last good policy",
                extra={"error": str(exc), "kept_version": self._policy.version if self._policy else None},
            )
            self._raw = raw  # do not re-validate the same bad document on every refresh
            return
        if self._policy is not None and policy.version != self._policy.version:
            self._logger.info("loaded new policy", extra={"policy_version": policy.version})
        self._policy, self._raw, self._last_error = policy, raw, None


def file_fetcher(path: str | Path) -> FetchFn:
    """Reads the policy file on every refresh, so local edits take effect within ``max_age_s``."""
    target = Path(path)
    return target.read_bytes


def appconfig_fetcher(
    *,
    application: str,
    environment: str,
    profile: str,
    max_age_s: int,
    boto3_client: Any = None,
) -> FetchFn:
    """Fetches through Powertools' ``AppConfigProvider`` (session tokens, caching and polling handled there).

    Args:
        boto3_client: an ``appconfigdata`` client to use (a Stubber-wrapped one in tests); None creates one.
    """
    from aws_lambda_powertools.utilities.parameters import AppConfigProvider

    provider = AppConfigProvider(environment=environment, application=application, boto3_client=boto3_client)

    def fetch() -> bytes | str:
        value = provider.get(profile, max_age=max_age_s, transform=None)
        if not isinstance(value, bytes | str):
            raise TypeError(f"AppConfig returned {type(value).__name__}, expected the raw document")
        return value

    return fetch
