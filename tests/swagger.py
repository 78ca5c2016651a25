"""Swagger 2.0 schemas of the connector as JSON Schema, for validating what the bridge sends."""
from __future__ import annotations

import copy


def to_json_schema(schema, definitions: dict | None = None):
    """Refs inlined from ``definitions``, extensions dropped, x-nullable turned into 'or null'."""
    if isinstance(schema, dict):
        if "$ref" in schema and definitions is not None:
            return to_json_schema(copy.deepcopy(definitions[schema["$ref"].rsplit("/", 1)[1]]), definitions)
        out = {k: to_json_schema(v, definitions) for k, v in schema.items() if not k.startswith("x-")}
        if schema.get("x-nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [to_json_schema(v, definitions) for v in schema]
    return schema
