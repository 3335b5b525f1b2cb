"""Turn the router's draft-04 request schema (a JSON document) into API Gateway's ``JsonSchema`` L2 value.

The router validates bodies with the same schema file; API Gateway rejects bad ones before they cost a
Lambda invocation. The L2 ``JsonSchema`` takes snake_case keyword arguments, hence this small mapping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aws_cdk import aws_apigateway as apigw

from lambdas.router import policy as router_policy

REQUEST_SCHEMA_PATH = Path(router_policy.__file__).resolve().parent / "schemas" / "generate_request.schema.json"
_NESTED = {"properties", "pattern_properties", "definitions"}
_SINGLE = {"items", "additional_properties", "not_", "property_names"}
_IGNORED = {"$schema", "id"}


def _snake(key: str) -> str:
    return "not_" if key == "not" else re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def to_json_schema(document: dict[str, Any]) -> apigw.JsonSchema:
    """Map a draft-04 schema document onto ``apigw.JsonSchema`` (recursively)."""
    kwargs: dict[str, Any] = {}
    for key, raw in document.items():
        if key in _IGNORED:
            continue
        name = "ref" if key == "$ref" else _snake(key)
        value: Any = raw
        if name == "type":
            value = (
                [apigw.JsonSchemaType[v.upper()] for v in raw]
                if isinstance(raw, list)
                else apigw.JsonSchemaType[raw.upper()]
            )
        elif name in _NESTED:
            value = {k: to_json_schema(v) for k, v in raw.items()}
        elif name in _SINGLE and isinstance(raw, dict):
            value = to_json_schema(raw)
        kwargs[name] = value
    if "$schema" in document:
        kwargs["schema"] = apigw.JsonSchemaVersion.DRAFT4
    return apigw.JsonSchema(**kwargs)


def generate_request_schema() -> apigw.JsonSchema:
    """The ``POST /generate`` body schema, as shipped with the router."""
    return to_json_schema(json.loads(REQUEST_SCHEMA_PATH.read_text(encoding="utf-8")))
