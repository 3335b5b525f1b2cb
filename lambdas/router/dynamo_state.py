"""The live-state store in DynamoDB (deployed mode): one table, partition key ``pk``, TTL on ``expires_at``.

Items (all updates are atomic ``ADD`` or conditional ``SET``; the router needs only ``BatchGetItem`` and
``UpdateItem``):

- ``c#<model id>#<region>``: a circuit; ``opened_at`` present means not closed, ``probes``/``probe_at``
  count half-open probes; closing removes those attributes;
- ``w#<model id>#<region>#<window>``: calls in one counting window: ``ok``, ``failed``, ``throttled`` and
  the latency histogram ``h0``..``h10`` (see ``breaker.LATENCY_BOUNDS_MS``), and the failures per caller
  bucket ``f0``..``f31`` (see ``breaker.CALLER_BUCKETS``; only the non-zero ones are stored);
- ``s#<spend key>``: ``usd`` spent in a day or month (see ``budget.py``), reservations included: near a cap an
  estimate is added with ``ADD`` under the condition that the counter stays within the cap, and the difference
  to the answer's cost is added later (negative when the answer cost less).

The client has tight timeouts and one retry: a slow store costs a request at most about a second once,
then the tracker leaves it alone for a while. An ``ADD`` whose first try timed out after DynamoDB applied
it may be applied twice by that retry: counts and spend can overshoot by one write, never fall short.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import breaker as b
from .aws_clients import new_client
from .state_store import CircuitRecord, CountKey, Pair, RemoteView

BATCH_GET_LIMIT = 100
BATCH_GET_TRIES = 3


class IncompleteRead(RuntimeError):
    """BatchGetItem left keys unprocessed after its retries: the caller keeps its previous view."""


_COUNT_FIELDS = ("ok", "failed", "throttled")
_HISTOGRAM_FIELDS = tuple(f"h{index}" for index in range(b.LATENCY_BUCKETS))
_CALLER_FIELDS = tuple(f"f{index}" for index in range(b.CALLER_BUCKETS))


def _circuit_key(pair: Pair) -> str:
    return f"c#{pair[0]}#{pair[1]}"


def _window_key(pair: Pair, window: int) -> str:
    return f"w#{pair[0]}#{pair[1]}#{window}"


def _spend_key(key: str) -> str:
    return f"s#{key}"


def _n(value: float) -> dict[str, str]:
    """A DynamoDB number in fixed-point notation (``repr`` would give ``1.05e-05`` for a cheap call, which
    some DynamoDB-compatible stores reject); twelve decimals are far below a cent."""
    if isinstance(value, int):
        return {"N": str(value)}
    text = f"{value:.12f}".rstrip("0").rstrip(".")
    return {"N": text if text not in ("", "-0") else "0"}


def _num(item: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else default


def _counts(item: Mapping[str, Any]) -> b.WindowCounts:
    return b.WindowCounts(
        ok=int(_num(item, "ok")),
        failed=int(_num(item, "failed")),
        throttled=int(_num(item, "throttled")),
        latency=tuple(int(_num(item, name)) for name in _HISTOGRAM_FIELDS),
        failed_by_caller=tuple(int(_num(item, name)) for name in _CALLER_FIELDS),
    )


class DynamoBackend:
    """``StateBackend`` on a DynamoDB table.

    Args:
        table_name: the state table.
        region: its region (the function's own).
        endpoint_url: another DynamoDB endpoint (moto's server in tests); None for AWS.
        client: a ready botocore ``dynamodb`` client (tests); None creates one lazily.
        connect_timeout_s: read_timeout_s: per-call limits.
    """

    def __init__(
        self,
        table_name: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        connect_timeout_s: float = 0.25,
        read_timeout_s: float = 0.5,
    ) -> None:
        self.table_name = table_name
        self._region = region
        self._endpoint_url = endpoint_url
        self._client = client
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = new_client(
                "dynamodb",
                region=self._region,
                endpoint_url=self._endpoint_url,
                connect_timeout=self._connect_timeout_s,
                read_timeout=self._read_timeout_s,
                retries={"total_max_attempts": 2, "mode": "standard"},
                tcp_keepalive=True,
            )
        return self._client

    def read(self, pairs: Sequence[Pair], windows: Sequence[int], spend_keys: Sequence[str]) -> RemoteView:
        keys = [_circuit_key(pair) for pair in pairs]
        keys += [_window_key(pair, window) for pair in pairs for window in windows]
        keys += [_spend_key(key) for key in spend_keys]
        items: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self.table_name: {"Keys": [{"pk": {"S": key}} for key in keys[start : start + BATCH_GET_LIMIT]]}
            }
            for attempt in range(BATCH_GET_TRIES):
                if attempt:
                    time.sleep(0.01 * 2**attempt * random.random())  # full jitter: 0-20 ms, then 0-40 ms
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    items[item["pk"]["S"]] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            if request:
                # An absent key reads as "closed" or "nothing spent": never guess that for keys not read.
                left = len(request.get(self.table_name, {}).get("Keys", []))
                raise IncompleteRead(f"{left} keys still unprocessed after {BATCH_GET_TRIES} BatchGetItem calls")
        circuits: dict[Pair, CircuitRecord] = {}
        counts: dict[CountKey, b.WindowCounts] = {}
        for pair in pairs:
            circuit = items.get(_circuit_key(pair))
            if circuit is not None and "opened_at" in circuit:
                circuits[pair] = CircuitRecord(
                    opened_at=_num(circuit, "opened_at"),
                    probes=int(_num(circuit, "probes")),
                    probe_at=_num(circuit, "probe_at"),
                    reason=circuit.get("reason", {}).get("S", ""),
                )
            for window in windows:
                item = items.get(_window_key(pair, window))
                if item is not None:
                    counts[(pair, window)] = _counts(item)
        spend = {key: _num(items.get(_spend_key(key), {}), "usd") for key in spend_keys}
        return RemoteView(circuits=circuits, counts=counts, spend=spend)

    def add_counts(self, pair: Pair, window: int, delta: b.WindowCounts, expires_at: float) -> b.WindowCounts:
        values: dict[str, Any] = {":expires": _n(int(expires_at))}
        adds = []
        fields = dict(zip(_COUNT_FIELDS, (delta.ok, delta.failed, delta.throttled), strict=True))
        fields.update(zip(_HISTOGRAM_FIELDS, delta.latency, strict=True))
        fields.update(zip(_CALLER_FIELDS, delta.failed_by_caller, strict=True))
        for name, value in fields.items():
            if value:
                adds.append(f"{name} :{name}")
                values[f":{name}"] = _n(value)
        expression = "SET expires_at = :expires" + (f" ADD {', '.join(adds)}" if adds else "")
        response = self.client.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": _window_key(pair, window)}},
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return _counts(response.get("Attributes", {}))

    def _conditional_update(self, key: str, expression: str, condition: str, values: dict[str, Any]) -> bool:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if "#reason" in expression:  # "reason" is a DynamoDB reserved word
            request["ExpressionAttributeNames"] = {"#reason": "reason"}
        try:
            self.client.update_item(**request)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def open_circuit(self, pair: Pair, *, opened_at: float, expected: float | None, reason: str) -> bool:
        values: dict[str, Any] = {
            ":opened": _n(opened_at),
            ":zero": _n(0),
            ":reason": {"S": reason[:500]},
            # Kept a day after opening, for the record; a closed or re-opened circuit rewrites it.
            ":expires": _n(int(opened_at) + 86_400),
        }
        if expected is None:
            condition = "attribute_not_exists(opened_at)"
        else:
            condition = "opened_at = :expected"
            values[":expected"] = _n(expected)
        return self._conditional_update(
            _circuit_key(pair),
            "SET opened_at = :opened, probes = :zero, probe_at = :zero, #reason = :reason, expires_at = :expires",
            condition,
            values,
        )

    def claim_probe(self, pair: Pair, *, opened_at: float, max_probes: int, now: float, stale_before: float) -> bool:
        at = _n(now)
        if self._conditional_update(
            _circuit_key(pair),
            "SET probes = probes + :one, probe_at = :now",
            "opened_at = :opened AND probes < :max",
            {":one": _n(1), ":now": at, ":opened": _n(opened_at), ":max": _n(max_probes)},
        ):
            return True
        return self._conditional_update(
            _circuit_key(pair),
            "SET probes = :one, probe_at = :now",
            "opened_at = :opened AND probe_at < :stale",
            {":one": _n(1), ":now": at, ":opened": _n(opened_at), ":stale": _n(stale_before)},
        )

    def release_probe(self, pair: Pair, *, opened_at: float) -> bool:
        return self._conditional_update(
            _circuit_key(pair),
            "SET probes = probes - :one",
            "opened_at = :opened AND probes > :zero",
            {":one": _n(1), ":zero": _n(0), ":opened": _n(opened_at)},
        )

    def close_circuit(self, pair: Pair, *, opened_at: float) -> bool:
        return self._conditional_update(
            _circuit_key(pair),
            "REMOVE opened_at, probes, probe_at, #reason",
            "opened_at = :opened",
            {":opened": _n(opened_at)},
        )

    def add_spend(self, amounts: Mapping[str, tuple[float, float]]) -> None:
        for key, (usd, expires_at) in amounts.items():
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": _spend_key(key)}},
                UpdateExpression="ADD usd :usd SET expires_at = :expires",
                ExpressionAttributeValues={":usd": _n(usd), ":expires": _n(int(expires_at))},
            )

    def reserve_spend(self, key: str, usd: float, *, cap_usd: float, expires_at: float) -> tuple[bool, float]:
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": _spend_key(key)}},
                UpdateExpression="ADD usd :usd SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(usd) OR usd <= :room",
                ExpressionAttributeValues={
                    ":usd": _n(usd),
                    ":expires": _n(int(expires_at)),
                    ":room": _n(cap_usd - usd),
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            return False, _num(exc.response.get("Item", {}), "usd", cap_usd)
        return True, _num(response.get("Attributes", {}), "usd")
