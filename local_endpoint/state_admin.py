"""Local mode's ``GET`` and ``DELETE /_local/state``: what the live-state store holds, and a fresh start.

In memory, the router's ``InMemoryBackend`` describes and clears itself. The DynamoDB store has no such
calls: the deployed router needs only ``BatchGetItem`` and ``UpdateItem``, and its IAM policy grants no
more. Local mode is not bound by that policy, so ``DynamoStoreView`` reads the table with its own client
(a consistent ``Scan``) and deletes the router's items (``c#``, ``w#``, ``s#``; see ``dynamo_state.py``)
with ``BatchWriteItem``. It clears only a local table (``DYNAMODB_ENDPOINT_URL``): wiping a table in AWS
would close every deployed instance's circuits and zero its spend.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from lambdas.router.dynamo_state import DynamoBackend
from lambdas.router.live_state import LiveStateTracker
from lambdas.router.state_store import CircuitRecord

# The key prefixes of the router's items in the state table (circuits, counting windows, spend).
ROUTER_KEY_PREFIXES = ("c#", "w#", "s#")
BATCH_WRITE_LIMIT = 25
BATCH_WRITE_TRIES = 5


class StoreView(Protocol):
    def describe(self) -> dict[str, Any]:
        """Open circuits and spend counters, as JSON."""
        ...

    def clear(self) -> None:
        """Close every circuit and forget every count and spend counter."""
        ...


class ClearRefused(Exception):
    """The store may be read but not cleared from local mode."""


class DynamoStoreView:
    """``StoreView`` on the router's DynamoDB state table.

    Args:
        table_name: the state table.
        region: its region; None: botocore's default.
        endpoint_url: a local DynamoDB (moto's server, DynamoDB Local); None: AWS, which is read but never
            cleared.
        client: a ready botocore ``dynamodb`` client (tests); None creates one lazily.
    """

    def __init__(
        self, table_name: str, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        self.table_name = table_name
        self._region = region
        self._endpoint_url = endpoint_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from lambdas.router.aws_clients import new_client

            # An admin call, not the request path: patient timeouts, a few retries.
            self._client = new_client(
                "dynamodb",
                region=self._region,
                endpoint_url=self._endpoint_url,
                connect_timeout=2,
                read_timeout=10,
                retries={"total_max_attempts": 3, "mode": "standard"},
            )
        return self._client

    def describe(self) -> dict[str, Any]:
        circuits: list[dict[str, Any]] = []
        spend: dict[str, float] = {}
        for item in self._scan():
            key = item["pk"]["S"]
            if key.startswith("c#") and "opened_at" in item:  # a closed circuit keeps its item, without opened_at
                # Model ids hold ':' and '.', never '#'; a region never does.
                model_id, _, region = key[2:].rpartition("#")
                record = CircuitRecord(
                    opened_at=_number(item, "opened_at"),
                    probes=int(_number(item, "probes")),
                    probe_at=_number(item, "probe_at"),
                    reason=item.get("reason", {}).get("S", ""),
                )
                circuits.append({"model_id": model_id, "region": region, **record._asdict()})
            elif key.startswith("s#"):
                spend[key[2:]] = _number(item, "usd")
        circuits.sort(key=lambda circuit: (circuit["model_id"], circuit["region"]))
        return {"circuits": circuits, "spend_usd": dict(sorted(spend.items()))}

    def clear(self) -> None:
        if self._endpoint_url is None:
            raise ClearRefused(
                f"DELETE /_local/state clears only a local DynamoDB (DYNAMODB_ENDPOINT_URL); table "
                f"{self.table_name!r} is in AWS, where every deployed instance shares it"
            )
        keys = [{"pk": item["pk"]} for item in self._scan(projection="pk") if _is_routers(item)]
        for start in range(0, len(keys), BATCH_WRITE_LIMIT):
            requests = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + BATCH_WRITE_LIMIT]]
            for attempt in range(BATCH_WRITE_TRIES):
                answer = self.client.batch_write_item(RequestItems={self.table_name: requests})
                requests = answer.get("UnprocessedItems", {}).get(self.table_name, [])
                if not requests:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"{len(requests)} items of {self.table_name!r} were not deleted")

    def _scan(self, projection: str | None = None) -> Iterator[Mapping[str, Any]]:
        request: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
        while True:
            page = self.client.scan(**request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class LiveStateAdmin:
    """The store behind the router's tracker, and a reset of both.

    Args:
        tracker: the router's live-state tracker (its cache and unflushed writes are dropped on clear).
        store: what describes and clears the store.
        store_name: shown in every description (``memory`` or ``dynamodb:<table>``).
    """

    def __init__(self, tracker: LiveStateTracker, store: StoreView, store_name: str) -> None:
        self.tracker = tracker
        self.store = store
        self.store_name = store_name

    def describe(self) -> dict[str, Any]:
        # Spend and counts are batched for up to a second and written only when a request comes: write them
        # now, so the answer includes this instance's latest calls.
        self.tracker.flush()
        return {"store": self.store_name, **self.store.describe()}

    def clear(self) -> None:
        # Unflushed spend and counts are dropped first, so no flush writes them back after the store is
        # cleared; the second reset forgets what a concurrent request read from the store in between.
        self.tracker.reset()
        self.store.clear()
        self.tracker.reset()


def admin_for(tracker: LiveStateTracker, environ: Mapping[str, str] = os.environ) -> LiveStateAdmin | None:
    """The admin for the tracker's store: the in-memory one itself, a view of the DynamoDB table, or None
    for a store local mode cannot show.

    ``environ`` supplies what the router's handler built the DynamoDB backend from (``AWS_REGION``,
    ``DYNAMODB_ENDPOINT_URL``).
    """
    backend: Any = tracker.backend
    if isinstance(backend, DynamoBackend):
        view = DynamoStoreView(
            backend.table_name,
            region=environ.get("AWS_REGION") or None,
            endpoint_url=environ.get("DYNAMODB_ENDPOINT_URL") or None,
        )
        return LiveStateAdmin(tracker, view, f"dynamodb:{backend.table_name}")
    if hasattr(backend, "describe") and hasattr(backend, "clear"):
        return LiveStateAdmin(tracker, backend, "memory")
    return None


def _is_routers(item: Mapping[str, Any]) -> bool:
    return str(item["pk"].get("S", "")).startswith(ROUTER_KEY_PREFIXES)


def _number(item: Mapping[str, Any], name: str) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else 0.0
